/* Stream a chat model's answer to one message, token by token, through the edgellama C API.
 *   chat MODEL.gguf "message" [max_tokens]
 * Greedy decoding. edgellama renders Jinja chat templates in Python only, so this example writes
 * the ChatML turn layout itself when the model's template uses it (SmolLM2, Qwen, ...). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgellama.h"

static int fail(const char* what) {
  fprintf(stderr, "chat: %s: %s\n", what, edgellama_last_error());
  return 1;
}

static bool print_piece(edgellama_token token, const char* piece, size_t len, void* user_data) {
  (void)token;
  (void)user_data;
  fwrite(piece, 1, len, stdout);
  fflush(stdout); /* show each token as soon as it is generated */
  return true;    /* false would stop generation here */
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL.gguf MESSAGE [MAX_TOKENS]\n", argv[0]);
    return 2;
  }
  const int max_tokens = argc > 3 ? atoi(argv[3]) : 128;
  int rc = 1;
  edgellama_model* model = NULL;
  edgellama_context* ctx = NULL;
  edgellama_sampler* sampler = NULL;
  char* prompt = NULL;
  edgellama_token* tokens = NULL;
  size_t n_tokens = 0;

  if (edgellama_abi_version() != EDGELLAMA_ABI_VERSION) { /* header and library must agree */
    fprintf(stderr, "chat: libedgellama %s has ABI %d, expected %d\n", edgellama_version(),
            edgellama_abi_version(), EDGELLAMA_ABI_VERSION);
    return 1;
  }
  if (edgellama_model_load(argv[1], NULL, &model) != EDGELLAMA_OK) return fail("loading the model");

  const char* tmpl = edgellama_model_chat_template(model);
  const char* fmt = tmpl && strstr(tmpl, "<|im_start|>")
                        ? "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n" : "%s";
  const size_t size = strlen(fmt) + strlen(argv[2]) + 1;
  prompt = malloc(size);
  if (!prompt) goto done;
  snprintf(prompt, size, fmt, argv[2]);

  /* First call asks for the token count, the second fills a buffer of that size. */
  if (edgellama_tokenize(model, prompt, strlen(prompt), true, true, NULL, 0, &n_tokens) !=
      EDGELLAMA_ERR_BUFFER_TOO_SMALL) { fail("tokenizing"); goto done; }
  tokens = malloc(n_tokens * sizeof *tokens);
  if (!tokens || edgellama_tokenize(model, prompt, strlen(prompt), true, true, tokens, n_tokens, &n_tokens))
    { fail("tokenizing"); goto done; }

  edgellama_context_params cparams = edgellama_context_default_params();
  cparams.n_ctx = 1024;
  if (edgellama_context_create(model, &cparams, &ctx) != EDGELLAMA_OK) { fail("creating a context"); goto done; }

  edgellama_sampler_params sparams = edgellama_sampler_default_params();
  sparams.temperature = 0.0f; /* greedy */
  if (edgellama_sampler_create(&sparams, &sampler) != EDGELLAMA_OK) { fail("creating a sampler"); goto done; }

  if (edgellama_generate(ctx, sampler, tokens, n_tokens, max_tokens, print_piece, NULL, NULL) != EDGELLAMA_OK)
    { fail("generating"); goto done; }
  putchar('\n');
  rc = 0;
done:
  edgellama_sampler_free(sampler);
  edgellama_context_free(ctx);
  edgellama_model_free(model);
  free(tokens);
  free(prompt);
  return rc;
}
