#include "edgellama/act_reuse.h"

#include <atomic>

namespace edgellama {

namespace {
std::atomic<uint64_t> g_next_call_id{1};
thread_local uint64_t t_call_id = 0;
}  // namespace

uint64_t new_act_call_id() { return g_next_call_id.fetch_add(1, std::memory_order_relaxed); }
uint64_t current_act_call_id() { return t_call_id; }

ActCallScope::ActCallScope(uint64_t id) : previous_(t_call_id) { t_call_id = id; }
ActCallScope::~ActCallScope() { t_call_id = previous_; }

}  // namespace edgellama
