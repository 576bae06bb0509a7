/* edgellama.h: the stable C API of edgellama (libedgellama).
 *
 * For programs in C, C++, C#, Swift, Rust, ... that embed edgellama. A thin layer over the C++ core
 * (cpp/include/edgellama/ *.h); the Python package uses the C++ core directly, not this API.
 *
 * Conventions
 *  - Handles are opaque pointers; create with *_create / *_load, release with *_free (NULL is a
 *    no-op). A context keeps its model alive: edgellama_model_free may be called before the
 *    contexts made from it are freed.
 *  - Functions that can fail return an edgellama_status (EDGELLAMA_OK = 0). On failure,
 *    edgellama_last_error() returns a message for the calling thread (naming the file or argument
 *    and the reason), valid until that thread's next edgellama call. No C++ exception ever crosses
 *    this boundary, and bad arguments (NULL, a handle of the wrong kind, a token id out of range,
 *    a buffer too small) are reported, never a crash.
 *  - Strings are UTF-8. Output buffers are caller-provided: a function that fills one takes its
 *    capacity and reports the size it needs; when the capacity is too small it returns
 *    EDGELLAMA_ERR_BUFFER_TOO_SMALL, writes nothing, and still reports the needed size.
 *  - Parameter structs start with struct_size (sizeof as the caller compiled it): get them from
 *    the *_default_params() functions and change what you need. Later versions may append fields;
 *    a library reads only the fields the caller's struct_size covers (defaults for the rest).
 *  - Threads: a model (and its tokenizer) may be used from any number of threads at once. A
 *    context or a sampler must be used by one thread at a time; several contexts of one model
 *    may run in parallel, each on its own thread.
 *
 * Not (yet) in this API: chat-template rendering (edgellama renders the GGUF's Jinja templates in
 * Python with jinja2; edgellama_model_chat_template() returns the template text so a host can
 * render it).
 */
#ifndef EDGELLAMA_H
#define EDGELLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(EDGELLAMA_BUILDING_LIBRARY)
#define EDGELLAMA_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(EDGELLAMA_STATIC)
#define EDGELLAMA_API __declspec(dllimport)
#elif defined(__GNUC__) || defined(__clang__)
#define EDGELLAMA_API __attribute__((visibility("default")))
#else
#define EDGELLAMA_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ABI number: bumped on any incompatible change of a function signature or struct layout (appending
 * a field to a params struct is compatible). Compare with edgellama_abi_version() at run time. */
#define EDGELLAMA_ABI_VERSION 1
#define EDGELLAMA_VERSION_STRING "0.1.0"

typedef int32_t edgellama_token;

typedef struct edgellama_model edgellama_model;     /* weights + tokenizer, immutable, shareable */
typedef struct edgellama_context edgellama_context; /* KV cache + threads: one per conversation */
typedef struct edgellama_sampler edgellama_sampler; /* logits -> token (temperature, top-k, ...) */

typedef enum edgellama_status {
  EDGELLAMA_OK = 0,
  EDGELLAMA_ERR_INVALID_ARGUMENT = 1, /* NULL / wrong handle / value out of range / context full */
  EDGELLAMA_ERR_FILE = 2,             /* the OS refused: missing or unreadable file, mmap failed */
  EDGELLAMA_ERR_FORMAT = 3,           /* malformed GGUF file */
  EDGELLAMA_ERR_UNSUPPORTED = 4,      /* well-formed but unsupported (architecture, tensor type) */
  EDGELLAMA_ERR_BUFFER_TOO_SMALL = 5, /* an output buffer's capacity is below the needed size */
  EDGELLAMA_ERR_CANCELLED = 6,        /* a progress callback asked to stop */
  EDGELLAMA_ERR_OUT_OF_MEMORY = 7,
  EDGELLAMA_ERR_INTERNAL = 8          /* a bug: please report the message */
} edgellama_status;

/* ---- version and errors ---------------------------------------------------------------------- */

EDGELLAMA_API const char* edgellama_version(void); /* "MAJOR.MINOR.PATCH" */
EDGELLAMA_API int edgellama_abi_version(void);     /* EDGELLAMA_ABI_VERSION of the library */
/* The message of the calling thread's last failure ("" if none). */
EDGELLAMA_API const char* edgellama_last_error(void);
/* A fixed English name of a status ("ok", "invalid argument", ...). */
EDGELLAMA_API const char* edgellama_status_string(edgellama_status status);

