// A whole file mapped into memory read-only and private, behind one small interface so that the
// operating-system code lives in one file per platform:
//   cpp/gguf/mapped_file_posix.cpp  (Linux, macOS: open + mmap(MAP_PRIVATE) + mprotect)
//   cpp/gguf/mapped_file_win.cpp    (Windows: CreateFileW + CreateFileMappingW(PAGE_WRITECOPY) +
//                                    MapViewOfFile(FILE_MAP_COPY) + VirtualProtect)
// "Private" means copy-on-write: the pages come straight from the page cache (no copy, shared
// between processes mapping the same file), and a write through the mapping -- only possible in a
// range first passed to make_writable() -- gives the writing process its own copy of that page and
// never reaches the file. That is what in-place weight repacking at load time needs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace edgellama {

class MappedFile {
 public:
  // Maps `path` (UTF-8 on every platform; converted to a wide path on Windows). Throws FileError
  // naming the path and the OS reason when it cannot be opened or mapped, or is not a regular
  // file. An empty file is not an error here: size() is 0 and data() is nullptr (mapping zero
  // bytes is an error on every OS, so nothing is mapped) -- the caller says what empty means.
  static std::unique_ptr<MappedFile> open_read_only_private(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Makes bytes [offset, offset + length) writable, copy-on-write (the pages holding them, so a
  // little around the range becomes writable too), and returns data() + offset as a writable
  // pointer. Writes stay private to this process and this mapping. Throws ArgumentError when the
  // range is not inside the file, FileError when the OS refuses. length 0 is allowed (no-op).
  uint8_t* make_writable(size_t offset, size_t length);

  // Advice that the pages wholly inside [offset, offset + length) are not needed now: their memory
  // goes back to the OS and a later read maps the file's bytes again (POSIX: madvise MADV_DONTNEED on
  // the private mapping; Windows: VirtualUnlock, which only trims them from the working set). For
  // bytes the caller has copied elsewhere (packed weights). Never throws; out-of-range is ignored.
  void release_pages(size_t offset, size_t length) const;

  // The granularity of protection changes (the page size: 4 KiB on x86-64, 16 KiB on Apple arm64).
  static size_t page_size();

 private:
  MappedFile() = default;
  void check_range(size_t offset, size_t length) const;

  std::string path_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* os_handle_ = nullptr;  // Windows: the file-mapping object handle; POSIX: unused
};

}  // namespace edgellama
