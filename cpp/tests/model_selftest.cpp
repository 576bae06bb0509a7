// Model-level check of a kernel set: run a model's forward pass on a fixed token sequence with the
// dispatched ISA (EDGELLAMA_ISA picks it) and write every position's logits; then compare two such
// runs. Used by `scripts/test_neon_qemu.sh --models` (NEON vs scalar under qemu).
//
//   model_selftest run MODEL.gguf OUT.f32 [n_tokens]          -> writes n_tokens * n_vocab floats
//   model_selftest compare REF.f32 TEST.f32 n_vocab [--kl MAX] -> exit 0 if they agree, 1 if not
//
// Agreement, default (small random models of a few layers): the two ISAs compute the same integer
// dot products but round the float parts differently, and a last-bit difference in an activation
// can move one int8 activation quantum (1/127 of the block's max) in the next layer; through a few
// layers that stays far below 1e-2 * max|logit| (measured: <= 0.3 of that, the same for avx2 vs
// scalar on x86), while a wrong kernel changes logits by O(max|logit|). So: max |diff| <=
// 1e-2 * max(1, max|ref|), and the same argmax at every position whose top-2 gap exceeds twice that.
// --kl MAX (real models, tens of layers, where such flips compound: SmolLM2 neon vs scalar and avx2
// vs scalar both differ by ~0.5 in some logit): mean KL(ref || test) over positions <= MAX instead
// (measured 9e-4 for both; the project's fast-vs-exact bound is 3e-3; a broken kernel gives O(1)).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "edgellama/context.h"
#include "edgellama/errors.h"
#include "edgellama/kernels.h"
#include "edgellama/model.h"

using namespace edgellama;

namespace {

int run(const char* model_path, const char* out_path, int64_t n_tokens) {
  std::shared_ptr<Model> model = Model::load(model_path);
  const int64_t n_vocab = model->hparams().n_vocab;
  ContextParams p;
  p.n_ctx = n_tokens + 8;
  p.n_threads = 1;
  p.n_batch = 8;  // several prompt chunks: exercises the KV cache across chunks too
  Context ctx(model, p);
  std::vector<int32_t> tokens(static_cast<size_t>(n_tokens));
  for (int64_t i = 0; i < n_tokens; ++i) tokens[size_t(i)] = int32_t((7 * i + 3) % n_vocab);
  std::vector<float> logits(static_cast<size_t>(n_tokens * n_vocab));
  ctx.decode(tokens.data(), n_tokens, logits.data(), true);
  FILE* f = std::fopen(out_path, "wb");
  if (!f || std::fwrite(logits.data(), sizeof(float), logits.size(), f) != logits.size() || std::fclose(f) != 0) {
    std::fprintf(stderr, "cannot write %s\n", out_path);
    return 2;
  }
  std::printf("%s: isa %s, %lld tokens x %lld vocab\n", model_path, active_kernels().name, (long long)n_tokens,
              (long long)n_vocab);
  return 0;
}

std::vector<float> read_f32(const char* path) {
  std::vector<float> v;
  FILE* f = std::fopen(path, "rb");
  if (!f) return v;
  float buf[1024];
  size_t k;
  while ((k = std::fread(buf, sizeof(float), 1024, f)) > 0) v.insert(v.end(), buf, buf + k);
  std::fclose(f);
  return v;
}

double kl_row(const float* a, const float* b, size_t n) {  // KL(softmax(a) || softmax(b))
  double ma = -INFINITY, mb = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    ma = std::fmax(ma, a[i]);
    mb = std::fmax(mb, b[i]);
  }
  double za = 0.0, zb = 0.0;
  for (size_t i = 0; i < n; ++i) {
    za += std::exp(double(a[i]) - ma);
    zb += std::exp(double(b[i]) - mb);
  }
  double kl = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double lp = double(a[i]) - ma - std::log(za), lq = double(b[i]) - mb - std::log(zb);
    kl += std::exp(lp) * (lp - lq);
  }
  return kl;
}

int compare(const char* ref_path, const char* test_path, int64_t n_vocab, double kl_max) {
  const std::vector<float> a = read_f32(ref_path), b = read_f32(test_path);
  if (a.empty() || a.size() != b.size() || n_vocab <= 0 || a.size() % size_t(n_vocab) != 0) {
    std::fprintf(stderr, "compare: unreadable or mismatched logits files (%zu vs %zu floats)\n", a.size(), b.size());
    return 2;
  }
  double amax = 1.0, dmax = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) {
      std::fprintf(stderr, "compare: non-finite logit at %zu\n", i);
      return 1;
    }
    amax = std::fmax(amax, std::fabs(a[i]));
    dmax = std::fmax(dmax, std::fabs(double(a[i]) - double(b[i])));
  }
  const double tol = 1e-2 * amax;
  int bad = 0;
  const size_t n_pos = a.size() / size_t(n_vocab);
  double kl = 0.0;
  for (size_t t = 0; t < n_pos; ++t) kl += kl_row(a.data() + t * size_t(n_vocab), b.data() + t * size_t(n_vocab), size_t(n_vocab));
  kl /= double(n_pos);
  if (kl_max > 0) {
    std::printf("compare: %zu positions, mean KL(ref || test) %.3g (max %.3g), max |diff| %.3g\n", n_pos, kl, kl_max,
                dmax);
    if (!(kl <= kl_max)) {
      std::fprintf(stderr, "compare: mean KL %.3g > %.3g\n", kl, kl_max);
      return 1;
    }
    return 0;
  }
  for (size_t t = 0; t < n_pos; ++t) {
    const float* ra = a.data() + t * size_t(n_vocab);
    const float* rb = b.data() + t * size_t(n_vocab);
    size_t ia = 0, ib = 0;
    for (size_t i = 1; i < size_t(n_vocab); ++i) {
      if (ra[i] > ra[ia]) ia = i;
      if (rb[i] > rb[ib]) ib = i;
    }
    double second = -INFINITY;
    for (size_t i = 0; i < size_t(n_vocab); ++i)
      if (i != ia) second = std::fmax(second, ra[i]);
    if (ia != ib && double(ra[ia]) - second > 2 * tol) {
      std::fprintf(stderr, "compare: position %zu argmax %zu (ref) vs %zu (test)\n", t, ia, ib);
      ++bad;
    }
  }
  std::printf("compare: %zu positions, max |diff| %.3g (tolerance %.3g, max |logit| %.3g), mean KL %.3g\n", n_pos,
              dmax, tol, amax, kl);
  if (dmax > tol) {
    std::fprintf(stderr, "compare: logits differ by %.3g > %.3g\n", dmax, tol);
    ++bad;
  }
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 4 && std::strcmp(argv[1], "run") == 0)
      return run(argv[2], argv[3], argc >= 5 ? std::atoll(argv[4]) : 12);
    if (argc == 5 && std::strcmp(argv[1], "compare") == 0) return compare(argv[2], argv[3], std::atoll(argv[4]), 0.0);
    if (argc == 7 && std::strcmp(argv[1], "compare") == 0 && std::strcmp(argv[5], "--kl") == 0)
      return compare(argv[2], argv[3], std::atoll(argv[4]), std::atof(argv[6]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  std::fprintf(stderr, "usage: %s run MODEL.gguf OUT.f32 [n_tokens] | compare REF.f32 TEST.f32 n_vocab [--kl MAX]\n", argv[0]);
  return 2;
}
