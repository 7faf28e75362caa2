// lorafast._core: the library's planned attention (plan per head, forward, backward)
// on NumPy arrays in SDPA's layout, q [N, H, L, E] and k, v [N, H_kv, L, E] (grouped
// heads), float32 or float64, any strides: the kernels read them in place when the
// last dimension is contiguous, else a C-contiguous copy. This layer checks every
// array (rank, dtype, shape, finite values) with errors naming the argument, and
// releases the GIL while it reads them and computes; the package (python/lorafast)
// checks the options, views torch tensors as arrays and wraps these in
// torch.autograd. One call per forward and per backward: at L = 1024 each Python
// step costs tens of microseconds, more than the work they would do.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "core/scratch.hpp"
#include "lorafast/bf16.hpp"
#include "lorafast/cost_model.hpp"
#include "lorafast/error.hpp"
#include "lorafast/planned_attention.hpp"
#include "lorafast/threads.hpp"

namespace py = pybind11;

namespace lorafast {
namespace {

// What a forward ran: each head's decision, and whether its scores were measured
// (an exact forward skips that pass; Forward.decisions() measures on demand).
struct Plan {
  std::vector<HeadDecision> heads;
  bool measured = true;
};

struct Shape4 {
  std::int64_t n, h, l, e;
};

std::string shape_text(const py::array& a) {
  std::string text = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) text += cat(d ? ", " : "", a.shape(d));
  return text + (a.ndim() == 1 ? ",)" : ")");
}

bool is_f32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }
bool is_f64(const py::array& a) { return a.dtype().is(py::dtype::of<double>()); }

// Strides the kernels can step through: a contiguous last dimension, whole elements,
// rows that do not overlap, nothing negative (dimensions of size 1 are never stepped).
bool reads_in_place(const py::array& a) {
  if (a.ndim() != 4) return false;
  const py::ssize_t item = a.itemsize();
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.shape(d) > 1 && (a.strides(d) < 0 || a.strides(d) % item)) return false;
  const py::ssize_t e = a.shape(3);
  return (e == 1 || a.strides(3) == item) && (a.shape(2) == 1 || a.strides(2) >= e * item);
}

// An argument as the kernels read it: rank 4, float32 or float64, no empty dimension;
// the array itself when reads_in_place, else a C-contiguous copy.
py::array operand(const py::array& a, const char* name) {
  if (a.ndim() != 4) throw py::value_error(cat(name, " must have 4 dimensions [N, H, L, E], got shape ", shape_text(a)));
  if (!is_f32(a) && !is_f64(a))
    throw py::type_error(cat(name, " must be float32 or float64, got ", std::string(py::str(a.dtype()))));
  for (py::ssize_t d = 0; d < 4; ++d)
    if (a.shape(d) == 0) throw py::value_error(cat(name, " has an empty dimension: shape ", shape_text(a)));
  return reads_in_place(a) ? a : py::array::ensure(a, py::array::c_style);
}

Shape4 shape_of(const py::array& a) { return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)}; }

// k and v (H_kv heads) against q: same N, L, E.
void check_like_q(const py::array& a, const Shape4& q, const char* name) {
  const Shape4 s = shape_of(a);
  if (s.n != q.n || s.l != q.l || s.e != q.e)
    throw py::value_error(cat(name, " must have shape [N, H_kv, L, E] = [", q.n, ", H_kv, ", q.l, ", ", q.e,
                              "] like q, got ", shape_text(a)));
}

// Whether x[0 .. count) holds no NaN or Inf: a test of the exponent bits, which the
// compiler vectorises (std::isfinite in a loop it does not).
template <class T>
bool finite_run(const T* x, std::int64_t count) {
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr Bits exponent = static_cast<Bits>(sizeof(T) == 4 ? 0x7f800000ull : 0x7ff0000000000000ull);
  Bits bad = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    Bits bits;
    std::memcpy(&bits, x + i, sizeof bits);
    bad |= static_cast<Bits>((bits & exponent) == exponent);
  }
  return bad == 0;
}

template <class T>
bool all_finite(const py::array& a) {
  const T* data = static_cast<const T*>(a.data());
  if (a.flags() & py::array::c_style) return finite_run(data, static_cast<std::int64_t>(a.size()));
  const auto step = [&](int d) { return a.strides(d) / static_cast<py::ssize_t>(sizeof(T)); };
  for (py::ssize_t n = 0; n < a.shape(0); ++n)
    for (py::ssize_t h = 0; h < a.shape(1); ++h)
      for (py::ssize_t l = 0; l < a.shape(2); ++l)
        if (!finite_run(data + n * step(0) + h * step(1) + l * step(2), a.shape(3))) return false;
  return true;
}

