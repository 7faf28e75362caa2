// The one place a configuration's family becomes a choice of parts.
#include "model/decoder_parts.hpp"

#include <cmath>

#include "lorafast/decoder.hpp"

namespace lorafast {

DecoderSpec decoder_spec(const GptConfig& config) {
  DecoderSpec s;
  s.layers = config.n_layer;
  s.dim = config.n_embd;
  s.heads = config.n_head;
  s.head_dim = config.head_dim();
  s.vocab = config.vocab_size;
  s.eps = config.layer_norm_epsilon;
  if (!config.is_llama()) {  // GPT-2
    s.kv_heads = config.n_head;
    s.ffn = 4 * config.n_embd;
    return s;
  }
  s.kv_heads = config.llama.n_kv_head;
  s.ffn = config.llama.intermediate_size;
  s.norm = NormKind::rms_norm;
  s.learned_positions = false;
  s.rope = config.llama.rope;
  s.fused_qkv = false;
  s.qk_norm = config.llama.qk_norm;
  s.mlp = MlpKind::swiglu;
  s.sliding_window = config.llama.sliding_window;
  s.sliding_layers = config.llama.sliding_layers;
  s.rope_layers = config.llama.rope_layers;
  if (config.family != ModelFamily::gemma3) return s;
  s.norm = NormKind::rms_norm_plus_one;
  s.mlp = MlpKind::geglu;
  s.scale_embedding = true;
  s.post_norms = true;
  s.sliding_rope = config.llama.sliding_rope;
  s.attn_scale = 1.0 / std::sqrt(config.llama.query_pre_attn_scalar);
  s.logit_softcap = config.llama.final_logit_softcapping;
  return s;
}

namespace {

template <class W>
void frozen_to_bf16(W& weights) {
  for (Tensor* m : frozen_matrices(weights))
    if (m->dtype() != DType::bf16) *m = m->to(DType::bf16);
}

}  // namespace

void store_frozen_bf16(GptWeights<float>& weights) { frozen_to_bf16(weights); }
void store_frozen_bf16(LlamaWeights<float>& weights) { frozen_to_bf16(weights); }

}  // namespace lorafast
