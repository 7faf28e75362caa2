#!/usr/bin/env bash
# Installs the Debian (12 or 13) packages lorafast builds, tests and benchmarks with,
# then the virtual environment <repo>/.venv the Python tests and benchmarks run in:
# PyTorch 2.13 (CPU build), transformers, PEFT, TRL (its chat templates are the
# oracle of the template engine), numpy, matplotlib, pytest. Run as root;
# a second run checks the venv and returns in a few seconds.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# The local label keeps pip to CPU builds: PyPI's plain torch==2.13.0 for Linux is the
# multi-GB CUDA build, and it would come in through any unpinned torch requirement.
TORCH_PIN="torch==2.13.0+cpu"
PY_PACKAGES=(numpy matplotlib pytest pybind11 transformers peft safetensors tokenizers trl jinja2 gguf)

apt-get update -q
# python3 + python3-matplotlib: `lorafast finetune` draws loss_curve.png with
# /usr/bin/python3 scripts/plot_loss.py. libopenmpi-dev + openmpi-bin (optional:
# CMake's LORAFAST_MPI): `mpirun -np K lorafast finetune` on several processes.
apt-get install -y -q --no-install-recommends \
  cmake ninja-build g++ pkg-config \
  libopenblas-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev \
  libpcre2-dev libicu-dev libopenmpi-dev openmpi-bin \
  python3 python3-matplotlib

# The venv: python3 on PATH (e.g. pyenv's), else Debian's with python3-venv.
if ! "$VENV/bin/python" -c '' 2>/dev/null; then
  python=python3
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get install -y -q --no-install-recommends python3-venv
    python=/usr/bin/python3
  fi
  rm -rf "$VENV"
  "$python" -m venv "$VENV"
fi

# Already done when every package is installed and torch is 2.13 (no imports: fast).
if ! "$VENV/bin/python" - "${PY_PACKAGES[@]}" 2>/dev/null <<'EOF'; then
import importlib.metadata as md
import sys
for name in sys.argv[1:]:
    md.version(name)
sys.exit(0 if md.version("torch").startswith("2.13.") else 1)
EOF
  pip=("$VENV/bin/python" -m pip install --progress-bar off)
  # torch first and alone, so nothing after it can ask for another build.
  "${pip[@]}" "$TORCH_PIN"
  # The pin again holds torch where it is while pip resolves the rest.
  "${pip[@]}" "$TORCH_PIN" "${PY_PACKAGES[@]}"
fi

# Fails loudly if pip let another torch in.
if ! "$VENV/bin/python" -c 'import sys, torch
assert torch.__version__.startswith("2.13"), "torch " + torch.__version__
assert torch.version.cuda is None, "a CUDA build of torch (CUDA %s)" % torch.version.cuda
print("install_deps.sh: %s ready: Python %s, PyTorch %s" % (sys.prefix, sys.version.split()[0], torch.__version__))'; then
  echo "install_deps.sh: $VENV does not hold PyTorch 2.13 for CPU (see above); remove $VENV and run this script again" >&2
  exit 1
fi
