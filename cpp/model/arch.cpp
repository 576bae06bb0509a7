#include "edgellama/arch.h"

namespace edgellama {

namespace {
const ArchSpec kArchs[] = {
    // name     rope style            qkv bias  rope base
    {"llama",   RopeStyle::Adjacent,  false,    10000.0},
    {"qwen2",   RopeStyle::HalfSplit, true,     10000.0},
};
}  // namespace

const ArchSpec* find_arch(const std::string& name) {
  for (const ArchSpec& a : kArchs) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

std::string supported_arch_names() {
  std::string out;
  for (const ArchSpec& a : kArchs) out += (out.empty() ? "" : ", ") + std::string(a.name);
  return out;
}

}  // namespace edgellama
