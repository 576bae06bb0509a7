// The pybind11 module is split by concept; each bind_*.cpp registers its part on the module.
// Keep bindings thin: argument checks and conversion only; compute runs with the GIL released.
#pragma once
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_errors(py::module_& m);
void bind_gguf(py::module_& m);
void bind_types(py::module_& m);
void bind_model(py::module_& m);
void bind_batch(py::module_& m);  // after bind_model: adds methods to Context
void bind_tokenizer(py::module_& m);
void bind_sampler(py::module_& m);
void bind_text_stream(py::module_& m);
void bind_quantize(py::module_& m);
void bind_kernels(py::module_& m);
void bind_threads(py::module_& m);