// The name of the first of `arrays` holding NaN or Inf, else nullptr; GIL released.
template <class T>
const char* first_non_finite(std::initializer_list<std::pair<const py::array*, const char*>> arrays) {
  py::gil_scoped_release unlocked;
  for (const auto& [array, name] : arrays)
    if (!all_finite<T>(*array)) return name;
  return nullptr;
}

void require_finite(const char* bad) {
  if (bad) throw py::value_error(cat(bad, " holds NaN or Inf values"));
}

// q, k (and v): checked operands of one dtype, H a multiple of H_kv.
std::vector<py::array> qkv_operands(const std::vector<py::array>& arrays) {
  static const char* const names[] = {"q", "k", "v"};
  std::vector<py::array> out;
  for (std::size_t i = 0; i < arrays.size(); ++i) out.push_back(operand(arrays[i], names[i]));
  for (const py::array& a : out)
    if (!a.dtype().is(out[0].dtype())) {
      std::string got;
      for (const py::array& b : out) got += cat(got.empty() ? "" : ", ", std::string(py::str(b.dtype())));
      throw py::type_error(cat("q, k and v must have one dtype, got ", got));
    }
  const Shape4 q = shape_of(out[0]);
  for (std::size_t i = 1; i < out.size(); ++i) check_like_q(out[i], q, names[i]);
  const std::int64_t kv_heads = out[1].shape(1);
  if (out.size() == 3 && out[2].shape(1) != kv_heads)
    throw py::value_error(cat("k and v must have the same number of heads, got ", kv_heads, " and ", out[2].shape(1)));
  if (q.h % kv_heads)
    throw py::value_error(
        cat("the query heads (", q.h, ") must be a multiple of the key/value heads (", kv_heads, ")"));
  return out;
}

// a's element strides as AttentionParams takes them (a is an operand of `heads` heads).
template <class T>
HeadStrides strides_of(const py::array& a) {
  const auto step = [&](int d) { return static_cast<std::int64_t>(a.strides(d) / static_cast<py::ssize_t>(sizeof(T))); };
  const Shape4 s = shape_of(a);
  // A dimension of size 1 is never stepped over: any stride that passes the checks.
  return {s.n == 1 ? 0 : step(0), s.l == 1 ? s.e : step(2), s.h == 1 ? 0 : step(1)};
}

// The cost model `lorafast calibrate` saved, read once per process.
const CostModel& cost_model() {
  static const CostModel model = load_cost_model(default_cost_model_path());
  return model;
}

// AttentionParams::cu_seqlens as Python passes them (empty: one document per row).
using CuSeqlens = std::vector<std::int64_t>;

// q, k and the sizes of one call: pointers into operands (and offsets) the caller keeps alive.
template <class T>
AttentionParams<T> params_of(const py::array& q, const py::array& k, bool causal, double scale, std::int64_t window,
                             const CuSeqlens& cu_seqlens) {
  const Shape4 s = shape_of(q);
  AttentionParams<T> p;
  p.batch = s.n;
  p.seq_len = s.l;
  p.heads = s.h;
  p.kv_heads = k.shape(1);
  p.head_dim = s.e;
  p.causal = causal;
  p.window = window;
  p.cu_seqlens = cu_seqlens;
  p.scale = scale > 0 ? scale : AttentionConfig{}.resolved_scale(s.e);
  p.q = static_cast<const T*>(q.data());
  p.q_strides = strides_of<T>(q);
  p.k = static_cast<const T*>(k.data());
  p.k_strides = strides_of<T>(k);
  return p;
}

// A new C-contiguous array whose memory comes from the library's scratch pool and
// goes back there when the array (or a torch tensor viewing it) is freed: each call's
// outputs reuse the last call's pages instead of faulting in fresh ones (numpy's
// allocations above 128 KiB are new mappings: ~0.2 ms of a 3 ms call at L = 1024).
template <class T>
py::array_t<T> pooled_array(const std::vector<py::ssize_t>& shape) {
  std::size_t n = 1;
  for (const py::ssize_t d : shape) n *= static_cast<std::size_t>(d);
  if (n == 0) return py::array_t<T>(shape);
  void* block = scratch_pool::take(n * sizeof(T));
  const py::capsule owner(block, [](void* p) { scratch_pool::give(p); });
  return py::array_t<T>(shape, static_cast<T*>(block), owner);
}

// A new C-contiguous [N, heads, L, E] array and its strides.
template <class T>
py::array_t<T> new_array(const Shape4& s, std::int64_t heads, HeadStrides& strides) {
  strides = {heads * s.l * s.e, s.e, s.l * s.e};
  return pooled_array<T>({s.n, heads, s.l, s.e});
}

AttentionRequest request_of(const std::string& method, double eps, std::optional<int> degree) {
  AttentionRequest request;
  request.method = parse_method(method);
  request.eps = eps;
  request.degree = degree;
  request.cost = cost_model();
  return request;
}

