// The platform-independent part of MappedFile (cpp/include/edgellama/mapped_file.h).
#include "edgellama/errors.h"
#include "edgellama/mapped_file.h"

namespace edgellama {

void MappedFile::check_range(size_t offset, size_t length) const {
  // Written so that offset + length cannot overflow.
  if (offset > size_ || length > size_ - offset)
    throw ArgumentError(path_ + ": make_writable range [" + std::to_string(offset) + ", +" +
                        std::to_string(length) + ") is outside the " + std::to_string(size_) +
                        "-byte file");
}

}  // namespace edgellama
