"""The C API (cpp/include/edgellama.h, libedgellama) and the C example (examples/c/chat.c).

The library and the example are built with the system compiler through CMake
(-DEDGELLAMA_C_API=ON) into build/capi-test, reused between runs (ccache makes a fresh build cheap
when the developer build has compiled the core). The library is then driven two ways: through the
example program (its streamed answer must equal ``Llama(...)``'s greedy completion) and through
ctypes, which calls the exported C functions exactly as a C host would (error codes, messages,
buffer sizes, handles, threads). References are the Python package and its C++ core module.
"""

from __future__ import annotations

import ctypes as C
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import edgellama
from edgellama import Llama, _core

from conftest import ROOT

HEADER = ROOT / "cpp" / "include" / "edgellama.h"
BUILD = Path(os.environ.get("EDGELLAMA_CAPI_BUILD", ROOT / "build" / "capi-test"))

OK, INVALID, FILE, FORMAT, UNSUPPORTED, TOO_SMALL, CANCELLED = 0, 1, 2, 3, 4, 5, 6


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{tool} not found under CI=true (the C API tests must run)")
        pytest.skip(f"{tool} not found: the C API tests need a C/C++ toolchain and CMake")
    return path


@pytest.fixture(scope="module")
def build_dir() -> Path:
    cmake = _need("cmake")
    _need("cc")
    if not (BUILD / "CMakeCache.txt").is_file():
        args = [cmake, "-S", str(ROOT), "-B", str(BUILD), "-DEDGELLAMA_C_API=ON", "-DCMAKE_BUILD_TYPE=Release"]
        if shutil.which("ninja"):
            args += ["-G", "Ninja"]
        if shutil.which("ccache"):
            args += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_C_COMPILER_LAUNCHER=ccache"]
        subprocess.run(args, check=True, capture_output=True, text=True)
    env = dict(os.environ, CCACHE_BASEDIR=str(ROOT))
    r = subprocess.run([cmake, "--build", str(BUILD), "--target", "edgellama", "edgellama_chat", "-j",
                        os.environ.get("JOBS", "2")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"building libedgellama failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return BUILD


# ---------------------------------------------------------------------------------------------- ctypes

class ModelParams(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("vocab_only", C.c_bool),
                ("progress_callback", C.c_void_p), ("progress_user_data", C.c_void_p)]


class ContextParams(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("n_ctx", C.c_int32), ("n_threads", C.c_int32),
                ("n_batch", C.c_int32), ("kv_f32", C.c_bool), ("n_seq", C.c_int32)]


class Batch(C.Structure):
    _fields_ = [("tokens", C.POINTER(C.c_int32)), ("seq_ids", C.POINTER(C.c_int32)),
                ("want_logits", C.POINTER(C.c_uint8)), ("n", C.c_size_t)]


class SamplerParams(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("temperature", C.c_float), ("top_k", C.c_int32),
                ("top_p", C.c_float), ("min_p", C.c_float), ("typical_p", C.c_float),
                ("repeat_penalty", C.c_float), ("repeat_last_n", C.c_int32),
                ("frequency_penalty", C.c_float), ("presence_penalty", C.c_float), ("seed", C.c_uint64)]


PROGRESS = C.CFUNCTYPE(C.c_bool, C.c_float, C.c_void_p)
ON_TOKEN = C.CFUNCTYPE(C.c_bool, C.c_int32, C.c_void_p, C.c_size_t, C.c_void_p)
P = C.c_void_p
TOKENS = C.POINTER(C.c_int32)

SIGNATURES = {
    "edgellama_version": (C.c_char_p, []),
    "edgellama_abi_version": (C.c_int, []),
    "edgellama_last_error": (C.c_char_p, []),
    "edgellama_status_string": (C.c_char_p, [C.c_int]),
    "edgellama_model_default_params": (ModelParams, []),
    "edgellama_model_load": (C.c_int, [C.c_char_p, C.POINTER(ModelParams), C.POINTER(P)]),
    "edgellama_model_free": (None, [P]),
    "edgellama_model_n_vocab": (C.c_int32, [P]),
    "edgellama_model_n_ctx_train": (C.c_int32, [P]),
    "edgellama_model_n_embd": (C.c_int32, [P]),
    "edgellama_model_n_layer": (C.c_int32, [P]),
    "edgellama_model_architecture": (C.c_char_p, [P]),
    "edgellama_model_chat_template": (C.c_char_p, [P]),
    "edgellama_token_bos": (C.c_int32, [P]),
    "edgellama_token_eos": (C.c_int32, [P]),
    "edgellama_token_is_eog": (C.c_bool, [P, C.c_int32]),
    "edgellama_tokenize": (C.c_int, [P, C.c_char_p, C.c_size_t, C.c_bool, C.c_bool, TOKENS, C.c_size_t,
                                     C.POINTER(C.c_size_t)]),
    "edgellama_detokenize": (C.c_int, [P, TOKENS, C.c_size_t, C.c_bool, C.c_char_p, C.c_size_t,
                                       C.POINTER(C.c_size_t)]),
    "edgellama_context_default_params": (ContextParams, []),
    "edgellama_context_create": (C.c_int, [P, C.POINTER(ContextParams), C.POINTER(P)]),
    "edgellama_context_free": (None, [P]),
    "edgellama_context_n_ctx": (C.c_int32, [P]),
    "edgellama_context_n_past": (C.c_int32, [P]),
    "edgellama_context_truncate": (C.c_int, [P, C.c_int32]),
    "edgellama_decode": (C.c_int, [P, TOKENS, C.c_size_t]),
    "edgellama_get_logits": (C.POINTER(C.c_float), [P]),
    "edgellama_decode_batch": (C.c_int, [P, C.POINTER(Batch), C.POINTER(C.c_float), C.c_size_t,
                                         C.POINTER(C.c_size_t)]),
    "edgellama_context_n_past_seq": (C.c_int32, [P, C.c_int32]),
    "edgellama_context_truncate_seq": (C.c_int, [P, C.c_int32, C.c_int32]),
    "edgellama_sampler_default_params": (SamplerParams, []),
    "edgellama_sampler_create": (C.c_int, [C.POINTER(SamplerParams), C.POINTER(P)]),
    "edgellama_sampler_free": (None, [P]),
    "edgellama_sampler_sample": (C.c_int, [P, C.POINTER(C.c_float), C.c_int32, TOKENS]),
    "edgellama_sampler_accept": (C.c_int, [P, C.c_int32]),
    "edgellama_sampler_reset": (C.c_int, [P]),
    "edgellama_generate": (C.c_int, [P, P, TOKENS, C.c_size_t, C.c_int32, ON_TOKEN, C.c_void_p,
                                     C.POINTER(C.c_int32)]),
}


@pytest.fixture(scope="module")
def lib(build_dir):
    so = build_dir / "libedgellama.so"
    lib = C.CDLL(str(so))
    for name, (res, args) in SIGNATURES.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


def last_error(lib) -> str:
    return lib.edgellama_last_error().decode()


def tokens_array(ids):
    return (C.c_int32 * max(len(ids), 1))(*ids)


def load(lib, path, params=None) -> int:
    out = P()
    st = lib.edgellama_model_load(str(path).encode(), C.byref(params) if params else None, C.byref(out))
    assert st == OK, last_error(lib)
    return out.value


def make_context(lib, model, n_ctx=512, n_threads=1, n_seq=1):
    p = lib.edgellama_context_default_params()
    p.n_ctx, p.n_threads, p.n_seq = n_ctx, n_threads, n_seq
    out = P()
    assert lib.edgellama_context_create(model, C.byref(p), C.byref(out)) == OK, last_error(lib)
    return out.value


def make_sampler(lib, **kw):
    p = lib.edgellama_sampler_default_params()
    for k, v in kw.items():
        setattr(p, k, v)
    out = P()
    st = lib.edgellama_sampler_create(C.byref(p), C.byref(out))
    assert st == OK, last_error(lib)
    return out.value


def tokenize(lib, model, text: bytes, add_special=True, parse_special=True):
    n = C.c_size_t()
    assert lib.edgellama_tokenize(model, text, len(text), add_special, parse_special, None, 0, C.byref(n)) in (
        OK, TOO_SMALL)
    buf = tokens_array([0] * n.value)
    assert lib.edgellama_tokenize(model, text, len(text), add_special, parse_special, buf, n.value,
                                  C.byref(n)) == OK, last_error(lib)
    return list(buf[: n.value])


def generate(lib, ctx, sampler, prompt, max_tokens, stop_after=None):
    got = []

    @ON_TOKEN
    def on_token(tok, piece, n, _user):
        got.append((tok, C.string_at(piece, n) if n else b""))
        return stop_after is None or len(got) < stop_after

    n_gen = C.c_int32()
    st = lib.edgellama_generate(ctx, sampler, tokens_array(prompt), len(prompt), max_tokens, on_token, None,
                                C.byref(n_gen))
    assert st == OK, last_error(lib)
    assert n_gen.value == len(got)
    return got


@pytest.fixture(scope="module")
def smol(lib, smollm2_path):
    m = load(lib, smollm2_path)
    yield m
    lib.edgellama_model_free(m)


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(str(smollm2_path), n_ctx=512, n_threads=1)


def chatml(message: str) -> str:
    return f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"


# ---------------------------------------------------------------------------------------------- header

def _declared_functions() -> set:
    return set(re.findall(r"EDGELLAMA_API[^;(]*?\b(edgellama_\w+)\s*\(", HEADER.read_text()))


@pytest.mark.parametrize("compiler,flags,suffix", [
    ("gcc", ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"], ".c"),
    ("g++", ["-std=c++17", "-pedantic", "-Wall", "-Wextra", "-Werror"], ".cpp"),
])
def test_header_compiles_as_c99_and_cpp17(tmp_path, compiler, flags, suffix):
    _need(compiler)
    src = tmp_path / f"use{suffix}"
    # Every function is referenced, so a declaration that is not valid in the language fails here.
    calls = "\n".join(f"  (void)&{name};" for name in sorted(_declared_functions()))
    src.write_text('#include "edgellama.h"\nint main(void) {\n'
                   "  edgellama_model_params mp = edgellama_model_default_params();\n"
                   "  edgellama_status st = EDGELLAMA_OK;\n  (void)mp; (void)st;\n"
                   f"{calls}\n  return EDGELLAMA_ABI_VERSION == 1 ? 0 : 1;\n}}\n")
    r = subprocess.run([compiler, *flags, "-I", str(HEADER.parent), "-fsyntax-only", str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_library_exports_exactly_the_header_functions(build_dir):
    nm = _need("nm")
    out = subprocess.run([nm, "-D", "--defined-only", str(build_dir / "libedgellama.so")], capture_output=True,
                         text=True, check=True).stdout
    exported = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
    declared = _declared_functions()
    assert len(declared) >= 30
    assert exported == declared, (sorted(exported - declared)[:10], sorted(declared - exported))
    assert set(SIGNATURES) == declared  # the ctypes table below covers the whole API


def test_version(lib):
    assert lib.edgellama_version().decode() == edgellama.__version__
    assert lib.edgellama_abi_version() == int(re.search(r"#define EDGELLAMA_ABI_VERSION (\d+)",
                                                        HEADER.read_text()).group(1))
    assert lib.edgellama_status_string(TOO_SMALL) == b"buffer too small"
    assert lib.edgellama_status_string(99) == b"unknown status"


# ---------------------------------------------------------------------------------------------- model

def test_model_info_matches_python(lib, smol, smollm2_path):
    from gguf import GGUFReader  # gguf-py: an independent reader of the same metadata

    def gguf_string(reader, key):
        field = reader.fields[key]
        return bytes(field.parts[field.data[0]]).decode()

    reader = GGUFReader(str(smollm2_path))
    hp = _core.Model(str(smollm2_path)).hparams
    assert lib.edgellama_model_n_vocab(smol) == hp["n_vocab"]
    assert lib.edgellama_model_n_ctx_train(smol) == hp["n_ctx_train"]
    assert lib.edgellama_model_n_embd(smol) == hp["n_embd"]
    assert lib.edgellama_model_n_layer(smol) == hp["n_layer"]
    assert lib.edgellama_model_architecture(smol).decode() == gguf_string(reader, "general.architecture") == "llama"
    assert lib.edgellama_model_chat_template(smol).decode() == gguf_string(reader, "tokenizer.chat_template")
    llm = Llama(str(smollm2_path), vocab_only=True)
    assert lib.edgellama_token_bos(smol) == llm.token_bos()
    assert lib.edgellama_token_eos(smol) == llm.token_eos()
    assert lib.edgellama_token_is_eog(smol, llm.token_eos())
    assert not lib.edgellama_token_is_eog(smol, tokenize(lib, smol, b"Paris", False)[0])


def test_tiny_model_without_template_and_unsupported_architecture(lib, tmp_path):
    from model_factory import make_model

    path = make_model(tmp_path / "tiny.gguf", n_vocab=96, n_ctx_train=256)
    m = load(lib, path)
    try:
        assert lib.edgellama_model_chat_template(m) is None
        assert (lib.edgellama_model_n_vocab(m), lib.edgellama_model_n_ctx_train(m)) == (96, 256)
        assert lib.edgellama_model_n_layer(m) == 2
    finally:
        lib.edgellama_model_free(m)
    bad = make_model(tmp_path / "arch.gguf", extra_kv=lambda w: w.add_string("general.architecture", "nonesuch"))
    out = P()
    st = lib.edgellama_model_load(str(bad).encode(), None, C.byref(out))
    assert st in (FORMAT, UNSUPPORTED) and out.value is None and str(bad) in last_error(lib), last_error(lib)


def test_progress_callback_reports_and_cancels(lib, smollm2_path):
    seen = []

    @PROGRESS
    def progress(f, _user):
        seen.append(f)
        return True

    p = lib.edgellama_model_default_params()
    p.progress_callback = C.cast(progress, C.c_void_p)
    m = load(lib, smollm2_path, p)
    lib.edgellama_model_free(m)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) >= 3

    calls = []

    @PROGRESS
    def cancel(f, _user):
        calls.append(f)
        return f < 0.5  # cancel in the middle

    p.progress_callback = C.cast(cancel, C.c_void_p)
    out = P(1234)
    assert lib.edgellama_model_load(str(smollm2_path).encode(), C.byref(p), C.byref(out)) == CANCELLED
    assert out.value is None and "cancelled" in last_error(lib) and calls[-1] >= 0.5 and 1.0 not in calls


# ---------------------------------------------------------------------------------------------- tokenizer

@pytest.mark.parametrize("text", ["Hello, world!", "  leading spaces and ünïcödé 日本語 🙂",
                                  "<|im_start|>user\nhi<|im_end|>\n", ""])
def test_tokenize_detokenize_match_python(lib, smol, llm, text):
    data = text.encode()
    for special in (False, True):
        assert tokenize(lib, smol, data, True, special) == llm.tokenize(data, add_bos=True, special=special)
    ids = llm.tokenize(data, add_bos=False, special=True)
    for special in (False, True):
        want = llm.detokenize(ids, special=special)
        n = C.c_size_t()
        buf = C.create_string_buffer(len(want) + 1)
        assert lib.edgellama_detokenize(smol, tokens_array(ids), len(ids), special, buf, len(want) + 1,
                                        C.byref(n)) == OK, last_error(lib)
        assert n.value == len(want) and buf.raw == want + b"\0"


def test_buffers_too_small_report_the_needed_size(lib, smol):
    text = b"The quick brown fox jumps over the lazy dog"
    ids = tokenize(lib, smol, text, False, False)
    n = C.c_size_t()
    short = tokens_array([-7] * len(ids))
    assert lib.edgellama_tokenize(smol, text, len(text), False, False, short, len(ids) - 1, C.byref(n)) == TOO_SMALL
    assert n.value == len(ids) and list(short) == [-7] * len(ids)  # nothing written
    assert f"{len(ids)} tokens" in last_error(lib)
    buf = C.create_string_buffer(b"\x7f" * (len(text) + 1), len(text) + 1)
    # room for the bytes but not the NUL is still too small
    assert lib.edgellama_detokenize(smol, tokens_array(ids), len(ids), False, buf, len(text), C.byref(n)) == TOO_SMALL
    assert n.value == len(text) and buf.raw == b"\x7f" * (len(text) + 1)
    assert lib.edgellama_detokenize(smol, tokens_array(ids), len(ids), False, None, 0, C.byref(n)) == TOO_SMALL
    assert n.value == len(text)


# ---------------------------------------------------------------------------------------------- errors

def test_load_errors(lib, tmp_path):
    out = P(1234)
    missing = tmp_path / "missing.gguf"
    assert lib.edgellama_model_load(str(missing).encode(), None, C.byref(out)) == FILE
    assert out.value is None and str(missing) in last_error(lib)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 60)
    assert lib.edgellama_model_load(str(bad).encode(), None, C.byref(out)) == FORMAT
    assert out.value is None and str(bad) in last_error(lib)
    notgguf = tmp_path / "text.gguf"
    notgguf.write_bytes(b"hello, this is not a model file at all\n" * 4)
    assert lib.edgellama_model_load(str(notgguf).encode(), None, C.byref(out)) == FORMAT
    assert lib.edgellama_model_load(None, None, C.byref(out)) == INVALID and "path is NULL" in last_error(lib)
    assert lib.edgellama_model_load(str(bad).encode(), None, None) == INVALID
    assert "out_model is NULL" in last_error(lib)
    p = lib.edgellama_model_default_params()
    p.struct_size = 0
    assert lib.edgellama_model_load(str(bad).encode(), C.byref(p), C.byref(out)) == INVALID
    assert "struct_size" in last_error(lib)


def test_null_and_wrong_handles_are_errors_not_crashes(lib, smol):
    assert lib.edgellama_model_n_vocab(None) == -1 and "model is NULL" in last_error(lib)
    assert lib.edgellama_model_architecture(None) is None
    assert lib.edgellama_context_n_past(None) == -1 and "context is NULL" in last_error(lib)
    sampler = make_sampler(lib)
    try:
        # a sampler passed where a model / context is expected
        assert lib.edgellama_model_n_vocab(sampler) == -1
        assert "not a valid edgellama_model handle" in last_error(lib)
        assert lib.edgellama_decode(sampler, tokens_array([1]), 1) == INVALID
        assert "not a valid edgellama_context handle" in last_error(lib)
        out = P()
        assert lib.edgellama_context_create(sampler, None, C.byref(out)) == INVALID and out.value is None
        assert lib.edgellama_sampler_sample(smol, (C.c_float * 4)(), 4, tokens_array([0])) == INVALID
        assert "not a valid edgellama_sampler handle" in last_error(lib)
        n = C.c_size_t()
        assert lib.edgellama_tokenize(smol, b"x", 1, True, True, None, 0, None) == INVALID
        assert "n_tokens is NULL" in last_error(lib)
        assert lib.edgellama_tokenize(smol, None, 5, True, True, None, 0, C.byref(n)) == INVALID
        assert lib.edgellama_sampler_sample(sampler, None, 4, tokens_array([0])) == INVALID
        assert lib.edgellama_sampler_accept(sampler, -3) == INVALID
    finally:
        lib.edgellama_sampler_free(sampler)
    for free in (lib.edgellama_model_free, lib.edgellama_context_free, lib.edgellama_sampler_free):
        free(None)  # no-op


def test_bad_arguments_to_contexts_and_samplers(lib, smol, smollm2_path):
    bad = lib.edgellama_sampler_default_params()
    bad.top_p = -1.0
    out = P()
    assert lib.edgellama_sampler_create(C.byref(bad), C.byref(out)) == INVALID and out.value is None
    assert "top_p" in last_error(lib)
    p = lib.edgellama_context_default_params()
    p.n_ctx = 0
    assert lib.edgellama_context_create(smol, C.byref(p), C.byref(out)) == INVALID and "n_ctx" in last_error(lib)
    vocab_only = lib.edgellama_model_default_params()
    vocab_only.vocab_only = True
    vm = load(lib, smollm2_path, vocab_only)
    try:
        assert lib.edgellama_context_create(vm, None, C.byref(out)) == INVALID and "vocab_only" in last_error(lib)
        assert tokenize(lib, vm, b"hi") == tokenize(lib, smol, b"hi")  # the tokenizer still works
    finally:
        lib.edgellama_model_free(vm)

    ctx = make_context(lib, smol, n_ctx=8)
    try:
        assert not lib.edgellama_get_logits(ctx) and "decode" in last_error(lib)
        n_vocab = lib.edgellama_model_n_vocab(smol)
        assert lib.edgellama_decode(ctx, tokens_array([1, n_vocab]), 2) == INVALID
        assert lib.edgellama_context_n_past(ctx) == 0  # unchanged
        assert lib.edgellama_decode(ctx, tokens_array([1] * 6), 6) == OK
        assert lib.edgellama_decode(ctx, tokens_array([1] * 3), 3) == INVALID  # 9 > n_ctx = 8
        assert lib.edgellama_context_n_past(ctx) == 6
        assert lib.edgellama_context_truncate(ctx, 7) == INVALID and "n_past" in last_error(lib)
        assert lib.edgellama_context_truncate(ctx, 2) == OK and lib.edgellama_context_n_past(ctx) == 2
        s = make_sampler(lib)
        assert lib.edgellama_generate(ctx, s, None, 0, 4, ON_TOKEN(), None, None) == INVALID
        assert "prompt is empty" in last_error(lib)
        lib.edgellama_sampler_free(s)
    finally:
        lib.edgellama_context_free(ctx)


def test_last_error_is_per_thread(lib):
    assert lib.edgellama_model_n_vocab(None) == -1
    mine = last_error(lib)
    theirs = []

    def other():
        lib.edgellama_context_n_ctx(None)
        theirs.append(last_error(lib))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert "context is NULL" in theirs[0]
    assert last_error(lib) == mine and "model is NULL" in mine


# ---------------------------------------------------------------------------------------------- compute

def test_logits_equal_the_core_module(lib, smol, smollm2_path, llm):
    ids = llm.tokenize(b"Once upon a time, there was", add_bos=True)
    ctx = make_context(lib, smol, n_ctx=64, n_threads=1)
    try:
        assert lib.edgellama_decode(ctx, tokens_array(ids), len(ids)) == OK
        n_vocab = lib.edgellama_model_n_vocab(smol)
        got = np.ctypeslib.as_array(lib.edgellama_get_logits(ctx), shape=(n_vocab,)).copy()
    finally:
        lib.edgellama_context_free(ctx)
    core = _core.Context(_core.Model(str(smollm2_path)), 64, 1, 512, "f16", "f16", "fast")
    want = core.decode(np.array(ids, dtype=np.int32), all_logits=False)
    np.testing.assert_array_equal(got, want)


def test_sampler_equals_the_core_sampler(lib):
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, size=(40, 301)).astype(np.float32)
    params = dict(temperature=0.9, top_k=50, top_p=0.9, min_p=0.02, repeat_penalty=1.3, repeat_last_n=8, seed=77)
    s = make_sampler(lib, **params)
    ref = _core.Sampler(**params)
    try:
        out = tokens_array([0])
        for row in logits:
            assert lib.edgellama_sampler_sample(s, row.ctypes.data_as(C.POINTER(C.c_float)), 301, out) == OK
            want = int(ref.sample(row))
            assert out[0] == want
            assert lib.edgellama_sampler_accept(s, want) == OK
            ref.accept(want)
        assert lib.edgellama_sampler_reset(s) == OK
        ref.reset()
        assert lib.edgellama_sampler_sample(s, logits[0].ctypes.data_as(C.POINTER(C.c_float)), 301, out) == OK
        assert out[0] == ref.sample(logits[0])
    finally:
        lib.edgellama_sampler_free(s)


def _python_greedy(llm, prompt: str, n: int):
    res = llm(prompt, max_tokens=n, temperature=0.0)
    return res["choices"][0]["text"], res["usage"]["completion_tokens"]


def test_generate_streams_the_python_greedy_answer(lib, smol, llm):
    prompt = chatml("Name three colors of the rainbow.")
    want_text, n_want = _python_greedy(llm, prompt, 24)
    ids = tokenize(lib, smol, prompt.encode())
    ctx = make_context(lib, smol)
    s = make_sampler(lib, temperature=0.0)
    try:
        got = generate(lib, ctx, s, ids, 24)
        assert len(got) == n_want
        assert b"".join(p for _, p in got).decode() == want_text
        # the generated tokens are Python's greedy tokens
        gen = llm.generate(ids, temp=0.0)
        assert [t for t, _ in got] == [next(gen) for _ in got]
        gen.close()
        # the cache holds the prompt and all generated tokens but the last
        assert lib.edgellama_context_n_past(ctx) == len(ids) + len(got) - 1
        # the callback stops generation
        assert lib.edgellama_context_truncate(ctx, 0) == OK and lib.edgellama_sampler_reset(s) == OK
        assert [t for t, _ in generate(lib, ctx, s, ids, 24, stop_after=3)] == [t for t, _ in got[:3]]
    finally:
        lib.edgellama_sampler_free(s)
        lib.edgellama_context_free(ctx)


def test_contexts_of_one_model_run_in_parallel_threads(lib, smollm2_path):
    model = load(lib, smollm2_path)
    prompts = [chatml("What is 2 + 2?"), chatml("Say hello in French.")]
    ids = [tokenize(lib, model, p.encode()) for p in prompts]
    ctxs = [make_context(lib, model, n_threads=1) for _ in prompts]
    samplers = [make_sampler(lib, temperature=0.0) for _ in prompts]
    lib.edgellama_model_free(model)  # the contexts keep the model alive
    try:
        alone = [generate(lib, c, s, i, 12) for c, s, i in zip(ctxs, samplers, ids)]
        for c, s in zip(ctxs, samplers):
            assert lib.edgellama_context_truncate(c, 0) == OK and lib.edgellama_sampler_reset(s) == OK
        results = [None, None]

        def run(k):  # ctypes releases the GIL around each C call
            results[k] = generate(lib, ctxs[k], samplers[k], ids[k], 12)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == alone and alone[0] != alone[1]
    finally:
        for c, s in zip(ctxs, samplers):
            lib.edgellama_context_free(c)
            lib.edgellama_sampler_free(s)


def test_chat_example_streams_the_python_greedy_answer(build_dir, smollm2_path, llm):
    message = "What is the capital of France? Answer in one sentence."
    want_text, _ = _python_greedy(llm, chatml(message), 40)
    r = subprocess.run([str(build_dir / "chat"), str(smollm2_path), message, "40"], capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == want_text + "\n"
    assert "Paris" in want_text


def test_chat_example_reports_errors(build_dir, tmp_path):
    r = subprocess.run([str(build_dir / "chat"), str(tmp_path / "nope.gguf"), "hi"], capture_output=True, timeout=60)
    assert r.returncode == 1 and b"nope.gguf" in r.stderr and b"loading the model" in r.stderr
    r = subprocess.run([str(build_dir / "chat")], capture_output=True, timeout=60)
    assert r.returncode == 2 and b"usage" in r.stderr


def test_generate_pieces_keep_spaces_of_sentencepiece_tokens(lib, tmp_path):
    """A SentencePiece vocabulary strips the leading space of a text's first piece; streamed pieces
    are detokenized after the previous token, so "▁word" tokens keep their space (as in Python).
    (200 tokens: no byte tokens, so the random model cannot emit invalid UTF-8.)"""
    from model_factory import make_model

    path = make_model(tmp_path / "spm.gguf", n_vocab=200, n_embd=64, n_ctx_train=128, seed=3)
    llm = Llama(str(path), n_ctx=128, n_threads=1)
    want_text, n_want = _python_greedy(llm, "a b c", 16)
    m = load(lib, path)
    ctx = make_context(lib, m, n_ctx=128)
    s = make_sampler(lib, temperature=0.0)
    try:
        got = generate(lib, ctx, s, tokenize(lib, m, b"a b c"), 16)
    finally:
        lib.edgellama_sampler_free(s)
        lib.edgellama_context_free(ctx)
        lib.edgellama_model_free(m)
    assert len(got) == n_want and b"".join(p for _, p in got).decode() == want_text
    assert any(p.startswith(b" ") for _, p in got)  # the case this test is about occurs


def test_install_gives_a_cmake_package_and_a_pkg_config_file(build_dir, tmp_path):
    """`cmake --install` puts the header, the library, the CMake package config and edgellama.pc
    under a prefix; a separate project finds it both ways and links the example against it."""
    cmake = _need("cmake")
    prefix = tmp_path / "prefix"
    subprocess.run([cmake, "--install", str(build_dir), "--prefix", str(prefix)], check=True, capture_output=True)
    assert (prefix / "include" / "edgellama.h").read_bytes() == HEADER.read_bytes()
    chat_c = ROOT / "examples" / "c" / "chat.c"
    proj = tmp_path / "consumer"
    proj.mkdir()
    (proj / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(consumer C)\nfind_package(edgellama 0.1 REQUIRED)\n"
        f'add_executable(chat "{chat_c.as_posix()}")\n'
        "target_link_libraries(chat PRIVATE edgellama::edgellama)\n")
    built = []
    subprocess.run([cmake, "-S", str(proj), "-B", str(proj / "b"), f"-DCMAKE_PREFIX_PATH={prefix}"], check=True,
                   capture_output=True)
    subprocess.run([cmake, "--build", str(proj / "b")], check=True, capture_output=True)
    built.append(([str(proj / "b" / "chat")], {}))
    if shutil.which("pkg-config"):
        pc_dir = next(prefix.rglob("edgellama.pc")).parent  # lib/ or lib64/, as GNUInstallDirs says
        env = dict(os.environ, PKG_CONFIG_PATH=str(pc_dir))
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "edgellama"], env=env, check=True,
                               capture_output=True, text=True).stdout.split()
        exe = tmp_path / "chat_pc"
        subprocess.run([_need("cc"), "-std=c99", "-o", str(exe), str(chat_c), *flags], check=True, capture_output=True)
        built.append(([str(exe)], {"LD_LIBRARY_PATH": str(pc_dir.parent)}))
    for cmd, extra in built:
        r = subprocess.run(cmd + [str(tmp_path / "none.gguf"), "hi"], capture_output=True, timeout=60,
                           env=dict(os.environ, **extra))
        # it ran against the installed library: the load failed with the library's message
        assert r.returncode == 1 and b"none.gguf: cannot open" in r.stderr, r.stderr


def test_generate_limits(lib, smol):
    ids = tokenize(lib, smol, chatml("Count from one to twenty.").encode())
    s = make_sampler(lib, temperature=0.0)
    ctx = make_context(lib, smol, n_ctx=len(ids) + 5)
    try:
        assert generate(lib, ctx, s, ids, 0) == []  # max_tokens = 0: the prompt is evaluated only
        assert lib.edgellama_context_n_past(ctx) == len(ids)
        assert lib.edgellama_context_truncate(ctx, 0) == OK
        assert len(generate(lib, ctx, s, ids, 1, stop_after=1)) == 1  # stopped by the callback at once
        assert lib.edgellama_context_truncate(ctx, 0) == OK
        # a full context ends generation without an error: 5 free positions give 6 tokens (the last
        # one is sampled from the logits of the last position and not evaluated)
        got = generate(lib, ctx, s, ids, 100)
        assert len(got) == 6 and lib.edgellama_context_n_past(ctx) == len(ids) + 5
        assert lib.edgellama_generate(ctx, s, tokens_array(ids), len(ids), 4, ON_TOKEN(), None, None) == INVALID
        assert "context" in last_error(lib)  # the prompt does not fit
        assert lib.edgellama_generate(ctx, s, tokens_array(ids), len(ids), -1, ON_TOKEN(), None, None) == INVALID
        assert "max_tokens" in last_error(lib)
    finally:
        lib.edgellama_context_free(ctx)
        lib.edgellama_sampler_free(s)


def test_decode_batch_of_two_sequences_equals_each_alone(lib, smol, llm):
    a = llm.tokenize(b"The cat sat on the", add_bos=True)
    b = llm.tokenize(b"Rust and C++ are both", add_bos=True)
    n_vocab = lib.edgellama_model_n_vocab(smol)

    def alone(ids):
        ctx = make_context(lib, smol, n_ctx=64)
        try:
            assert lib.edgellama_decode(ctx, tokens_array(ids), len(ids)) == OK
            return np.ctypeslib.as_array(lib.edgellama_get_logits(ctx), shape=(n_vocab,)).copy()
        finally:
            lib.edgellama_context_free(ctx)

    # interleave the rows of the two sequences; logits for the last row of each
    rows = []
    for i in range(max(len(a), len(b))):
        rows += [(a[i], 0)] if i < len(a) else []
        rows += [(b[i], 1)] if i < len(b) else []
    assert len(a) != len(b)  # one sequence has rows after the other's last
    last = {0: max(i for i, r in enumerate(rows) if r[1] == 0), 1: max(i for i, r in enumerate(rows) if r[1] == 1)}
    want = (C.c_uint8 * len(rows))(*[int(i in last.values()) for i in range(len(rows))])
    batch = Batch(tokens_array([t for t, _ in rows]), (C.c_int32 * len(rows))(*[s for _, s in rows]), want,
                  len(rows))
    ctx = make_context(lib, smol, n_ctx=64, n_seq=2)
    try:
        out = (C.c_float * (2 * n_vocab))()
        n = C.c_size_t()
        assert lib.edgellama_decode_batch(ctx, C.byref(batch), out, 2 * n_vocab - 1, C.byref(n)) == TOO_SMALL
        assert n.value == 2 and lib.edgellama_context_n_past_seq(ctx, 0) == 0
        assert lib.edgellama_decode_batch(ctx, C.byref(batch), out, 2 * n_vocab, C.byref(n)) == OK, last_error(lib)
        got = np.ctypeslib.as_array(out).reshape(2, n_vocab)
        first = 0 if last[0] < last[1] else 1  # rows come out in row order
        np.testing.assert_array_equal(got[first], alone(a if first == 0 else b))
        np.testing.assert_array_equal(got[1 - first], alone(b if first == 0 else a))
        assert (lib.edgellama_context_n_past_seq(ctx, 0), lib.edgellama_context_n_past_seq(ctx, 1)) == (len(a), len(b))
        assert lib.edgellama_context_n_past_seq(ctx, 2) == -1 and "n_seq" in last_error(lib)
        assert lib.edgellama_context_truncate_seq(ctx, 1, len(b) + 1) == INVALID
        assert lib.edgellama_context_truncate_seq(ctx, 1, 2) == OK and lib.edgellama_context_n_past_seq(ctx, 1) == 2
        bad = Batch(tokens_array([1]), (C.c_int32 * 1)(5), None, 1)
        assert lib.edgellama_decode_batch(ctx, C.byref(bad), None, 0, None) == INVALID
        assert "sequence id 5" in last_error(lib)
        assert lib.edgellama_decode_batch(ctx, None, None, 0, None) == INVALID and "batch is NULL" in last_error(lib)
    finally:
        lib.edgellama_context_free(ctx)


# ------------------------------------------------------------------------ embeddings and state

SIGNATURES.update({
    "edgellama_decode_embeddings": (C.c_int, [P, TOKENS, C.c_size_t, C.POINTER(C.c_float), C.c_size_t,
                                              C.POINTER(C.c_size_t)]),
    "edgellama_state_size": (C.c_int, [P, C.POINTER(C.c_size_t)]),
    "edgellama_state_save": (C.c_int, [P, C.c_void_p, C.c_size_t, C.POINTER(C.c_size_t)]),
    "edgellama_state_load": (C.c_int, [P, C.c_void_p, C.c_size_t]),
})


def embeddings(lib, ctx, ids, n_embd):
    out = (C.c_float * (len(ids) * n_embd))()
    n = C.c_size_t()
    st = lib.edgellama_decode_embeddings(ctx, tokens_array(ids), len(ids), out, len(out), C.byref(n))
    assert st == OK, last_error(lib)
    assert n.value == len(ids) * n_embd
    return np.ctypeslib.as_array(out).reshape(len(ids), n_embd).copy()


def make_context_kv(lib, model, n_ctx, kv_f32):
    p = lib.edgellama_context_default_params()
    p.n_ctx, p.n_threads, p.kv_f32 = n_ctx, 1, kv_f32
    out = P()
    assert lib.edgellama_context_create(model, C.byref(p), C.byref(out)) == OK, last_error(lib)
    return out.value


def test_embeddings_match_the_float64_reference(lib, tmp_path):
    from model_factory import make_model
    from reference_forward import ReferenceModel

    path = tmp_path / "tiny.gguf"
    make_model(path, wtype="F32", n_layer=2)
    model = load(lib, path)
    ctx = make_context_kv(lib, model, 64, kv_f32=True)
    try:
        n_embd = lib.edgellama_model_n_embd(model)
        first, second = [1, 5, 9, 2, 77, 3, 40], [8, 8, 15]
        got = embeddings(lib, ctx, first, n_embd)
        assert lib.edgellama_context_n_past(ctx) == len(first)  # appended to the cache like decode
        assert not lib.edgellama_get_logits(ctx)                 # no logits for the embedded tokens
        # a continuation attends to the embedded tokens: rows of the whole sequence's reference
        got2 = embeddings(lib, ctx, second, n_embd)
        want = ReferenceModel(path).forward_many([first + second], hidden=True)[0]
        scale = np.abs(want).max()
        # measured: 1.1e-7 of the largest |value| (float32 forward vs float64); a wrong row or a
        # missing norm is O(1) of it
        np.testing.assert_allclose(np.vstack([got, got2]), want, rtol=0, atol=2e-6 * scale)
        # the tokens' logits after embedding them are the ones a plain decode gives
        lib.edgellama_context_truncate(ctx, 0)
        embeddings(lib, ctx, first, n_embd)
        assert lib.edgellama_decode(ctx, tokens_array(second), len(second)) == OK
        after_embed = np.ctypeslib.as_array(lib.edgellama_get_logits(ctx), shape=(96,)).copy()
        lib.edgellama_context_truncate(ctx, 0)
        ids = first + second
        assert lib.edgellama_decode(ctx, tokens_array(ids), len(ids)) == OK
        plain = np.ctypeslib.as_array(lib.edgellama_get_logits(ctx), shape=(96,)).copy()
        np.testing.assert_allclose(after_embed, plain, rtol=0, atol=1e-5 * np.abs(plain).max())
    finally:
        lib.edgellama_context_free(ctx)
        lib.edgellama_model_free(model)


def test_embeddings_errors_leave_the_context_unchanged(lib, smol):
    ctx = make_context(lib, smol, n_ctx=16)
    try:
        n_embd = lib.edgellama_model_n_embd(smol)
        ids = [1, 2, 3]
        n = C.c_size_t()
        small = (C.c_float * (3 * n_embd - 1))()
        assert lib.edgellama_decode_embeddings(ctx, tokens_array(ids), 3, small, len(small), C.byref(n)) == TOO_SMALL
        assert n.value == 3 * n_embd and "capacity" in last_error(lib)
        assert lib.edgellama_context_n_past(ctx) == 0  # nothing evaluated
        out = (C.c_float * (3 * n_embd))()
        assert lib.edgellama_decode_embeddings(ctx, tokens_array([1, 10**7, 3]), 3, out, len(out), None) == INVALID
        assert lib.edgellama_context_n_past(ctx) == 0
        assert lib.edgellama_decode_embeddings(ctx, tokens_array(ids), 3, None, 0, None) == INVALID
        assert "embeddings is NULL" in last_error(lib)
        big = (C.c_float * (17 * n_embd))()
        assert lib.edgellama_decode_embeddings(ctx, tokens_array(list(range(17))), 17, big, len(big), None) == INVALID
        assert "n_ctx" in last_error(lib)
        assert lib.edgellama_decode_embeddings(None, tokens_array(ids), 3, out, len(out), None) == INVALID
        assert "context is NULL" in last_error(lib)
    finally:
        lib.edgellama_context_free(ctx)


def save_state(lib, ctx) -> bytes:
    size = C.c_size_t()
    assert lib.edgellama_state_size(ctx, C.byref(size)) == OK, last_error(lib)
    buf = C.create_string_buffer(size.value)
    n = C.c_size_t()
    assert lib.edgellama_state_save(ctx, buf, size.value, C.byref(n)) == OK, last_error(lib)
    assert n.value == size.value
    return buf.raw


def test_state_save_load_resumes_the_conversation_exactly(lib, smol, llm):
    prompt = llm.tokenize(b"The capital of France is", add_bos=True)
    src = make_context(lib, smol, n_ctx=64)
    dst = make_context(lib, smol, n_ctx=32)  # a smaller context is fine while the state fits
    sampler_a, sampler_b = make_sampler(lib, temperature=0.0), make_sampler(lib, temperature=0.0)
    try:
        assert lib.edgellama_decode(src, tokens_array(prompt[:-1]), len(prompt) - 1) == OK
        state = save_state(lib, src)
        assert lib.edgellama_state_load(dst, state, len(state)) == OK, last_error(lib)
        assert lib.edgellama_context_n_past(dst) == len(prompt) - 1
        assert not lib.edgellama_get_logits(dst)  # logits are not part of the state
        # both continue with the prompt's last token and generate the same greedy answer
        a = generate(lib, src, sampler_a, prompt[-1:], 12)
        b = generate(lib, dst, sampler_b, prompt[-1:], 12)
        assert len(a) == 12 and a == b
        # and that answer is the one generating from the whole prompt in one go gives
        fresh = make_context(lib, smol, n_ctx=64)
        try:
            c = generate(lib, fresh, make_sampler(lib, temperature=0.0), prompt, 12)
        finally:
            lib.edgellama_context_free(fresh)
        assert a == c
    finally:
        for ctx in (src, dst):
            lib.edgellama_context_free(ctx)
        lib.edgellama_sampler_free(sampler_a)
        lib.edgellama_sampler_free(sampler_b)


def test_state_errors_leave_the_context_unchanged(lib, smol):
    src = make_context(lib, smol, n_ctx=64)
    dst = make_context(lib, smol, n_ctx=64)
    tiny = make_context(lib, smol, n_ctx=4)
    f32 = make_context_kv(lib, smol, 64, kv_f32=True)
    try:
        ids = [1, 2, 3, 4, 5, 6]
        assert lib.edgellama_decode(src, tokens_array(ids), len(ids)) == OK
        state = save_state(lib, src)
        assert lib.edgellama_decode(dst, tokens_array([7, 8]), 2) == OK
        before = np.ctypeslib.as_array(lib.edgellama_get_logits(dst), shape=(lib.edgellama_model_n_vocab(smol),)).copy()

        n = C.c_size_t()
        small = C.create_string_buffer(len(state) - 1)
        assert lib.edgellama_state_save(src, small, len(small), C.byref(n)) == TOO_SMALL
        assert n.value == len(state) and small.raw == b"\0" * len(small)  # nothing written
        assert lib.edgellama_state_save(src, None, 0, C.byref(n)) == INVALID and n.value == len(state)
        assert lib.edgellama_state_size(src, None) == INVALID

        # the state holds the tokens, not n_ctx: it grows by the same amount per token from a
        # header-only state (an empty context)
        empty = save_state(lib, tiny)
        assert len(empty) < 64
        per_token = (len(state) - len(empty)) // len(ids)
        assert per_token > 0 and len(empty) + len(ids) * per_token == len(state)
        assert len(save_state(lib, dst)) == len(empty) + 2 * per_token

        cases = [
            (state[:-1], "bytes"),                                  # truncated
            (state[:10], "too short"),
            (b"NOTASTAT" + state[8:], "bad magic"),                 # corrupted header
            (state + b"\0", "bytes"),                               # trailing garbage
        ]
        for data, msg in cases:
            assert lib.edgellama_state_load(dst, data, len(data)) == INVALID
            assert msg in last_error(lib), last_error(lib)
            assert lib.edgellama_context_n_past(dst) == 2
        assert lib.edgellama_state_load(tiny, state, len(state)) == INVALID and "n_ctx" in last_error(lib)
        assert lib.edgellama_state_load(f32, state, len(state)) == INVALID and "type" in last_error(lib)
        assert lib.edgellama_state_load(dst, None, 0) == INVALID and "data is NULL" in last_error(lib)
        assert lib.edgellama_state_load(None, state, len(state)) == INVALID
        # the failed loads left dst as it was: same n_past, same logits, and it continues as before
        assert lib.edgellama_context_n_past(dst) == 2 and lib.edgellama_context_n_past(tiny) == 0
        after = np.ctypeslib.as_array(lib.edgellama_get_logits(dst), shape=before.shape)
        np.testing.assert_array_equal(after, before)
    finally:
        for ctx in (src, dst, tiny, f32):
            lib.edgellama_context_free(ctx)
