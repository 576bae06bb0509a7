#include "bindings.h"

void bind_sampler(py::module_& m) {}
