// edgellama._core.Model (a loaded GGUF model) and edgellama._core.Context (KV cache + forward).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "edgellama/context.h"
#include "edgellama/errors.h"
#include "edgellama/model.h"

using edgellama::Context;
using edgellama::ContextParams;
using edgellama::KVType;
using edgellama::MatmulPrecision;
using edgellama::Model;

namespace {

KVType parse_kv_type(const std::string& s, const char* arg) {
  if (s == "f16") return KVType::F16;
  if (s == "f32") return KVType::F32;
  throw edgellama::ArgumentError(std::string(arg) + " must be 'f16' or 'f32', got '" + s + "'");
}

MatmulPrecision parse_precision(const std::string& s) {
  if (s == "fast") return MatmulPrecision::Fast;
  if (s == "exact") return MatmulPrecision::Exact;
  throw edgellama::ArgumentError("precision must be 'fast' or 'exact', got '" + s + "'");
}

using TokenArray = py::array_t<int32_t, py::array::c_style>;

}  // namespace

// One dict per row of the architecture table (cpp/model/arch_table.cpp): the converter, `edgellama
// info` and the tests take the list of supported architectures from here.
py::list architectures() {
  py::list out;
  for (const edgellama::ArchSpec& a : edgellama::all_archs()) {
    py::dict d;
    d["name"] = a.name;
    py::list hf;
    std::string cls;
    for (const char* c = a.hf_classes;; ++c) {
      if (*c == ',' || *c == '\0') {
        if (!cls.empty()) hf.append(cls);
        cls.clear();
        if (!*c) break;
      } else if (*c != ' ') {
        cls += *c;
      }
    }
    d["hf_classes"] = hf;
    d["rope_style"] = a.rope_style == edgellama::RopeStyle::Adjacent ? "normal" : "neox";
    d["default_rope_base"] = a.default_rope_base;
    d["qkv_bias"] = a.qkv_bias;
    d["fused_qkv"] = a.fused_qkv;
    d["fused_gate_up"] = a.fused_gate_up;
    d["pre_norms"] = a.pre_norms;
    d["post_norms"] = a.post_norms;
    d["qk_norm"] = a.qk_norm == edgellama::QKNorm::None ? "none" : a.qk_norm == edgellama::QKNorm::PerHead ? "per_head" : "whole";
    d["activation"] = a.activation == edgellama::Activation::SiLU ? "silu" : "gelu_tanh";
    d["embd_scale_sqrt"] = a.embd_scale_sqrt;
    d["multipliers"] = a.multipliers;
    d["swa_pattern"] = a.swa_pattern;
    d["default_rope_base_swa"] = a.default_rope_base_swa;
    d["nope_every"] = a.nope_every;
    d["softcap"] = a.softcap;
    d["embd_per_head_scale_n_layer"] = a.embd_per_head_scale_n_layer;
    out.append(d);
  }
  return out;
}

