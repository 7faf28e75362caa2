// The decoder as parts (DESIGN.md "One decoder from parts"): what a configuration
// chooses (DecoderSpec: the norm, the positions, the q/k/v projections, the MLP)
// and the tensors each part reads (DecoderTensors), bound to a family's weights or
// to a gradient of the same layout, whose tensors the parts' backward passes write.
// One pipeline runs the parts (decoder_forward.cpp, decoder_backward.cpp,
// decoder_decode.cpp); a family is a spec (decoder_spec) plus a binding of its
// tensors (decoder_tensors).
//
// Shape legend: V vocabulary, P positions, D width, H query heads, K key/value
// heads, E head dim, Q = H E, C = K E, F the MLP width.
#pragma once

#include <algorithm>
#include <array>
#include <set>
#include <cstdint>
#include <optional>
#include <vector>

#include "lorafast/gpt_lora.hpp"
#include "lorafast/llama.hpp"

namespace lorafast {

// LayerNorm with bias | RMSNorm | RMSNorm scaled by (1 + weight) (Gemma)
enum class NormKind { layer_norm, rms_norm, rms_norm_plus_one };
// c_fc, GELU (tanh), c_proj | silu(gate) * up, down | gelu_tanh(gate) * up, down (GeGLU, Gemma)
enum class MlpKind { gelu, swiglu, geglu };

struct DecoderSpec {
  std::int64_t layers = 0, dim = 0, heads = 0, kv_heads = 0, head_dim = 0;  // n_layer, D, H, K, E
  std::int64_t ffn = 0, vocab = 0;                                          // F, V
  double eps = 1e-5;
  NormKind norm = NormKind::layer_norm;
  bool learned_positions = true;  // a position table added to the token embedding; false: RoPE on q and k
  RopeConfig rope;
  bool fused_qkv = true;  // one projection writes the q | k | v columns (GPT-2's c_attn); false: three
  bool qk_norm = false;   // an RMSNorm over each head of q and of k, before RoPE (Qwen3); needs !fused_qkv
  MlpKind mlp = MlpKind::gelu;
  std::int64_t sliding_window = 0;  // 0: none
  std::vector<bool> sliding_layers;  // the layers it applies to; empty: all (LlamaConfig)
  std::optional<RopeConfig> sliding_rope;  // the sliding layers' RoPE when it is not `rope` (Gemma 3)
  std::vector<bool> rope_layers;  // the layers RoPE applies to (SmolLM3's NoPE layers have none); empty: all
  bool scale_embedding = false;  // the token embedding times sqrt(D), rounded to T (Gemma)
  bool post_norms = false;       // a norm on the attention's and on the MLP's output, before the residual add (Gemma 3)
  double attn_scale = 0;         // the attention's score scale; 0: 1/sqrt(E)
  double logit_softcap = 0;      // logits c tanh(logits / c) for c > 0 (Gemma 3's final_logit_softcapping)
  bool bf16 = false;  // the frozen matrices are held in bf16 (store_frozen_bf16): bf16 products, f32 sums

