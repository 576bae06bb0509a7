// C++ exception types -> Python exception classes.
//   FileError        -> OSError (FileNotFoundError when the file does not exist)
//   FormatError      -> edgellama.GGUFError (ValueError)
//   UnsupportedError -> edgellama.UnsupportedError (ValueError)
//   ArgumentError    -> ValueError
#include <cerrno>
#include <cstring>

#include "bindings.h"
#include "edgellama/errors.h"

void bind_errors(py::module_& m) {
  static py::exception<edgellama::FormatError> gguf_error(m, "GGUFError", PyExc_ValueError);
  static py::exception<edgellama::UnsupportedError> unsupported(m, "UnsupportedError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const edgellama::FormatError& e) {
      py::set_error(gguf_error, e.what());
    } catch (const edgellama::UnsupportedError& e) {
      py::set_error(unsupported, e.what());
    } catch (const edgellama::FileError& e) {
      const bool missing = std::strstr(e.what(), std::strerror(ENOENT)) != nullptr;
      py::set_error(missing ? PyExc_FileNotFoundError : PyExc_OSError, e.what());
    } catch (const edgellama::ArgumentError& e) {
      py::set_error(PyExc_ValueError, e.what());
    }
  });
}
