// lorafast._core: the library's planned attention (plan per head, forward, backward)
// on NumPy arrays in [N, L, H, E] layout, C-contiguous, float32 or float64. The
// package (python/lorafast) validates arguments, converts torch tensors and layouts,
// and wraps these in torch.autograd; this layer checks again what the C++ needs and
// releases the GIL while computing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "lorafast/cost_model.hpp"
#include "lorafast/error.hpp"
#include "lorafast/planned_attention.hpp"
#include "lorafast/threads.hpp"

namespace py = pybind11;

namespace lorafast {
namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style>;

struct Shape4 {
  std::int64_t n, l, h, e;
};

template <class T>
Shape4 shape_of(const Array<T>& a, const char* name) {
  LF_CHECK(a.ndim() == 4, ErrorKind::usage, name, " must have 4 dimensions [N, L, H, E], got ", a.ndim());
  return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
}

template <class T>
void require_shape(const Array<T>& a, const Shape4& s, const char* name) {
  const Shape4 got = shape_of(a, name);
  LF_CHECK(got.n == s.n && got.l == s.l && got.h == s.h && got.e == s.e, ErrorKind::usage, name,
           " must have the shape of q [N, L, H, E]");
}

// The cost model `lorafast calibrate` saved, read once per process.
const CostModel& cost_model() {
  static const CostModel model = load_cost_model(default_cost_model_path());
  return model;
}

// The params of one call: every pointer into arrays the caller keeps alive.
template <class T>
AttentionParams<T> params_of(const Shape4& s, bool causal, double scale) {
  AttentionParams<T> p;
  p.batch = s.n;
  p.seq_len = s.l;
  p.heads = s.h;
  p.head_dim = s.e;
  p.causal = causal;
  p.scale = scale > 0 ? scale : AttentionConfig{}.resolved_scale(s.e);
  return p;
}

template <class T>
std::vector<HeadDecision> plan(const Array<T>& q, const Array<T>& k, bool causal, double scale,
                               const std::string& method, double eps, std::optional<int> degree, int threads) {
  const Shape4 s = shape_of(q, "q");
  require_shape(k, s, "k");
  AttentionParams<T> p = params_of<T>(s, causal, scale);
  p.q = q.data();
  p.k = k.data();
  DispatchRequest request;
  request.requested = parse_method(method);
  request.eps = eps;
  request.degree = degree;
  request.seq_len = s.l;
  request.head_dim = s.e;
  request.batch = s.n;
  request.causal = causal;
  request.cost = cost_model();
  py::gil_scoped_release unlocked;
  set_num_threads(threads);
  return plan_heads(p, request);
}

// (o [N, L, H, E], lse [N, H, L], the plan it ran).
template <class T>
py::tuple forward(const Array<T>& q, const Array<T>& k, const Array<T>& v, bool causal, double scale,
                  const std::string& method, double eps, std::optional<int> degree, int threads) {
  const Shape4 s = shape_of(q, "q");
  require_shape(v, s, "v");
  const std::vector<HeadDecision> heads = plan<T>(q, k, causal, scale, method, eps, degree, threads);
  Array<T> o({s.n, s.l, s.h, s.e}), lse({s.n, s.h, s.l});
  AttentionParams<T> p = params_of<T>(s, causal, scale);
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.o = o.mutable_data();
  p.lse = lse.mutable_data();
  {
    py::gil_scoped_release unlocked;
    planned_attention_fwd(p, heads);
  }
  return py::make_tuple(o, lse, heads);
}

// (d_q, d_k, d_v) of a forward that returned o, lse with `heads`.
template <class T>
py::tuple backward(const Array<T>& q, const Array<T>& k, const Array<T>& v, const Array<T>& o, const Array<T>& lse,
                   const Array<T>& d_o, bool causal, double scale, const std::vector<HeadDecision>& heads,
                   int threads) {
  const Shape4 s = shape_of(q, "q");
  for (const auto& [a, name] : {std::pair{&k, "k"}, {&v, "v"}, {&o, "o"}, {&d_o, "grad_output"}})
    require_shape(*a, s, name);
  LF_CHECK(lse.ndim() == 3 && lse.shape(0) == s.n && lse.shape(1) == s.h && lse.shape(2) == s.l, ErrorKind::usage,
           "lse must have the shape [N, H, L]");
  LF_CHECK(static_cast<std::int64_t>(heads.size()) == s.h, ErrorKind::usage, "the plan has ", heads.size(),
           " heads, q has ", s.h);
  Array<T> d_q({s.n, s.l, s.h, s.e}), d_k({s.n, s.l, s.h, s.e}), d_v({s.n, s.l, s.h, s.e});
  AttentionParams<T> p = params_of<T>(s, causal, scale);
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.o = const_cast<T*>(o.data());  // read, not written, by the backward
  p.lse = const_cast<T*>(lse.data());
  p.d_o = d_o.data();
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
  m.doc() = "lorafast's planned attention on NumPy arrays [N, L, H, E] (see the lorafast package)";
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
