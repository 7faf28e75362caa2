// chained_attention_bwd (SPEC.md §3.2a, §3.3): three passes over row blocks of one
// (sequence, head) with O(F' E) states (F' = C(E+g+1, g+1)), never an L x L matrix.
//   1. key statistics (bidirectional: the totals every query needs),
//   2. queries in order: z, delta, dQ (causal: against the prefix of earlier chunks,
//      then the chunk's keys join the prefix), and the query statistics,
//   3. keys in reverse order: dK, dV (causal: against the suffix of later chunks, then
//      the chunk's queries join the suffix).
// Threads: whole sequences per thread when there are enough of them. Otherwise, causal:
// every chunk's own statistics are stored ([C count, F', E + 1], like the fast path's
// prefix states) and turned into exclusive prefix / suffix states by a scan over their
// entries, so the chunks of each pass run in parallel, nothing is computed twice, and
// the sums are taken in the serial scan's order: results do not depend on the thread
// count. Bidirectional: each sequence is cut into one contiguous range of blocks per
// thread, whose partial totals are summed in thread order (deterministic for a thread
// count; the totals are needed before any block, so no pass is repeated).
#include <omp.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "lorafast/error.hpp"
#include "lorafast/fast_attention.hpp"
#include "ops/chained/chained_head.hpp"
#include "ops/fast/fast_common.hpp"
#include "ops/kv_grads.hpp"

namespace lorafast {
namespace {

using namespace chained;

template <class T>
void reset_states(const Head<T>& head, State<T>& keys, State<T>& queries) {
  keys.reset(head.f1, head.state_cols());
  queries.reset(head.f1, head.state_cols());
}

// One sequence on the calling thread; the scans run in order with no partial sums.
template <class T>
void sequence_serial(Head<T>& head, Workspace<T>& ws, State<T>& keys, State<T>& queries) {
  reset_states(head, keys, queries);
  const std::int64_t blocks = head.blocks();
  if (!head.causal)
    for (std::int64_t b = 0; b < blocks; ++b) add_key_stats(head, ws, b, keys.view(), true);
  for (std::int64_t b = 0; b < blocks; ++b) {
    query_block(head, ws, b, keys.view());
    if (head.causal)
      add_key_stats(head, ws, b, keys.view(), true);
    else
      add_query_stats(head, ws, b, true, queries.view(), true);
  }
  for (std::int64_t b = blocks - 1; b >= 0; --b) {
    key_block(head, ws, b, queries.view());
    if (head.causal) add_query_stats(head, ws, b, false, queries.view(), true);
  }
}

// states[0] becomes the sum of every thread's partial state, in thread order, element
// by element (call from every thread of the team).
template <class T>
void combine(std::vector<State<T>>& states) {
  const auto size = static_cast<std::int64_t>(states[0].data.size());
#pragma omp for schedule(static)
  for (std::int64_t x = 0; x < size; ++x) {
    T total = 0;
    for (const State<T>& s : states) total += s.data[x];
    states[0].data[x] = total;
  }
}

// One causal sequence shared by all threads, chunk by chunk: `states` holds one
// [F', E + 1] state per chunk. Each pass sets its chunks' slots, so only the slot
// it leaves unwritten is zeroed (the scans read it).
//   1. each chunk's key statistics, then their exclusive prefix sums;
//   2. each chunk's queries against its prefix, then (in the same slot) the chunk's
//      query statistics, then their exclusive suffix sums;
//   3. each chunk's keys against its suffix.
// The last chunk's keys and the first chunk's queries feed no other chunk.
template <class T>
void sequence_chunked(Head<T>& head, const std::vector<std::unique_ptr<Workspace<T>>>& ws, T* states) {
  const std::int64_t chunks = head.blocks(), size = head.f1 * head.state_cols();
  const std::int64_t cols = head.state_cols();
  const auto slot = [&](std::int64_t c) { return MatrixView<T>{states + c * size, head.f1, cols, cols}; };
  std::fill(states + (chunks - 1) * size, states + chunks * size, T(0));
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks - 1; ++c) add_key_stats(head, *ws[omp_get_thread_num()], c, slot(c), false);
  fast::exclusive_scan(states, chunks, size, false);
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c) {
    Workspace<T>& w = *ws[omp_get_thread_num()];
    const MatrixView<T> state = slot(c);
    query_block(head, w, c, MatrixView<const T>(state));
    if (c > 0)
      add_query_stats(head, w, c, true, state, false);
    else
      std::fill(state.data, state.data + size, T(0));
  }
  fast::exclusive_scan(states, chunks, size, true);
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c)
    key_block(head, *ws[omp_get_thread_num()], c, MatrixView<const T>(slot(c)));
}

