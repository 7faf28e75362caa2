// The chained low-rank gradient (SPEC.md §3.2a, PAPER_NOTES §3.4-3.6, §6.5) for one
// (sequence, head), in row blocks. Notation: q' = a q, k' = b (k - c) (ScaledHead,
// a b = beta), Fq = phi(q'), Fk = phi(k'), z = rowsum of the weights, Qn = diag(1/z) Fq
// (ROW scaling), delta = rowsum(dO ∘ O~). With dS~ = P~ ∘ (dO V^T) - diag(delta) P~:
//   dQ = beta dS~ (K - c) = a dS~ K',   dK = beta dS~^T Q = b dS~^T Q',   dV = P~^T dO.
// The Hadamard term goes through the row-wise Kronecker product,
//   (Qn Fk^T) ∘ (dO V^T) = (Qn ⊗_row dO)(Fk ⊗_row V)^T,
// whose contractions with K' and Q' are the [F*E, E] matrices
//   (Fk ⊗_row V)^T K'  = Fk^T (V ⊗_row K')      stored as [F, E*E] (same memory layout)
//   (Qn ⊗_row dO)^T Q' = Qn^T (dO ⊗_row Q')
// and phi_f(k') k'_m = sqrt(a_m + 1) phi'_child(f, m)(k') (chained_raise.hpp) folds each
// Kronecker pair into one degree-(g+1) feature phi' (F' of them; their first F are phi).
//
// States, F' rows each, row-major:
//   key state   [F', E + 1] = sum over keys j of phi'(k'_j) [v_j | 1]
//   query state [F', E + 1] = sum over queries i of (phi'(q'_i)/z_i) [dO_i | delta_i]
// Query i then needs U_i = key state [dO_i; -delta_i] ([F']): dQ_im = a/z_i
// sum_f phi_f(q'_i) sqrt(a_m + 1) U_i[child(f, m)], and the Taylor part of z_i is
// phi(q'_i) . (key state)[:F, E]. Key j likewise: W_j = query state [v_j; -1],
// dK_jm = b sum_f phi_f(k'_j) sqrt(a_m + 1) W_j[child(f, m)], dV_j = phi(k'_j) (query state)[:F, :E].
// Bidirectional: every block uses the totals. Causal: a query chunk uses the key state
// of the earlier chunks (prefix), a key chunk the query state of the later chunks
// (suffix), and the dense C x C block with exact exp(s_ij), j <= i, inside the chunk.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/line_vector.hpp"
#include "lorafast/attention.hpp"
#include "lorafast/features.hpp"
#include "ops/chained/chained_raise.hpp"
#include "ops/fast/scaled_head.hpp"

namespace lorafast::chained {

// Rows per block: the causal chunk C, or 64 (a block's features are [F', 64]).
inline std::int64_t block_rows(bool causal, const SurrogateConfig& config) { return causal ? config.chunk : 64; }

template <class T>
struct Head {
  const TaylorFeatures* phi = nullptr;  // degree g
  const FeatureRaise* raise = nullptr;
  std::vector<T> raise_factor, top_scale;  // raise->factor, raise->top_scale in T
  std::int64_t len = 0, e = 0, f = 0, f1 = 0;  // f = F, f1 = F'
  bool causal = false;
  std::int64_t block = 0;  // rows per block: the causal chunk C, or a fixed block
  fast::ScaledHead<T> scaled;
  MatrixView<const T> v, d_o, o;  // [L, E] views of the head's columns
  MatrixView<T> d_q, d_k, d_v;
  std::vector<T> delta, z;  // [L]

  std::int64_t state_cols() const { return e + 1; }
  std::int64_t blocks() const { return (len + block - 1) / block; }
  std::int64_t rows_of(std::int64_t b) const { return std::min(block, len - b * block); }
};

template <class T>
Head<T> make_head(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, const SurrogateConfig& config,
                  const TaylorFeatures& phi, const FeatureRaise& raise);

// Per-thread scratch, sized for one block. Features and the per-row vectors U, W are
// in column layout (features.hpp, fast/state_products.hpp): a block's rows are the
// `width` = padded_width(rows) columns, so every loop runs SIMD over rows and the
// thin state products keep their accumulators in registers.
template <class T>
struct Workspace {
  LineVector<T> features, raised;  // phi(x) of the block [F, width]; U or W [F', width]
  LineVector<T> x_t, y_t;          // q'^T or k'^T [E, width]; a state's thin right-hand side [E + 1, width]
  LineVector<T> grad_t;            // dQ^T or dK^T [E, width]
  LineVector<T> product;           // [max(block E, width)]: a [width] row, then z or dV [block, E]
  LineVector<T> weights, d_p;      // causal: [block, block]
  LineVector<T> in_chunk_sum;      // causal: [block]
  explicit Workspace(const Head<T>& head);
};

template <class T>
struct State {
  std::vector<T> data;
  std::int64_t rows = 0, cols = 0;
  void reset(std::int64_t r, std::int64_t c) {
    rows = r;
    cols = c;
    data.assign(static_cast<std::size_t>(r * c), T(0));
  }
  MatrixView<T> view() { return {data.data(), rows, cols, cols}; }
  MatrixView<const T> view() const { return {data.data(), rows, cols, cols}; }
};

// key_state (+)= key statistics of block b: added, or set without accumulate.
template <class T>
void add_key_stats(const Head<T>& head, Workspace<T>& ws, std::int64_t b,
                   std::type_identity_t<MatrixView<T>> key_state, bool accumulate);

// The query side of block b against key_state (all keys, or the earlier chunks when
// causal): computes delta, z and writes dQ of the block's rows; causal also writes the
// in-chunk parts of dK and dV (set, not added). Leaves phi(q') of the block in
// ws.features and q'^T in ws.x_t (for add_query_stats).
template <class T>
void query_block(Head<T>& head, Workspace<T>& ws, std::int64_t b,
                 std::type_identity_t<MatrixView<const T>> key_state);

// query_state (+)= query statistics of block b (needs z and delta of the block), as
// add_key_stats; with features_ready, ws holds query_block's phi(q') and q'^T of this block.
template <class T>
void add_query_stats(const Head<T>& head, Workspace<T>& ws, std::int64_t b, bool features_ready,
                     std::type_identity_t<MatrixView<T>> query_state, bool accumulate);

// The key side of block b against query_state: dK and dV of the block's rows,
// added to the in-chunk part when causal, set otherwise.
template <class T>
void key_block(const Head<T>& head, Workspace<T>& ws, std::int64_t b,
               std::type_identity_t<MatrixView<const T>> query_state);

// Causal in-chunk block (chained_causal.cpp). in_chunk_weights: ws.weights = exp(s_ij)
// for j <= i (0 above the diagonal), ws.in_chunk_sum = its row sums. in_chunk_gradients
// (after z is known): dQ += a dS K', dK = b dS^T Q', dV = P^T dO on the chunk's rows.
template <class T>
void in_chunk_weights(const Head<T>& head, Workspace<T>& ws, std::int64_t b);
template <class T>
void in_chunk_gradients(const Head<T>& head, Workspace<T>& ws, std::int64_t b);

}  // namespace lorafast::chained
