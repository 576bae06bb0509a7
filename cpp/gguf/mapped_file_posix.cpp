// MappedFile on POSIX systems (Linux, macOS): open + fstat + mmap(PROT_READ, MAP_PRIVATE).
// make_writable() is mprotect(PROT_READ | PROT_WRITE): allowed on a MAP_PRIVATE mapping even though
// the descriptor was opened read-only, because writes go to private copies of the pages.
#ifndef _WIN32
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "edgellama/errors.h"
#include "edgellama/mapped_file.h"

namespace edgellama {

std::unique_ptr<MappedFile> MappedFile::open_read_only_private(const std::string& path) {
  std::unique_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  // O_NONBLOCK: opening a FIFO (or a tty) would otherwise block until a writer appears, before the
  // regular-file check below could reject it. It changes nothing for regular files and mmap.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int e = errno;
    throw FileError(path + ": cannot open: " + std::strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw FileError(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FileError(path + ": not a regular file");
  }
  f->size_ = size_t(st.st_size);
  if (f->size_ == 0) {
    ::close(fd);
    return f;
  }
  void* m = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);  // the mapping keeps the file alive; no descriptor is held
  if (m == MAP_FAILED) throw FileError(path + ": cannot mmap: " + std::strerror(e));
  f->data_ = static_cast<uint8_t*>(m);
  return f;
}

MappedFile::~MappedFile() {
  if (data_) munmap(data_, size_);
}

size_t MappedFile::page_size() {
  static const size_t size = size_t(sysconf(_SC_PAGESIZE));
  return size;
}

void MappedFile::release_pages(size_t offset, size_t length) const {
  if (!data_ || offset > size_ || length > size_ - offset) return;
  const uintptr_t page = uintptr_t(page_size()), p = uintptr_t(data_ + offset);
  const uintptr_t b = (p + page - 1) / page * page, e = (p + length) / page * page;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // advice: failure changes nothing
}

uint8_t* MappedFile::make_writable(size_t offset, size_t length) {
  check_range(offset, length);
  if (length == 0) return data_ + offset;
  // mprotect wants a page-aligned start; the mapping itself starts on a page boundary.
  const size_t page = page_size();
  const size_t begin = offset / page * page;
  const size_t end = offset + length;
  if (mprotect(data_ + begin, end - begin, PROT_READ | PROT_WRITE) != 0) {
    const int e = errno;
    throw FileError(path_ + ": cannot make bytes [" + std::to_string(offset) + ", +" +
                    std::to_string(length) + ") writable (copy-on-write): " + std::strerror(e));
  }
  return data_ + offset;
}

}  // namespace edgellama
#endif  // !_WIN32
