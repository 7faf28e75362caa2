// The one dispatch point (DESIGN.md rule 11): per head, the method that runs, its
// Taylor degree and feature count, the certified error and the predicted costs, with
// a sentence saying why (`--explain`, `lorafast phase`, the `--json` fields).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lorafast/certificate.hpp"
#include "lorafast/cost_model.hpp"

namespace lorafast {

enum class Method { exact, fast, chained, automatic };
constexpr std::array<Method, 4> all_methods{Method::exact, Method::fast, Method::chained, Method::automatic};
std::string method_name(Method m);             // "exact", "fast", "chained", "auto"
std::optional<Method> find_method(std::string_view name);  // by method_name; nullopt for anything else
Method parse_method(const std::string& name);  // throws Error(usage) on anything else
std::string duration_text(double seconds);    // "92 ms", "4.3 s", "inf": the reasons' style

// What a caller asks of attention (`--method`, `--eps`, `--degree`), embedded by
// the LoRA and model options. The default runs every head exactly.
struct AttentionRequest {
  Method method = Method::exact;
  double eps = 1e-3;          // target relative error of the gradients
  std::optional<int> degree;  // forced (even) degree: fast/chained skip the eps check
  CostModel cost;             // what auto compares (cost_model.hpp)
  std::int64_t max_features = std::int64_t{1} << 20;  // memory cap on F
};

// The problem the costs are predicted for.
struct AttentionShape {
  std::int64_t batch = 1;     // N
  std::int64_t seq_len = 0;   // L
  std::int64_t head_dim = 0;  // E
  bool causal = false;
  bool masked = false;  // a sliding window or documents (AttentionParams::masked()): only exact honours them
  // The exact kernels multiply in bf16 (AttentionParams::bf16_products); fast and
  // chained compute in f32 on the same inputs, and a reason choosing them says so.
  bool bf16_products = false;
};

struct HeadDecision {
  Method method = Method::exact;  // never automatic
  int degree = -1;                // Taylor degree of the reported approximate method; -1 when none certifies eps
  std::int64_t chunk = causal_chunk;  // causal surrogate's C: the certificate's centre and the fast path's chunks
  std::int64_t features = -1;     // F = C(E+g, g) at that degree (saturates at INT64_MAX); -1 if no degree
  double gamma_q = 0, gamma_k = 0;
  double score_bound = 0;      // centred G: certifies the surrogate (softmax ignores the centring)
  double raw_score_bound = 0;  // beta max|q| max|k| >= max |S_ij|, INTERFACE's score_bound
  double error_bound = 0;     // probability_error_bound(eta) of the method that runs; 0 for exact
  double gradient_bound = 0;  // gradient_error_bound of the method that runs (held to eps); 0 for exact
  double cost_exact = 0;      // predicted seconds
  double cost_fast = 0;       // predicted seconds of the reported approximate method (the one
                              // that runs, else the cheapest certified of fast and chained, else
                              // fast); +inf when no degree certifies eps
  std::string reason;
};

// One decision per head. Throws Error(bad_input) for an odd forced degree and
// Error(cannot_meet), naming the head and saying that --method exact can, when fast or
// chained is requested but cannot certify eps within max_features or cannot honour
// the shape's mask; auto runs masked attention exactly and says so.
std::vector<HeadDecision> decide(const std::vector<HeadScores>& heads, const AttentionRequest& request,
                                 const AttentionShape& shape);

}  // namespace lorafast
