#include "bindings.h"

void bind_quantize(py::module_& m) {}
