// Load-time repacking of the model's weight matrices into row-interleaved groups
// (edgellama/packed_layout.h), so that the decode kernels stream them without transposing.
//
// A matrix is packed when the active kernel set has a packed kernel for its type (the set the
// model's contexts will use; a context forced to another ISA still works: matmul unpacks a few
// groups at a time for kernels without one). The packed copy replaces the mapped tensor: its file
// pages are handed back to the OS, so resident memory stays about the file's size. All packed
// copies live in one WeightArena (huge pages where the OS gives them: weight_arena.h). Views that share
// one tensor (a tied output and the token embeddings) are switched together.
// EDGELLAMA_REPACK=0 keeps every matrix in the GGUF layout (for comparisons).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "edgellama/kernels.h"
#include "edgellama/model.h"
#include "edgellama/packed_layout.h"
#include "edgellama/weight_arena.h"

namespace edgellama {

namespace {

bool repack_enabled() {
  const char* env = std::getenv("EDGELLAMA_REPACK");
  return !(env && std::string(env) == "0");
}

}  // namespace

void Model::pack_weights() {
  if (!repack_enabled()) return;
  const KernelSet& ks = active_kernels();
  std::vector<WeightView*> views{&output};
  if (tied_output) views.push_back(&tok_embd);
  for (LayerWeights& l : layers)
    for (WeightView* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) views.push_back(w);

  std::map<const uint8_t*, std::vector<WeightView*>> by_data;  // views of the same bytes
  for (WeightView* w : views)
    if (w->present()) by_data[w->data].push_back(w);

  // What gets packed, and where in the one arena (64-byte aligned slices).
  struct Job {
    const uint8_t* data;
    std::vector<WeightView*>* views;
    size_t offset;
  };
  std::vector<Job> jobs;
  size_t arena_bytes = 0;
  for (auto& entry : by_data) {
    std::vector<WeightView*>& vs = entry.second;
    const WeightView& w = *vs[0];
    const GGMLType type = w.traits->type;
    bool same = true;
    for (const WeightView* v : vs) same = same && v->row_bytes == w.row_bytes && v->n_out() == w.n_out();
    if (!same || !packable(type) || !ks.gemm_packed[int(type)] || w.n_out() < kPackRows) continue;
    jobs.push_back({entry.first, &vs, arena_bytes});
    arena_bytes += (size_t(w.n_out()) * w.row_bytes + 63) / 64 * 64;
  }
  if (jobs.empty()) return;
  packed_ = std::make_unique<WeightArena>(arena_bytes);

  for (const Job& job : jobs) {
    const uint8_t* const data = job.data;
    std::vector<WeightView*>& vs = *job.views;
    const WeightView& w = *vs[0];
    const GGMLType type = w.traits->type;
    const size_t total = size_t(w.n_out()) * w.row_bytes, group_bytes = size_t(kPackRows) * w.row_bytes;
    const int64_t n_groups = w.n_out() / kPackRows;
    uint8_t* const buf = packed_->data() + job.offset;
    // Groups split over a few threads (the copy is memory-bound; TinyLlama's 0.6 GB take ~0.2 s).
    const int n_threads = int(std::min<int64_t>(std::max(1u, std::thread::hardware_concurrency()), 4));
    auto pack_range = [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g)
        pack_group(type, data + size_t(g) * group_bytes, w.row_bytes, buf + size_t(g) * group_bytes);
    };
    if (n_threads > 1 && n_groups >= 256) {
      std::vector<std::thread> th;
      for (int i = 0; i < n_threads; ++i)
        th.emplace_back(pack_range, n_groups * i / n_threads, n_groups * (i + 1) / n_threads);
      for (std::thread& t : th) t.join();
    } else {
      pack_range(0, n_groups);
    }
    const size_t packed_bytes = size_t(n_groups) * group_bytes;
    std::memcpy(buf + packed_bytes, data + packed_bytes, total - packed_bytes);  // tail rows as they are
    file_->release_pages(data, total);
    for (WeightView* v : vs) {
      v->data = buf;
      v->pack = kPackRows;
    }
  }
}

}  // namespace edgellama
