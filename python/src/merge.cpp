// lorafast.merge (python/lorafast/_merge.py): the library's merge_adapter, with the
// GIL released while it reads and writes.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "lorafast/merge.hpp"

namespace py = pybind11;

namespace lorafast {

void add_merge_binding(py::module_& m) {
  using namespace py::literals;
  m.def(
      "merge",
      [](const std::string& model, const std::string& adapter, const std::string& out,
         const std::optional<std::string>& dtype, const std::string& max_shard_size, bool force) {
        MergeOptions options;
        if (dtype) options.dtype = parse_storage_type(*dtype);
        options.max_shard_bytes = parse_shard_size(max_shard_size);
        options.replace = force;
        MergeSummary s;
        {
          py::gil_scoped_release release;
          s = merge_adapter(model, adapter, out, options);
        }
        return py::dict("tensors"_a = s.tensors, "merged"_a = s.merged, "files"_a = s.files, "bytes"_a = s.bytes,
                        "dtype"_a = storage_type_name(s.dtype));
      },
      "model"_a, "adapter"_a, "out"_a, "dtype"_a, "max_shard_size"_a, "force"_a);
}

}  // namespace lorafast
