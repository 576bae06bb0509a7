// edgellama._core.Vocab: the tokenizer built from a GGUF file's vocabulary.
#include <optional>

#include <pybind11/stl.h>

#include "bindings.h"
#include "edgellama/gguf.h"
#include "edgellama/vocab.h"

using edgellama::GGUFFile;
using edgellama::Vocab;

namespace {

std::string_view text_arg(const py::handle& text, std::string& holder) {
  if (PyBytes_Check(text.ptr())) {
    char* data;
    Py_ssize_t size;
    PyBytes_AsStringAndSize(text.ptr(), &data, &size);
    return std::string_view(data, size_t(size));
  }
  if (PyUnicode_Check(text.ptr())) {
    Py_ssize_t size;
    const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
    if (!data) throw py::error_already_set();  // e.g. lone surrogates
    holder.assign(data, size_t(size));
    return holder;
  }
  if (PyByteArray_Check(text.ptr())) {
    holder.assign(PyByteArray_AsString(text.ptr()), size_t(PyByteArray_Size(text.ptr())));
    return holder;
  }
  throw py::type_error("text must be bytes or str, not " + std::string(py::str(py::type::of(text).attr("__name__"))));
}

py::bytes to_bytes(std::string_view s) { return py::bytes(s.data(), s.size()); }

}  // namespace

void bind_tokenizer(py::module_& m) {
  py::enum_<edgellama::TokenType>(m, "TokenType")
      .value("UNDEFINED", edgellama::TokenType::Undefined)
      .value("NORMAL", edgellama::TokenType::Normal)
      .value("UNKNOWN", edgellama::TokenType::Unknown)
      .value("CONTROL", edgellama::TokenType::Control)
      .value("USER_DEFINED", edgellama::TokenType::UserDefined)
      .value("UNUSED", edgellama::TokenType::Unused)
      .value("BYTE", edgellama::TokenType::Byte);

  py::class_<Vocab, std::shared_ptr<Vocab>>(m, "Vocab",
                                            "Tokenizer built from a GGUF file's tokenizer.ggml.* keys "
                                            "(SentencePiece BPE for model 'llama', byte-level BPE for 'gpt2').")
      .def_static(
          "from_gguf",
          [](const std::shared_ptr<GGUFFile>& file) {
            if (!file) throw py::type_error("from_gguf: gguf_file must be a GGUFFile");
            py::gil_scoped_release release;
            return Vocab::from_gguf(*file);
          },
          py::arg("gguf_file"))
      .def(
          "tokenize",
          [](const Vocab& v, const py::object& text, bool add_special, bool parse_special) {
            std::string holder;
            const std::string_view s = text_arg(text, holder);
            std::vector<int32_t> ids;
            {
              py::gil_scoped_release release;
              ids = v.tokenize(s, add_special, parse_special);
            }
            py::list out(ids.size());
            for (size_t i = 0; i < ids.size(); ++i) out[i] = py::int_(ids[i]);
            return out;
          },
          py::arg("text"), py::arg("add_special") = true, py::arg("parse_special") = false,
          "UTF-8 bytes (or str) -> token ids. Invalid UTF-8 raises ValueError.")
      .def(
          "token_to_piece",
          [](const Vocab& v, int32_t id, bool special) { return to_bytes(v.token_to_piece(id, special)); },
          py::arg("id"), py::arg("special") = false)
      .def(
          "detokenize",
          [](const Vocab& v, const std::vector<int32_t>& ids, bool special,
             const std::optional<std::vector<int32_t>>& prev_ids) {
            std::string s;
            {
              py::gil_scoped_release release;
              s = prev_ids ? v.detokenize_after(prev_ids->data(), prev_ids->size(), ids.data(), ids.size(), special)
                           : v.detokenize(ids, special);
            }
            return to_bytes(s);
          },
          py::arg("ids"), py::arg("special") = false, py::arg("prev_ids") = py::none(),
          "Token ids -> bytes; with prev_ids, the bytes ids add after them (see Vocab::detokenize_after).")
      .def("n_tokens", &Vocab::n_tokens)
      .def("__len__", &Vocab::n_tokens)
      .def("bos", &Vocab::bos)
      .def("eos", &Vocab::eos)
      .def("eot", &Vocab::eot)
      .def("unk", &Vocab::unk)
      .def("pad", &Vocab::pad)
      .def("eog_ids", &Vocab::eog_ids)
      .def("is_eog", &Vocab::is_eog, py::arg("id"))
      .def(
          "token_text", [](const Vocab& v, int32_t id) { return to_bytes(v.token_text(id)); }, py::arg("id"),
          "The token's text as stored in the GGUF (bytes).")
      .def("token_score", &Vocab::token_score, py::arg("id"))
      .def("token_type", &Vocab::token_type, py::arg("id"))
      .def(
          "token_id",
          [](const Vocab& v, const py::object& text) {
            std::string holder;
            return v.token_id(text_arg(text, holder));
          },
          py::arg("text"), "Id of the token with exactly this text, or -1.")
      .def("model_name", &Vocab::model_name)
      .def("pre_name", &Vocab::pre_name)
      .def("add_bos", &Vocab::add_bos)
      .def("add_eos", &Vocab::add_eos)
      .def("add_space_prefix", &Vocab::add_space_prefix)
      .def("n_merges", &Vocab::n_merges)
      .def("__repr__", [](const Vocab& v) {
        return "<edgellama._core.Vocab model=" + v.model_name() + (v.pre_name().empty() ? "" : " pre=" + v.pre_name()) +
               " n_tokens=" + std::to_string(v.n_tokens()) + ">";
      });
}
