// chained_attention_bwd (SPEC.md §3.2a, §3.3): three passes over row blocks of one
// (sequence, head) with O(F' E) states (F' = C(E+g+1, g+1)), never an L x L matrix.
//   1. key statistics (bidirectional: the totals every query needs),
//   2. queries in order: z, delta, dQ (causal: against the prefix of earlier chunks,
//      then the chunk's keys join the prefix), and the query statistics,
//   3. keys in reverse order: dK, dV (causal: against the suffix of later chunks, then
//      the chunk's queries join the suffix).
// Threads: whole sequences per thread when there are enough of them (results then do
// not depend on the thread count); otherwise each sequence is cut into one contiguous
// range of blocks per thread, whose partial states are combined element by element in
// thread order (exclusive prefix / suffix when causal): deterministic for a thread count.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "lorafast/error.hpp"
#include "lorafast/fast_attention.hpp"
#include "ops/chained/chained_head.hpp"

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
    for (std::int64_t b = 0; b < blocks; ++b) add_key_stats(head, ws, b, keys.view());
  for (std::int64_t b = 0; b < blocks; ++b) {
    query_block(head, ws, b, keys.view(), !head.causal);
    if (head.causal)
      add_key_stats(head, ws, b, keys.view());
    else
      add_query_stats(head, ws, b, true, queries.view());
  }
  for (std::int64_t b = blocks - 1; b >= 0; --b) {
    key_block(head, ws, b, queries.view());
    if (head.causal) add_query_stats(head, ws, b, false, queries.view());
  }
}

// Combines per-thread partial states in thread order, element by element (call from
// every thread of the team). Causal: states[t] becomes the sum over the threads before
// t (prefix) or after t (suffix). Bidirectional: states[0] becomes the total.
template <class T>
void combine(std::vector<State<T>>& states, bool causal, bool suffix) {
  const int count = static_cast<int>(states.size());
  const auto size = static_cast<std::int64_t>(states[0].data.size());
#pragma omp for schedule(static)
  for (std::int64_t x = 0; x < size; ++x) {
    T running = 0;
    for (int u = 0; u < count; ++u) {
      T& value = states[suffix ? count - 1 - u : u].data[x];
      const T own = value;
      if (causal) value = running;
      running += own;
    }
    if (!causal) states[0].data[x] = running;
  }
}

// One sequence shared by the team: thread t owns blocks [t B / S, (t + 1) B / S).
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
    for (std::int64_t b = b0; b < b1; ++b) add_key_stats(head, ws, b, keys[t].view());
#pragma omp barrier
    combine(keys, head.causal, false);
    State<T>& key_state = head.causal ? keys[t] : keys[0];
    for (std::int64_t b = b0; b < b1; ++b) {
      query_block(head, ws, b, key_state.view(), true);
      add_query_stats(head, ws, b, true, queries[t].view());
      if (head.causal) add_key_stats(head, ws, b, keys[t].view());
    }
#pragma omp barrier
    combine(queries, head.causal, true);
    State<T>& query_state = head.causal ? queries[t] : queries[0];
    for (std::int64_t b = b1 - 1; b >= b0; --b) {
      key_block(head, ws, b, query_state.view());
      if (head.causal) add_query_stats(head, ws, b, false, queries[t].view());
    }
  }
}

}  // namespace

template <class T>
void chained_attention_bwd(const AttentionParams<T>& p, std::int64_t head, const SurrogateConfig& config) {
  LF_CHECK(head >= 0 && head < p.heads, ErrorKind::usage, "head ", head, " out of range [0, ", p.heads, ")");
  LF_CHECK(config.degree >= 0 && config.degree % 2 == 0, ErrorKind::usage,
           "the Taylor degree must be even and non-negative, got ", config.degree);
  LF_CHECK(!p.causal || config.chunk >= 1, ErrorKind::usage, "causal chunk must be >= 1, got ", config.chunk);
  LF_CHECK(p.head_dim >= 1 && p.scale > 0, ErrorKind::usage, "head_dim and scale must be positive");
  if (p.batch <= 0 || p.seq_len <= 0) return;
  const TaylorFeatures phi1(p.head_dim, config.degree + 1), phi(p.head_dim, config.degree);
  const FeatureRaise raise(p.head_dim, config.degree);
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const std::int64_t block = chained::block_rows(p.causal, config);
  const std::int64_t blocks = (p.seq_len + block - 1) / block;
  if (p.batch >= threads || blocks < 2) {
#pragma omp parallel if (threads > 1)
    {
      State<T> keys, queries;
#pragma omp for schedule(static, 1)
      for (std::int64_t n = 0; n < p.batch; ++n) {
        chained::Head<T> h = chained::make_head(p, n, head, config, phi1, phi, raise);
        chained::Workspace<T> ws(h);
        sequence_serial(h, ws, keys, queries);
      }
    }
    return;
  }
  for (std::int64_t n = 0; n < p.batch; ++n) {
    chained::Head<T> h = chained::make_head(p, n, head, config, phi1, phi, raise);
    sequence_segmented(h, static_cast<int>(std::min<std::int64_t>(threads, blocks)));
  }
}

template void chained_attention_bwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&);
template void chained_attention_bwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&);

}  // namespace lorafast
