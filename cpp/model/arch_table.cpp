// The architecture table: one row per supported general.architecture (see arch.h for the fields).
// Everything not set in a row is the llama default, so a row reads as "llama, except ...".
#include "edgellama/arch.h"

namespace edgellama {

namespace {

std::vector<ArchSpec> make_table() {
  std::vector<ArchSpec> t;
  auto row = [&t](const char* name, const char* hf) -> ArchSpec& {
    ArchSpec a;
    a.name = name;
    a.hf_classes = hf;
    t.push_back(a);
    return t.back();
  };
  // llama: also Mistral files and Llama 3.x (rope_freqs.weight carries the llama3 rope scaling).
  row("llama", "LlamaForCausalLM, MistralForCausalLM");
  {
    ArchSpec& a = row("qwen2", "Qwen2ForCausalLM");
    a.rope_style = RopeStyle::HalfSplit;
    a.qkv_bias = true;
  }
  {
    ArchSpec& a = row("qwen3", "Qwen3ForCausalLM");
    a.rope_style = RopeStyle::HalfSplit;
    a.qk_norm = QKNorm::PerHead;
  }
  {
    ArchSpec& a = row("gemma", "GemmaForCausalLM");
    a.rope_style = RopeStyle::HalfSplit;
    a.activation = Activation::GELUTanh;
    a.embd_scale_sqrt = true;
  }
  {
    ArchSpec& a = row("gemma2", "Gemma2ForCausalLM");
    a.rope_style = RopeStyle::HalfSplit;
    a.activation = Activation::GELUTanh;
    a.embd_scale_sqrt = true;
    a.post_norms = true;
    a.softcap = true;
    a.swa_pattern = 2;
    a.embd_per_head_scale_n_layer = 46;  // Gemma 2 27B
  }
  {
    ArchSpec& a = row("gemma3", "Gemma3ForCausalLM");
    a.rope_style = RopeStyle::HalfSplit;
    a.default_rope_base = 1000000.0;
    a.activation = Activation::GELUTanh;
    a.embd_scale_sqrt = true;
    a.post_norms = true;
    a.qk_norm = QKNorm::PerHead;
    a.softcap = true;  // final logit soft-capping only when the file says so
    a.swa_pattern = 6;
    a.default_rope_base_swa = 10000.0;
    a.embd_per_head_scale_n_layer = 62;  // Gemma 3 27B
  }
  {
    ArchSpec& a = row("phi3", "Phi3ForCausalLM");
    a.rope_style = RopeStyle::HalfSplit;
    a.fused_qkv = true;
    a.fused_gate_up = true;
  }
  {
    ArchSpec& a = row("granite", "GraniteForCausalLM");
    a.multipliers = true;
  }
  {
    ArchSpec& a = row("olmo2", "Olmo2ForCausalLM");
    a.rope_style = RopeStyle::HalfSplit;
    a.pre_norms = false;
    a.post_norms = true;
    a.qk_norm = QKNorm::Whole;
  }
  {
    ArchSpec& a = row("smollm3", "SmolLM3ForCausalLM");
    a.nope_every = 4;
  }
  return t;
}

}  // namespace

const std::vector<ArchSpec>& all_archs() {
  static const std::vector<ArchSpec> table = make_table();
  return table;
}

const ArchSpec* find_arch(const std::string& name) {
  for (const ArchSpec& a : all_archs()) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

std::string supported_arch_names() {
  std::string out;
  for (const ArchSpec& a : all_archs()) out += (out.empty() ? "" : ", ") + std::string(a.name);
  return out;
}

TensorRole tensor_role_from_name(const std::string& gguf_name) {
  if (gguf_name == "token_embd.weight") return TensorRole::TokenEmbd;
  if (gguf_name == "output.weight") return TensorRole::Output;
  // blk.N.<role>.weight
  if (gguf_name.compare(0, 4, "blk.") != 0) return TensorRole::Other;
  const size_t dot = gguf_name.find('.', 4);
  if (dot == std::string::npos) return TensorRole::Other;
  const std::string rest = gguf_name.substr(dot + 1);
  for (TensorRole r : {TensorRole::AttnQ, TensorRole::AttnK, TensorRole::AttnV, TensorRole::AttnOut, TensorRole::FfnGate,
                       TensorRole::FfnUp, TensorRole::FfnDown})
    if (rest == std::string(tensor_role_name(r)) + ".weight") return r;
  return TensorRole::Other;
}

const char* tensor_role_name(TensorRole r) {
  switch (r) {
    case TensorRole::TokenEmbd: return "token_embd";
    case TensorRole::Output: return "output";
    case TensorRole::AttnQ: return "attn_q";
    case TensorRole::AttnK: return "attn_k";
    case TensorRole::AttnV: return "attn_v";
    case TensorRole::AttnOut: return "attn_output";
    case TensorRole::FfnGate: return "ffn_gate";
    case TensorRole::FfnUp: return "ffn_up";
    case TensorRole::FfnDown: return "ffn_down";
    case TensorRole::Other: break;
  }
  return "other";
}

}  // namespace edgellama
