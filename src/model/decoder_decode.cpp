// Decoding with the KV cache, one for every family: the prefill runs the forward
// pass over the prompt and keeps its keys (rotated, with RoPE) and values; a step
// runs each block on the one new row, rotating q and k (after their per-head norms,
// with qk_norm) by the angles of its position (in its layer's table), with the parts
// of the spec as the forward pass has them.
#include <algorithm>

#include "kernels/column_split.hpp"
#include "kernels/weight_gemm.hpp"
#include "model/decode_state.hpp"
#include "model/decoder_activations.hpp"
#include "model/mlp_activation.hpp"
#include "ops/decode/decode_attention.hpp"

namespace lorafast {
namespace {

// logits = table h (table [V, D], the tied embedding or lm_head), output columns split
// across threads; soft-capped as the spec says.
template <class T>
void head_logits(const DecoderSpec& spec, const T* h, const Tensor& table, DecodeState<T>& s) {
  const std::int64_t vocab = table.dim(0), d = table.dim(1);
  const MatrixView<const T> x{h, 1, d, d};
  const FrozenValues<T> f = frozen<T>(table);
  const auto w = kernels::weight_view(f.values, f.bf16, vocab, d);
  const MatrixView<T> y{s.logits_t.data(), 1, vocab, vocab};
  kernels::for_column_blocks(vocab, [&](std::int64_t c0, std::int64_t c1) {
    kernels::gemm(kernels::Op::none, kernels::Op::trans, T(1), x, w.block(c0, 0, c1 - c0, d), T(0),
                  y.block(0, c0, 1, c1 - c0));
  });
  if (spec.logit_softcap > 0) soft_cap(s.logits_t.data(), vocab, static_cast<T>(spec.logit_softcap));
  std::copy(s.logits_t.begin(), s.logits_t.end(), s.logits.begin());
}

// s.proj = the output projection `l` of x, then (post_norms) its norm `n`.
template <class T>
void output_projection(const DecoderSpec& spec, const LinearTensors<const Tensor>& l,
                       const NormTensors<const Tensor>& n, const GptLora<T>* lora, std::int64_t layer, const T* x,
                       DecodeState<T>& s) {
  if (!spec.post_norms) return linear_fwd(l, lora, layer, 1, x, s.proj.data());
  linear_fwd(l, lora, layer, 1, x, s.out.data());
  auto p = norm_params<T>(spec, n, 1);
  p.x = s.out.data(), p.y = s.proj.data(), p.mean = &s.stat[0], p.rstd = &s.stat[1];
  norm_fwd(p);
}

// s.norm = the norm `n` of the one row x.
template <class T>
void norm_row(const DecoderSpec& spec, const NormTensors<const Tensor>& n, const T* x, DecodeState<T>& s) {
  auto p = norm_params<T>(spec, n, 1);
  p.x = x, p.y = s.norm.data(), p.mean = &s.stat[0], p.rstd = &s.stat[1];
  norm_fwd(p);
}

template <class T>
void add_into(T* x, const std::vector<T>& y) {
  for (std::size_t i = 0; i < y.size(); ++i) x[i] += y[i];
}

}  // namespace

template <class T>
void decode_prefill(const DecoderView<T>& m, const GptLora<T>* lora, std::span<const std::int32_t> prompt,
                    DecodeState<T>& s) {
  const DecoderSpec& spec = m.spec;
  const auto length = static_cast<std::int64_t>(prompt.size());
  TokenBatch batch{1, length, std::vector<std::int32_t>(prompt.begin(), prompt.end())};
  batch.tokens.push_back(0);  // the forward pass reads windows of T + 1 tokens (the last one only a target)
  validate_tokens(batch, *m.config);
  DecoderActivations<T> act;
  decoder_forward(m, lora, batch, AttentionRequest{}, Keep::all, act);
  const std::int64_t row = s.cache.row();
  for (std::int64_t i = 0; i < spec.layers; ++i) {
    const auto qkv = qkv_view(spec, length, act.blocks[static_cast<std::size_t>(i)].qkv.data());
    auto& k = s.cache.k[static_cast<std::size_t>(i)];
    auto& v = s.cache.v[static_cast<std::size_t>(i)];
    for (std::int64_t t = 0; t < length; ++t) {
      std::copy_n(qkv.k + t * qkv.kv_stride, row, k.begin() + t * row);
      std::copy_n(qkv.v + t * qkv.kv_stride, row, v.begin() + t * row);
    }
  }
  head_logits(spec, act.final_out.data() + (length - 1) * spec.dim, *m.tensors.head, s);
}

template <class T>
void decode_step(const DecoderView<T>& m, const GptLora<T>* lora, std::int32_t token, DecodeState<T>& s) {
  const DecoderSpec& spec = m.spec;
  const std::int64_t d = spec.dim, t = s.cache.length, row = s.cache.row(), q = spec.q_width();
  table_row(*m.tensors.embed, token, s.x.data());
  if (spec.scale_embedding) scale_embedding(spec, s.x.data());
  if (const T* pos = data<T>(m.tensors.positions)) {
    for (std::int64_t i = 0; i < d; ++i) s.x[static_cast<std::size_t>(i)] += pos[t * d + i];
  } else {
    for (auto [all, row] : {std::pair{&s.rope, &s.rope_row}, std::pair{&s.sliding_rope, &s.sliding_rope_row}}) {
      const std::int64_t half = all->half;  // 0 for a table not made
      std::copy_n(all->cos.begin() + t * half, half, row->cos.begin());  // the angles of position t
      std::copy_n(all->sin.begin() + t * half, half, row->sin.begin());
    }
  }
  const auto shape = block_attention_params<T>(spec, 0, 1, 1);
  DecodeAttentionParams<T> attn{t + 1, shape.heads, shape.kv_heads, shape.head_dim, shape.scale,
                                s.qkv.data(), nullptr, nullptr, s.attn.data()};
  for (std::int64_t i = 0; i < spec.layers; ++i) {
    attn.window = spec.window(i);
    const auto& b = m.tensors.blocks[static_cast<std::size_t>(i)];
    T* k = s.cache.k[static_cast<std::size_t>(i)].data() + t * row;  // this position's key and value
    T* v = s.cache.v[static_cast<std::size_t>(i)].data() + t * row;
    norm_row(spec, b.attn_norm, s.x.data(), s);
    linear_fwd(b.qkv[0], lora, i, 1, s.norm.data(), s.qkv.data());  // fused: q | k | v, else q
    if (spec.fused_qkv) {
      std::copy_n(s.qkv.begin() + q, row, k);
      std::copy_n(s.qkv.begin() + q + row, row, v);
    } else {
      linear_fwd(b.qkv[1], lora, i, 1, s.norm.data(), k);  // straight into the cache
      linear_fwd(b.qkv[2], lora, i, 1, s.norm.data(), v);
    }
    for (int j = 0; spec.qk_norm && j < 2; ++j) {  // in place, head by head
      auto p = head_norm_params<T>(spec, b.qk_norm[static_cast<std::size_t>(j)], 1, j);
      p.x = p.y = j == 0 ? s.qkv.data() : k;
      p.rstd = s.head_rstd.data();
      norm_fwd(p);
    }
    if (spec.rotary(i)) {
      const auto& rope = layer_rope(spec, i, s.rope_row, s.sliding_rope_row);
      rope_fwd(RopeParams<T>{1, spec.heads, &rope, s.qkv.data()});
      rope_fwd(RopeParams<T>{1, spec.kv_heads, &rope, k});
    }
    attn.k = s.cache.k[static_cast<std::size_t>(i)].data();
    attn.v = s.cache.v[static_cast<std::size_t>(i)].data();
    decode_attention_fwd(attn);
    output_projection(spec, b.o, b.attn_out_norm, lora, i, static_cast<const T*>(s.attn.data()), s);
    add_into(s.x.data(), s.proj);
    norm_row(spec, b.mlp_norm, s.x.data(), s);
    for (int j = 0; j < spec.mlp_in_parts(); ++j)
      linear_fwd(b.mlp_in[static_cast<std::size_t>(j)], lora, i, 1, s.norm.data(), s.mlp_in.data() + j * spec.ffn);
    mlp_activation_fwd(MlpActivationParams<T>{spec.mlp, spec.ffn, s.mlp_in.data(), s.wide.data(), nullptr, nullptr});
    output_projection(spec, b.mlp_out, b.mlp_out_norm, lora, i, static_cast<const T*>(s.wide.data()), s);
    add_into(s.x.data(), s.proj);
  }
  norm_row(spec, m.tensors.final_norm, s.x.data(), s);
  head_logits(spec, s.norm.data(), *m.tensors.head, s);
}

#define LORAFAST_INSTANTIATE(T)                                                                              \
  template void decode_prefill<T>(const DecoderView<T>&, const GptLora<T>*, std::span<const std::int32_t>,   \
                                  DecodeState<T>&);                                                          \
  template void decode_step<T>(const DecoderView<T>&, const GptLora<T>*, std::int32_t, DecodeState<T>&);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
