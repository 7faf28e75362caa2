// lorafast._core: the library's planned attention (plan per head, forward, backward)
// on NumPy arrays in SDPA's layout, q [N, H, L, E] and k, v [N, H_kv, L, E] (grouped
// heads), any strides with a contiguous last dimension, float32 or float64: the
// kernels read them in place. The package (python/lorafast) validates arguments,
// views torch tensors as arrays and wraps these in torch.autograd; this layer checks
// again what the C++ needs and releases the GIL while computing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "core/scratch.hpp"
#include "lorafast/cost_model.hpp"
#include "lorafast/error.hpp"
#include "lorafast/planned_attention.hpp"
#include "lorafast/threads.hpp"

namespace py = pybind11;

namespace lorafast {
namespace {

// Any strides (no copy, no conversion: a wrong dtype picks no overload); the package
// passes arrays whose last dimension is contiguous.
template <class T>
using Array = py::array_t<T, 0>;

struct Shape4 {
  std::int64_t n, h, l, e;
};

template <class T>
Shape4 shape_of(const Array<T>& a, const char* name) {
  LF_CHECK(a.ndim() == 4, ErrorKind::usage, name, " must have 4 dimensions [N, H, L, E], got ", a.ndim());
  return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
}

// a's element strides as AttentionParams takes them; its shape must be [N, heads, L, E] of s.
template <class T>
HeadStrides strides_of(const Array<T>& a, const Shape4& s, std::int64_t heads, const char* name) {
  const Shape4 got = shape_of(a, name);
  LF_CHECK(got.n == s.n && got.h == heads && got.l == s.l && got.e == s.e, ErrorKind::usage, name,
           " must have the shape [", s.n, ", ", heads, ", ", s.l, ", ", s.e, "]");
  const auto stride = [&](int dim) {
    LF_CHECK(a.strides(dim) % static_cast<py::ssize_t>(sizeof(T)) == 0, ErrorKind::usage, name,
             " has a stride that is not a whole number of elements");
    return static_cast<std::int64_t>(a.strides(dim) / static_cast<py::ssize_t>(sizeof(T)));
  };
  LF_CHECK(s.e == 1 || stride(3) == 1, ErrorKind::usage, name, " must be contiguous in its last dimension");
  // A dimension of size 1 is never stepped over: any stride that passes the checks.
  return {s.n == 1 ? 0 : stride(0), s.l == 1 ? s.e : stride(2), heads == 1 ? 0 : stride(1)};
}

// The cost model `lorafast calibrate` saved, read once per process.
const CostModel& cost_model() {
  static const CostModel model = load_cost_model(default_cost_model_path());
  return model;
}

// q, k and the sizes of one call: pointers into arrays the caller keeps alive.
template <class T>
AttentionParams<T> params_of(const Array<T>& q, const Array<T>& k, bool causal, double scale) {
  const Shape4 s = shape_of(q, "q");
  AttentionParams<T> p;
  p.batch = s.n;
  p.seq_len = s.l;
  p.heads = s.h;
  p.kv_heads = shape_of(k, "k").h;
  p.head_dim = s.e;
  p.causal = causal;
  p.scale = scale > 0 ? scale : AttentionConfig{}.resolved_scale(s.e);
  LF_CHECK(p.kv_heads >= 1 && p.heads % p.kv_heads == 0, ErrorKind::usage, "the query heads (", p.heads,
           ") must be a multiple of the key/value heads (", p.kv_heads, ")");
  p.q = q.data();
  p.q_strides = strides_of(q, s, p.heads, "q");
  p.k = k.data();
  p.k_strides = strides_of(k, s, p.kv_heads, "k");
  return p;
}

// A new C-contiguous array whose memory comes from the library's scratch pool and
// goes back there when the array (or a torch tensor viewing it) is freed: each call's
// outputs reuse the last call's pages instead of faulting in fresh ones (numpy's
// allocations above 128 KiB are new mappings: ~0.2 ms of a 3 ms call at L = 1024).
template <class T>
Array<T> pooled_array(const std::vector<py::ssize_t>& shape) {
  std::size_t n = 1;
  for (const py::ssize_t d : shape) n *= static_cast<std::size_t>(d);
  if (n == 0) return Array<T>(shape);
  void* block = scratch_pool::take(n * sizeof(T));
  const py::capsule owner(block, [](void* p) { scratch_pool::give(p); });
  return Array<T>(shape, static_cast<T*>(block), owner);
}

// A new C-contiguous [N, heads, L, E] array and its strides.
template <class T>
Array<T> new_array(const Shape4& s, std::int64_t heads, HeadStrides& strides) {
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
std::vector<HeadDecision> plan(const Array<T>& q, const Array<T>& k, bool causal, double scale,
                               const std::string& method, double eps, std::optional<int> degree, int threads) {
  const AttentionParams<T> p = params_of(q, k, causal, scale);
  const AttentionRequest request = request_of(method, eps, degree);
  py::gil_scoped_release unlocked;
  set_num_threads(threads);
  return plan_heads(p, request);
}

// (o [N, H, L, E], lse [N, H, L], the plan it ran).
template <class T>
py::tuple forward(const Array<T>& q, const Array<T>& k, const Array<T>& v, bool causal, double scale,
                  const std::string& method, double eps, std::optional<int> degree, int threads) {
  AttentionParams<T> p = params_of(q, k, causal, scale);
  const Shape4 s = shape_of(q, "q");
  p.v = v.data();
  p.v_strides = strides_of(v, s, p.kv_heads, "v");
  Array<T> o = new_array<T>(s, p.heads, p.o_strides), lse = pooled_array<T>({s.n, s.h, s.l});
  p.o = o.mutable_data();
  p.lse = lse.mutable_data();
  const AttentionRequest request = request_of(method, eps, degree);
  std::vector<HeadDecision> heads;
  {
    py::gil_scoped_release unlocked;
    set_num_threads(threads);
    heads = plan_heads(p, request);
    planned_attention_fwd(p, heads);
  }
  return py::make_tuple(o, lse, heads);
}

// (d_q, d_k, d_v) of a forward that returned o, lse with `heads`.
template <class T>
py::tuple backward(const Array<T>& q, const Array<T>& k, const Array<T>& v, const Array<T>& o, const Array<T>& lse,
                   const Array<T>& d_o, bool causal, double scale, const std::vector<HeadDecision>& heads,
                   int threads) {
  AttentionParams<T> p = params_of(q, k, causal, scale);
  const Shape4 s = shape_of(q, "q");
  p.v = v.data();
  p.v_strides = strides_of(v, s, p.kv_heads, "v");
  p.o = const_cast<T*>(o.data());  // read, not written, by the backward
  p.o_strides = strides_of(o, s, p.heads, "o");
  p.d_o = d_o.data();
  p.d_o_strides = strides_of(d_o, s, p.heads, "grad_output");
  LF_CHECK(lse.ndim() == 3 && lse.shape(0) == s.n && lse.shape(1) == s.h && lse.shape(2) == s.l &&
               (lse.flags() & py::array::c_style),
           ErrorKind::usage, "lse must be a C-contiguous [N, H, L] array");
  p.lse = const_cast<T*>(lse.data());
  Array<T> d_q = new_array<T>(s, p.heads, p.d_q_strides), d_k = new_array<T>(s, p.kv_heads, p.d_k_strides),
           d_v = new_array<T>(s, p.kv_heads, p.d_v_strides);
  p.d_q = d_q.mutable_data();
  p.d_k = d_k.mutable_data();
  p.d_v = d_v.mutable_data();
  {
    py::gil_scoped_release unlocked;
    set_num_threads(threads);
    planned_attention_bwd(p, heads);
  }
  return py::make_tuple(d_q, d_k, d_v);
}

template <class T>
void define_for(py::module_& m, const std::string& suffix) {
  using namespace py::literals;
  m.def(("plan_" + suffix).c_str(), &plan<T>, "q"_a, "k"_a, "causal"_a, "scale"_a, "method"_a, "eps"_a,
        "degree"_a, "threads"_a);
  m.def(("forward_" + suffix).c_str(), &forward<T>, "q"_a, "k"_a, "v"_a, "causal"_a, "scale"_a, "method"_a,
        "eps"_a, "degree"_a, "threads"_a);
  m.def(("backward_" + suffix).c_str(), &backward<T>, "q"_a, "k"_a, "v"_a, "o"_a, "lse"_a, "grad_output"_a,
        "causal"_a, "scale"_a, "plan"_a, "threads"_a);
}

}  // namespace
}  // namespace lorafast

PYBIND11_MODULE(_core, m) {
  using namespace lorafast;
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
  define_for<float>(m, "f32");
  define_for<double>(m, "f64");
}
