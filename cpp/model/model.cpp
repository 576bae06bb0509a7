// Model loading: metadata -> HParams, tensors -> WeightViews, with every inconsistency between the
// metadata and the tensors reported as a FormatError naming the file, tensor and both shapes.
#include "edgellama/model.h"

#include <cmath>

#include "edgellama/errors.h"

namespace edgellama {

namespace {

// Upper bounds that no real model reaches; they keep crafted metadata from driving huge loops or
// allocations before a tensor check would catch it.
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 16384;

std::string shape_str(const int64_t* ne, int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

class Loader {
 public:
  Loader(const GGUFFile& f, const std::string& arch) : f_(f), arch_(arch) {}

  int64_t positive(const std::string& suffix, int64_t fallback, int64_t max_value) const {
    const std::string key = arch_ + "." + suffix;
    const int64_t v = f_.get_int(key, fallback);
    if (v <= 0) throw FormatError(f_.where() + "metadata '" + key + "' must be > 0, got " + std::to_string(v));
    if (v > max_value)
      throw FormatError(f_.where() + "metadata '" + key + "' = " + std::to_string(v) + " is absurdly large (max " +
                        std::to_string(max_value) + ")");
    return v;
  }
  int64_t required_positive(const std::string& suffix, int64_t max_value) const {
    const std::string key = arch_ + "." + suffix;
    if (!f_.find(key)) throw FormatError(f_.where() + "required metadata key '" + key + "' is missing");
    return positive(suffix, 0, max_value);
  }

  const GGUFTensorInfo& tensor(const std::string& name) const {
    const GGUFTensorInfo* t = f_.find_tensor(name);
    if (!t) throw FormatError(f_.where() + "tensor '" + name + "' is missing");
    return *t;
  }

  void check_shape(const GGUFTensorInfo& t, std::initializer_list<int64_t> expected) const {
    const int n = int(expected.size());
    bool ok = int(t.n_dims) == n;
    int i = 0;
    for (int64_t e : expected) ok = ok && i < 4 && t.ne[i++] == e;
    if (!ok) {
      std::vector<int64_t> exp(expected);
      throw FormatError(f_.where() + "tensor '" + t.name + "' has shape " + shape_str(t.ne, int(t.n_dims)) +
                        " but the metadata implies " + shape_str(exp.data(), n));
    }
  }

  void check_computable(const GGUFTensorInfo& t) const {
    if (!t.traits->to_float)
      throw UnsupportedError(f_.where() + "tensor '" + t.name + "' has type " + t.traits->name +
                             ", which edgellama does not support yet");
  }

  WeightView matrix(const std::string& name, int64_t n_in, int64_t n_out) const {
    const GGUFTensorInfo& t = tensor(name);
    check_shape(t, {n_in, n_out});
    check_computable(t);
    WeightView w;
    w.name = name;
    w.traits = t.traits;
    for (int i = 0; i < 4; ++i) w.ne[i] = t.ne[i];
    w.data = t.data;
    row_size_checked(*t.traits, t.ne[0], &w.row_bytes);  // validated by the reader
    return w;
  }

  std::vector<float> vector(const std::string& name, int64_t n) const {
    const GGUFTensorInfo& t = tensor(name);
    check_shape(t, {n});
    check_computable(t);
    std::vector<float> out(static_cast<size_t>(n));
    t.traits->to_float(t.data, out.data(), n);
    return out;
  }

  std::vector<float> optional_vector(const std::string& name, int64_t n) const {
    return f_.find_tensor(name) ? vector(name, n) : std::vector<float>();
  }

 private:
  const GGUFFile& f_;
  std::string arch_;
};

}  // namespace

std::shared_ptr<Model> Model::load(const std::string& path, bool vocab_only) {
  return load(GGUFFile::open(path), vocab_only);
}

std::shared_ptr<Model> Model::load(std::shared_ptr<GGUFFile> file, bool vocab_only) {
  std::shared_ptr<Model> m(new Model());
  m->file_ = std::move(file);
  m->vocab_only_ = vocab_only;
  const GGUFFile& f = *m->file_;

  const std::string arch = f.get_string("general.architecture");
  if (vocab_only) {
    m->arch_ = find_arch(arch);  // may be nullptr: a vocabulary-only file needs no architecture
    return m;
  }
  m->arch_ = find_arch(arch);
  if (!m->arch_)
    throw UnsupportedError(f.where() + "architecture '" + arch + "' is not supported (supported: " +
                           supported_arch_names() + ")");

  const Loader L(f, arch);
  HParams& hp = m->hp_;
  hp.n_embd = L.required_positive("embedding_length", int64_t(1) << 20);
  hp.n_layer = L.required_positive("block_count", kMaxLayers);
  hp.n_head = L.required_positive("attention.head_count", kMaxHeads);
  hp.n_head_kv = L.positive("attention.head_count_kv", hp.n_head, kMaxHeads);
  hp.n_ff = L.required_positive("feed_forward_length", int64_t(1) << 24);
  hp.n_ctx_train = L.positive("context_length", 2048, int64_t(1) << 26);
  if (hp.n_head % hp.n_head_kv != 0)
    throw FormatError(f.where() + arch + ".attention.head_count_kv (" + std::to_string(hp.n_head_kv) +
                      ") must divide " + arch + ".attention.head_count (" + std::to_string(hp.n_head) + ")");
  if (f.find(arch + ".attention.key_length")) {
    hp.head_dim = L.positive("attention.key_length", 0, 1 << 16);
    const int64_t v_len = L.positive("attention.value_length", hp.head_dim, 1 << 16);
    if (v_len != hp.head_dim)
      throw UnsupportedError(f.where() + "attention.value_length != key_length is not supported");
  } else {
    if (hp.n_embd % hp.n_head != 0)
      throw FormatError(f.where() + arch + ".attention.head_count (" + std::to_string(hp.n_head) +
                        ") must divide " + arch + ".embedding_length (" + std::to_string(hp.n_embd) + ")");
    hp.head_dim = hp.n_embd / hp.n_head;
  }
  hp.n_rot = L.positive("rope.dimension_count", hp.head_dim, 1 << 16);
  if (hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0)
    throw FormatError(f.where() + arch + ".rope.dimension_count (" + std::to_string(hp.n_rot) +
                      ") must be even and at most the head size (" + std::to_string(hp.head_dim) + ")");
  hp.rms_eps = f.get_float(arch + ".attention.layer_norm_rms_epsilon", 1e-5);
  if (!(hp.rms_eps > 0 && hp.rms_eps < 1))
    throw FormatError(f.where() + arch + ".attention.layer_norm_rms_epsilon must be in (0, 1)");
  hp.rope_base = f.get_float(arch + ".rope.freq_base", m->arch_->default_rope_base);
  if (!(hp.rope_base > 1 && std::isfinite(hp.rope_base)))
    throw FormatError(f.where() + arch + ".rope.freq_base must be a finite number > 1");
  hp.rope_scaling_type = f.get_string(arch + ".rope.scaling.type", "none");
  if (hp.rope_scaling_type == "linear") {
    double factor = f.get_float(arch + ".rope.scaling.factor", 0.0);
    if (factor == 0.0) factor = 1.0 / f.get_float(arch + ".rope.scale_linear", 1.0);  // older key
    if (!(factor > 0 && std::isfinite(factor)))
      throw FormatError(f.where() + arch + ".rope.scaling.factor must be a finite number > 0");
    hp.rope_linear_factor = factor;
  } else if (hp.rope_scaling_type != "none") {
    throw UnsupportedError(f.where() + "rope scaling type '" + hp.rope_scaling_type +
                           "' is not supported (supported: none, linear)");
  }

  // Token embedding defines the vocabulary size; the tokenizer must agree (checked by Vocab).
  const GGUFTensorInfo& emb = L.tensor("token_embd.weight");
  if (emb.n_dims != 2 || emb.ne[0] != hp.n_embd)
    throw FormatError(f.where() + "tensor 'token_embd.weight' has shape " + shape_str(emb.ne, int(emb.n_dims)) +
                      " but the metadata implies [" + std::to_string(hp.n_embd) + ", n_vocab]");
  hp.n_vocab = emb.ne[1];
  m->tok_embd = L.matrix("token_embd.weight", hp.n_embd, hp.n_vocab);
  m->output_norm = L.vector("output_norm.weight", hp.n_embd);
  if (f.find_tensor("output.weight")) {
    m->output = L.matrix("output.weight", hp.n_embd, hp.n_vocab);
  } else {
    m->output = m->tok_embd;
    m->tied_output = true;
  }
  if (f.find_tensor("rope_freqs.weight")) m->rope_freq_factors = L.vector("rope_freqs.weight", hp.n_rot / 2);

  m->layers.resize(size_t(hp.n_layer));
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& l = m->layers[size_t(il)];
    l.attn_norm = L.vector(p + "attn_norm.weight", hp.n_embd);
    l.wq = L.matrix(p + "attn_q.weight", hp.n_embd, hp.q_width());
    l.wk = L.matrix(p + "attn_k.weight", hp.n_embd, hp.kv_width());
    l.wv = L.matrix(p + "attn_v.weight", hp.n_embd, hp.kv_width());
    l.wo = L.matrix(p + "attn_output.weight", hp.q_width(), hp.n_embd);
    if (m->arch_->qkv_bias) {
      l.bq = L.optional_vector(p + "attn_q.bias", hp.q_width());
      l.bk = L.optional_vector(p + "attn_k.bias", hp.kv_width());
      l.bv = L.optional_vector(p + "attn_v.bias", hp.kv_width());
    }
    l.ffn_norm = L.vector(p + "ffn_norm.weight", hp.n_embd);
    l.w_gate = L.matrix(p + "ffn_gate.weight", hp.n_embd, hp.n_ff);
    l.w_up = L.matrix(p + "ffn_up.weight", hp.n_embd, hp.n_ff);
    l.w_down = L.matrix(p + "ffn_down.weight", hp.n_ff, hp.n_embd);
  }
  // A file with more layers than block_count says is inconsistent too.
  if (f.find_tensor("blk." + std::to_string(hp.n_layer) + ".attn_norm.weight"))
    throw FormatError(f.where() + "the file has tensors for more layers than " + arch + ".block_count (" +
                      std::to_string(hp.n_layer) + ")");
  return m;
}

}  // namespace edgellama
