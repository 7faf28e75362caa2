// The per-head surrogate backwards (fast, chained) write one query head's share of
// d_k, d_v. When several query heads share a K/V head (grouped-query attention, or
// heads of one group sent to different methods) the shares must be summed: each head
// then runs into private buffers that are added in afterwards.
#pragma once

#include <vector>

#include "lorafast/attention.hpp"
#include "lorafast/error.hpp"
#include "ops/exact/head_views.hpp"

namespace lorafast {

// Runs bwd(p') for query head `head` of checked params p, with p' = p unless
// p.add_kv_grads, in which case p' writes d_k, d_v into [N, L, E] buffers that are
// then added into p's.
template <class T, class Bwd>
void with_kv_grads_added(const AttentionParams<T>& p, std::int64_t head, Bwd bwd) {
  LF_CHECK(p.add_kv_grads || p.kv_head_count() == p.heads, ErrorKind::usage,
           "attention: grouped query heads add into a shared K/V gradient: set add_kv_grads (and zero d_k, d_v)");
  if (!p.add_kv_grads) {
    bwd(p);
    return;
  }
  const std::int64_t l = p.seq_len, e = p.head_dim, g = p.kv_head(head);
  std::vector<T> d_k(static_cast<std::size_t>(p.batch * l * e)), d_v(d_k.size());
  AttentionParams<T> own = p;
  own.d_k = d_k.data();
  own.d_v = d_v.data();
  own.d_k_strides = own.d_v_strides = {l * e, e, 0};  // every K/V head maps to the buffers
  own.add_kv_grads = false;
  bwd(own);
  for (std::int64_t n = 0; n < p.batch; ++n) {
    const auto out_k = exact::d_k_rows(p, n, g, 0, l), out_v = exact::d_v_rows(p, n, g, 0, l);
    for (std::int64_t j = 0; j < l; ++j)
      for (std::int64_t m = 0; m < e; ++m) {
        out_k(j, m) += d_k[(n * l + j) * e + m];
        out_v(j, m) += d_v[(n * l + j) * e + m];
      }
  }
}

}  // namespace lorafast
