#!/usr/bin/env bash
# Fuzzes the readers (README "Reliability"): builds the libFuzzer harnesses of fuzz/
# with clang, ASan and UBSan in build-fuzz/, generates the seed corpus, then runs each
# harness for SECONDS one after another with the JSON dictionary, in a working corpus
# kept in build-fuzz/corpus/<harness>. An input that fails is saved in
# fuzz/crashers/<harness>/ (commit it with its fix: the test suite replays it).
# Prints and writes build-fuzz/fuzz_summary.csv: harness, seconds, executions, findings.
#
#   scripts/fuzz.sh [SECONDS] [HARNESS...]    # default 60 s each, every harness
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(safetensors gpt_model peft_adapter checkpoint cost_model token_ids chat_template instruction_data)

# clang with its runtime (libFuzzer, sanitizers) and OpenMP, from Debian.
if ! command -v clang++ >/dev/null || ! dpkg -s libclang-rt-dev libomp-dev >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends clang libclang-rt-dev libomp-dev
fi
build=build-fuzz
cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DLORAFAST_FUZZ=ON \
  -DLORAFAST_BUILD_TESTS=OFF -DLORAFAST_BUILD_BENCH=OFF >/dev/null
targets=(lorafast_fuzz_seeds)
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
cmake --build "$build" --target "${targets[@]}"
rm -rf "$build/seeds"
"$build/fuzz/lorafast_fuzz_seeds" "$build/seeds"
mkdir -p "$build/logs"

summary="$build/fuzz_summary.csv"
[ -s "$summary" ] || echo "harness,seconds,executions,findings" > "$summary"
for h in "${harnesses[@]}"; do
  mkdir -p "$build/corpus/$h" "fuzz/crashers/$h"
  before=$(ls "fuzz/crashers/$h" | wc -l)
  log="$build/logs/$h.log"
  : >"$log"
  # libFuzzer stops at the first failure: run again, from the grown corpus, until
  # SECONDS have passed. -rss_limit_mb / -malloc_limit_mb: an input may not make a
  # reader use 2 GB.
  executions=0
  start=$(date +%s)
  while left=$(( seconds - ($(date +%s) - start) )); [ "$left" -gt 0 ]; do
    "$build/fuzz/fuzz_$h" "$build/corpus/$h" "$build/seeds/$h" -dict=fuzz/json.dict \
      -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
      -artifact_prefix="fuzz/crashers/$h/" -print_final_stats=1 >>"$log" 2>&1 || true
    ran=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    executions=$(( executions + ${ran:-0} ))
    sed -i 's/^stat::number_of_executed_units:/counted_units:/' "$log"
  done
  findings=$(( $(ls "fuzz/crashers/$h" | wc -l) - before ))
  echo "$h,$seconds,$executions,$findings" | tee -a "$summary"
done
echo "summary: $summary; logs: $build/logs/"
