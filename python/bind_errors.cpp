// C++ exception types -> Python exception classes.
//   FileError        -> OSError (FileNotFoundError when the file does not exist)
//   FormatError      -> edgellama.GGUFError (ValueError)
//   UnsupportedError -> edgellama.UnsupportedError (ValueError)
//   ArgumentError    -> ValueError
#include <cerrno>
#include <cstring>

#include "bindings.h"
#include "edgellama/errors.h"

namespace {

// Messages quote bytes from the file (keys, token texts, merges), which need not be UTF-8: decode
// with backslashreplace so the exception is the intended class, not a UnicodeDecodeError.
void set_error(PyObject* type, const char* what) {
  PyObject* msg = PyUnicode_DecodeUTF8(what, Py_ssize_t(std::strlen(what)), "backslashreplace");
  if (!msg) return;  // MemoryError is set
  PyErr_SetObject(type, msg);
  Py_DECREF(msg);
}

}  // namespace

void bind_errors(py::module_& m) {
  static py::exception<edgellama::FormatError> gguf_error(m, "GGUFError", PyExc_ValueError);
  static py::exception<edgellama::UnsupportedError> unsupported(m, "UnsupportedError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const edgellama::FormatError& e) {
      set_error(gguf_error.ptr(), e.what());
    } catch (const edgellama::UnsupportedError& e) {
      set_error(unsupported.ptr(), e.what());
    } catch (const edgellama::FileError& e) {
      const bool missing = std::strstr(e.what(), std::strerror(ENOENT)) != nullptr;
      set_error(missing ? PyExc_FileNotFoundError : PyExc_OSError, e.what());
    } catch (const edgellama::ArgumentError& e) {
      set_error(PyExc_ValueError, e.what());
    }
  });
}