  std::int64_t q_width() const { return heads * head_dim; }      // Q
  std::int64_t kv_width() const { return kv_heads * head_dim; }  // C
  int qkv_parts() const { return fused_qkv ? 1 : 3; }           // projections that write q, k, v
  std::int64_t window(std::int64_t layer) const {  // layer's AttentionParams::window
    return sliding(layer) ? sliding_window : 0;
  }
  bool sliding(std::int64_t layer) const {  // a layer of the sliding kind (its window, its RoPE)
    return sliding_window > 0 && (sliding_layers.empty() || sliding_layers[static_cast<std::size_t>(layer)]);
  }
  int mlp_in_parts() const { return mlp == MlpKind::gelu ? 1 : 2; }  // projections before the activation
  bool rotary(std::int64_t layer) const {  // RoPE on the layer's q and k
    return !learned_positions && (rope_layers.empty() || rope_layers[static_cast<std::size_t>(layer)]);
  }
};

// The parts a validated config chooses: GPT-2 is LayerNorm, a learned position
// table, fused c_attn and GELU; the Llama family RMSNorm, RoPE, q/k/v_proj and SwiGLU
// (Qwen3: and the per-head q/k norms; Gemma 3: (1 + w) RMSNorms, post-attention and
// post-MLP norms, q/k norms, a scaled embedding, GeGLU, per-kind RoPE, soft-capped logits).
DecoderSpec decoder_spec(const GptConfig& config);

// Tn: const Tensor (weights) or Tensor (a gradient). nullptr: the part has no such tensor.
template <class Tn>
struct NormTensors {
  Tn* weight = nullptr;  // [D]
  Tn* bias = nullptr;    // [D]; nullptr for RMSNorm
};

template <class Tn>
struct LinearTensors {
  LoraTarget target{};   // the module an adapter on it names
  Tn* w = nullptr;       // [in, out]
  Tn* bias = nullptr;    // [out]
};

template <class Tn>
struct BlockTensors {
  NormTensors<Tn> attn_norm, mlp_norm;
  NormTensors<Tn> attn_out_norm, mlp_out_norm;  // with post_norms: of the attention's, the MLP's output
  std::array<LinearTensors<Tn>, 3> qkv;     // fused: c_attn alone; else q, k, v
  std::array<NormTensors<Tn>, 2> qk_norm;   // [E] each, with qk_norm: of q, of k
  LinearTensors<Tn> o;
  std::array<LinearTensors<Tn>, 2> mlp_in;  // GELU: c_fc alone; SwiGLU: gate, up
  LinearTensors<Tn> mlp_out;
};

template <class Tn>
struct DecoderTensors {
  Tn* embed = nullptr;      // [V, D]
  Tn* positions = nullptr;  // [P, D] with learned positions, else nullptr
  std::vector<BlockTensors<Tn>> blocks;
  NormTensors<Tn> final_norm;
  Tn* head = nullptr;       // [V, D]: `embed` when tied
};

namespace detail {

template <class Tn>
Tn* present(Tn& t) {
  return t.empty() ? nullptr : &t;
}

template <class Tn, class W>
DecoderTensors<Tn> gpt_tensors(W& w) {
  DecoderTensors<Tn> d{&w.wte, &w.wpe, {}, {&w.ln_f_weight, &w.ln_f_bias}, &w.wte};
  for (auto& b : w.blocks) {
    BlockTensors<Tn> t;
    t.attn_norm = {&b.ln_1_weight, &b.ln_1_bias};
    t.qkv[0] = {LoraTarget::attn_c_attn, &b.attn_c_attn_weight, &b.attn_c_attn_bias};
    t.o = {LoraTarget::attn_c_proj, &b.attn_c_proj_weight, &b.attn_c_proj_bias};
    t.mlp_norm = {&b.ln_2_weight, &b.ln_2_bias};
    t.mlp_in[0] = {LoraTarget::mlp_c_fc, &b.mlp_c_fc_weight, &b.mlp_c_fc_bias};
    t.mlp_out = {LoraTarget::mlp_c_proj, &b.mlp_c_proj_weight, &b.mlp_c_proj_bias};
    d.blocks.push_back(t);
  }
  return d;
}

template <class Tn, class W>
DecoderTensors<Tn> llama_tensors(W& w) {
  DecoderTensors<Tn> d{&w.embed, nullptr, {}, {&w.norm, nullptr},
                       w.config.llama.tie_word_embeddings ? &w.embed : &w.lm_head};
  for (auto& b : w.blocks) {
    BlockTensors<Tn> t;
    t.attn_norm = {&b.input_norm, nullptr};
    t.qkv = {{{LoraTarget::q_proj, &b.q_w, present(b.q_b)},
              {LoraTarget::k_proj, &b.k_w, present(b.k_b)},
              {LoraTarget::v_proj, &b.v_w, present(b.v_b)}}};
    t.qk_norm = {{{present(b.q_norm), nullptr}, {present(b.k_norm), nullptr}}};
    t.o = {LoraTarget::o_proj, &b.o_w, present(b.o_b)};
    t.mlp_norm = {&b.post_norm, nullptr};
    t.attn_out_norm = {present(b.attn_out_norm), nullptr};
    t.mlp_out_norm = {present(b.mlp_out_norm), nullptr};
    t.mlp_in = {{{LoraTarget::gate_proj, &b.gate_w, nullptr}, {LoraTarget::up_proj, &b.up_w, nullptr}}};
    t.mlp_out = {LoraTarget::down_proj, &b.down_w, nullptr};
    d.blocks.push_back(t);
  }
  return d;
}

}  // namespace detail

template <class T>
DecoderTensors<const Tensor> decoder_tensors(const GptWeights<T>& w) { return detail::gpt_tensors<const Tensor>(w); }
template <class T>
DecoderTensors<Tensor> decoder_tensors(GptWeights<T>& w) { return detail::gpt_tensors<Tensor>(w); }
template <class T>
DecoderTensors<const Tensor> decoder_tensors(const LlamaWeights<T>& w) { return detail::llama_tensors<const Tensor>(w); }
template <class T>
DecoderTensors<Tensor> decoder_tensors(LlamaWeights<T>& w) { return detail::llama_tensors<Tensor>(w); }

// A model's weights as the pipeline reads them; `config` and the tensors belong to
// the weights the view was made from, which must outlive it.
template <class T>
struct DecoderView {
  const GptConfig* config = nullptr;
  DecoderSpec spec;
  DecoderTensors<const Tensor> tensors;
};

template <class W>
DecoderView<typename W::value_type> decoder_view(const W& weights) {
  DecoderView<typename W::value_type> view{&weights.config, decoder_spec(weights.config), decoder_tensors(weights)};
  view.spec.bf16 = view.tensors.head->dtype() == DType::bf16;
  return view;
}

// A tensor's values, nullptr for an absent tensor.
template <class T>
const T* data(const Tensor* t) {
  return t == nullptr ? nullptr : t->data<T>();
}
template <class T>
T* data(Tensor* t) {
  return t == nullptr ? nullptr : t->data<T>();
}

// A frozen matrix (a projection, the embedding, the LM head): its values in T, or in
// bf16 after store_frozen_bf16; the other pointer is nullptr.
template <class T>
struct FrozenValues {
  const T* values = nullptr;
  const BFloat16* bf16 = nullptr;
};
template <class T>
FrozenValues<T> frozen(const Tensor& t) {
  if (t.dtype() == DType::bf16) return {nullptr, t.data<BFloat16>()};
  return {t.data<T>(), nullptr};
}

// The frozen matrices of a model (or of a gradient of its layout): every projection,
// the token embedding and the LM head, once each (the head is the embedding when
// tied). What bf16 mixed precision holds in bf16 (store_frozen_bf16).
template <class W>
std::set<Tensor*> frozen_matrices(W& weights) {
  auto t = decoder_tensors(weights);
  std::set<Tensor*> matrices{t.embed, t.head};
  for (auto& b : t.blocks) {
    for (auto& l : b.qkv)
      if (l.w != nullptr) matrices.insert(l.w);
    for (auto& l : b.mlp_in)
      if (l.w != nullptr) matrices.insert(l.w);
    matrices.insert(b.o.w);
    matrices.insert(b.mlp_out.w);
  }
  return matrices;
}

// Row `index` of a [rows, D] table held in T or bf16 (the token embedding), as T.
template <class T>
void table_row(const Tensor& table, std::int64_t index, T* out) {
  const std::int64_t d = table.dim(1);
  const FrozenValues<T> f = frozen<T>(table);
  if (f.values != nullptr) {
    std::copy(f.values + index * d, f.values + (index + 1) * d, out);
    return;
  }
  for (std::int64_t c = 0; c < d; ++c) out[c] = static_cast<T>(to_f32(f.bf16[index * d + c]));
}

}  // namespace lorafast
