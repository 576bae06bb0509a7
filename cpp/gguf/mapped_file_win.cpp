// MappedFile on Windows: CreateFileW (UTF-8 path converted to UTF-16, so non-ASCII paths work) +
// CreateFileMappingW(PAGE_WRITECOPY) + MapViewOfFile(FILE_MAP_COPY). A FILE_MAP_COPY view starts
// out writable (copy-on-write), so the whole view is first VirtualProtect'ed to PAGE_READONLY --
// a stray write faults as it does on POSIX -- and make_writable() turns a range back to
// PAGE_WRITECOPY (written pages become private to this process, never reach the file).
#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>

#include <string>

#include "edgellama/errors.h"
#include "edgellama/mapped_file.h"

namespace edgellama {
namespace {

// The text of a Win32 error code ("The system cannot find the file specified."), without the
// trailing CR LF FormatMessage appends.
std::string win32_error_text(DWORD code) {
  char* buffer = nullptr;
  const DWORD n = FormatMessageA(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM |
                                     FORMAT_MESSAGE_IGNORE_INSERTS,
                                 nullptr, code, 0, reinterpret_cast<char*>(&buffer), 0, nullptr);
  std::string text = n && buffer ? std::string(buffer, n) : std::string();
  if (buffer) LocalFree(buffer);
  while (!text.empty() && (text.back() == '\r' || text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text + " (Win32 error " + std::to_string(code) + ")";
}

std::wstring utf8_to_wide(const std::string& path) {
  if (path.empty()) return std::wstring();
  const int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path.data(), int(path.size()),
                                    nullptr, 0);
  if (n <= 0) throw FileError(path + ": cannot open: the path is not valid UTF-8");
  std::wstring wide(size_t(n), L'\0');
  MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path.data(), int(path.size()), &wide[0], n);
  return wide;
}

}  // namespace

std::unique_ptr<MappedFile> MappedFile::open_read_only_private(const std::string& path) {
  std::unique_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  const std::wstring wide = utf8_to_wide(path);
  // FILE_SHARE_DELETE | WRITE: like POSIX, another process may replace or delete the file while it
  // is mapped (the mapping keeps the old contents).
  HANDLE file = CreateFileW(wide.c_str(), GENERIC_READ,
                            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                            OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (file == INVALID_HANDLE_VALUE)
    throw FileError(path + ": cannot open: " + win32_error_text(GetLastError()));
  // Pipes and character devices (CON, NUL, COM1) open fine but cannot be mapped.
  if (GetFileType(file) != FILE_TYPE_DISK) {
    CloseHandle(file);
    throw FileError(path + ": not a regular file");
  }
  LARGE_INTEGER size;
  if (!GetFileSizeEx(file, &size)) {
    const DWORD e = GetLastError();
    CloseHandle(file);
    throw FileError(path + ": cannot stat: " + win32_error_text(e));
  }
  if (sizeof(size_t) < 8 && uint64_t(size.QuadPart) > uint64_t(SIZE_MAX)) {
    CloseHandle(file);
    throw FileError(path + ": file is too large to map in a 32-bit process");
  }
  f->size_ = size_t(size.QuadPart);
  if (f->size_ == 0) {
    CloseHandle(file);
    return f;
  }
  HANDLE mapping = CreateFileMappingW(file, nullptr, PAGE_WRITECOPY, 0, 0, nullptr);
  const DWORD mapping_error = GetLastError();
  CloseHandle(file);  // the mapping object keeps the file open
  if (!mapping) throw FileError(path + ": cannot map: " + win32_error_text(mapping_error));
  void* view = MapViewOfFile(mapping, FILE_MAP_COPY, 0, 0, 0);
  if (!view) {
    const DWORD e = GetLastError();
    CloseHandle(mapping);
    throw FileError(path + ": cannot map: " + win32_error_text(e));
  }
  f->os_handle_ = mapping;
  f->data_ = static_cast<uint8_t*>(view);
  DWORD old_protection = 0;
  if (!VirtualProtect(view, f->size_, PAGE_READONLY, &old_protection))
    throw FileError(path + ": cannot make the mapping read-only: " +
                    win32_error_text(GetLastError()));  // ~MappedFile unmaps
  return f;
}

MappedFile::~MappedFile() {
  if (data_) UnmapViewOfFile(data_);
  if (os_handle_) CloseHandle(static_cast<HANDLE>(os_handle_));
}

size_t MappedFile::page_size() {
  static const size_t size = [] {
    SYSTEM_INFO info;
    GetSystemInfo(&info);
    return size_t(info.dwPageSize);
  }();
  return size;
}

void MappedFile::release_pages(size_t offset, size_t length) const {
  if (!data_ || offset > size_ || length == 0 || length > size_ - offset) return;
  // Not locked, so VirtualUnlock "fails", but it removes the pages from the working set either way.
  VirtualUnlock(data_ + offset, length);
}

uint8_t* MappedFile::make_writable(size_t offset, size_t length) {
  check_range(offset, length);
  if (length == 0) return data_ + offset;
  DWORD old_protection = 0;
  // VirtualProtect rounds the range out to whole pages itself.
  if (!VirtualProtect(data_ + offset, length, PAGE_WRITECOPY, &old_protection))
    throw FileError(path_ + ": cannot make bytes [" + std::to_string(offset) + ", +" +
                    std::to_string(length) + ") writable (copy-on-write): " +
                    win32_error_text(GetLastError()));
  return data_ + offset;
}

}  // namespace edgellama
#endif  // _WIN32
