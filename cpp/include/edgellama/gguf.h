// GGUF reader: maps a file read-only and parses header, metadata and tensor infos with every count,
// length, offset and size checked against the bytes actually present. Values point into the map
// (no copies of big arrays); a GGUFFile must outlive the GGUFValues and tensor data it hands out.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "edgellama/mapped_file.h"
#include "edgellama/quant_types.h"

namespace edgellama {

enum class GGUFType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GGUFType t);
bool gguf_is_integer_type(GGUFType t);  // any of the eight integer types

// One metadata value. Scalars are decoded; strings and arrays of numbers are views into the map.
class GGUFValue {
 public:
  GGUFType type = GGUFType::UINT8;

  // --- scalars (throw FormatError naming `what` when the value is not of a fitting type) ---
  bool is_integer() const;
  bool is_float() const { return type == GGUFType::FLOAT32 || type == GGUFType::FLOAT64; }
  int64_t as_int(const std::string& what) const;      // any integer type, range-checked to int64
  uint64_t as_uint(const std::string& what) const;    // any integer type >= 0
  double as_float(const std::string& what) const;     // float types and integers
  bool as_bool(const std::string& what) const;
  std::string_view as_string(const std::string& what) const;

  // --- arrays ---
  bool is_array() const { return type == GGUFType::ARRAY; }
  GGUFType array_type = GGUFType::UINT8;  // element type when is_array()
  size_t array_size() const { return array_count_; }
  // element i; the caller checks array_type first (these throw FormatError on a mismatch)
  int64_t int_at(size_t i, const std::string& what) const;
  uint64_t uint64_at(size_t i, const std::string& what) const;  // UINT64 arrays (full range)
  double float_at(size_t i, const std::string& what) const;
  std::string_view string_at(size_t i) const { return strings_.at(i); }
  const GGUFValue& array_at(size_t i) const { return arrays_.at(i); }

 private:
  friend class GGUFParser;
  union {
    uint64_t u64;
    int64_t i64;
    double f64;
  } scalar_{0};
  std::string_view str_;
  size_t array_count_ = 0;
  const uint8_t* array_data_ = nullptr;  // numeric arrays: raw little-endian elements in the map
  std::vector<std::string_view> strings_;  // arrays of strings
  std::vector<GGUFValue> arrays_;          // arrays of arrays
};

struct GGUFTensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] is the contiguous (row) dimension
  uint32_t type_id = 0;
  const TypeTraits* traits = nullptr;
  uint64_t offset = 0;           // relative to the start of the data section
  size_t nbytes = 0;
  const uint8_t* data = nullptr; // into the map
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GGUFFile {
 public:
  // Maps and parses `path`. Throws FileError (cannot open/map) or FormatError (malformed).
  static std::shared_ptr<GGUFFile> open(const std::string& path);
  // Parses a copy of an in-memory buffer (fuzzing, tests). `name` is used in error messages.
  static std::shared_ptr<GGUFFile> from_bytes(const uint8_t* data, size_t size, const std::string& name);
  ~GGUFFile();
  GGUFFile(const GGUFFile&) = delete;
  GGUFFile& operator=(const GGUFFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  size_t file_size() const { return size_; }

  // Metadata in file order; find() returns nullptr for a missing key.
  const std::vector<std::pair<std::string, GGUFValue>>& metadata() const { return kv_; }
  const GGUFValue* find(const std::string& key) const;
  // Convenience getters that throw FormatError naming the key and file when the key is missing
  // (no default given) or of the wrong type.
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::string get_string(const std::string& key) const;

  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const GGUFTensorInfo* find_tensor(const std::string& name) const;

  // Hands the pages wholly inside [p, p + n) back to the OS (a mapped file's private pages; a later
  // read maps the file's bytes again). For data the model has copied elsewhere (packed weights), so
  // that resident memory stays about the file's size. No-op for from_bytes files.
  void release_pages(const uint8_t* p, size_t n) const;
  // Makes file bytes [offset, offset + length) writable in place, copy-on-write: writes stay in
  // this process and never reach the file (for repacking weights where they lie). Throws
  // ArgumentError for a range outside the file, FileError when the OS refuses.
  uint8_t* make_writable(uint64_t offset, size_t length);

  // "<path>: " prefix for error messages.
  std::string where() const { return path_ + ": "; }

 private:
  friend class GGUFParser;
  GGUFFile() = default;
  void parse();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::unique_ptr<MappedFile> mapping_;  // open(): the file, mapped (nullptr when owned_ holds the bytes)
  std::vector<uint8_t> owned_;       // from_bytes copy
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GGUFTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace edgellama
