// GGUF parsing. The only way bytes are read is through Cursor, which checks every read against the
// end of the buffer; counts are checked against the bytes left *before* anything is allocated, so
// a crafted count can never make us read past the map. Reservations are capped too: a count that
// fits in the file is still up to ~10x that many bytes in memory (a 64 GiB sparse file claiming
// 5e9 entries made reserve() throw std::bad_alloc), so vectors grow from a bounded start.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "edgellama/errors.h"
#include "edgellama/gguf.h"

namespace edgellama {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 8;        // arrays of arrays nest at most this deep
constexpr uint64_t kMaxKeyLength = 65535;
constexpr uint64_t kMaxReserve = uint64_t(1) << 16;  // entries reserved up front, whatever a count says
// Arrays of arrays cost ~100 bytes of memory per 12 bytes of file; no real file has many.
constexpr uint64_t kMaxNestedArrays = uint64_t(1) << 20;

size_t capped(uint64_t n) { return size_t(std::min(n, kMaxReserve)); }

size_t element_size(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
    case GGUFType::UINT16: case GGUFType::INT16: return 2;
    case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
    case GGUFType::UINT64: case GGUFType::INT64: case GGUFType::FLOAT64: return 8;
    default: return 0;  // variable size
  }
}

// Fewest bytes one element of type t can occupy in the file (used to bound counts).
size_t min_encoded_size(GGUFType t) {
  if (t == GGUFType::STRING) return 8;   // length prefix
  if (t == GGUFType::ARRAY) return 12;   // element type + count
  return element_size(t);
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GGUFType::FLOAT64); }

// Keys and tensor names are handed to Python as str: they must be UTF-8 (shortest forms, no
// surrogates, at most U+10FFFF). Returns the offset of the first bad byte, or npos.
size_t invalid_utf8_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = uint8_t(s[i]);
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return i;
    if (s.size() - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      const uint8_t cc = uint8_t(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::string quote(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 200)) out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  if (s.size() > 200) out += "...";
  return out + "'";
}

}  // namespace

const char* gguf_type_name(GGUFType t) {
  static const char* names[] = {"uint8", "int8",   "uint16", "int16", "uint32", "int32", "float32",
                                "bool",  "string", "array",  "uint64", "int64", "float64"};
  const uint32_t i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "unknown";
}

// ---------------------------------------------------------------------------------------------
// GGUFValue accessors
// ---------------------------------------------------------------------------------------------

bool gguf_is_integer_type(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::UINT16: case GGUFType::INT16:
    case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::UINT64: case GGUFType::INT64:
      return true;
    default:
      return false;
  }
}

bool GGUFValue::is_integer() const { return gguf_is_integer_type(type); }

static bool is_unsigned(GGUFType t) {
  return t == GGUFType::UINT8 || t == GGUFType::UINT16 || t == GGUFType::UINT32 || t == GGUFType::UINT64;
}

int64_t GGUFValue::as_int(const std::string& what) const {
  if (!is_integer()) throw FormatError(what + ": expected an integer, found " + gguf_type_name(type));
  if (is_unsigned(type) && scalar_.u64 > uint64_t(std::numeric_limits<int64_t>::max()))
    throw FormatError(what + ": value " + std::to_string(scalar_.u64) + " is out of range");
  return scalar_.i64;
}

uint64_t GGUFValue::as_uint(const std::string& what) const {
  if (!is_integer()) throw FormatError(what + ": expected an integer, found " + gguf_type_name(type));
  if (!is_unsigned(type) && scalar_.i64 < 0)
    throw FormatError(what + ": value " + std::to_string(scalar_.i64) + " must not be negative");
  return scalar_.u64;
}

double GGUFValue::as_float(const std::string& what) const {
  if (is_float()) return scalar_.f64;
  if (is_integer()) return is_unsigned(type) ? double(scalar_.u64) : double(scalar_.i64);
  throw FormatError(what + ": expected a number, found " + gguf_type_name(type));
}

bool GGUFValue::as_bool(const std::string& what) const {
  if (type == GGUFType::BOOL) return scalar_.u64 != 0;
  if (is_integer()) return scalar_.u64 != 0;
  throw FormatError(what + ": expected a bool, found " + gguf_type_name(type));
}

std::string_view GGUFValue::as_string(const std::string& what) const {
  if (type != GGUFType::STRING) throw FormatError(what + ": expected a string, found " + gguf_type_name(type));
  return str_;
}

