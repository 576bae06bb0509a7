#include "bindings.h"

void bind_tokenizer(py::module_& m) {}
