// edgellama._core.GGUFFile: read-only view of a GGUF file for tools and tests.
#include <pybind11/stl.h>

#include "bindings.h"
#include "edgellama/gguf.h"

using edgellama::GGUFFile;
using edgellama::GGUFType;
using edgellama::GGUFValue;

namespace {

py::object scalar_to_python(const GGUFValue& v, const std::string& what) {
  switch (v.type) {
    case GGUFType::BOOL: return py::bool_(v.as_bool(what));
    case GGUFType::FLOAT32: case GGUFType::FLOAT64: return py::float_(v.as_float(what));
    case GGUFType::STRING: {
      const std::string_view s = v.as_string(what);
      // Metadata strings should be UTF-8; undecodable bytes are replaced rather than failing the
      // whole listing.
      return py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(s.data(), Py_ssize_t(s.size()), "replace"));
    }
    case GGUFType::UINT64: return py::int_(v.as_uint(what));
    default: return py::int_(v.as_int(what));
  }
}

py::object value_to_python(const GGUFValue& v, const std::string& what) {
  if (!v.is_array()) return scalar_to_python(v, what);
  py::list out(v.array_size());
  for (size_t i = 0; i < v.array_size(); ++i) {
    switch (v.array_type) {
      case GGUFType::STRING: {
        const std::string_view s = v.string_at(i);
        out[i] = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(s.data(), Py_ssize_t(s.size()), "replace"));
        break;
      }
      case GGUFType::ARRAY: out[i] = value_to_python(v.array_at(i), what); break;
      case GGUFType::FLOAT32: case GGUFType::FLOAT64: out[i] = py::float_(v.float_at(i, what)); break;
      case GGUFType::BOOL: out[i] = py::bool_(v.int_at(i, what) != 0); break;
      case GGUFType::UINT64: out[i] = py::int_(v.uint64_at(i, what)); break;
      default: out[i] = py::int_(v.int_at(i, what)); break;
    }
  }
  return std::move(out);
}

}  // namespace

void bind_gguf(py::module_& m) {
  py::class_<GGUFFile, std::shared_ptr<GGUFFile>>(m, "GGUFFile")
      .def(py::init([](const std::string& path) {
             py::gil_scoped_release release;
             return GGUFFile::open(path);
           }),
           py::arg("path"))
      .def_static(
          "from_bytes",
          [](py::bytes data, const std::string& name) {
            std::string_view s = data;
            return GGUFFile::from_bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size(), name);
          },
          py::arg("data"), py::arg("name") = "<bytes>")
      .def_property_readonly("path", &GGUFFile::path)
      .def_property_readonly("version", &GGUFFile::version)
      .def_property_readonly("alignment", &GGUFFile::alignment)
      .def_property_readonly("data_offset", &GGUFFile::data_offset)
      .def_property_readonly("file_size", &GGUFFile::file_size)
      .def("metadata_dict",
           [](const GGUFFile& f) {
             py::dict d;
             for (const auto& [key, value] : f.metadata()) d[py::str(key)] = value_to_python(value, f.where() + key);
             return d;
           })
      .def("metadata_types",
           [](const GGUFFile& f) {
             py::dict d;
             for (const auto& [key, value] : f.metadata()) {
               std::string t = edgellama::gguf_type_name(value.type);
               if (value.is_array()) t += std::string("[") + edgellama::gguf_type_name(value.array_type) + "]";
               d[py::str(key)] = t;
             }
             return d;
           })
      .def("tensor_list", [](const GGUFFile& f) {
        py::list out;
        for (const auto& t : f.tensors()) {
          py::tuple shape(t.n_dims);
          for (uint32_t d = 0; d < t.n_dims; ++d) shape[d] = t.ne[d];
          out.append(py::make_tuple(t.name, std::string(t.traits->name), shape, t.type_id,
                                    f.data_offset() + t.offset, t.nbytes));
        }
        return out;
      });
}
