// Quant type table and reference (de)quantization, for tools and tests.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "edgellama/errors.h"
#include "edgellama/quant_types.h"

using edgellama::TypeTraits;

namespace {

const TypeTraits& traits_by_name(const std::string& name) {
  size_t n = 0;
  const TypeTraits* all = edgellama::all_type_traits(&n);
  for (size_t i = 0; i < n; ++i) {
    if (name == all[i].name) return all[i];
  }
  throw edgellama::ArgumentError("unknown tensor type '" + name + "'");
}

}  // namespace

void bind_types(py::module_& m) {
  m.def("type_table", [] {
    size_t n = 0;
    const TypeTraits* all = edgellama::all_type_traits(&n);
    py::list out;
    for (size_t i = 0; i < n; ++i) {
      py::dict row;
      row["name"] = all[i].name;
      row["id"] = static_cast<uint32_t>(all[i].type);
      row["block_size"] = all[i].block_size;
      row["type_size"] = all[i].type_size;
      row["can_dequantize"] = all[i].to_float != nullptr;
      row["can_quantize"] = all[i].from_float != nullptr;
      row["vec_dot_type"] = edgellama::type_traits(all[i].vec_dot_type).name;
      out.append(row);
    }
    return out;
  });

  m.def(
      "dequantize",
      [](const std::string& type_name, py::array_t<uint8_t, py::array::c_style | py::array::forcecast> data) {
        const TypeTraits& t = traits_by_name(type_name);
        if (!t.to_float) throw edgellama::UnsupportedError("dequantize: type " + type_name + " is not supported");
        const size_t nbytes = size_t(data.size());
        if (nbytes % t.type_size != 0)
          throw edgellama::ArgumentError("dequantize: " + std::to_string(nbytes) + " bytes is not a whole number of " +
                                         type_name + " blocks (" + std::to_string(t.type_size) + " bytes each)");
        const int64_t n = int64_t(nbytes / t.type_size) * t.block_size;
        py::array_t<float> out(n);
        const uint8_t* src = data.data();
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          t.to_float(src, dst, n);
        }
        return out;
      },
      py::arg("type"), py::arg("data"),
      "Dequantize packed blocks of the named type (e.g. 'Q4_K') to a float32 array.");
}
