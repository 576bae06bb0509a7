// edgellama._core.quantize: float32 matrix -> packed ggml blocks, all threads, GIL released.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>

#include "../cpp/quant/quantize.h"
#include "bindings.h"
#include "edgellama/errors.h"
#include "edgellama/quant_types.h"

using edgellama::TypeTraits;

namespace {

const TypeTraits& quant_traits_by_name(std::string name) {
  for (auto& c : name) c = char(std::toupper(static_cast<unsigned char>(c)));
  size_t n = 0;
  const TypeTraits* all = edgellama::all_type_traits(&n);
  for (size_t i = 0; i < n; ++i) {
    std::string tn = all[i].name;
    for (auto& c : tn) c = char(std::toupper(static_cast<unsigned char>(c)));
    if (name == tn) return all[i];
  }
  throw edgellama::ArgumentError("quantize: unknown tensor type '" + name + "'");
}

edgellama::QuantMethod parse_method(const std::string& m) {
  if (m == "auto") return edgellama::QuantMethod::kAuto;
  if (m == "reference") return edgellama::QuantMethod::kReference;
  if (m == "search") return edgellama::QuantMethod::kSearch;
  throw edgellama::ArgumentError("quantize: method must be 'auto', 'reference' or 'search', got '" + m + "'");
}

}  // namespace

void bind_quantize(py::module_& m) {
  m.def(
      "quantize",
      [](const std::string& type_name, py::object data_obj, py::object importance, int n_threads,
         const std::string& method, const std::string& source, py::object out_obj) {
        const TypeTraits& t = quant_traits_by_name(type_name);
        // float16 arrays (and bfloat16 bits, as uint16, with source="bf16") are quantized as stored:
        // quantize_matrix_from widens a row at a time, so no float32 copy of the matrix is made.
        py::array data = py::array::ensure(data_obj);
        if (!data) throw edgellama::ArgumentError("quantize: data must be an array of numbers");
        edgellama::SourceFormat format = edgellama::SourceFormat::kF32;
        if (source == "bf16") {
          if (!data.dtype().is(py::dtype::of<uint16_t>()) && !data.dtype().is(py::dtype::of<int16_t>()))
            throw edgellama::ArgumentError("quantize: source='bf16' takes the bfloat16 bits as a uint16 array");
          format = edgellama::SourceFormat::kBF16;
        } else if (source != "auto") {
          throw edgellama::ArgumentError("quantize: source must be 'auto' or 'bf16', got '" + source + "'");
        } else if (data.dtype().kind() == 'f' && data.dtype().itemsize() == 2) {
          format = edgellama::SourceFormat::kF16;
        }
        if (format == edgellama::SourceFormat::kF32)
          data = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(data);
        else if (!(data.flags() & py::array::c_style))
          data = py::module_::import("numpy").attr("ascontiguousarray")(data);
        if (!data) throw edgellama::ArgumentError("quantize: data cannot be converted to float32");
        if (!t.from_float) throw edgellama::UnsupportedError("quantize: type " + std::string(t.name) + " has no quantizer");
        const edgellama::QuantMethod qm = parse_method(method);
        if (data.ndim() != 1 && data.ndim() != 2)
          throw edgellama::ArgumentError("quantize: data must be a 1-D or 2-D float32 array, got " +
                                         std::to_string(data.ndim()) + " dimensions");
        const int64_t nrows = data.ndim() == 2 ? data.shape(0) : 1;
        const int64_t ncols = data.ndim() == 2 ? data.shape(1) : data.shape(0);
        size_t row_bytes = 0;
        if (!edgellama::row_size_checked(t, ncols, &row_bytes))
          throw edgellama::ArgumentError("quantize: row length " + std::to_string(ncols) + " is not a multiple of the " +
                                         t.name + " block size " + std::to_string(t.block_size));
        if (n_threads < 0) throw edgellama::ArgumentError("quantize: n_threads must be >= 0 (0 = all cores)");

        py::array_t<float, py::array::c_style | py::array::forcecast> imp;
        const float* imp_ptr = nullptr;
        if (!importance.is_none()) {
          imp = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(importance);
          if (!imp) throw edgellama::ArgumentError("quantize: importance must be a 1-D float array");
          if (imp.ndim() != 1 || imp.shape(0) != ncols)
            throw edgellama::ArgumentError("quantize: importance must have one weight per column (" +
                                           std::to_string(ncols) + "), got shape of " + std::to_string(imp.size()) +
                                           " values");
          const float* p = imp.data();
          for (int64_t i = 0; i < ncols; ++i)
            if (!(p[i] >= 0.0f) || !std::isfinite(p[i]))
              throw edgellama::ArgumentError("quantize: importance weights must be finite and >= 0 (column " +
                                             std::to_string(i) + ")");
          imp_ptr = p;
        }

        // out: the caller's buffer (a writer reusing a few buffers spares the page faults and zeroing
        // of a fresh allocation per tensor), else a new (rows, bytes per row) array
        py::array out;
        if (out_obj.is_none()) {
          out = py::array_t<uint8_t>({py::ssize_t(nrows), py::ssize_t(row_bytes)});
        } else {
          if (!py::isinstance<py::array>(out_obj))
            throw edgellama::ArgumentError("quantize: out must be a NumPy uint8 array");
          out = py::reinterpret_borrow<py::array>(out_obj);
          if (!out.dtype().is(py::dtype::of<uint8_t>()) || !(out.flags() & py::array::c_style) || !out.writeable())
            throw edgellama::ArgumentError("quantize: out must be a writable C-contiguous uint8 array");
          if (size_t(out.nbytes()) != size_t(nrows) * row_bytes)
            throw edgellama::ArgumentError("quantize: out holds " + std::to_string(out.nbytes()) + " bytes, the result is " +
                                           std::to_string(size_t(nrows) * row_bytes));
        }
        const void* src = data.data();
        uint8_t* dst = static_cast<uint8_t*>(out.mutable_data());
        {
          py::gil_scoped_release release;
          edgellama::quantize_matrix_from(t.type, format, src, dst, nrows, ncols, imp_ptr, qm, n_threads);
        }
        return out;
      },
      py::arg("type"), py::arg("data"), py::arg("importance") = py::none(), py::arg("n_threads") = 0,
      py::arg("method") = "auto", py::arg("source") = "auto", py::arg("out") = py::none(),
      "Quantize a float32 matrix (rows x cols; a 1-D array is one row) to packed blocks of the named type.\n"
      "Returns a uint8 array (rows, bytes per row). importance: optional per-column weights (imatrix-style);\n"
      "the search then minimises sum w (x - deq)^2. method: 'auto' (legacy types: gguf-py-exact reference\n"
      "rounding without importance, search with; K-quants: search), 'reference' or 'search'.\n"
      "n_threads: 0 = all physical cores. A float16 matrix is quantized as stored (no float32 copy); with\n"
      "source='bf16' a uint16 matrix holds bfloat16 bits. Other dtypes are converted to float32. out: a\n"
      "writable C-contiguous uint8 array of exactly rows x bytes-per-row bytes to fill and return instead\n"
      "of a new array.");
}