void bind_model(py::module_& m) {
  m.def("architectures", &architectures);
  py::class_<Model, std::shared_ptr<Model>>(m, "Model")
      .def(py::init([](const std::string& path, bool vocab_only) {
             py::gil_scoped_release release;
             return Model::load(path, vocab_only);
           }),
           py::arg("path"), py::arg("vocab_only") = false)
      .def_property_readonly("gguf", &Model::file_ptr)
      .def_property_readonly("vocab_only", &Model::vocab_only)
      .def_property_readonly("architecture",
                             [](const Model& mdl) { return mdl.file().get_string("general.architecture", ""); })
      .def_property_readonly("tied_output", [](const Model& mdl) { return mdl.tied_output; })
      .def_property_readonly("hparams", [](const Model& mdl) {
        const auto& h = mdl.hparams();
        py::dict d;
        d["n_vocab"] = h.n_vocab;
        d["n_embd"] = h.n_embd;
        d["n_layer"] = h.n_layer;
        d["n_head"] = h.n_head;
        d["n_head_kv"] = h.n_head_kv;
        d["head_dim"] = h.head_dim;
        d["n_ff"] = h.n_ff;
        d["n_ctx_train"] = h.n_ctx_train;
        d["n_rot"] = h.n_rot;
        d["rms_eps"] = h.rms_eps;
        d["rope_base"] = h.rope_base;
        d["rope_scaling_type"] = h.rope_scaling_type;
        d["rope_linear_factor"] = h.rope_linear_factor;
        d["rope_freq_factors"] = !mdl.rope_freq_factors.empty();
        d["longrope"] = !mdl.rope_factors_long.empty();
        d["n_ctx_orig"] = h.n_ctx_orig;
        d["rope_attn_factor"] = h.rope_attn_factor;
        d["n_swa"] = h.n_swa;
        d["rope_base_swa"] = h.rope_base_swa;
        d["attn_scale"] = h.attn_scale;
        d["attn_softcap"] = h.attn_softcap;
        d["final_softcap"] = h.final_softcap;
        d["embd_scale"] = h.embd_scale;
        d["residual_scale"] = h.residual_scale;
        d["logit_scale"] = h.logit_scale;
        py::list swa, rope;
        for (int64_t il = 0; il < h.n_layer; ++il) {
          swa.append(bool(h.layer_swa[size_t(il)]));
          rope.append(bool(h.layer_rope[size_t(il)]));
        }
        d["layer_swa"] = swa;
        d["layer_rope"] = rope;
        return d;
      });

  py::class_<Context>(m, "Context")
      .def(py::init([](std::shared_ptr<Model> model, int64_t n_ctx, int n_threads, int64_t n_batch,
                       const std::string& type_k, const std::string& type_v, const std::string& precision,
                       double rope_freq_base, double rope_freq_scale, int64_t n_seq, bool swa_full) {
             ContextParams p;
             p.n_ctx = n_ctx;
             p.n_seq = n_seq;
             p.n_threads = n_threads;
             p.n_batch = n_batch;
             p.type_k = parse_kv_type(type_k, "type_k");
             p.type_v = parse_kv_type(type_v, "type_v");
             p.precision = parse_precision(precision);
             p.rope_freq_base = rope_freq_base;
             p.rope_freq_scale = rope_freq_scale;
             p.swa_full = swa_full;
             py::gil_scoped_release release;
             return new Context(std::move(model), p);
           }),
           py::arg("model"), py::arg("n_ctx"), py::arg("n_threads"), py::arg("n_batch"), py::arg("type_k"),
           py::arg("type_v"), py::arg("precision"), py::arg("rope_freq_base") = 0.0, py::arg("rope_freq_scale") = 0.0,
           py::arg("n_seq") = 1, py::arg("swa_full") = false)
      .def(
          "decode",
          [](Context& ctx, TokenArray tokens, bool all_logits, bool want_logits) -> py::object {
            if (tokens.ndim() != 1) throw edgellama::ArgumentError("tokens must be a 1-D sequence of token ids");
            const int64_t n = tokens.shape(0);
            const int64_t n_vocab = ctx.model().hparams().n_vocab;
            // want_logits=false: only fill the KV cache (prompt chunks before the last one).
            py::array_t<float> logits =
                !want_logits ? py::array_t<float>(0)
                : all_logits ? py::array_t<float>({n, n_vocab}) : py::array_t<float>({n_vocab});
            if (n == 0) return want_logits ? py::object(logits) : py::none();
            const int32_t* ids = tokens.data();
            float* out = want_logits ? logits.mutable_data() : nullptr;
            {
              py::gil_scoped_release release;
              ctx.decode(ids, n, out, all_logits);
            }
            return want_logits ? py::object(logits) : py::none();
          },
          py::arg("tokens"), py::arg("all_logits") = true, py::arg("want_logits") = true)
      .def(
          "decode_hidden",
          [](Context& ctx, TokenArray tokens) {
            if (tokens.ndim() != 1) throw edgellama::ArgumentError("tokens must be a 1-D sequence of token ids");
            const int64_t n = tokens.shape(0);
            py::array_t<float> hidden({n, int64_t(ctx.model().hparams().n_embd)});
            if (n == 0) return hidden;
            const int32_t* ids = tokens.data();
            float* out = hidden.mutable_data();
            py::gil_scoped_release release;
            ctx.decode_hidden(ids, n, out);
            return hidden;
          },
          py::arg("tokens"), "Evaluate tokens; return their final-norm hidden states (n, n_embd), no logits.")
      .def("state_size", &Context::state_size)
      .def("save_state",
           [](const Context& ctx) {
             std::string buf(ctx.state_size(), '\0');
             {
               py::gil_scoped_release release;
               ctx.save_state(reinterpret_cast<uint8_t*>(buf.data()), buf.size());
             }
             return py::bytes(buf);
           })
      .def(
          "load_state",
          [](Context& ctx, const py::bytes& data) {
            std::string_view v = data;  // no copy
            ctx.load_state(reinterpret_cast<const uint8_t*>(v.data()), v.size());
          },
          py::arg("data"))
      .def("truncate", &Context::truncate, py::arg("n"))
      .def("can_truncate", [](const Context& c, int64_t n) { return c.can_truncate_seq(0, n); }, py::arg("n"),
           "Whether truncate(n) keeps what decoding from n needs (a sliding-window ring may not).")
      .def_property_readonly("kv_bytes", &Context::kv_bytes)
      .def_property_readonly("kv_ring_size", &Context::kv_ring_size)
      .def_property_readonly("n_past", &Context::n_past)
      .def_property_readonly("n_ctx", &Context::n_ctx)
      .def_property_readonly("rope_long_factors", &Context::rope_long_factors)
      .def_property_readonly("n_threads", &Context::n_threads)
      .def_property_readonly("n_batch", [](const Context& c) { return c.params().n_batch; })
      .def("set_collect_activation_stats", &Context::set_collect_activation_stats, py::arg("on"))
      .def("clear_activation_stats", &Context::clear_activation_stats)
      .def("activation_stats", [](const Context& c) {
        py::dict d;
        for (const auto& [name, s] : c.activation_stats()) {
          py::array_t<double> arr(py::ssize_t(s.sum_sq.size()));
          std::copy(s.sum_sq.begin(), s.sum_sq.end(), arr.mutable_data());
          d[py::str(name)] = py::make_tuple(arr, s.count);
        }
        return d;
      });
}