/* ---- models ---------------------------------------------------------------------------------- */

/* Called during loading with progress in [0, 1]; return false to cancel (the load then fails with
 * EDGELLAMA_ERR_CANCELLED). Loading maps the file, so it reports a few stages, not bytes. */
typedef bool (*edgellama_progress_callback)(float progress, void* user_data);

typedef struct edgellama_model_params {
  size_t struct_size;    /* = sizeof(edgellama_model_params) */
  bool vocab_only;       /* tokenizer only: no weights (contexts cannot be created) */
  edgellama_progress_callback progress_callback; /* may be NULL */
  void* progress_user_data;
} edgellama_model_params;

EDGELLAMA_API edgellama_model_params edgellama_model_default_params(void);
/* params may be NULL (defaults). On success *out_model is a new model; on failure it is NULL. */
EDGELLAMA_API edgellama_status edgellama_model_load(const char* path, const edgellama_model_params* params,
                                                    edgellama_model** out_model);
EDGELLAMA_API void edgellama_model_free(edgellama_model* model);

/* Model information. Integer getters return -1 (and set the last error) for an invalid handle. */
EDGELLAMA_API int32_t edgellama_model_n_vocab(const edgellama_model* model); /* logits per token */
EDGELLAMA_API int32_t edgellama_model_n_ctx_train(const edgellama_model* model);
EDGELLAMA_API int32_t edgellama_model_n_embd(const edgellama_model* model);
EDGELLAMA_API int32_t edgellama_model_n_layer(const edgellama_model* model);
/* general.architecture ("llama", ...); NULL for an invalid handle. Owned by the model. */
EDGELLAMA_API const char* edgellama_model_architecture(const edgellama_model* model);
/* tokenizer.chat_template (a Jinja template), or NULL when the file has none. Owned by the model. */
EDGELLAMA_API const char* edgellama_model_chat_template(const edgellama_model* model);

/* Special tokens (-1 when the vocabulary has none) and the end-of-generation test (eos, eot,
 * <|im_end|>, <|eot_id|>, ...). */
EDGELLAMA_API edgellama_token edgellama_token_bos(const edgellama_model* model);
EDGELLAMA_API edgellama_token edgellama_token_eos(const edgellama_model* model);
EDGELLAMA_API bool edgellama_token_is_eog(const edgellama_model* model, edgellama_token token);

/* ---- tokenizer ------------------------------------------------------------------------------- */

/* text[0..text_len) (UTF-8) -> token ids. add_special: add BOS/EOS as the file asks; parse_special:
 * recognise control tokens such as <|im_start|> written in the text. *n_tokens receives the count
 * (also when the capacity is too small). */
EDGELLAMA_API edgellama_status edgellama_tokenize(const edgellama_model* model, const char* text, size_t text_len,
                                                  bool add_special, bool parse_special, edgellama_token* tokens,
                                                  size_t capacity, size_t* n_tokens);

/* Token ids -> bytes (UTF-8; a single token may hold part of a character). special: render control
 * tokens as their text (else they render as nothing). Writes the bytes and a terminating NUL, so
 * capacity must be at least *n_bytes + 1; *n_bytes receives the length without the NUL. */
EDGELLAMA_API edgellama_status edgellama_detokenize(const edgellama_model* model, const edgellama_token* tokens,
                                                    size_t n_tokens, bool special, char* text, size_t capacity,
                                                    size_t* n_bytes);

/* ---- contexts -------------------------------------------------------------------------------- */

typedef struct edgellama_context_params {
  size_t struct_size; /* = sizeof(edgellama_context_params) */
  int32_t n_ctx;      /* positions in the KV cache (default 2048) */
  int32_t n_threads;  /* 0 = physical cores */
  int32_t n_batch;    /* tokens per forward chunk when evaluating a prompt (default 512) */
  bool kv_f32;        /* KV cache in float32 instead of float16 */
  int32_t n_seq;      /* sequences (default 1), each with its own n_ctx positions: edgellama_decode_batch */
} edgellama_context_params;

EDGELLAMA_API edgellama_context_params edgellama_context_default_params(void);
EDGELLAMA_API edgellama_status edgellama_context_create(edgellama_model* model, const edgellama_context_params* params,
                                                        edgellama_context** out_context);
