// `lorafast phase`: where a case sits on the phase transition of SPEC.md §4, per head:
// Gamma (max-entry norms of Q and K, LoRA included), sqrt(log L), the certified score
// bound G, the degree and features needed for --eps, predicted costs and the decision.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <utility>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "lorafast/dispatch.hpp"
#include "lorafast/grad_case.hpp"
#include "lorafast/safetensors.hpp"
#include "model_flags.hpp"

namespace lorafast::cli {
namespace {

// JSON null for "none" (-1 degree or features, infinite cost).
nlohmann::json or_null(double v) { return std::isfinite(v) && v >= 0 ? nlohmann::json(v) : nlohmann::json(); }
nlohmann::json or_null(std::int64_t v) { return v >= 0 ? nlohmann::json(v) : nlohmann::json(); }

// A predicted time for the table; "-" when no method can run.
std::string cost_text(double s) { return std::isfinite(s) ? duration_text(s) : "-"; }

struct Report {
  std::int64_t seq_len, batch, head_dim;
  double scale, eps, sqrt_log_l;
  bool causal;
  std::vector<HeadDecision> decisions;
};

void print_json(const Report& r) {
  nlohmann::json heads = nlohmann::json::array();
  for (std::size_t h = 0; h < r.decisions.size(); ++h) {
    const HeadDecision& d = r.decisions[h];
    heads.push_back({{"gamma_q", d.gamma_q}, {"gamma_k", d.gamma_k}, {"score_bound", d.raw_score_bound},
                     {"centred_score_bound", d.score_bound}, {"degree", or_null(std::int64_t{d.degree})},
                     {"features", or_null(d.features)}, {"error_bound", d.error_bound},
                     {"gradient_bound", d.gradient_bound},
                     {"cost_exact", d.cost_exact}, {"cost_fast", or_null(d.cost_fast)},
                     {"method", method_name(d.method)}, {"reason", d.reason}});
  }
  const nlohmann::json out{{"L", r.seq_len}, {"sqrt_log_L", r.sqrt_log_l}, {"batch", r.batch},
                           {"head_dim", r.head_dim}, {"scale", r.scale}, {"causal", r.causal},
                           {"eps", r.eps}, {"heads", heads}};
  std::printf("%s\n", out.dump().c_str());
}

void print_table(const Report& r) {
  std::printf("L = %lld (N = %lld, E = %lld, beta = %.4g, %s), eps = %g, sqrt(log L) = %.4g\n\n",
              static_cast<long long>(r.seq_len), static_cast<long long>(r.batch),
              static_cast<long long>(r.head_dim), r.scale, r.causal ? "causal" : "bidirectional", r.eps,
              r.sqrt_log_l);
  std::printf("%4s %9s %9s %11s %9s %6s %10s %11s %11s  %s\n", "head", "gamma_q", "gamma_k", "sqrt(log L)", "G",
              "degree", "features", "cost exact", "cost fast", "method");
  for (std::size_t h = 0; h < r.decisions.size(); ++h) {
    const HeadDecision& d = r.decisions[h];
    const std::string degree = d.degree >= 0 ? std::to_string(d.degree) : "-";
    const std::string features = d.features >= 0 ? std::to_string(d.features) : "-";
    std::printf("%4zu %9.4g %9.4g %11.4g %9.4g %6s %10s %11s %11s  %s\n", h, d.gamma_q, d.gamma_k, r.sqrt_log_l,
                d.score_bound, degree.c_str(), features.c_str(), cost_text(d.cost_exact).c_str(),
                cost_text(d.cost_fast).c_str(), method_name(d.method).c_str());
  }
  std::printf("\nWhy:\n");
  for (std::size_t h = 0; h < r.decisions.size(); ++h) std::printf("  head %zu: %s\n", h, r.decisions[h].reason.c_str());

  std::printf(
      "\nPhase transition (SPEC.md section 4), Gamma = max(gamma_q, gamma_k):\n"
      "  Gamma = o(sqrt(log L)):     the LoRA gradient to 1/poly(L) accuracy in L^(1+o(1)) time\n"
      "  Gamma = Omega(sqrt(log L)): no O(L^(2-delta)) algorithm, assuming SETH\n");
  for (std::size_t h = 0; h < r.decisions.size(); ++h) {
    const double gamma = std::max(r.decisions[h].gamma_q, r.decisions[h].gamma_k);
    if (r.sqrt_log_l > 0)
      std::printf("  head %zu: Gamma = %.4g = %.3g x sqrt(log L)\n", h, gamma, gamma / r.sqrt_log_l);
    else
      std::printf("  head %zu: Gamma = %.4g (L = 1: sqrt(log L) = 0)\n", h, gamma);
  }
  std::printf(
      "Both statements are asymptotic in L. The decision above rests on the certified score bound G\n"
      "(G >= |beta q_i.(k_j - c)|, c the mean key; causal: of the first %lld keys), the Taylor error\n"
      "certificate and the predicted costs.\n",
      static_cast<long long>(causal_chunk));
}

void run_phase(const ModelFlags& f) {
  f.check_degree();
  const auto inputs = grad_inputs_from_tensors(read_safetensors(f.in).tensors, f.in);
  const auto options = f.options();
  auto decisions = lora_attention_plan(inputs, options);  // validates the inputs first
  const std::int64_t head_dim = inputs.model_dim() / options.attention.heads;
  const Report report{inputs.seq_len(),
                      inputs.batch(),
                      head_dim,
                      options.attention.resolved_scale(head_dim),
                      f.eps,
                      std::sqrt(std::log(static_cast<double>(inputs.seq_len()))),
                      options.attention.causal,
                      std::move(decisions)};
  if (f.json && f.explain)
    for (std::size_t h = 0; h < report.decisions.size(); ++h)
      std::fprintf(stderr, "head %zu: %s\n", h, report.decisions[h].reason.c_str());
  if (f.json)
    print_json(report);
  else
    print_table(report);
}

}  // namespace

void add_phase_command(CLI::App& app) {
  auto flags = std::make_shared<ModelFlags>();
  auto* cmd = app.add_subcommand("phase", "Where a case sits on the phase transition: Gamma, G, degree, decision");
  flags->add_to(*cmd);
  add_threads_option(*cmd);
  cmd->callback([flags] { run_phase(*flags); });
}

}  // namespace lorafast::cli