template <class T>
Plan plan_t(const std::vector<py::array>& qk, bool causal, double scale, std::int64_t window,
            const CuSeqlens& cu_seqlens, const AttentionRequest& request, int threads) {
  const AttentionParams<T> p = params_of<T>(qk[0], qk[1], causal, scale, window, cu_seqlens);
  require_finite(first_non_finite<T>({{&qk[0], "q"}, {&qk[1], "k"}}));
  py::gil_scoped_release unlocked;
  set_num_threads(threads);
  return {plan_heads(p, request), true};
}

Plan plan(const py::array& q, const py::array& k, bool causal, double scale, std::int64_t window,
          const CuSeqlens& cu_seqlens, const std::string& method, double eps, std::optional<int> degree, int threads) {
  const std::vector<py::array> qk = qkv_operands({q, k});
  const AttentionRequest request = request_of(method, eps, degree);
  return is_f32(qk[0]) ? plan_t<float>(qk, causal, scale, window, cu_seqlens, request, threads)
                       : plan_t<double>(qk, causal, scale, window, cu_seqlens, request, threads);
}

// (o [N, H, L, E], lse [N, H, L], the plan it ran).
template <class T>
py::tuple forward_t(const std::vector<py::array>& qkv, bool causal, double scale, std::int64_t window,
                    const CuSeqlens& cu_seqlens, const AttentionRequest& request, int threads, bool bf16_products) {
  AttentionParams<T> p = params_of<T>(qkv[0], qkv[1], causal, scale, window, cu_seqlens);
  p.bf16_products = bf16_products;
  const Shape4 s = shape_of(qkv[0]);
  p.v = static_cast<const T*>(qkv[2].data());
  p.v_strides = strides_of<T>(qkv[2]);
  py::array_t<T> o = new_array<T>(s, p.heads, p.o_strides), lse = pooled_array<T>({s.n, s.h, s.l});
  p.o = o.mutable_data();
  p.lse = lse.mutable_data();
  require_finite(first_non_finite<T>({{&qkv[0], "q"}, {&qkv[1], "k"}, {&qkv[2], "v"}}));
  Plan plan;
  {
    py::gil_scoped_release unlocked;
    set_num_threads(threads);
    plan.measured = request.method != Method::exact;
    plan.heads = plan.measured ? plan_heads(p, request) : exact_plan(p.heads);
    planned_attention_fwd(p, plan.heads);
  }
  return py::make_tuple(o, lse, std::move(plan));
}

py::tuple forward(const py::array& q, const py::array& k, const py::array& v, bool causal, double scale,
                  std::int64_t window, const CuSeqlens& cu_seqlens, const std::string& method, double eps,
                  std::optional<int> degree, int threads, bool bf16_products) {
  const std::vector<py::array> qkv = qkv_operands({q, k, v});
  const AttentionRequest request = request_of(method, eps, degree);
  const auto run = is_f32(qkv[0]) ? forward_t<float> : forward_t<double>;
  return run(qkv, causal, scale, window, cu_seqlens, request, threads, bf16_products);
}

// (d_q, d_k, d_v) of a forward that returned o, lse with `plan`; q, k, v are what
// that forward read (checked there).
template <class T>
py::tuple backward_t(const std::vector<py::array>& qkv, const py::array& o, const py::array& lse,
                     const py::array& d_o, bool causal, double scale, std::int64_t window,
                     const CuSeqlens& cu_seqlens, const Plan& plan, int threads, bool bf16_products) {
  AttentionParams<T> p = params_of<T>(qkv[0], qkv[1], causal, scale, window, cu_seqlens);
  p.bf16_products = bf16_products;
  const Shape4 s = shape_of(qkv[0]);
  p.v = static_cast<const T*>(qkv[2].data());
  p.v_strides = strides_of<T>(qkv[2]);
  p.o = static_cast<T*>(const_cast<void*>(o.data()));  // read, not written, by the backward
  p.o_strides = strides_of<T>(o);
  p.d_o = static_cast<const T*>(d_o.data());
  p.d_o_strides = strides_of<T>(d_o);
  p.lse = static_cast<T*>(const_cast<void*>(lse.data()));
  py::array_t<T> d_q = new_array<T>(s, p.heads, p.d_q_strides), d_k = new_array<T>(s, p.kv_heads, p.d_k_strides),
                 d_v = new_array<T>(s, p.kv_heads, p.d_v_strides);
  p.d_q = d_q.mutable_data();
  p.d_k = d_k.mutable_data();
  p.d_v = d_v.mutable_data();
  require_finite(first_non_finite<T>({{&d_o, "grad_output"}}));
  {
    py::gil_scoped_release unlocked;
    set_num_threads(threads);
    planned_attention_bwd(p, plan.heads);
  }
  return py::make_tuple(d_q, d_k, d_v);
}

