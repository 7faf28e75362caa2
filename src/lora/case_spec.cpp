#include "lorafast/case_spec.hpp"

#include <cmath>
#include <random>
#include <sstream>
#include <vector>

namespace lorafast {

std::string CaseSpec::name() const {
  return cat("grad/", causal ? "causal" : "bidir", "/N", batch, "/L", seq_len, "/E", head_dim, "/H",
             heads, "/R", rank, "/", adapted);
}

namespace {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, sep);) parts.push_back(part);
  return parts;
}

bool valid_subset(const std::string& s) {
  return s == "q" || s == "k" || s == "v" || s == "qk" || s == "qv" || s == "kv" || s == "qkv";
}

}  // namespace

CaseSpec CaseSpec::parse(const std::string& name) {
  auto parts = split(name, '/');
  auto fail = [&](const std::string& why) { throw Error(ErrorKind::usage, cat("bad case name '", name, "': ", why)); };
  if (parts.size() < 5 || parts[0] != "grad") fail("expected grad/{causal|bidir}/[N..]/L../E../H../[R..]/{qkv subset}");
  CaseSpec spec;
  if (parts[1] != "causal" && parts[1] != "bidir") fail("second part must be causal or bidir");
  spec.causal = parts[1] == "causal";
  spec.adapted = parts.back();
  if (!valid_subset(spec.adapted)) fail("last part must be a subset of qkv in order, e.g. qv");
  bool seen_l = false, seen_e = false, seen_h = false;
  for (std::size_t i = 2; i + 1 < parts.size(); ++i) {
    const auto& p = parts[i];
    if (p.size() < 2) fail(cat("bad field '", p, "'"));
    std::int64_t value = 0;
    try {
      std::size_t used = 0;
      value = std::stoll(p.substr(1), &used);
      if (used != p.size() - 1) fail(cat("bad number in '", p, "'"));
    } catch (const std::logic_error&) {
      fail(cat("bad number in '", p, "'"));
    }
    if (value < 1) fail(cat("'", p, "' must be positive"));
    switch (p[0]) {
      case 'N': spec.batch = value; break;
      case 'L': spec.seq_len = value; seen_l = true; break;
      case 'E': spec.head_dim = value; seen_e = true; break;
      case 'H': spec.heads = value; seen_h = true; break;
      case 'R': spec.rank = value; break;
      default: fail(cat("unknown field '", p, "'"));
    }
  }
  if (!seen_l || !seen_e || !seen_h) fail("L, E and H are required");
  return spec;
}

LoraAttentionOptions CaseSpec::options(DType dtype) const {
  LoraAttentionOptions options;
  options.attention.heads = heads;
  options.attention.causal = causal;
  options.dtype = dtype;
  return options;
}

LoraAttentionInputs make_case(const CaseSpec& spec, double weight_gain) {
  std::mt19937_64 rng(spec.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const std::int64_t n = spec.batch, l = spec.seq_len, d = spec.heads * spec.head_dim, r = spec.rank;
  auto random = [&](Shape shape, double stddev) {
    Tensor t(DType::f64, std::move(shape));
    double* p = t.data<double>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = stddev * normal(rng);
    return t;
  };
  LoraAttentionInputs in;
  in.x = random({n, l, d}, 1.0);
  in.y = random({n, l, d}, 1.0);
  const double w_std = 1.0 / std::sqrt(static_cast<double>(d));
  for (auto p : all_projections) {
    const double gain = p == Projection::v ? 1.0 : weight_gain;
    in.w[static_cast<int>(p)] = random({d, d}, gain * w_std);
  }
  for (auto p : all_projections) {
    if (spec.adapted.find(projection_name(p)) == std::string::npos) continue;
    LoraAdapter adapter;
    adapter.a = random({r, d}, w_std);
    const double gain = p == Projection::v ? 1.0 : weight_gain;
    adapter.b = random({d, r}, gain / std::sqrt(static_cast<double>(r)));
    in.lora[static_cast<int>(p)] = std::move(adapter);
  }
  return in;
}

}  // namespace lorafast
