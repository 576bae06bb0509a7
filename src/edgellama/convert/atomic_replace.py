"""Put a finished temporary file in place of OUTPUT without ext4's forced writeback.

ext4 (mounted with its default auto_da_alloc) starts writeback of a file's delayed-allocation data,
in the calling process, when a file that was opened with O_TRUNC is closed and when a file is
renamed over an existing one: block allocation and I/O submission for the whole file, ~40-60 ms for
a 140 MB output on the benchmark machine (the "closing/renaming costs 60-90 ms" of issue 17). This
is a crash-safety heuristic for programs that rewrite files without fsync; it does not make the file
durable (neither we nor llama-quantize fsync), and the kernel writes the data back later anyway.

So the writer opens the mkstemp file without O_TRUNC, and the finished file takes OUTPUT's place by
an atomic exchange (renameat2 RENAME_EXCHANGE: OUTPUT is at every instant either the old file or
the new one, never missing) followed by the removal of the old file, now at the temporary name.
Where the exchange is not available (not Linux, a file system without it, OUTPUT absent) it is a
plain os.replace, which needs no exchange when nothing is replaced.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2 = None  # libc's renameat2, looked up on first use (None: not looked up yet; False: absent)


def _libc_renameat2():
    global _renameat2
    if _renameat2 is None:
        _renameat2 = False
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):
            pass
    return _renameat2


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap the directory entries a and b (both must exist). False where the system
    cannot (no renameat2, a file system without RENAME_EXCHANGE, b absent); OSError for other
    failures."""
    fn = _libc_renameat2()
    if not fn:
        return False
    import ctypes

    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOENT, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_file(tmp: Path, out: Path) -> None:
    """os.replace(tmp, out), without the writeback ext4 forces when a file is renamed over another
    (see the module docstring). Once this returns, tmp no longer exists."""
    if os.path.lexists(out) and not os.path.isdir(out) and exchange(tmp, out):
        # tmp now names the old OUTPUT. Removing it frees its blocks and page cache (the cost any
        # overwrite pays, llama-quantize's O_TRUNC included).
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        return
    os.replace(tmp, out)