int64_t GGUFValue::int_at(size_t i, const std::string& what) const {
  if (!is_array() || i >= array_count_) throw FormatError(what + ": index out of range");
  const uint8_t* p = array_data_ + i * element_size(array_type);
  switch (array_type) {
    case GGUFType::UINT8: case GGUFType::BOOL: return *p;
    case GGUFType::INT8: return int8_t(*p);
    case GGUFType::UINT16: { uint16_t v; std::memcpy(&v, p, 2); return v; }
    case GGUFType::INT16: { int16_t v; std::memcpy(&v, p, 2); return v; }
    case GGUFType::UINT32: { uint32_t v; std::memcpy(&v, p, 4); return v; }
    case GGUFType::INT32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case GGUFType::INT64: { int64_t v; std::memcpy(&v, p, 8); return v; }
    case GGUFType::UINT64: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      if (v > uint64_t(std::numeric_limits<int64_t>::max())) throw FormatError(what + ": value out of range");
      return int64_t(v);
    }
    default:
      throw FormatError(what + ": expected an array of integers, found an array of " + gguf_type_name(array_type));
  }
}

uint64_t GGUFValue::uint64_at(size_t i, const std::string& what) const {
  if (!is_array() || i >= array_count_) throw FormatError(what + ": index out of range");
  if (array_type != GGUFType::UINT64) return uint64_t(int_at(i, what));
  uint64_t v;
  std::memcpy(&v, array_data_ + i * 8, 8);
  return v;
}

