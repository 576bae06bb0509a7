#include "bindings.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "edgellama C++ core (GGUF reader, quant types, LLaMA forward, tokenizers, samplers)";
  bind_errors(m);  // first: the other parts refer to the exception types
  bind_gguf(m);
  bind_types(m);
  bind_model(m);
  bind_batch(m);
  bind_tokenizer(m);
  bind_sampler(m);
  bind_text_stream(m);
  bind_quantize(m);
  bind_kernels(m);
  bind_threads(m);
}
