// Stand-alone self-test of MappedFile (cpp/include/edgellama/mapped_file.h), the one place the core
// talks to the OS about files. Built from cpp/gguf/mapped_file_*.cpp alone, so it runs natively
// (tests/test_mapped_file.py) and cross-compiled for Windows under wine (scripts/cross_build.sh),
// which is the only way the Windows implementation is exercised on a Linux machine.
//
//   mapped_file_selftest DIR                   run every check, writing scratch files into DIR
//   mapped_file_selftest DIR --probe-ro-write  map a file and write to a page never made writable:
//                                              must die of a memory-protection fault (SIGSEGV /
//                                              STATUS_ACCESS_VIOLATION), never return
// Exit status 0 = all checks passed; 1 = a check failed (each printed); 2 = usage / setup error.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "edgellama/errors.h"
#include "edgellama/mapped_file.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <sys/stat.h>
#endif

using edgellama::ArgumentError;
using edgellama::FileError;
using edgellama::MappedFile;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// Opens a UTF-8 path for writing; on Windows through the wide API, as MappedFile does, so the
// non-ASCII file name really is the same file on both sides.
std::FILE* open_utf8(const std::string& path, const char* mode) {
#ifdef _WIN32
  const int n = MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, nullptr, 0);
  std::wstring wide(size_t(n), L'\0');
  MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, &wide[0], n);
  std::wstring wmode(mode, mode + std::strlen(mode));
  return _wfopen(wide.c_str(), wmode.c_str());
#else
  return std::fopen(path.c_str(), mode);
#endif
}

bool write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::FILE* f = open_utf8(path, "wb");
  if (!f) return false;
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::vector<uint8_t> bytes;
  std::FILE* f = open_utf8(path, "rb");
  if (!f) return bytes;
  uint8_t buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
  std::fclose(f);
  return bytes;
}

// Checks that f() throws Exception with a message mentioning `must_mention`; prints the message.
template <class Exception, class F>
void check_throws(F&& f, const std::string& must_mention, const std::string& what) {
  std::string message = "(no exception)";
  bool ok = false;
  try {
    f();
  } catch (const Exception& e) {
    message = e.what();
    ok = message.find(must_mention) != std::string::npos;
  } catch (const std::exception& e) {
    message = std::string("wrong exception type: ") + e.what();
  }
  check(ok, what + ": " + message);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [--probe-ro-write]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const size_t page = MappedFile::page_size();
  // Three whole pages plus a tail: ranges that start and end mid-page, and a last partial page.
  std::vector<uint8_t> bytes(3 * page + 123);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = uint8_t(i * 131 + 7);
  // A non-ASCII name (UTF-8 "é" and "文"): on Windows this needs the UTF-8 -> UTF-16 conversion.
  const std::string path = dir + "/mapped_\xc3\xa9_\xe6\x96\x87.bin";
  if (!write_file(path, bytes)) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return 2;
  }

  if (argc > 2 && std::strcmp(argv[2], "--probe-ro-write") == 0) {
    auto mapped = MappedFile::open_read_only_private(path);
    std::printf("writing to a read-only page (this must crash)\n");
    std::fflush(stdout);
    const_cast<volatile uint8_t*>(mapped->data())[page + 5] = 1;
    std::printf("the write to a read-only page did not fault\n");
    return 1;
  }

  check(page >= 4096 && (page & (page - 1)) == 0, "page size " + std::to_string(page) + " is a power of two >= 4096");

  auto mapped = MappedFile::open_read_only_private(path);
  check(mapped->size() == bytes.size(), "size() is the file size");
  check(mapped->path() == path, "path() is the UTF-8 path given");
  check(std::memcmp(mapped->data(), bytes.data(), bytes.size()) == 0, "mapped bytes equal the file (non-ASCII path)");

  // A range that starts and ends mid-page, across a page boundary.
  const size_t offset = page - 10, length = 30;
  uint8_t* w = mapped->make_writable(offset, length);
  check(w == mapped->data() + offset, "make_writable returns data() + offset");
  for (size_t i = 0; i < length; ++i) w[i] = uint8_t(0xA0 ^ i);
  bool written = true;
  for (size_t i = 0; i < length; ++i) written = written && mapped->data()[offset + i] == uint8_t(0xA0 ^ i);
  check(written, "writes through make_writable are visible in the mapping");
  check(std::memcmp(mapped->data(), bytes.data(), offset) == 0 &&
            std::memcmp(mapped->data() + offset + length, bytes.data() + offset + length,
                        bytes.size() - offset - length) == 0,
        "bytes outside the written range are unchanged");
  // The last partial page, up to the last byte.
  uint8_t* last = mapped->make_writable(bytes.size() - 1, 1);
  *last = uint8_t(~bytes.back());
  check(mapped->data()[bytes.size() - 1] == uint8_t(~bytes.back()), "the last byte of the file can be made writable");
  check(mapped->make_writable(bytes.size(), 0) == mapped->data() + bytes.size(), "an empty range at the end is allowed");

  // Copy-on-write: neither the file nor a second mapping of it sees the writes.
  check(read_file(path) == bytes, "the file on disk is unchanged after writing to the mapping");
  auto second = MappedFile::open_read_only_private(path);
  check(second->size() == bytes.size() && std::memcmp(second->data(), bytes.data(), bytes.size()) == 0,
        "a second mapping of the same file sees the original bytes");

  check_throws<ArgumentError>([&] { mapped->make_writable(bytes.size(), 1); }, path,
               "a range past the end is an ArgumentError naming the file");
  check_throws<ArgumentError>([&] { mapped->make_writable(SIZE_MAX, 2); }, path,
               "an offset near SIZE_MAX is an ArgumentError, not an overflow");
  check_throws<ArgumentError>([&] { mapped->make_writable(10, SIZE_MAX); }, path,
               "a length near SIZE_MAX is an ArgumentError, not an overflow");

  const std::string missing = dir + "/does_not_exist.gguf";
  check_throws<FileError>([&] { MappedFile::open_read_only_private(missing); }, missing,
               "a missing file is a FileError naming it");
  check_throws<FileError>([&] { MappedFile::open_read_only_private(dir); }, dir,
               "a directory is a FileError naming it");
  const std::string empty = dir + "/empty.bin";
  write_file(empty, {});
  auto empty_map = MappedFile::open_read_only_private(empty);
  check(empty_map->size() == 0 && empty_map->data() == nullptr, "an empty file maps to size 0, data nullptr");
  check(empty_map->make_writable(0, 0) == nullptr, "an empty range of an empty file is allowed");
#ifndef _WIN32
  const std::string fifo = dir + "/fifo";
  if (mkfifo(fifo.c_str(), 0600) == 0)
    check_throws<FileError>([&] { MappedFile::open_read_only_private(fifo); }, "not a regular file",
               "a FIFO is refused without blocking");
#else
  check_throws<FileError>([&] { MappedFile::open_read_only_private("NUL"); }, "NUL",
               "the NUL device is a FileError");
  check_throws<FileError>([&] { MappedFile::open_read_only_private(dir + "/bad_\xff_utf8"); }, "UTF-8",
               "a path that is not valid UTF-8 is a FileError saying so");
#endif

  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
