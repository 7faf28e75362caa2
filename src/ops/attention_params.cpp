// checked(): the validation every attention entry point runs first (FlashAttention's
// mha_fwd checks every shape and stride before launching).
#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "lorafast/attention.hpp"
#include "lorafast/error.hpp"

namespace lorafast {
namespace {

// One tensor of the params: its name, pointer, head count and strides.
struct Operand {
  const char* name;
  const void* data;
  std::int64_t heads;
  HeadStrides* strides;
  bool written;
};

// Fills unset strides with the packed layout and checks the rest: non-negative, and
// for written tensors, no two (n, i, h) positions sharing an element (sorted by
// stride, each dimension must step over everything the smaller ones span).
void resolve(const Operand& t, std::int64_t batch, std::int64_t len, std::int64_t e) {
  LF_CHECK(t.data != nullptr, ErrorKind::usage, "attention: tensor ", t.name, " is null");
  HeadStrides& s = *t.strides;
  if (s.unset()) {
    s = {len * t.heads * e, t.heads * e, e};
    return;
  }
  LF_CHECK(s.batch >= 0 && s.row >= 0 && s.head >= 0, ErrorKind::usage, "attention: tensor ", t.name,
           " has a negative stride");
  LF_CHECK(s.row >= e, ErrorKind::usage, "attention: tensor ", t.name, " has row stride ", s.row,
           ", less than head_dim ", e);
  if (!t.written) return;
  std::array<std::array<std::int64_t, 2>, 3> dims{{{s.batch, batch}, {s.row, len}, {s.head, t.heads}}};
  std::sort(dims.begin(), dims.end());
  std::int64_t span = e;  // elements one position covers, then all smaller dimensions
  for (const auto& [stride, extent] : dims) {
    if (extent == 1) continue;
    LF_CHECK(stride >= span, ErrorKind::usage, "attention: output ", t.name,
             " has strides under which rows or heads overlap (batch ", s.batch, ", row ", s.row, ", head ",
             s.head, ", head_dim ", e, ")");
    span = stride * (extent - 1) + span;
  }
}

template <class T>
void check_masks(const AttentionParams<T>& p) {
  LF_CHECK(p.window >= 0, ErrorKind::usage, "attention: window must be >= 0 (0: none), got ", p.window);
  LF_CHECK(p.window == 0 || p.causal, ErrorKind::usage, "attention: a sliding window needs causal attention");
  check_cu_seqlens(p.cu_seqlens, p.batch, p.seq_len, ErrorKind::usage, "attention");
}

}  // namespace

void check_cu_seqlens(std::span<const std::int64_t> cu, std::int64_t rows, std::int64_t row_length, ErrorKind kind,
                      const char* what) {
  if (cu.empty()) return;
  const std::int64_t total = rows * row_length;
  LF_CHECK(cu.front() == 0, kind, what, ": cu_seqlens must start at 0, got ", cu.front());
  LF_CHECK(cu.back() == total, kind, what, ": cu_seqlens must end at batch * seq_len = ", total, ", got ", cu.back());
  std::int64_t next_row = row_length;  // the next row start that must be an offset
  for (std::size_t d = 1; d < cu.size(); ++d) {
    LF_CHECK(cu[d] > cu[d - 1], kind, what, ": cu_seqlens must increase, got ", cu[d - 1], " then ", cu[d]);
    LF_CHECK(cu[d] <= next_row, kind, what, ": a document in cu_seqlens crosses the row boundary ", next_row);
    if (cu[d] == next_row) next_row += row_length;
  }
}

double AttentionConfig::resolved_scale(std::int64_t head_dim) const {
  return scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

template <class T>
AttentionParams<T> checked(const AttentionParams<T>& in, AttentionUse use) {
  AttentionParams<T> p = in;
  LF_CHECK(p.batch >= 1 && p.seq_len >= 1 && p.heads >= 1 && p.head_dim >= 1, ErrorKind::usage,
           "attention: batch, seq_len, heads and head_dim must be positive, got ", p.batch, ", ", p.seq_len, ", ",
           p.heads, ", ", p.head_dim);
  LF_CHECK(p.kv_heads >= 0, ErrorKind::usage, "attention: kv_heads must be positive, got ", p.kv_heads);
  if (p.kv_heads == 0) p.kv_heads = p.heads;
  LF_CHECK(p.heads % p.kv_heads == 0, ErrorKind::usage, "attention: kv_heads ", p.kv_heads,
           " does not divide heads ", p.heads);
  LF_CHECK(std::isfinite(p.scale) && p.scale > 0, ErrorKind::usage, "attention: scale must be positive and finite, got ",
           p.scale);
  LF_CHECK((!p.bf16_products || std::is_same_v<T, float>), ErrorKind::usage,
           "attention: bf16_products needs f32 tensors");
  check_masks(p);
  const std::int64_t h = p.heads, g = p.kv_heads;
  std::vector<Operand> operands{{"q", p.q, h, &p.q_strides, false}, {"k", p.k, g, &p.k_strides, false}};
  if (use != AttentionUse::scores) {
    operands.push_back({"v", p.v, g, &p.v_strides, false});
    operands.push_back({"o", p.o, h, &p.o_strides, true});
  }
  if (use == AttentionUse::backward) {
    operands.push_back({"d_o", p.d_o, h, &p.d_o_strides, false});
    operands.push_back({"d_q", p.d_q, h, &p.d_q_strides, true});
    operands.push_back({"d_k", p.d_k, g, &p.d_k_strides, true});
    operands.push_back({"d_v", p.d_v, g, &p.d_v_strides, true});
  }
  for (const Operand& t : operands) resolve(t, p.batch, p.seq_len, p.head_dim);
  return p;
}

template AttentionParams<float> checked(const AttentionParams<float>&, AttentionUse);
template AttentionParams<double> checked(const AttentionParams<double>&, AttentionUse);

}  // namespace lorafast
