// The C API (cpp/include/edgellama.h) over the C++ core: handles own the same Model / Context /
// Vocab / Sampler objects the pybind11 module uses. Every entry point that can fail runs its body
// through guarded(), which turns the core's typed exceptions into status codes and a thread-local
// message, so no exception ever crosses the C boundary.
#include "edgellama.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "edgellama/context.h"
#include "edgellama/errors.h"
#include "edgellama/gguf.h"
#include "edgellama/model.h"
#include "edgellama/sampler.h"
#include "edgellama/vocab.h"

using edgellama::ArgumentError;

// Each handle starts with a magic number of its kind, so that a handle of the wrong kind (or one
// already freed, as long as its memory has not been reused) is reported instead of misused.
enum HandleMagic : uint32_t {
  kModelMagic = 0x4d4c4445u,    // "EDLM"
  kContextMagic = 0x434c4445u,  // "EDLC"
  kSamplerMagic = 0x534c4445u,  // "EDLS"
  kFreedMagic = 0xdeadbeefu,
};

struct edgellama_model {
  uint32_t magic = kModelMagic;
  std::shared_ptr<edgellama::Model> model;
  std::shared_ptr<edgellama::Vocab> vocab;
  std::string architecture;
  std::string chat_template;
  bool has_chat_template = false;
};

struct edgellama_context {
  uint32_t magic = kContextMagic;
  std::shared_ptr<edgellama::Model> model;  // keeps the model alive after edgellama_model_free
  std::shared_ptr<edgellama::Vocab> vocab;
  std::unique_ptr<edgellama::Context> context;
  std::vector<float> logits, scratch;  // the last decode's logits; the next decode's target
  bool has_logits = false;
};

struct edgellama_sampler {
  uint32_t magic = kSamplerMagic;
  std::unique_ptr<edgellama::Sampler> sampler;
};

