// Context's multi-sequence methods (cpp/include/edgellama/batch.h): decode_batch, n_past_seq,
// truncate_seq, copy_seq_prefix, n_seq. Added to the Context class that bind_model registers.
#include <pybind11/numpy.h>

#include "bindings.h"
#include "edgellama/context.h"
#include "edgellama/errors.h"

using edgellama::BatchView;
using edgellama::Context;

namespace {

template <typename T>
using Array1D = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <typename T>
void check_rows(const Array1D<T>& a, const char* name, int64_t n) {
  if (a.ndim() != 1 || a.shape(0) != n)
    throw edgellama::ArgumentError(std::string("decode_batch: ") + name + " must be a 1-D array of " +
                                   std::to_string(n) + " entries (one per token row)");
}

}  // namespace

void bind_batch(py::module_& m) {
  auto ctx = py::reinterpret_borrow<py::class_<Context>>(m.attr("Context"));
  ctx.def(
         "decode_batch",
         [](Context& c, Array1D<int32_t> tokens, Array1D<int32_t> seq_ids, py::object want_logits,
            py::object positions) {
           if (tokens.ndim() != 1) throw edgellama::ArgumentError("decode_batch: tokens must be a 1-D array");
           const int64_t n = tokens.shape(0);
           check_rows(seq_ids, "seq_ids", n);
           BatchView b;
           b.n = n;
           b.tokens = tokens.data();
           b.seq_ids = seq_ids.data();
           Array1D<uint8_t> want;
           Array1D<int64_t> pos;
           int64_t n_out = 0;
           if (!want_logits.is_none()) {
             want = Array1D<uint8_t>::ensure(want_logits);
             if (!want) throw edgellama::ArgumentError("decode_batch: want_logits must be an array of bools");
             check_rows(want, "want_logits", n);
             b.want_logits = want.data();
             for (int64_t i = 0; i < n; ++i) n_out += want.data()[i] != 0;
           }
           if (!positions.is_none()) {
             pos = Array1D<int64_t>::ensure(positions);
             if (!pos) throw edgellama::ArgumentError("decode_batch: positions must be an array of ints");
             check_rows(pos, "positions", n);
             b.positions = pos.data();
           }
           py::array_t<float> logits({n_out, int64_t(c.model().hparams().n_vocab)});
           float* out = n_out ? logits.mutable_data() : nullptr;
           {
             py::gil_scoped_release release;
             c.decode_batch(b, out);
           }
           return logits;
         },
         py::arg("tokens"), py::arg("seq_ids"), py::arg("want_logits") = py::none(),
         py::arg("positions") = py::none(),
         "One forward pass over rows of several sequences; returns the logits of the rows with "
         "want_logits set, (n_out, n_vocab), in row order.")
      .def(
          "decode_batch_hidden",
          [](Context& c, Array1D<int32_t> tokens, Array1D<int32_t> seq_ids) {
            if (tokens.ndim() != 1) throw edgellama::ArgumentError("decode_batch_hidden: tokens must be a 1-D array");
            const int64_t n = tokens.shape(0);
            check_rows(seq_ids, "seq_ids", n);
            BatchView b;
            b.n = n;
            b.tokens = tokens.data();
            b.seq_ids = seq_ids.data();
            py::array_t<float> hidden({n, int64_t(c.model().hparams().n_embd)});
            {
              py::gil_scoped_release release;
              c.decode_batch_hidden(b, hidden.mutable_data());
            }
            return hidden;
          },
          py::arg("tokens"), py::arg("seq_ids"),
          "decode_batch without logits: the final-norm hidden states of every row, (n, n_embd).")
      .def("n_past_seq", &Context::n_past_seq, py::arg("seq"))
      .def("truncate_seq", &Context::truncate_seq, py::arg("seq"), py::arg("n"))
      .def("can_truncate_seq", &Context::can_truncate_seq, py::arg("seq"), py::arg("n"))
      .def("copy_seq_prefix", &Context::copy_seq_prefix, py::arg("src"), py::arg("dst"), py::arg("n"),
           py::call_guard<py::gil_scoped_release>(),
           "Make sequence dst hold sequence src's first n positions (all layers' K and V, copied: the "
           "same bits as evaluating them in dst); dst's previous entries are dropped.")
      .def_property_readonly("n_seq", &Context::n_seq);
}