// One bidirectional sequence shared by the team: thread t owns blocks [t B / S, (t + 1) B / S).
template <class T>
void sequence_segmented(Head<T>& head, int team) {
  std::vector<State<T>> keys, queries;
  const std::int64_t blocks = head.blocks();
#pragma omp parallel num_threads(team)
  {
    const int segments = omp_get_num_threads(), t = omp_get_thread_num();
#pragma omp single
    {
      keys.resize(segments);
      queries.resize(segments);
    }
    const std::int64_t b0 = t * blocks / segments, b1 = (t + 1) * blocks / segments;
    Workspace<T> ws(head);
    reset_states(head, keys[t], queries[t]);
    for (std::int64_t b = b0; b < b1; ++b) add_key_stats(head, ws, b, keys[t].view(), true);
#pragma omp barrier
    combine(keys);
    for (std::int64_t b = b0; b < b1; ++b) {
      query_block(head, ws, b, keys[0].view());
      add_query_stats(head, ws, b, true, queries[t].view(), true);
    }
#pragma omp barrier
    combine(queries);
    for (std::int64_t b = b1 - 1; b >= b0; --b) key_block(head, ws, b, queries[0].view());
  }
}

// One query head, every sequence: a team per sequence when there are fewer sequences
// than threads.
template <class T>
void head_bwd(const AttentionParams<T>& p, std::int64_t head, const SurrogateConfig& config) {
  const TaylorFeatures phi(p.head_dim, config.degree);
  const FeatureRaise raise(p.head_dim, config.degree);
  const std::int64_t f1 = phi.size() + static_cast<std::int64_t>(raise.top_parent.size());
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const std::int64_t block = chained::block_rows(p.causal, config);
  const std::int64_t blocks = (p.seq_len + block - 1) / block;
  if (p.batch >= threads || blocks < 2) {
#pragma omp parallel if (threads > 1)
    {
      State<T> keys, queries;
#pragma omp for schedule(static, 1)
      for (std::int64_t n = 0; n < p.batch; ++n) {
        chained::Head<T> h = chained::make_head(p, n, head, config, phi, raise);
        chained::Workspace<T> ws(h);
        sequence_serial(h, ws, keys, queries);
      }
    }
    return;
  }
  if (p.causal) {
    // Uninitialised: the passes set every slot, in parallel.
    const std::unique_ptr<T[]> states(new T[static_cast<std::size_t>(blocks * f1 * (p.head_dim + 1))]);
    std::vector<std::unique_ptr<chained::Workspace<T>>> ws(static_cast<std::size_t>(threads));
    for (std::int64_t n = 0; n < p.batch; ++n) {
      chained::Head<T> h = chained::make_head(p, n, head, config, phi, raise);
      if (n == 0)  // each thread zeroes (first-touches) its own, in parallel
#pragma omp parallel num_threads(threads)
        ws[omp_get_thread_num()] = std::make_unique<chained::Workspace<T>>(h);
      sequence_chunked(h, ws, states.get());
    }
    return;
  }
  for (std::int64_t n = 0; n < p.batch; ++n) {
    chained::Head<T> h = chained::make_head(p, n, head, config, phi, raise);
    sequence_segmented(h, static_cast<int>(std::min<std::int64_t>(threads, blocks)));
  }
}

}  // namespace

template <class T>
void chained_attention_bwd(const AttentionParams<T>& params, std::int64_t head, const SurrogateConfig& config) {
  const AttentionParams<T> checked_params = checked(params, AttentionUse::backward);
  LF_CHECK(head >= 0 && head < checked_params.heads, ErrorKind::usage, "attention: head ", head,
           " out of range [0, ", checked_params.heads, ")");
  LF_CHECK(!checked_params.masked(), ErrorKind::usage,
           "attention: the surrogate cannot honour the sliding-window or document mask");
  LF_CHECK(config.degree >= 0 && config.degree % 2 == 0, ErrorKind::usage,
           "the Taylor degree must be even and non-negative, got ", config.degree);
  LF_CHECK(!checked_params.causal || config.chunk >= 1, ErrorKind::usage, "causal chunk must be >= 1, got ",
           config.chunk);
  with_kv_grads_added(checked_params, head, [&](const AttentionParams<T>& p) { head_bwd(p, head, config); });
}

template void chained_attention_bwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&);
template void chained_attention_bwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&);

}  // namespace lorafast
