// Typed exceptions thrown by the core. Nothing in the core aborts: every failure is one of these,
// and python/bind_errors.cpp maps each to a Python exception class.
#pragma once
#include <stdexcept>
#include <string>

namespace edgellama {

// Base of everything we throw on purpose.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// The operating system refused: file missing, unreadable, mmap failed.  -> OSError
class FileError : public Error {
 public:
  using Error::Error;
};

// A file's bytes are malformed: bad magic, truncated, out-of-range offset, inconsistent shape.
// -> edgellama.GGUFError (a ValueError)
class FormatError : public Error {
 public:
  using Error::Error;
};

// The file is well formed but uses something we do not implement (architecture, tensor type).
// -> edgellama.UnsupportedError (a ValueError)
class UnsupportedError : public Error {
 public:
  using Error::Error;
};

// A caller passed a bad argument: token id out of range, n_ctx <= 0, context full.  -> ValueError
class ArgumentError : public Error {
 public:
  using Error::Error;
};

}  // namespace edgellama