namespace {

thread_local std::string t_last_error;

// Thrown when a load's progress callback returns false; caught inside edgellama_model_load.
struct LoadCancelled {};

edgellama_status fail(edgellama_status status, const std::string& message) {
  t_last_error = message;
  return status;
}

// Runs body (returning an edgellama_status) and maps every exception to a status + message.
template <class Body>
edgellama_status guarded(const char* function, Body&& body) noexcept {
  try {
    return body();
  } catch (const edgellama::FileError& e) {
    return fail(EDGELLAMA_ERR_FILE, e.what());
  } catch (const edgellama::FormatError& e) {
    return fail(EDGELLAMA_ERR_FORMAT, e.what());
  } catch (const edgellama::UnsupportedError& e) {
    return fail(EDGELLAMA_ERR_UNSUPPORTED, e.what());
  } catch (const edgellama::ArgumentError& e) {
    return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, std::string(function) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return fail(EDGELLAMA_ERR_OUT_OF_MEMORY, std::string(function) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(EDGELLAMA_ERR_INTERNAL, std::string(function) + ": internal error: " + e.what());
  } catch (...) {
    return fail(EDGELLAMA_ERR_INTERNAL, std::string(function) + ": internal error: unknown exception");
  }
}

// Handle checks: throw ArgumentError naming the function and argument.
template <class Handle>
Handle* checked(Handle* h, uint32_t magic, const char* arg, const char* kind) {
  if (h == nullptr) throw ArgumentError(std::string(arg) + " is NULL");
  if (h->magic == kFreedMagic) throw ArgumentError(std::string(arg) + " was already freed");
  if (h->magic != magic) throw ArgumentError(std::string(arg) + " is not a valid " + kind + " handle");
  return h;
}
const edgellama_model* checked(const edgellama_model* m, const char* arg = "model") {
  return checked(m, kModelMagic, arg, "edgellama_model");
}
edgellama_model* checked(edgellama_model* m, const char* arg = "model") {
  return checked(m, kModelMagic, arg, "edgellama_model");
}
const edgellama_context* checked(const edgellama_context* c, const char* arg = "context") {
  return checked(c, kContextMagic, arg, "edgellama_context");
}
edgellama_context* checked(edgellama_context* c, const char* arg = "context") {
  return checked(c, kContextMagic, arg, "edgellama_context");
}
edgellama_sampler* checked(edgellama_sampler* s, const char* arg = "sampler") {
  return checked(s, kSamplerMagic, arg, "edgellama_sampler");
}

void require(bool ok, const std::string& message) {
  if (!ok) throw ArgumentError(message);
}

// A params struct as the caller compiled it: copy the fields its struct_size covers over the
// defaults (older callers pass a shorter struct; newer ones a longer one whose tail we ignore).
template <class Params>
Params read_params(const Params* given, Params defaults, const char* arg) {
  if (given == nullptr) return defaults;
  require(given->struct_size >= sizeof(size_t),
          std::string(arg) + "->struct_size is " + std::to_string(given->struct_size) +
              " (set it to sizeof the struct, or start from the *_default_params() function)");
  std::memcpy(static_cast<void*>(&defaults), given, std::min(given->struct_size, sizeof(Params)));
  defaults.struct_size = sizeof(Params);
  return defaults;
}

// Integer getters report an invalid handle as -1 (+ last error) rather than a status.
template <class Body>
int32_t guarded_int(const char* function, Body&& body) noexcept {
  int32_t value = -1;
  guarded(function, [&] {
    value = body();
    return EDGELLAMA_OK;
  });
  return value;
}

// The bytes token adds after prev: detokenizing the pair keeps a leading space that the
// tokenizer strips from a sequence's first token (as edgellama.generation does in Python).
std::string piece_after(const edgellama::Vocab& vocab, int32_t prev, int32_t token) {
  const std::string alone = vocab.detokenize(&prev, 1);
  const int32_t pair[2] = {prev, token};
  const std::string both = vocab.detokenize(pair, 2);
  if (both.compare(0, alone.size(), alone) == 0) return both.substr(alone.size());
  return vocab.detokenize(&token, 1);
}

void decode_into(edgellama_context* c, const int32_t* tokens, size_t n) {
  const int32_t n_vocab = int32_t(c->model->hparams().n_vocab);
  // Logits go to scratch first: a failed decode (the core leaves the cache unchanged) must not
  // clobber the previous decode's logits either.
  c->scratch.resize(size_t(n_vocab));
  c->context->decode(tokens, int64_t(n), c->scratch.data(), false);
  c->logits.swap(c->scratch);
  c->has_logits = true;
}

}  // namespace

extern "C" {

const char* edgellama_version(void) { return EDGELLAMA_VERSION_STRING; }
int edgellama_abi_version(void) { return EDGELLAMA_ABI_VERSION; }
const char* edgellama_last_error(void) { return t_last_error.c_str(); }

const char* edgellama_status_string(edgellama_status status) {
  switch (status) {
    case EDGELLAMA_OK: return "ok";
    case EDGELLAMA_ERR_INVALID_ARGUMENT: return "invalid argument";
    case EDGELLAMA_ERR_FILE: return "file error";
    case EDGELLAMA_ERR_FORMAT: return "malformed file";
    case EDGELLAMA_ERR_UNSUPPORTED: return "unsupported";
    case EDGELLAMA_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case EDGELLAMA_ERR_CANCELLED: return "cancelled";
    case EDGELLAMA_ERR_OUT_OF_MEMORY: return "out of memory";
    case EDGELLAMA_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

// ---- models ------------------------------------------------------------------------------------

edgellama_model_params edgellama_model_default_params(void) {
  edgellama_model_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  return p;
}

edgellama_status edgellama_model_load(const char* path, const edgellama_model_params* params,
                                      edgellama_model** out_model) {
  if (out_model) *out_model = nullptr;
  return guarded("edgellama_model_load", [&] {
    require(out_model != nullptr, "out_model is NULL");
    require(path != nullptr, "path is NULL");
    const edgellama_model_params p = read_params(params, edgellama_model_default_params(), "params");
    // Loading maps the file; the stages below are the parts that take time (parsing the
    // metadata, validating and viewing the tensors, building the tokenizer).
    auto progress = [&](float f) {
      if (p.progress_callback && !p.progress_callback(f, p.progress_user_data))
        throw LoadCancelled{};
    };
    auto h = std::make_unique<edgellama_model>();
    try {
      progress(0.0f);
      auto file = edgellama::GGUFFile::open(path);
      progress(0.25f);
      h->model = edgellama::Model::load(file, p.vocab_only);
      progress(0.75f);
      h->vocab = edgellama::Vocab::from_gguf(*file);
      progress(1.0f);
    } catch (const LoadCancelled&) {
      return fail(EDGELLAMA_ERR_CANCELLED, std::string(path) + ": loading cancelled by the progress callback");
    }
    const edgellama::GGUFFile& f = h->model->file();
    h->architecture = f.get_string("general.architecture", "");
    h->has_chat_template = f.find("tokenizer.chat_template") != nullptr;
    if (h->has_chat_template) h->chat_template = f.get_string("tokenizer.chat_template");
    *out_model = h.release();
    return EDGELLAMA_OK;
  });
}

void edgellama_model_free(edgellama_model* model) {
  if (model == nullptr || model->magic != kModelMagic) return;
  model->magic = kFreedMagic;
  delete model;
}

int32_t edgellama_model_n_vocab(const edgellama_model* model) {
  return guarded_int("edgellama_model_n_vocab", [&] { return int32_t(checked(model)->model->hparams().n_vocab); });
}
int32_t edgellama_model_n_ctx_train(const edgellama_model* model) {
  return guarded_int("edgellama_model_n_ctx_train",
                     [&] { return int32_t(checked(model)->model->hparams().n_ctx_train); });
}
int32_t edgellama_model_n_embd(const edgellama_model* model) {
  return guarded_int("edgellama_model_n_embd", [&] { return int32_t(checked(model)->model->hparams().n_embd); });
}
int32_t edgellama_model_n_layer(const edgellama_model* model) {
  return guarded_int("edgellama_model_n_layer", [&] { return int32_t(checked(model)->model->hparams().n_layer); });
}

const char* edgellama_model_architecture(const edgellama_model* model) {
  const char* out = nullptr;
  guarded("edgellama_model_architecture", [&] {
    out = checked(model)->architecture.c_str();
    return EDGELLAMA_OK;
  });
  return out;
}

const char* edgellama_model_chat_template(const edgellama_model* model) {
  const char* out = nullptr;
  guarded("edgellama_model_chat_template", [&] {
    const edgellama_model* m = checked(model);
    out = m->has_chat_template ? m->chat_template.c_str() : nullptr;
    return EDGELLAMA_OK;
  });
  return out;
}

edgellama_token edgellama_token_bos(const edgellama_model* model) {
  return guarded_int("edgellama_token_bos", [&] { return checked(model)->vocab->bos(); });
}
edgellama_token edgellama_token_eos(const edgellama_model* model) {
  return guarded_int("edgellama_token_eos", [&] { return checked(model)->vocab->eos(); });
}
bool edgellama_token_is_eog(const edgellama_model* model, edgellama_token token) {
  bool eog = false;
  guarded("edgellama_token_is_eog", [&] {
    eog = checked(model)->vocab->is_eog(token);
    return EDGELLAMA_OK;
  });
  return eog;
}

// ---- tokenizer ---------------------------------------------------------------------------------

edgellama_status edgellama_tokenize(const edgellama_model* model, const char* text, size_t text_len,
                                    bool add_special, bool parse_special, edgellama_token* tokens,
                                    size_t capacity, size_t* n_tokens) {
  return guarded("edgellama_tokenize", [&] {
    const edgellama_model* m = checked(model);
    require(n_tokens != nullptr, "n_tokens is NULL");
    require(text != nullptr || text_len == 0, "text is NULL");
    require(tokens != nullptr || capacity == 0, "tokens is NULL but capacity is " + std::to_string(capacity));
    const std::vector<int32_t> ids =
        m->vocab->tokenize(std::string_view(text ? text : "", text_len), add_special, parse_special);
    *n_tokens = ids.size();
    if (ids.size() > capacity)
      return fail(EDGELLAMA_ERR_BUFFER_TOO_SMALL, "edgellama_tokenize: the text has " + std::to_string(ids.size()) +
                                                      " tokens but capacity is " + std::to_string(capacity));
    std::copy(ids.begin(), ids.end(), tokens);
    return EDGELLAMA_OK;
  });
}

edgellama_status edgellama_detokenize(const edgellama_model* model, const edgellama_token* tokens, size_t n,
                                      bool special, char* text, size_t capacity, size_t* n_bytes) {
  return guarded("edgellama_detokenize", [&] {
    const edgellama_model* m = checked(model);
    require(n_bytes != nullptr, "n_bytes is NULL");
    require(tokens != nullptr || n == 0, "tokens is NULL");
    require(text != nullptr || capacity == 0, "text is NULL but capacity is " + std::to_string(capacity));
    const std::string s = m->vocab->detokenize(tokens, n, special);
    *n_bytes = s.size();
    if (s.size() + 1 > capacity)
      return fail(EDGELLAMA_ERR_BUFFER_TOO_SMALL, "edgellama_detokenize: the text needs " +
                                                      std::to_string(s.size() + 1) +
                                                      " bytes with its NUL but capacity is " + std::to_string(capacity));
    std::memcpy(text, s.data(), s.size());
    text[s.size()] = '\0';
    return EDGELLAMA_OK;
  });
}

// ---- contexts ----------------------------------------------------------------------------------

edgellama_context_params edgellama_context_default_params(void) {
  const edgellama::ContextParams core;
  edgellama_context_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.n_ctx = int32_t(core.n_ctx);
  p.n_threads = core.n_threads;
  p.n_batch = int32_t(core.n_batch);
  p.kv_f32 = core.type_k == edgellama::KVType::F32;
  p.n_seq = int32_t(core.n_seq);
  return p;
}

edgellama_status edgellama_context_create(edgellama_model* model, const edgellama_context_params* params,
                                          edgellama_context** out_context) {
  if (out_context) *out_context = nullptr;
  return guarded("edgellama_context_create", [&] {
    edgellama_model* m = checked(model);
    require(out_context != nullptr, "out_context is NULL");
    require(!m->model->vocab_only(), "the model was loaded with vocab_only: it has no weights to run");
    const edgellama_context_params p = read_params(params, edgellama_context_default_params(), "params");
    require(p.n_ctx > 0, "params->n_ctx must be > 0, got " + std::to_string(p.n_ctx));
    require(p.n_batch > 0, "params->n_batch must be > 0, got " + std::to_string(p.n_batch));
    require(p.n_threads >= 0, "params->n_threads must be >= 0, got " + std::to_string(p.n_threads));
    require(p.n_seq > 0, "params->n_seq must be > 0, got " + std::to_string(p.n_seq));
    edgellama::ContextParams cp;
    cp.n_ctx = p.n_ctx;
    cp.n_threads = p.n_threads;
    cp.n_batch = p.n_batch;
    cp.n_seq = p.n_seq;
    cp.type_k = cp.type_v = p.kv_f32 ? edgellama::KVType::F32 : edgellama::KVType::F16;
    auto h = std::make_unique<edgellama_context>();
    h->model = m->model;
    h->vocab = m->vocab;
    h->context = std::make_unique<edgellama::Context>(m->model, cp);
    *out_context = h.release();
    return EDGELLAMA_OK;
  });
}

void edgellama_context_free(edgellama_context* context) {
  if (context == nullptr || context->magic != kContextMagic) return;
  context->magic = kFreedMagic;
  delete context;
}

int32_t edgellama_context_n_ctx(const edgellama_context* context) {
  return guarded_int("edgellama_context_n_ctx", [&] { return int32_t(checked(context)->context->n_ctx()); });
}
int32_t edgellama_context_n_past(const edgellama_context* context) {
  return guarded_int("edgellama_context_n_past", [&] { return int32_t(checked(context)->context->n_past()); });
}

edgellama_status edgellama_context_truncate(edgellama_context* context, int32_t n) {
  return guarded("edgellama_context_truncate", [&] {
    edgellama_context* c = checked(context);
    require(n >= 0 && n <= c->context->n_past(),
            "n must be in 0..n_past (" + std::to_string(c->context->n_past()) + "), got " + std::to_string(n));
    c->context->truncate(n);
    c->has_logits = false;  // the logits belonged to a token that may be gone
    return EDGELLAMA_OK;
  });
}

edgellama_status edgellama_decode(edgellama_context* context, const edgellama_token* tokens, size_t n) {
  return guarded("edgellama_decode", [&] {
    edgellama_context* c = checked(context);
    require(tokens != nullptr || n == 0, "tokens is NULL");
    if (n > 0) decode_into(c, tokens, n);
    return EDGELLAMA_OK;
  });
}

edgellama_status edgellama_decode_embeddings(edgellama_context* context, const edgellama_token* tokens, size_t n,
                                            float* embeddings, size_t capacity, size_t* n_floats) {
  if (n_floats) *n_floats = 0;
  return guarded("edgellama_decode_embeddings", [&] {
    edgellama_context* c = checked(context);
    require(tokens != nullptr || n == 0, "tokens is NULL");
    const size_t n_embd = size_t(c->model->hparams().n_embd);
    // n * n_embd cannot overflow for an n that fits the context; check n first.
    require(n <= size_t(c->context->n_ctx()), std::to_string(n) + " tokens do not fit in n_ctx " +
                                                  std::to_string(c->context->n_ctx()));
    const size_t needed = n * n_embd;
    if (n_floats) *n_floats = needed;
    require(embeddings != nullptr || needed == 0, "embeddings is NULL");
    if (needed > capacity)
      return fail(EDGELLAMA_ERR_BUFFER_TOO_SMALL, "edgellama_decode_embeddings: " + std::to_string(n) +
                                                      " tokens need " + std::to_string(needed) +
                                                      " floats but capacity is " + std::to_string(capacity));
    if (n > 0) {
      c->context->decode_hidden(tokens, int64_t(n), embeddings);
      c->has_logits = false;  // the cache moved on; the old logits no longer belong to its end
    }
    return EDGELLAMA_OK;
  });
}

edgellama_status edgellama_state_size(const edgellama_context* context, size_t* out_size) {
  if (out_size) *out_size = 0;
  return guarded("edgellama_state_size", [&] {
    const edgellama_context* c = checked(context);
    require(out_size != nullptr, "out_size is NULL");
    *out_size = c->context->state_size();
    return EDGELLAMA_OK;
  });
}

edgellama_status edgellama_state_save(const edgellama_context* context, void* buffer, size_t capacity,
                                      size_t* n_bytes) {
  if (n_bytes) *n_bytes = 0;
  return guarded("edgellama_state_save", [&] {
    const edgellama_context* c = checked(context);
    const size_t needed = c->context->state_size();
    if (n_bytes) *n_bytes = needed;
    require(buffer != nullptr, "buffer is NULL");
    if (needed > capacity)
      return fail(EDGELLAMA_ERR_BUFFER_TOO_SMALL, "edgellama_state_save: the state needs " + std::to_string(needed) +
                                                      " bytes but capacity is " + std::to_string(capacity));
    c->context->save_state(static_cast<uint8_t*>(buffer), capacity);
    return EDGELLAMA_OK;
  });
}

edgellama_status edgellama_state_load(edgellama_context* context, const void* data, size_t size) {
  return guarded("edgellama_state_load", [&] {
    edgellama_context* c = checked(context);
    require(data != nullptr, "data is NULL");
    c->context->load_state(static_cast<const uint8_t*>(data), size);  // validates before it copies
    c->has_logits = false;
    return EDGELLAMA_OK;
  });
}

edgellama_status edgellama_decode_batch(edgellama_context* context, const edgellama_batch* batch, float* logits,
                                        size_t capacity, size_t* n_rows) {
  if (n_rows) *n_rows = 0;
  return guarded("edgellama_decode_batch", [&] {
    edgellama_context* c = checked(context);
    require(batch != nullptr, "batch is NULL");
    require(batch->n == 0 || (batch->tokens != nullptr && batch->seq_ids != nullptr),
            "batch->tokens and batch->seq_ids must not be NULL");
    size_t rows = 0;
    for (size_t i = 0; batch->want_logits && i < batch->n; ++i) rows += batch->want_logits[i] != 0;
    const size_t needed = rows * size_t(c->model->hparams().n_vocab);
    if (n_rows) *n_rows = rows;
    require(logits != nullptr || needed == 0, "logits is NULL but " + std::to_string(rows) + " rows want logits");
    if (needed > capacity)
      return fail(EDGELLAMA_ERR_BUFFER_TOO_SMALL, "edgellama_decode_batch: " + std::to_string(rows) +
                                                      " rows of logits need " + std::to_string(needed) +
                                                      " floats but capacity is " + std::to_string(capacity));
    edgellama::BatchView view;
    view.tokens = batch->tokens;
    view.seq_ids = batch->seq_ids;
    view.want_logits = batch->want_logits;
    view.n = int64_t(batch->n);
    if (view.n > 0) c->context->decode_batch(view, logits);
    return EDGELLAMA_OK;
  });
}

int32_t edgellama_context_n_past_seq(const edgellama_context* context, int32_t seq) {
  return guarded_int("edgellama_context_n_past_seq", [&] {
    const edgellama_context* c = checked(context);
    require(seq >= 0 && seq < c->context->n_seq(), "seq must be in 0..n_seq-1 (n_seq = " +
                                                       std::to_string(c->context->n_seq()) + "), got " +
                                                       std::to_string(seq));
    return int32_t(c->context->n_past_seq(seq));
  });
}

edgellama_status edgellama_context_truncate_seq(edgellama_context* context, int32_t seq, int32_t n) {
  return guarded("edgellama_context_truncate_seq", [&] {
    edgellama_context* c = checked(context);
    require(seq >= 0 && seq < c->context->n_seq(), "seq must be in 0..n_seq-1 (n_seq = " +
                                                       std::to_string(c->context->n_seq()) + "), got " +
                                                       std::to_string(seq));
    const int64_t past = c->context->n_past_seq(seq);
    require(n >= 0 && n <= past, "n must be in 0..n_past of sequence " + std::to_string(seq) + " (" +
                                     std::to_string(past) + "), got " + std::to_string(n));
    c->context->truncate_seq(seq, n);
    if (seq == 0) c->has_logits = false;
    return EDGELLAMA_OK;
  });
}

const float* edgellama_get_logits(const edgellama_context* context) {
  const float* out = nullptr;
  guarded("edgellama_get_logits", [&] {
    const edgellama_context* c = checked(context);
    require(c->has_logits, "no logits yet: call edgellama_decode first");
    out = c->logits.data();
    return EDGELLAMA_OK;
  });
  return out;
}

// ---- sampling ----------------------------------------------------------------------------------

edgellama_sampler_params edgellama_sampler_default_params(void) {
  const edgellama::SamplerParams core;
  edgellama_sampler_params p;
  std::memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  p.temperature = core.temperature;
  p.top_k = core.top_k;
  p.top_p = core.top_p;
  p.min_p = core.min_p;
  p.typical_p = core.typical_p;
  p.repeat_penalty = core.repeat_penalty;
  p.repeat_last_n = core.repeat_last_n;
  p.frequency_penalty = core.frequency_penalty;
  p.presence_penalty = core.presence_penalty;
  p.seed = core.seed;
  return p;
}

edgellama_status edgellama_sampler_create(const edgellama_sampler_params* params, edgellama_sampler** out_sampler) {
  if (out_sampler) *out_sampler = nullptr;
  return guarded("edgellama_sampler_create", [&] {
    require(out_sampler != nullptr, "out_sampler is NULL");
    const edgellama_sampler_params p = read_params(params, edgellama_sampler_default_params(), "params");
    edgellama::SamplerParams sp;
    sp.temperature = p.temperature;
    sp.top_k = p.top_k;
    sp.top_p = p.top_p;
    sp.min_p = p.min_p;
    sp.typical_p = p.typical_p;
    sp.repeat_penalty = p.repeat_penalty;
    sp.repeat_last_n = p.repeat_last_n;
    sp.frequency_penalty = p.frequency_penalty;
    sp.presence_penalty = p.presence_penalty;
    sp.seed = p.seed;
    auto h = std::make_unique<edgellama_sampler>();
    h->sampler = std::make_unique<edgellama::Sampler>(sp);  // validates the parameters
    *out_sampler = h.release();
    return EDGELLAMA_OK;
  });
}

void edgellama_sampler_free(edgellama_sampler* sampler) {
  if (sampler == nullptr || sampler->magic != kSamplerMagic) return;
  sampler->magic = kFreedMagic;
  delete sampler;
}

edgellama_status edgellama_sampler_sample(edgellama_sampler* sampler, const float* logits, int32_t n_vocab,
                                          edgellama_token* out_token) {
  return guarded("edgellama_sampler_sample", [&] {
    edgellama_sampler* s = checked(sampler);
    require(logits != nullptr, "logits is NULL");
    require(out_token != nullptr, "out_token is NULL");
    *out_token = s->sampler->sample(logits, n_vocab);
    return EDGELLAMA_OK;
  });
}

edgellama_status edgellama_sampler_accept(edgellama_sampler* sampler, edgellama_token token) {
  return guarded("edgellama_sampler_accept", [&] {
    checked(sampler)->sampler->accept(token);
    return EDGELLAMA_OK;
  });
}

edgellama_status edgellama_sampler_reset(edgellama_sampler* sampler) {
  return guarded("edgellama_sampler_reset", [&] {
    checked(sampler)->sampler->reset();
    return EDGELLAMA_OK;
  });
}

// ---- streaming generation ----------------------------------------------------------------------

edgellama_status edgellama_generate(edgellama_context* context, edgellama_sampler* sampler,
                                    const edgellama_token* prompt, size_t n_prompt, int32_t max_tokens,
                                    edgellama_token_callback on_token, void* user_data, int32_t* n_generated) {
  if (n_generated) *n_generated = 0;
  return guarded("edgellama_generate", [&] {
    edgellama_context* c = checked(context);
    edgellama_sampler* s = checked(sampler);
    require(prompt != nullptr && n_prompt > 0, "the prompt is empty (pass at least one token)");
    require(max_tokens >= 0, "max_tokens must be >= 0, got " + std::to_string(max_tokens));
    const edgellama::Vocab& vocab = *c->vocab;
    const int32_t n_vocab = int32_t(c->model->hparams().n_vocab);

    decode_into(c, prompt, n_prompt);
    for (size_t i = 0; i < n_prompt; ++i) s->sampler->accept(prompt[i]);
    // Files often pad the embedding matrix with rows the tokenizer has no text for: never sample
    // those (as the Python generation loop does).
    const int32_t n_text = std::min(n_vocab, vocab.n_tokens());
    std::vector<float> masked;

    int32_t produced = 0;
    int32_t prev = prompt[n_prompt - 1];
    while (produced < max_tokens) {
      const float* logits = c->logits.data();
      if (n_text < n_vocab) {
        masked.assign(logits, logits + n_vocab);
        std::fill(masked.begin() + n_text, masked.end(), -std::numeric_limits<float>::infinity());
        logits = masked.data();
      }
      const int32_t token = s->sampler->sample(logits, n_vocab);
      if (vocab.is_eog(token)) break;
      s->sampler->accept(token);
      ++produced;
      if (n_generated) *n_generated = produced;
      const std::string piece = piece_after(vocab, prev, token);
      if (on_token && !on_token(token, piece.data(), piece.size(), user_data)) break;
      if (produced == max_tokens || c->context->n_past() >= c->context->n_ctx()) break;
      decode_into(c, &token, 1);
      prev = token;
    }
    return EDGELLAMA_OK;
  });
}

}  // extern "C"
