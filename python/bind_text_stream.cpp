// edgellama._core.Utf8Decoder / StopMatcher / TextStream: generated token bytes -> text to show
// (cpp/tokenizer/text_stream.cpp). Called once per generated token with a few bytes each, so the
// GIL stays held: releasing and retaking it would cost more than the work.
#include <pybind11/stl.h>

#include "bindings.h"
#include "edgellama/text_stream.h"

using edgellama::StopMatcher;
using edgellama::TextStream;
using edgellama::Utf8Assembler;

namespace {

std::string_view bytes_arg(const py::handle& data, const char* what) {
  char* ptr;
  Py_ssize_t size;
  if (PyBytes_Check(data.ptr())) {
    PyBytes_AsStringAndSize(data.ptr(), &ptr, &size);
  } else if (PyByteArray_Check(data.ptr())) {
    ptr = PyByteArray_AsString(data.ptr());
    size = PyByteArray_Size(data.ptr());
  } else {
    throw py::type_error(std::string(what) + " must be bytes, not " +
                         std::string(py::str(py::type::of(data).attr("__name__"))));
  }
  return std::string_view(ptr, size_t(size));
}

std::string_view str_arg(const py::handle& text, const char* what) {
  if (!PyUnicode_Check(text.ptr())) {
    throw py::type_error(std::string(what) + " must be str, not " +
                         std::string(py::str(py::type::of(text).attr("__name__"))));
  }
  Py_ssize_t size;
  const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
  if (!data) throw py::error_already_set();  // lone surrogates
  return std::string_view(data, size_t(size));
}

// the output is valid UTF-8 by construction (the assembler only emits whole characters)
py::str to_str(const std::string& s) { return py::str(s.data(), s.size()); }

}  // namespace

void bind_text_stream(py::module_& m) {
  py::class_<Utf8Assembler>(m, "Utf8Decoder",
                            "Incremental UTF-8 decoder that never emits part of a character; invalid bytes "
                            "become U+FFFD at once (as bytes.decode('utf-8', errors='replace') on the whole input).")
      .def(py::init<>())
      .def(
          "feed",
          [](Utf8Assembler& d, const py::object& data) {
            std::string out;
            d.feed(bytes_arg(data, "data"), out);
            return to_str(out);
          },
          py::arg("data"))
      .def("finish",
           [](Utf8Assembler& d) {
             std::string out;
             d.finish(out);
             return to_str(out);
           },
           "Flush: an incomplete character left at the end becomes U+FFFD.")
      .def_property_readonly("pending", [](const Utf8Assembler& d) { return py::bytes(d.pending()); },
                             "Bytes held back because they may still become a character.");

  py::class_<StopMatcher>(m, "StopMatcher",
                          "Holds back text that could be the start of a stop string. feed(text) -> "
                          "(safe_text, stopped); finish() -> the held-back text when no stop string completed.")
      .def(py::init([](const std::vector<std::string>& stops) { return StopMatcher(stops); }),
           py::arg("stops") = std::vector<std::string>{})
      .def(
          "feed",
          [](StopMatcher& s, const py::object& text) {
            std::string out;
            const bool stopped = s.feed(str_arg(text, "text"), out);
            return py::make_tuple(to_str(out), stopped);
          },
          py::arg("text"))
      .def("finish",
           [](StopMatcher& s) {
             std::string out;
             s.finish(out);
             return to_str(out);
           })
      .def_property_readonly("stopped", &StopMatcher::stopped)
      .def_property_readonly("held", [](const StopMatcher& s) { return to_str(s.held()); })
      .def_property_readonly("stops", [](const StopMatcher& s) {
        py::list out;
        for (const auto& x : s.stops()) out.append(to_str(x));
        return out;
      })
      .def_property_readonly(
          "matched",
          [](const StopMatcher& s) -> py::object {
            if (!s.matched()) return py::none();
            return to_str(s.stops()[*s.matched()]);
          },
          "The stop string that ended the text (None before).");

  py::class_<TextStream>(m, "TextStream",
                         "Token bytes in, displayable text out: UTF-8 assembly then stop-string hold-back. "
                         "emitted counts the characters handed out, decoded those decoded (emitted + held back).")
      .def(py::init([](const std::vector<std::string>& stops) { return TextStream(stops); }),
           py::arg("stops") = std::vector<std::string>{})
      .def(
          "feed",
          [](TextStream& t, const py::object& data) {
            std::string out;
            t.feed(bytes_arg(data, "data"), out);
            return to_str(out);
          },
          py::arg("data"))
      .def("finish",
           [](TextStream& t) {
             std::string out;
             t.finish(out);
             return to_str(out);
           },
           "End of generation: flush an incomplete character (as U+FFFD) and held-back text.")
      .def_property_readonly("stopped", &TextStream::stopped)
      .def_property_readonly("decoded", &TextStream::decoded)
      .def_property_readonly("emitted", &TextStream::emitted)
      .def_property_readonly("matched", [](const TextStream& t) -> py::object {
        const auto& m = t.matcher();
        if (!m.matched()) return py::none();
        return to_str(m.stops()[*m.matched()]);
      });
}
