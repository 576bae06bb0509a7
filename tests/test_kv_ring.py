"""Sliding-window layers' KV ring buffer (cpp/runtime/context.cpp, context_state.cpp, batch.cpp).

Windowed layers (gemma2's every other layer, gemma3's local layers) keep only the last
window + n_batch + 96 positions per sequence, rounded up to whole K blocks of 64 (doubled, so the attention
kernel reads a contiguous window)
instead of n_ctx. The ring must be invisible: the same logits, bit for bit, as a full-size cache
(swa_full=True) over sequences several times the ring, on both paths, in one chunk or token by token,
through decode_batch with several sequences, after a rollback within the last batch and across a state
save/load; a rollback deeper than the ring keeps is refused clearly (and the Python layers re-evaluate).

Tiny gemma2 / gemma3 models (window 8) from tests/hf_tiny_models.py, converted by our converter.
"""

from __future__ import annotations

import numpy as np
import pytest

import hf_tiny_models as H

pytest.importorskip("transformers")
pytest.importorskip("torch")

from edgellama import _core  # noqa: E402

N_CTX, N_BATCH = 320, 16  # ring = 8 + 16 + 96 = 120 -> 128 positions, 256 rows < 320
SEQ = 300  # 2.3 rings


def ring_size(n_batch, window=8):
    """The ring's positions: window + n_batch + one attention tile's reach (32 queries + a 64-key block),
    rounded up to whole blocks of 64 rows (the K cache's block layout, kernels.h k_cache_index)."""
    return -(-(window + n_batch + 96) // 64) * 64
MODES = [("exact", "f32"), ("fast", "f16")]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (hf dir, F32 GGUF by our converter)."""
    from edgellama.quantize import quantize

    root = tmp_path_factory.mktemp("ring_models")
    out = {}
    for name in ("gemma2", "gemma3"):
        d = H.build_hf(H.VARIANTS[name], root / name)
        path = root / f"{name}.gguf"
        quantize(d, path, "F32", progress=False)
        out[name] = (d, path)
    return out


def ctx(path, precision="exact", kv="f32", n_ctx=N_CTX, n_batch=N_BATCH, n_seq=1, swa_full=False):
    c = _core.Context(_core.Model(str(path)), n_ctx, 1, n_batch, kv, kv, precision, n_seq=n_seq, swa_full=swa_full)
    assert (c.kv_ring_size == 0) == (swa_full or 2 * ring_size(n_batch) >= n_ctx)
    return c


def toks(n, seed=0):
    return np.random.default_rng(seed).integers(4, 300, size=n).astype(np.int32)


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
@pytest.mark.parametrize("precision,kv", MODES)
def test_ring_gives_the_full_cache_bits(models, name, precision, kv):
    path = models[name][1]
    t = toks(SEQ)
    full = ctx(path, precision, kv, swa_full=True)
    want = full.decode(t, True)
    ring = ctx(path, precision, kv)
    assert ring.kv_ring_size == ring_size(N_BATCH)
    assert ring.kv_bytes < full.kv_bytes
    np.testing.assert_array_equal(ring.decode(t, True), want)
    # token by token after a prompt (decode steps of one row, the generation pattern)
    ring = ctx(path, precision, kv)
    got = [ring.decode(t[:150], True)]
    got += [ring.decode(t[i:i + 1], True) for i in range(150, SEQ)]
    np.testing.assert_array_equal(np.concatenate(got), want)


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
@pytest.mark.parametrize("precision,kv", MODES)
def test_ring_through_decode_batch(models, name, precision, kv):
    """Three sequences of different lengths interleaved in each decode_batch call (one ring per slot)."""
    path = models[name][1]
    seqs = [toks(n, seed=s) for s, n in enumerate((290, 170, 233))]
    results = {}
    for swa_full in (True, False):
        c = ctx(path, precision, kv, n_seq=3, swa_full=swa_full)
        done = [0, 0, 0]
        rows = {s: [] for s in range(3)}
        step = 0
        while any(done[s] < len(seqs[s]) for s in range(3)):
            tokens, ids = [], []
            for s in range(3):  # a varying number of rows per sequence per call
                k = min(len(seqs[s]) - done[s], 1 + (step + 2 * s) % 7)
                tokens += list(seqs[s][done[s]:done[s] + k])
                ids += [s] * k
                done[s] += k
            step += 1
            out = c.decode_batch(np.asarray(tokens, np.int32), np.asarray(ids, np.int32),
                                 np.ones(len(tokens), bool))
            for r, s in enumerate(ids):
                rows[s].append(out[r])
        results[swa_full] = [np.stack(rows[s]) for s in range(3)]
    for s in range(3):
        np.testing.assert_array_equal(results[False][s], results[True][s])
    # and each slot is the single-sequence result
    single = ctx(path, precision, kv, swa_full=True).decode(seqs[1], True)
    np.testing.assert_array_equal(results[False][1], single)


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
def test_rollback_within_a_batch_and_deeper(models, name):
    path = models[name][1]
    t, alt = toks(SEQ), toks(40, seed=9)
    for precision, kv in MODES:
        full, ring = ctx(path, precision, kv, swa_full=True), ctx(path, precision, kv)
        for c in (full, ring):
            c.decode(t[:250], False, False)
        # the deepest rollback the ring always allows: n_batch + 1 positions
        n = 250 - (N_BATCH + 1)
        assert ring.can_truncate(n)
        for c in (full, ring):
            c.truncate(n)
        np.testing.assert_array_equal(ring.decode(alt, True), full.decode(alt, True))
        # deeper than the ring holds: refused, nothing changed
        past = ring.n_past
        assert not ring.can_truncate(100) and full.can_truncate(100)
        with pytest.raises(ValueError, match=r"cannot roll back from position 273 to 100.*swa_full"):
            ring.truncate(100)
        assert ring.n_past == past
        assert ring.can_truncate(0) and ring.can_truncate(past)
        ring.truncate(0)  # clearing always works, and the ring starts over
        np.testing.assert_array_equal(ring.decode(t, True), ctx(path, precision, kv, swa_full=True).decode(t, True))


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
def test_state_round_trip_mid_sequence(models, name):
    path = models[name][1]
    t = toks(SEQ)
    for precision, kv in MODES:
        want = ctx(path, precision, kv, swa_full=True).decode(t, True)[200:]
        ring = ctx(path, precision, kv)
        ring.decode(t[:200], False, False)
        state = ring.save_state()
        full = ctx(path, precision, kv, swa_full=True)
        full.decode(t[:200], False, False)
        assert len(state) < len(full.save_state())  # only the ring's positions of the windowed layers
        # into a fresh ring context, into a full-size one, and a full-size state into a ring context
        for target, data in ((ctx(path, precision, kv), state), (ctx(path, precision, kv, swa_full=True), state),
                             (ctx(path, precision, kv), full.save_state())):
            target.load_state(data)
            assert target.n_past == 200
            np.testing.assert_array_equal(target.decode(t[200:], True), want)
        # a context restored from a ring state cannot roll back past what the state holds
        restored = ctx(path, precision, kv, swa_full=True)
        restored.load_state(state)
        assert restored.can_truncate(190) and not restored.can_truncate(50)
        # a smaller ring (n_batch 4) keeps the last part of the state
        small = ctx(path, precision, kv, n_batch=4)
        small.load_state(state)
        np.testing.assert_array_equal(small.decode(t[200:], True), want)


@pytest.mark.filterwarnings("ignore:n_ctx=320 exceeds the context")
def test_llama_prefix_reuse_deeper_than_the_ring_re_evaluates(models):
    """Llama.eval with a prompt sharing only an early prefix with the cache: the ring cannot roll back that
    far, so _truncate_cache re-evaluates the shared prefix; the logits are those of a fresh object."""
    from edgellama import Llama

    path = models["gemma3"][1]
    t = toks(SEQ)
    b = np.concatenate([t[:100], toks(60, seed=5)])
    kw = dict(n_ctx=N_CTX, n_batch=N_BATCH, n_threads=1, precision="exact", verbose=False, logits_all=True)
    llm = Llama(str(path), **kw)
    llm.eval(t[:260].tolist())
    assert not llm._ctx.can_truncate(100)
    llm.n_tokens = 100  # deep rollback: re-evaluation
    assert llm.n_tokens == 100 and llm._ctx.n_past == 100
    llm.eval(b[100:].tolist())
    fresh = Llama(str(path), **kw)
    fresh.eval(b.tolist())
    np.testing.assert_array_equal(llm.scores[100:160], fresh.scores[100:160])
    full = Llama(str(path), swa_full=True, **kw)  # llama.cpp's option: full-size caches, deep rollback
    assert full._ctx.kv_ring_size == 0 and llm._ctx.kv_ring_size > 0
    full.eval(t[:260].tolist())
    assert full._ctx.can_truncate(100)
    for m in (llm, fresh, full):
        m.close()


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
def test_ring_matches_transformers_far_past_the_window(models, name):
    """300 positions (37 windows, 2.3 rings of 128 with n_batch 4) vs transformers' float64 forward."""
    hf_dir, path = models[name]
    t = toks(300, seed=3)
    want = H.hf_logits(hf_dir, t.tolist())
    c = ctx(path, n_ctx=320, n_batch=4)
    assert c.kv_ring_size == ring_size(4)
    got = c.decode(t, True)
    assert H.rel_err(got, want) <= 1e-4
    assert np.array_equal(got.argmax(1), want.argmax(1))


def test_kv_memory_saved_at_8k(models):
    """gemma3 tiny (5 of 6 layers windowed, window 8) at n_ctx 8192, n_batch 512: the windowed layers hold
    2 x ring_size(512) = 2 x 640 rows instead of 8192."""
    path = models["gemma3"][1]
    full = ctx(path, "fast", "f16", n_ctx=8192, n_batch=512, swa_full=True)
    ring = ctx(path, "fast", "f16", n_ctx=8192, n_batch=512)
    row = 2 * 16 * 2 * 2  # K + V, 2 KV heads x 16, f16
    assert full.kv_bytes == 6 * 8192 * row
    assert ring.kv_bytes == (1 * 8192 + 5 * 2 * ring_size(512)) * row
    print(f"gemma3 tiny n_ctx 8192 KV: {full.kv_bytes} -> {ring.kv_bytes} bytes")


@pytest.mark.parametrize("name", ["gemma2", "gemma3"])
def test_copy_seq_prefix_through_the_ring(models, name):
    """Context.copy_seq_prefix (the server's cross-slot prefix sharing) with ring layers: the
    positions the source's ring still holds up to n are copied to both ring copies, and the copy
    continues with the full cache's bits; a prefix whose window the ring overwrote is refused."""
    path = models[name][1]
    t, alt = toks(SEQ), toks(40, seed=9)
    for precision, kv in MODES:
        c = ctx(path, precision, kv, n_seq=3)
        c.decode_batch(t[:250], np.zeros(250, np.int32))  # the ring wrapped twice
        c.decode_batch(alt[::-1].copy(), np.full(40, 2, np.int32))  # the destination holds something else
        for n in (250, 250 - (N_BATCH + 1)):  # all of it, and the deepest the ring allows
            c.copy_seq_prefix(0, 2, n)
            assert c.n_past_seq(2) == n
            want = ctx(path, precision, kv, swa_full=True).decode(np.concatenate([t[:n], alt]), True)[n:]
            got = c.decode_batch(alt, np.full(40, 2, np.int32), np.ones(40, bool))
            np.testing.assert_array_equal(got, want, err_msg=f"{precision}/{kv} n={n}")
        # short prefixes the ring still holds from position 0 (seq 1: 60 tokens, no wrap)
        c.decode_batch(t[:60], np.ones(60, np.int32))
        c.copy_seq_prefix(1, 2, 37)
        want = ctx(path, precision, kv, swa_full=True).decode(np.concatenate([t[:37], alt]), True)[37:]
        np.testing.assert_array_equal(c.decode_batch(alt, np.full(40, 2, np.int32), np.ones(40, bool)), want)
        # deeper than the source's ring holds: refused, the destination unchanged
        with pytest.raises(ValueError, match=r"copy_seq_prefix: sequence 0's sliding-window layers keep only .*"
                                             r"window before position 100"):
            c.copy_seq_prefix(0, 2, 100)
        assert c.n_past_seq(2) == 77


def test_server_engine_shares_a_prefix_only_while_the_ring_holds_it(models):
    """The batch server's cross-slot prefix sharing (edgellama.server.engine) on a ring model: a
    prefix whose window the source slot's ring overwrote is evaluated instead of copied; one the
    ring still holds is copied, and the continuation has the full cache's bits."""
    from edgellama.server.engine import BatchEngine

    path = models["gemma3"][1]
    t = toks(SEQ)
    engine = BatchEngine(_core.Model(str(path)), n_slots=2, n_ctx=N_CTX, n_threads=1, step_tokens=N_BATCH,
                         type_k="f32", type_v="f32", precision="exact")
    try:
        assert engine.ctx.kv_ring_size == ring_size(N_BATCH)
        source = engine.acquire()
        engine.evaluate(source, t[:270], all_logits=False)  # the ring keeps positions 150.. only
        early = engine.acquire(t[:40].tolist())  # wants 39 tokens: their window is gone
        assert early.tokens == [] and engine.prompt_tokens_shared == 0
        engine.release(early)
        late = engine.acquire(t[:265].tolist())  # wants 264: within what the ring holds
        assert late.tokens == t[:264].tolist() and engine.prompt_tokens_shared == 264
        got = engine.evaluate(late, t[264:280], all_logits=True)
        want = ctx(path, "exact", "f32", swa_full=True).decode(t[:280], True)[264:]
        np.testing.assert_array_equal(got, want)
        engine.release(late)
        engine.release(source)
    finally:
        engine.stop()