py::tuple backward(const py::array& q, const py::array& k, const py::array& v, const py::array& o,
                   const py::array& lse, const py::array& grad_output, bool causal, double scale,
                   std::int64_t window, const CuSeqlens& cu_seqlens, const Plan& plan, int threads,
                   bool bf16_products) {
  const std::vector<py::array> qkv = qkv_operands({q, k, v});
  const Shape4 s = shape_of(qkv[0]);
  LF_CHECK(o.ndim() == 4 && o.dtype().is(qkv[0].dtype()) && shape_of(o).n == s.n && o.shape(1) == s.h &&
               o.shape(2) == s.l && o.shape(3) == s.e && reads_in_place(o),
           ErrorKind::usage, "o must be the forward's output for these q, k, v");
  LF_CHECK(lse.ndim() == 3 && lse.dtype().is(qkv[0].dtype()) && lse.shape(0) == s.n && lse.shape(1) == s.h &&
               lse.shape(2) == s.l && (lse.flags() & py::array::c_style),
           ErrorKind::usage, "lse must be the forward's C-contiguous [N, H, L] array");
  const py::array d_o = operand(grad_output, "grad_output");
  if (!d_o.dtype().is(o.dtype()) || shape_of(d_o).n != s.n || d_o.shape(1) != s.h || d_o.shape(2) != s.l ||
      d_o.shape(3) != s.e)
    throw py::value_error(cat("grad_output must have the shape ", shape_text(o), " and dtype ",
                              std::string(py::str(o.dtype())), " of the output, got ", shape_text(d_o), " ",
                              std::string(py::str(d_o.dtype()))));
  const auto run = is_f32(qkv[0]) ? backward_t<float> : backward_t<double>;
  return run(qkv, o, lse, d_o, causal, scale, window, cu_seqlens, plan, threads, bf16_products);
}

}  // namespace

void add_merge_binding(py::module_& m);  // merge.cpp

}  // namespace lorafast

PYBIND11_MODULE(_core, m) {
  using namespace lorafast;
  using namespace py::literals;
  m.doc() = "lorafast's planned attention on NumPy arrays [N, H, L, E] (see the lorafast package)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      // Usage and bad input are the caller's arguments; cannot_meet is a request no method satisfies.
      if (e.kind() == ErrorKind::cannot_meet) PyErr_SetString(PyExc_RuntimeError, e.what());
      else PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  py::class_<HeadDecision>(m, "HeadDecision")
      .def_property_readonly("method", [](const HeadDecision& d) { return method_name(d.method); })
      .def_readonly("degree", &HeadDecision::degree)
      .def_readonly("features", &HeadDecision::features)
      .def_readonly("score_bound", &HeadDecision::raw_score_bound)
      .def_readonly("centred_score_bound", &HeadDecision::score_bound)
      .def_readonly("error_bound", &HeadDecision::error_bound)
      .def_readonly("gradient_bound", &HeadDecision::gradient_bound)
      .def_readonly("cost_exact", &HeadDecision::cost_exact)
      .def_readonly("cost_fast", &HeadDecision::cost_fast)
      .def_readonly("reason", &HeadDecision::reason);
  py::class_<Plan>(m, "Plan")
      .def_readonly("heads", &Plan::heads)
      .def_readonly("measured", &Plan::measured);
  m.def("reads_in_place", &reads_in_place, "array"_a,
        "Whether the kernels read this [N, H, L, E] array without copying it");
  // window, cu_seqlens: AttentionParams' masks (0 and [] for none).
  m.def("plan", &plan, "q"_a, "k"_a, "causal"_a, "scale"_a, "window"_a, "cu_seqlens"_a, "method"_a, "eps"_a,
        "degree"_a, "threads"_a);
  // bf16_products (float32 arrays only): the exact heads multiply in bf16 (AttentionParams).
  m.def("forward", &forward, "q"_a, "k"_a, "v"_a, "causal"_a, "scale"_a, "window"_a, "cu_seqlens"_a, "method"_a,
        "eps"_a, "degree"_a, "threads"_a, "bf16_products"_a = false);
  m.def("backward", &backward, "q"_a, "k"_a, "v"_a, "o"_a, "lse"_a, "grad_output"_a, "causal"_a, "scale"_a,
        "window"_a, "cu_seqlens"_a, "plan"_a, "threads"_a, "bf16_products"_a = false);
  m.def("bf16_arithmetic", &bf16_arithmetic, "Whether this CPU multiplies bf16 in bf16 (AVX512-BF16)");
  m.def("set_bf16_arithmetic", &set_bf16_arithmetic, "on"_a,
        "Off: bf16 products run in f32, as on CPUs without AVX512-BF16 (for tests)");
  add_merge_binding(m);
}
