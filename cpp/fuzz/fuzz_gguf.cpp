// libFuzzer harness: arbitrary bytes as a GGUF file, through everything a downloaded file reaches.
//
//   1. GGUFFile::from_bytes (header, metadata, tensor infos, data bounds);
//   2. every metadata value through every accessor, every tensor's first and last data byte
//      (ASan checks they are inside the buffer);
//   3. Vocab::from_gguf, then tokenize / detokenize / token_to_piece of bytes taken from the input;
//   4. Model::load (full and vocab_only) through a memfd path, and, when it loads, a Context with a
//      tiny n_ctx decoding two tokens.
//
// The contract checked: the only exceptions are edgellama::Error subclasses (which the bindings
// map to ValueError / OSError). Anything else (std::out_of_range, std::bad_alloc, a crash, an ASan
// or UBSan report) escapes and libFuzzer records it as a finding.
//
// Build and run with scripts/fuzz.sh.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "edgellama/context.h"
#include "edgellama/errors.h"
#include "edgellama/gguf.h"
#include "edgellama/model.h"
#include "edgellama/vocab.h"

using namespace edgellama;

namespace {

volatile uint64_t g_sink;  // keeps reads from being optimized away

void touch(const uint8_t* p, size_t n) {
  if (n == 0) return;
  g_sink += p[0];
  g_sink += p[n - 1];
}

void exercise_value(const GGUFValue& v, const std::string& what, int depth) {
  // scalar accessors: each either returns or throws FormatError
  try { g_sink += uint64_t(v.as_int(what)); } catch (const FormatError&) {}
  try { g_sink += v.as_uint(what); } catch (const FormatError&) {}
  try { g_sink += uint64_t(v.as_float(what) != 0); } catch (const FormatError&) {}
  try { g_sink += v.as_bool(what); } catch (const FormatError&) {}
  try { g_sink += v.as_string(what).size(); } catch (const FormatError&) {}
  if (!v.is_array()) return;
  const size_t n = v.array_size();
  // first, last and one past the end of every array through every element accessor
  const size_t idx[] = {0, n / 2, n ? n - 1 : 0, n};
  for (size_t i : idx) {
    try { g_sink += uint64_t(v.int_at(i, what)); } catch (const FormatError&) {}
    try { g_sink += v.uint64_at(i, what); } catch (const FormatError&) {}
    try { g_sink += uint64_t(v.float_at(i, what) != 0); } catch (const FormatError&) {}
    if (i < n && v.array_type == GGUFType::STRING) {
      const std::string_view s = v.string_at(i);
      touch(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    }
    if (i < n && v.array_type == GGUFType::ARRAY && depth < 16) exercise_value(v.array_at(i), what, depth + 1);
  }
}

void exercise_file(const GGUFFile& f) {
  for (const auto& kv : f.metadata()) exercise_value(kv.second, kv.first, 0);
  for (const GGUFTensorInfo& t : f.tensors()) {
    touch(t.data, t.nbytes);
    g_sink += uint64_t(t.n_elements());
    if (f.find_tensor(t.name) == nullptr) __builtin_trap();  // every listed tensor is findable
  }
  try { g_sink += uint64_t(f.get_int("general.alignment", 0)); } catch (const FormatError&) {}
  try { g_sink += f.get_string("general.architecture", "").size(); } catch (const FormatError&) {}
}

void exercise_vocab(const Vocab& v, const uint8_t* data, size_t size) {
  // text: the last (up to) 256 bytes of the input, which the fuzzer controls independently of the
  // header; invalid UTF-8 must be an ArgumentError
  const size_t tn = size < 256 ? size : 256;
  const std::string_view text(reinterpret_cast<const char*>(data + size - tn), tn);
  for (int flags = 0; flags < 4; ++flags) {
    try {
      const std::vector<int32_t> ids = v.tokenize(text, flags & 1, flags & 2);
      for (int32_t id : ids)
        if (id < 0 || id >= v.n_tokens()) __builtin_trap();  // tokenize emits only valid ids
      g_sink += v.detokenize(ids, flags & 1).size();
    } catch (const ArgumentError&) {
    }
  }
  // arbitrary ids (most in range, some not) through detokenize and the per-token accessors
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 4 <= tn && ids.size() < 32; i += 4) {
    int32_t x;
    std::memcpy(&x, text.data() + i, 4);
    ids.push_back(x % (v.n_tokens() + 2) - 1);
  }
  try { g_sink += v.detokenize(ids, true).size(); } catch (const ArgumentError&) {}
  for (int32_t id : ids) {
    try {
      g_sink += v.token_to_piece(id, true).size();
      g_sink += v.token_text(id).size();
      g_sink += uint64_t(v.token_type(id));
      g_sink += v.is_eog(id);
    } catch (const ArgumentError&) {
    }
  }
  for (int32_t id = 0; id < v.n_tokens() && id < 64; ++id) g_sink += v.token_to_piece(id, false).size();
}

// Model::load takes a path: hand it the bytes through an anonymous memory file.
std::string memfd_path(const uint8_t* data, size_t size, int* fd_out) {
  const int fd = memfd_create("fuzz.gguf", MFD_CLOEXEC);
  if (fd < 0) return "";
  size_t done = 0;
  while (done < size) {
    const ssize_t w = write(fd, data + done, size - done);
    if (w <= 0) {
      close(fd);
      return "";
    }
    done += size_t(w);
  }
  *fd_out = fd;
  return "/proc/self/fd/" + std::to_string(fd);
}

void exercise_model(const uint8_t* data, size_t size) {
  int fd = -1;
  const std::string path = memfd_path(data, size, &fd);
  if (path.empty()) return;
  for (int vocab_only = 1; vocab_only >= 0; --vocab_only) {
    try {
      std::shared_ptr<Model> m = Model::load(path, vocab_only != 0);
      if (vocab_only) continue;
      ContextParams p;
      p.n_ctx = 4;
      p.n_threads = 1;
      p.n_batch = 2;
      p.type_k = (data[size / 2] & 1) ? KVType::F32 : KVType::F16;
      p.type_v = p.type_k;
      Context ctx(m, p);
      // one batch of two tokens (first and last id): attention over 2 positions, every kernel once;
      // the matmuls dominate the run time, so no more than that
      const int64_t nv = m->hparams().n_vocab;
      std::vector<float> logits(size_t(2 * nv));
      const int32_t toks[2] = {int32_t(data[0] % nv), int32_t(nv - 1)};
      ctx.decode(toks, 2, logits.data(), true);
      for (float x : logits) g_sink += x != 0;
    } catch (const Error&) {
    }
  }
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::shared_ptr<GGUFFile> f;
  try {
    f = GGUFFile::from_bytes(data, size, "<fuzz>");
  } catch (const FormatError&) {
    return 0;
  }
  exercise_file(*f);
  try {
    std::shared_ptr<Vocab> v = Vocab::from_gguf(*f);
    exercise_vocab(*v, data, size);
  } catch (const FormatError&) {
  } catch (const UnsupportedError&) {
  }
  // Model loading only matters for files that name an architecture; skip the memfd otherwise.
  if (f->find("general.architecture")) exercise_model(data, size);
  return 0;
}
