// What a Llama-family config.json (model_type llama, qwen2, mistral, qwen3, gemma3_text, smollm3) adds to the
// sizes every decoder-only model has (GptConfig in gpt.hpp): grouped-query
// attention, the SwiGLU width, RMSNorm, rotary position embeddings and which
// projections carry a bias. Names and defaults follow Hugging Face transformers 5
// (LlamaConfig, Qwen2Config, MistralConfig, Qwen3Config, Gemma3TextConfig, SmolLM3Config); INTERFACE.md
// "Llama-family models".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lorafast {

enum class ModelFamily { gpt2, llama, qwen2, mistral, qwen3, gemma3, smollm3 };
std::string model_family_name(ModelFamily family);  // the config.json model_type (gemma3: "gemma3_text")

// Rotary embedding: angle of position t and frequency i (0 <= i < E/2) is t * inv_freq[i],
// inv_freq[i] = theta^(-2i/E), then rescaled by the rope type as transformers'
// modeling_rope_utils does (linear: / factor; llama3: per-wavelength, see rope.cpp).
struct RopeConfig {
  enum class Type { standard, linear, llama3 };  // transformers' "default", "linear", "llama3"
  Type type = Type::standard;
  double theta = 10000.0;
  double factor = 1.0;                       // linear, llama3
  double low_freq_factor = 1.0;              // llama3
  double high_freq_factor = 4.0;             // llama3
  std::int64_t original_max_positions = 0;   // llama3: original_max_position_embeddings
};

struct LlamaConfig {
  std::int64_t n_kv_head = 0;          // num_key_value_heads, divides n_head
  std::int64_t head_dim = 0;           // E (default hidden_size / num_attention_heads)
  std::int64_t intermediate_size = 0;  // F, the SwiGLU width
  bool tie_word_embeddings = false;    // the LM head is embed_tokens
  bool qkv_bias = false;               // q/k/v_proj biases (llama: attention_bias; qwen2: always)
  bool o_bias = false;                 // o_proj bias (llama, qwen3: attention_bias)
  bool qk_norm = false;                // per-head RMSNorm of q and k before RoPE (qwen3: q_norm, k_norm)
  std::int64_t sliding_window = 0;     // W: query i sees keys i - W < j <= i (AttentionParams::window); 0: none
  std::vector<bool> sliding_layers;    // [n_layer]: the layers the window applies to; empty: all (mistral)
  double initializer_range = 0.02;     // the deviation of transformers' _init_weights
  RopeConfig rope;                     // of every layer, or (with sliding_rope) of the full-attention ones
  std::optional<RopeConfig> sliding_rope;  // gemma3: the sliding layers' own (rope_local_base_freq)
  std::vector<bool> rope_layers;       // smollm3: [n_layer], the layers RoPE applies to (no_rope_layers); empty: all
  double query_pre_attn_scalar = 0;    // gemma3: the attention scale is its -1/2 power; 0: head_dim's
  double final_logit_softcapping = 0;  // gemma3: logits become c tanh(logits / c); 0: none
};

// The inverse frequencies [E/2] of `rope` for head dimension `head_dim`, in double.
std::vector<double> rope_inv_freq(const RopeConfig& rope, std::int64_t head_dim);

}  // namespace lorafast