double GGUFValue::float_at(size_t i, const std::string& what) const {
  if (!is_array() || i >= array_count_) throw FormatError(what + ": index out of range");
  const uint8_t* p = array_data_ + i * element_size(array_type);
  if (array_type == GGUFType::FLOAT32) { float v; std::memcpy(&v, p, 4); return v; }
  if (array_type == GGUFType::FLOAT64) { double v; std::memcpy(&v, p, 8); return v; }
  if (array_type != GGUFType::STRING && array_type != GGUFType::ARRAY) return double(int_at(i, what));
  throw FormatError(what + ": expected an array of numbers, found an array of " + gguf_type_name(array_type));
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

class GGUFParser {
 public:
  explicit GGUFParser(GGUFFile& f) : f_(f), pos_(0) {}

  void parse() {
    if (f_.size_ < 4) fail("file", "too small to be a GGUF file (" + std::to_string(f_.size_) + " bytes)");
    const uint32_t magic = u32("magic");
    if (magic != kMagic) fail("magic", "not a GGUF file (bad magic)");
    const uint32_t version = u32("version");
    if (version == 1) fail("version", "GGUF version 1 is obsolete and not supported (convert the file again)");
    if (version != 2 && version != 3) {
      const bool swapped = version == 0x02000000u || version == 0x03000000u;
      fail("version", swapped ? "big-endian GGUF files are not supported"
                              : "unsupported GGUF version " + std::to_string(version));
    }
    f_.version_ = version;
    const uint64_t n_tensors = u64("tensor_count");
    const uint64_t n_kv = u64("metadata_kv_count");
    check_count(n_kv, 8 + 4 + 1, "metadata_kv_count");
    check_count(n_tensors, 8 + 4 + 8 + 4 + 8, "tensor_count");

    f_.kv_.reserve(capped(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
      const std::string field = "metadata entry " + std::to_string(i);
      std::string key(string(field + " key", kMaxKeyLength));
      if (key.empty()) fail(field, "empty key");
      if (const size_t bad = invalid_utf8_at(key); bad != std::string_view::npos)
        fail(field + " key " + quote(key), "is not valid UTF-8 (byte " + std::to_string(bad) + ")");
      const uint32_t t = u32("metadata " + quote(key) + " type");
      if (!valid_type(t)) fail("metadata " + quote(key), "unknown value type " + std::to_string(t));
      GGUFValue v = value(static_cast<GGUFType>(t), "metadata " + quote(key), 0);
      if (!f_.kv_index_.emplace(key, f_.kv_.size()).second) fail("metadata " + quote(key), "duplicate key");
      f_.kv_.emplace_back(std::move(key), std::move(v));
    }

    if (const GGUFValue* a = f_.find("general.alignment")) {
      if (!a->is_integer()) fail("general.alignment", std::string("must be an integer, found ") + gguf_type_name(a->type));
      if (!is_unsigned(a->type) && a->scalar_.i64 < 0)
        fail("general.alignment", "must not be negative, got " + std::to_string(a->scalar_.i64));
      const uint64_t al = a->scalar_.u64;
      if (al == 0 || (al & (al - 1)) != 0 || al > (1u << 20))
        fail("general.alignment", "must be a power of two between 1 and 2^20, got " + std::to_string(al));
      f_.alignment_ = al;
    }

    f_.tensors_.reserve(capped(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) tensor_info(i);

    // The data section starts at the next multiple of the alignment.
    const uint64_t al = f_.alignment_;
    f_.data_offset_ = (pos_ + al - 1) / al * al;
    check_tensor_data();
  }

 private:
  [[noreturn]] void fail(const std::string& field, const std::string& reason) const {
    throw FormatError(f_.path_ + ": " + field + ": " + reason);
  }

  void need(uint64_t n, const std::string& field) const {
    if (n > f_.size_ - pos_)
      fail(field, "needs " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
                      " but the file ends at " + std::to_string(f_.size_) + " (truncated?)");
  }

  void check_count(uint64_t count, uint64_t min_bytes_each, const std::string& field) const {
    if (count > (f_.size_ - pos_) / min_bytes_each)
      fail(field, "count " + std::to_string(count) + " cannot fit in the " + std::to_string(f_.size_ - pos_) +
                      " bytes left in the file");
  }

  template <typename T>
  T read(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, f_.base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  uint32_t u32(const std::string& field) { return read<uint32_t>(field); }
  uint64_t u64(const std::string& field) { return read<uint64_t>(field); }

  std::string_view string(const std::string& field, uint64_t max_len = std::numeric_limits<uint64_t>::max()) {
    const uint64_t len = u64(field + " length");
    if (len > max_len) fail(field, "string length " + std::to_string(len) + " is too long");
    need(len, field);
    std::string_view s(reinterpret_cast<const char*>(f_.base_ + pos_), size_t(len));
    pos_ += len;
    return s;
  }

  GGUFValue value(GGUFType t, const std::string& field, int depth) {
    GGUFValue v;
    v.type = t;
    switch (t) {
      case GGUFType::UINT8: v.scalar_.u64 = read<uint8_t>(field); break;
      case GGUFType::INT8: v.scalar_.i64 = read<int8_t>(field); break;
      case GGUFType::UINT16: v.scalar_.u64 = read<uint16_t>(field); break;
      case GGUFType::INT16: v.scalar_.i64 = read<int16_t>(field); break;
      case GGUFType::UINT32: v.scalar_.u64 = read<uint32_t>(field); break;
      case GGUFType::INT32: v.scalar_.i64 = read<int32_t>(field); break;
      case GGUFType::UINT64: v.scalar_.u64 = read<uint64_t>(field); break;
      case GGUFType::INT64: v.scalar_.i64 = read<int64_t>(field); break;
      case GGUFType::FLOAT32: v.scalar_.f64 = read<float>(field); break;
      case GGUFType::FLOAT64: v.scalar_.f64 = read<double>(field); break;
      case GGUFType::BOOL: {
        const uint8_t b = read<uint8_t>(field);
        if (b > 1) fail(field, "bool value " + std::to_string(b) + " is neither 0 nor 1");
        v.scalar_.u64 = b;
        break;
      }
      case GGUFType::STRING: v.str_ = string(field); break;
      case GGUFType::ARRAY: {
        if (depth >= kMaxArrayDepth) fail(field, "arrays nested deeper than " + std::to_string(kMaxArrayDepth));
        const uint32_t et = u32(field + " element type");
        if (!valid_type(et)) fail(field, "unknown array element type " + std::to_string(et));
        const uint64_t count = u64(field + " array length");
        v.array_type = static_cast<GGUFType>(et);
        check_count(count, min_encoded_size(v.array_type), field + " array length");
        v.array_count_ = size_t(count);
        if (v.array_type == GGUFType::STRING) {
          v.strings_.reserve(capped(count));
          for (uint64_t i = 0; i < count; ++i) v.strings_.push_back(string(field + "[" + std::to_string(i) + "]"));
        } else if (v.array_type == GGUFType::ARRAY) {
          nested_arrays_ += count;
          if (nested_arrays_ > kMaxNestedArrays)
            fail(field, "more than " + std::to_string(kMaxNestedArrays) + " nested arrays in the file");
          v.arrays_.reserve(capped(count));
          for (uint64_t i = 0; i < count; ++i)
            v.arrays_.push_back(value(GGUFType::ARRAY, field + "[" + std::to_string(i) + "]", depth + 1));
        } else {
          const uint64_t bytes = count * element_size(v.array_type);  // bounded by check_count
          v.array_data_ = f_.base_ + pos_;
          if (v.array_type == GGUFType::BOOL) {
            for (uint64_t i = 0; i < count; ++i)
              if (v.array_data_[i] > 1) fail(field + "[" + std::to_string(i) + "]", "bool value is neither 0 nor 1");
          }
          pos_ += bytes;
        }
        break;
      }
    }
    return v;
  }

  void tensor_info(uint64_t index) {
    GGUFTensorInfo t;
    t.name = std::string(string("tensor " + std::to_string(index) + " name", kMaxKeyLength));
    const std::string field = "tensor " + quote(t.name);
    if (t.name.empty()) fail("tensor " + std::to_string(index), "empty name");
    if (const size_t bad = invalid_utf8_at(t.name); bad != std::string_view::npos)
      fail(field, "name is not valid UTF-8 (byte " + std::to_string(bad) + ")");
    t.n_dims = u32(field + " n_dims");
    if (t.n_dims == 0 || t.n_dims > 4) fail(field, "n_dims " + std::to_string(t.n_dims) + " is not between 1 and 4");
    int64_t n_elements = 1;
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      const uint64_t ne = u64(field + " dimension");
      if (ne == 0) fail(field, "dimension " + std::to_string(d) + " is zero");
      if (ne > uint64_t(std::numeric_limits<int64_t>::max()) || uint64_t(n_elements) > uint64_t(std::numeric_limits<int64_t>::max()) / ne)
        fail(field, "element count overflows");
      t.ne[d] = int64_t(ne);
      n_elements *= int64_t(ne);
    }
    t.type_id = u32(field + " type");
    t.traits = find_type_traits(t.type_id);
    if (!t.traits) fail(field, "unknown tensor type id " + std::to_string(t.type_id));
    t.offset = u64(field + " offset");
    size_t row_bytes = 0;
    if (!row_size_checked(*t.traits, t.ne[0], &row_bytes)) {
      if (t.ne[0] % t.traits->block_size == 0) fail(field, "byte size overflows (row of " + std::to_string(t.ne[0]) + " elements)");
      fail(field, "row length " + std::to_string(t.ne[0]) + " is not a multiple of the " + t.traits->name +
                      " block size " + std::to_string(t.traits->block_size));
    }
    const uint64_t rows = uint64_t(n_elements / t.ne[0]);
    if (row_bytes != 0 && rows > std::numeric_limits<uint64_t>::max() / row_bytes) fail(field, "byte size overflows");
    t.nbytes = size_t(rows * row_bytes);
    if (t.offset % f_.alignment_ != 0)
      fail(field, "data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                      std::to_string(f_.alignment_));
    if (!f_.tensor_index_.emplace(t.name, f_.tensors_.size()).second) fail(field, "duplicate tensor name");
    f_.tensors_.push_back(std::move(t));
  }

  void check_tensor_data() {
    if (f_.tensors_.empty()) return;
    const uint64_t start = f_.data_offset_;
    if (start > f_.size_) fail("tensor data", "the data section starts past the end of the file (truncated?)");
    const uint64_t avail = f_.size_ - start;
    for (GGUFTensorInfo& t : f_.tensors_) {
      if (t.offset > avail || t.nbytes > avail - t.offset)
        fail("tensor " + quote(t.name), "data [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
                                            ") extends past the end of the file (data section has " +
                                            std::to_string(avail) + " bytes; truncated?)");
      t.data = f_.base_ + start + t.offset;
    }
    // The layout rule llama.cpp enforces (gguf.cpp, gguf_init_from_file_impl): in the order of the
    // tensor infos, each tensor's data starts exactly where the previous one's ends, padded to the
    // alignment; the first starts the data section. A declared type or shape that does not match the
    // bytes actually stored (say a type field changed from F32 to Q4_0) breaks this chain: without
    // the check it loads and computes garbage (NaN logits) instead of failing here.
    uint64_t expected = 0;
    for (size_t k = 0; k < f_.tensors_.size(); ++k) {
      const GGUFTensorInfo& cur = f_.tensors_[k];
      if (cur.offset != expected) {
        const std::string where = "tensor " + quote(cur.name);
        const std::string rule = " (llama.cpp requires each tensor's data to start where the previous tensor's ends, "
                                 "padded to the alignment " + std::to_string(alignment()) + ")";
        if (k == 0)
          fail(where, "data offset " + std::to_string(cur.offset) + " should be 0: the first tensor's data starts "
                      "the data section" + rule);
        const GGUFTensorInfo& prev = f_.tensors_[k - 1];
        if (cur.offset < expected)
          fail(where, "data offset " + std::to_string(cur.offset) + " overlaps tensor " + describe(prev) +
                          ", which ends at " + std::to_string(prev.offset + prev.nbytes) +
                          " (tensors out of order, or a declared type/shape larger than the stored data)" + rule);
        fail(where, "data offset " + std::to_string(cur.offset) + " leaves a gap of " +
                        std::to_string(cur.offset - expected) + " bytes after tensor " + describe(prev) +
                        ", expected offset " + std::to_string(expected) +
                        ": the declared type or shape of one of them does not match the stored data" + rule);
      }
      expected = cur.offset + padded(cur.nbytes);  // both within the file (checked above): no overflow
    }
  }

  uint64_t alignment() const { return f_.alignment_; }
  uint64_t padded(uint64_t n) const { return (n + alignment() - 1) / alignment() * alignment(); }

  // "'name' (TYPE [ne0, ne1], N bytes at offset O)", for layout errors.
  static std::string describe(const GGUFTensorInfo& t) {
    std::string shape;
    for (uint32_t d = 0; d < t.n_dims; ++d) shape += (d ? ", " : "") + std::to_string(t.ne[d]);
    return quote(t.name) + " (" + std::string(t.traits->name) + " [" + shape + "], " + std::to_string(t.nbytes) +
           " bytes at offset " + std::to_string(t.offset) + ")";
  }

  GGUFFile& f_;
  uint64_t pos_;
  uint64_t nested_arrays_ = 0;
};

// ---------------------------------------------------------------------------------------------
// GGUFFile
// ---------------------------------------------------------------------------------------------

std::shared_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
  std::shared_ptr<GGUFFile> f(new GGUFFile());
  f->path_ = path;
  f->mapping_ = MappedFile::open_read_only_private(path);  // the OS code: cpp/gguf/mapped_file_*.cpp
  f->size_ = f->mapping_->size();
  if (f->size_ == 0) throw FormatError(path + ": file is empty, not a GGUF file");
  f->base_ = f->mapping_->data();
  f->parse();
  return f;
}

void GGUFFile::release_pages(const uint8_t* p, size_t n) const {
  if (!mapping_ || p < base_ || n > size_t(base_ + size_ - p)) return;
  mapping_->release_pages(size_t(p - base_), n);
}

std::shared_ptr<GGUFFile> GGUFFile::from_bytes(const uint8_t* data, size_t size, const std::string& name) {
  std::shared_ptr<GGUFFile> f(new GGUFFile());
  f->path_ = name;
  f->owned_.assign(data, data + size);
  f->base_ = f->owned_.data();
  f->size_ = size;
  f->parse();
  return f;
}

GGUFFile::~GGUFFile() = default;

uint8_t* GGUFFile::make_writable(uint64_t offset, size_t length) {
  if (mapping_) return mapping_->make_writable(size_t(offset), length);
  if (offset > size_ || length > size_ - offset)
    throw ArgumentError(where() + "make_writable range is outside the file");
  return owned_.data() + offset;  // from_bytes: our own copy, already writable
}

void GGUFFile::parse() {
  GGUFParser p(*this);
  p.parse();
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

int64_t GGUFFile::get_int(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) throw FormatError(where() + "required metadata key '" + key + "' is missing");
  return v->as_int(where() + key);
}
int64_t GGUFFile::get_int(const std::string& key, int64_t fallback) const {
  const GGUFValue* v = find(key);
  return v ? v->as_int(where() + key) : fallback;
}
double GGUFFile::get_float(const std::string& key, double fallback) const {
  const GGUFValue* v = find(key);
  return v ? v->as_float(where() + key) : fallback;
}
bool GGUFFile::get_bool(const std::string& key, bool fallback) const {
  const GGUFValue* v = find(key);
  return v ? v->as_bool(where() + key) : fallback;
}
std::string GGUFFile::get_string(const std::string& key, const std::string& fallback) const {
  const GGUFValue* v = find(key);
  return v ? std::string(v->as_string(where() + key)) : fallback;
}
std::string GGUFFile::get_string(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) throw FormatError(where() + "required metadata key '" + key + "' is missing");
  return std::string(v->as_string(where() + key));
}

const GGUFTensorInfo* GGUFFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace edgellama