EDGELLAMA_API void edgellama_context_free(edgellama_context* context);
EDGELLAMA_API int32_t edgellama_context_n_ctx(const edgellama_context* context);
/* Tokens in the KV cache (the position of the next decoded token); -1 for an invalid handle. */
EDGELLAMA_API int32_t edgellama_context_n_past(const edgellama_context* context);
/* Forget the cache from position n on (0 <= n <= n_past); 0 starts a new conversation. Fails (state
 * unchanged) for a model with sliding-window layers when their KV ring no longer holds the window
 * before n (a rollback of up to n_batch + 1 positions always works): truncate to 0 and re-evaluate. */
EDGELLAMA_API edgellama_status edgellama_context_truncate(edgellama_context* context, int32_t n);

/* Evaluate tokens[0..n) at positions n_past.. and append them to the KV cache; afterwards
 * edgellama_get_logits returns the logits after the last of them. On failure (a token id outside
 * the vocabulary, not enough room left in the context) the cache is unchanged. */
EDGELLAMA_API edgellama_status edgellama_decode(edgellama_context* context, const edgellama_token* tokens, size_t n);
/* n_vocab logits of the last decoded token, owned by the context and valid until its next decode;
 * NULL before the first decode or for an invalid handle. */
EDGELLAMA_API const float* edgellama_get_logits(const edgellama_context* context);

/* Several sequences in one forward pass (a server's parallel conversations): row i appends
 * tokens[i] to sequence seq_ids[i] (rows of a sequence continue it in order; sequences may
 * interleave). The weights are read once for all rows, and each row's result is the same as when
 * its sequence is decoded alone. Sequence 0 is the one edgellama_decode and edgellama_generate use. */
typedef struct edgellama_batch {
  const edgellama_token* tokens; /* [n] */
  const int32_t* seq_ids;        /* [n] in 0..n_seq-1 */
  const uint8_t* want_logits;    /* [n] nonzero: write this row's logits; NULL: no logits */
  size_t n;
} edgellama_batch;

/* logits receives n_vocab floats per row with want_logits set, in row order; capacity is in floats.
 * *n_rows (may be NULL) receives the number of such rows. On failure the cache is unchanged. */
EDGELLAMA_API edgellama_status edgellama_decode_batch(edgellama_context* context, const edgellama_batch* batch,
                                                      float* logits, size_t capacity, size_t* n_rows);
/* Tokens in sequence seq's cache; -1 for an invalid handle or sequence. */
EDGELLAMA_API int32_t edgellama_context_n_past_seq(const edgellama_context* context, int32_t seq);
/* Forget sequence seq's cache from position n on (0 <= n <= its n_past); same ring limit as above. */
EDGELLAMA_API edgellama_status edgellama_context_truncate_seq(edgellama_context* context, int32_t seq, int32_t n);

/* ---- embeddings ------------------------------------------------------------------------------ */
/* Evaluate tokens[0..n) like edgellama_decode (they are appended to the KV cache, so truncate to 0
 * first for an independent text), but return the final-norm hidden states instead of logits: n rows
 * of edgellama_model_n_embd floats, in token order, into embeddings (capacity in floats). Pooling
 * is the caller's choice (mean of the rows, or the last row). *n_floats (may be NULL) receives
 * n * n_embd, also when the capacity is too small (then nothing is evaluated). Afterwards
 * edgellama_get_logits returns NULL until the next edgellama_decode. On failure the cache is
 * unchanged. */
EDGELLAMA_API edgellama_status edgellama_decode_embeddings(edgellama_context* context, const edgellama_token* tokens,
                                                           size_t n, float* embeddings, size_t capacity,
                                                           size_t* n_floats);
/* ---- context state --------------------------------------------------------------------------- */
/* The KV cache of sequence 0 (the conversation so far, n_past tokens) as bytes, to resume it later
 * in this or another context of the same model with the same kv_f32 and n_ctx >= its n_past (a
 * prompt cache). The size grows with n_past, not n_ctx. Bytes are in this machine's byte order and
 * float formats: not a portable file format. */
EDGELLAMA_API edgellama_status edgellama_state_size(const edgellama_context* context, size_t* out_size);
/* Writes the state into buffer[0..capacity); *n_bytes (may be NULL) receives its size (also when
 * the capacity is too small: then nothing is written). */
EDGELLAMA_API edgellama_status edgellama_state_save(const edgellama_context* context, void* buffer, size_t capacity,
                                                    size_t* n_bytes);
/* Replaces sequence 0's cache with a saved state: afterwards n_past is the state's, and decoding
 * continues exactly as in the context that saved it. edgellama_get_logits returns NULL until the
 * next decode (logits are not part of the state: decode the last token again, or the next one).
 * A state of another model shape or KV type, a truncated or corrupted one, or one longer than
 * n_ctx is EDGELLAMA_ERR_INVALID_ARGUMENT and leaves the context unchanged. */
EDGELLAMA_API edgellama_status edgellama_state_load(edgellama_context* context, const void* data, size_t size);
/* ---- sampling -------------------------------------------------------------------------------- */

/* The chain, applied in llama.cpp's order: penalties (over the last repeat_last_n accepted tokens)
 * -> top-k -> typical -> top-p -> min-p -> temperature -> draw. temperature <= 0 is greedy
 * (argmax, ties to the lowest id). top_k <= 0, top_p >= 1, min_p <= 0, typical_p >= 1 disable
 * their stage. The same seed gives the same tokens on every platform, and the same tokens as
 * llama.cpp's dist sampler from the same logits (std::mt19937, one uniform double per token). */
typedef struct edgellama_sampler_params {
  size_t struct_size; /* = sizeof(edgellama_sampler_params) */
  float temperature;  /* 0.8 */
  int32_t top_k;      /* 40 */
  float top_p;        /* 0.95 */
  float min_p;        /* 0.05 */
  float typical_p;    /* 1.0 */
  float repeat_penalty;    /* 1.0 (off); > 0 */
  int32_t repeat_last_n;   /* 64; 0 = no penalties */
  float frequency_penalty; /* 0 */
  float presence_penalty;  /* 0 */
  uint64_t seed;           /* 0xFFFFFFFF; used as given, mod 2^32 (std::mt19937's seed) */
} edgellama_sampler_params;

EDGELLAMA_API edgellama_sampler_params edgellama_sampler_default_params(void);
EDGELLAMA_API edgellama_status edgellama_sampler_create(const edgellama_sampler_params* params,
                                                        edgellama_sampler** out_sampler);
EDGELLAMA_API void edgellama_sampler_free(edgellama_sampler* sampler);
/* Pick a token from logits[0..n_vocab) (not modified). Does not record it: call accept. */
EDGELLAMA_API edgellama_status edgellama_sampler_sample(edgellama_sampler* sampler, const float* logits,
                                                        int32_t n_vocab, edgellama_token* out_token);
/* Record a token (prompt or generated) for the repetition penalties. */
EDGELLAMA_API edgellama_status edgellama_sampler_accept(edgellama_sampler* sampler, edgellama_token token);
/* Clear the token history and re-seed with the sampler's seed. */
EDGELLAMA_API edgellama_status edgellama_sampler_reset(edgellama_sampler* sampler);

/* ---- streaming generation -------------------------------------------------------------------- */

/* Called once per generated token with the bytes it adds to the text (piece[0..piece_len), not
 * NUL-terminated; may be part of a UTF-8 character, or empty). Return false to stop. */
typedef bool (*edgellama_token_callback)(edgellama_token token, const char* piece, size_t piece_len,
                                         void* user_data);

/* Append prompt[0..n_prompt) (n_prompt >= 1) to the context, accept the prompt into the sampler
 * (for the penalties), then sample up to max_tokens tokens, calling on_token for each. Generation ends before an
 * end-of-generation token (not passed to on_token), after max_tokens, when on_token returns false,
 * or when the context is full. On return the context holds the prompt and every generated token
 * but the last (to continue a conversation, pass that token first in the next prompt). n_generated (may be
 * NULL) receives the number of tokens passed to on_token (which may be NULL: then they are only
 * counted; the context and sampler still advance). */
EDGELLAMA_API edgellama_status edgellama_generate(edgellama_context* context, edgellama_sampler* sampler,
                                                  const edgellama_token* prompt, size_t n_prompt,
                                                  int32_t max_tokens, edgellama_token_callback on_token,
                                                  void* user_data, int32_t* n_generated);

#ifdef __cplusplus
}
#endif

#endif /* EDGELLAMA_H */
