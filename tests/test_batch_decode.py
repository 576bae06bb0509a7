"""Context.decode_batch (cpp/include/edgellama/batch.h): several sequences in one forward pass.

The property under test: a row's logits are bit-identical whether its sequence runs alone through
the single-sequence Context.decode, alone through decode_batch, or batched with other sequences in
any interleaving and any n_batch chunking; per-sequence rollback and clear; bad input raises.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgellama import _core
from model_factory import make_model


def _ctx(model, n_seq, n_ctx=64, n_batch=512, precision="fast", n_threads=2, kv="f16"):
    return _core.Context(model, n_ctx, n_threads, n_batch, kv, kv, precision, n_seq=n_seq)


def _alone(model, tokens, precision, kv="f16"):
    """Reference: the single-sequence API, one token per decode call after the prompt."""
    c = _ctx(model, 1, precision=precision, kv=kv)
    return np.asarray(c.decode(np.array(tokens, np.int32), all_logits=True))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = make_model(tmp_path_factory.mktemp("batch") / "m.gguf", wtype="Q4_0", seed=11, n_vocab=96)
    return _core.Model(path)


@pytest.mark.parametrize("precision", ["fast", "exact"])
@pytest.mark.parametrize("kv", ["f16", "f32"])
def test_interleaved_sequences_equal_alone(tiny, precision, kv):
    rng = np.random.default_rng(3)
    # different lengths, long enough that attention tiles (32 tokens) split unevenly
    seqs = [rng.integers(0, 96, size=n).tolist() for n in (41, 7, 33, 1)]
    want = [_alone(tiny, s, precision, kv) for s in seqs]
    for n_batch in (512, 5):
        c = _ctx(tiny, len(seqs), precision=precision, n_batch=n_batch, kv=kv)
        got = [[] for _ in seqs]
        # step 1: prefill of sequences 0 and 2 mixed with the first tokens of 1 and 3 (interleaved)
        cursor = [0] * len(seqs)
        rounds = [[(0, 20), (1, 1), (2, 33), (3, 1)], [(1, 3), (0, 21)], [(1, 3)]]
        for rnd in rounds:
            toks, sids = [], []
            for s, k in rnd:
                toks += seqs[s][cursor[s]:cursor[s] + k]
                sids += [s] * k
                cursor[s] += k
            logits = c.decode_batch(np.array(toks, np.int32), np.array(sids, np.int32),
                                    want_logits=np.ones(len(toks), bool))
            for row, s in enumerate(sids):
                got[s].append(logits[row])
        assert cursor == [len(s) for s in seqs]
        for s in range(len(seqs)):
            assert c.n_past_seq(s) == len(seqs[s])
            np.testing.assert_array_equal(np.stack(got[s]), want[s], err_msg=f"sequence {s}, n_batch {n_batch}")


def test_decode_steps_batched_equal_alone_smollm2(smollm2_path):
    """Real model: 4 prompts prefilled together, then 6 greedy decode steps of all 4 in one batch;
    every logits row equals the single-sequence Context.decode of the same tokens."""
    model = _core.Model(str(smollm2_path))
    prompts = [[1, 504, 3458, 282], [1, 18, 19, 20, 21, 22, 23], [1, 9999], [1, 2, 3, 4, 5]]
    c = _ctx(model, 4, n_ctx=32, n_threads=2)
    toks = sum(prompts, [])
    sids = sum(([s] * len(p) for s, p in enumerate(prompts)), [])
    last = np.zeros(len(toks), bool)
    ends = np.cumsum([len(p) for p in prompts]) - 1
    last[ends] = True
    logits = c.decode_batch(np.array(toks, np.int32), np.array(sids, np.int32), want_logits=last)
    streams = [list(p) for p in prompts]
    got = [[logits[i]] for i in range(4)]
    for _ in range(6):
        nxt = [int(np.argmax(g[-1])) for g in got]
        for s in range(4):
            streams[s].append(nxt[s])
        logits = c.decode_batch(np.array(nxt, np.int32), np.arange(4, dtype=np.int32),
                                want_logits=np.ones(4, bool), positions=np.array([len(x) - 1 for x in streams]))
        for s in range(4):
            got[s].append(logits[s])
    for s in range(4):
        alone = _ctx(model, 1, n_ctx=32, n_threads=2)
        ref = [alone.decode(np.array(prompts[s], np.int32), all_logits=False)]
        for t in streams[s][len(prompts[s]):]:
            ref.append(alone.decode(np.array([t], np.int32), all_logits=False))
        np.testing.assert_array_equal(np.stack(got[s]), np.stack(ref), err_msg=f"sequence {s}")


def test_truncate_and_clear_one_sequence(tiny):
    rng = np.random.default_rng(5)
    a, b, b2 = (rng.integers(0, 96, size=n).tolist() for n in (9, 12, 5))
    c = _ctx(tiny, 2)
    c.decode_batch(np.array(a + b, np.int32), np.array([0] * 9 + [1] * 12, np.int32))
    c.truncate_seq(1, 4)  # roll sequence 1 back; sequence 0 untouched
    assert (c.n_past_seq(0), c.n_past_seq(1)) == (9, 4)
    got = c.decode_batch(np.array(b2 + [a[0]], np.int32), np.array([1] * 5 + [0], np.int32),
                         want_logits=np.ones(6, bool))
    np.testing.assert_array_equal(got[:5], _alone(tiny, b[:4] + b2, "fast")[4:])
    np.testing.assert_array_equal(got[5], _alone(tiny, a + [a[0]], "fast")[9])
    c.truncate_seq(0, 0)  # clear
    got = c.decode_batch(np.array(b2, np.int32), np.zeros(5, np.int32), want_logits=np.ones(5, bool))
    np.testing.assert_array_equal(got, _alone(tiny, b2, "fast"))


def test_single_sequence_api_is_sequence_zero(tiny):
    c = _ctx(tiny, 3)
    c.decode(np.array([1, 2, 3], np.int32))
    assert c.n_past == 3 and c.n_past_seq(0) == 3 and c.n_past_seq(1) == 0 and c.n_seq == 3
    c.truncate(1)
    assert c.n_past_seq(0) == 1


def test_bad_batches_raise_and_leave_state(tiny):
    c = _ctx(tiny, 2, n_ctx=8)
    c.decode_batch(np.array([1, 2], np.int32), np.array([0, 1], np.int32))
    cases = [
        (dict(tokens=[1], seq_ids=[2]), "sequence id 2"),
        (dict(tokens=[1], seq_ids=[-1]), "sequence id -1"),
        (dict(tokens=[96], seq_ids=[0]), "outside the vocabulary"),
        (dict(tokens=[1, 2], seq_ids=[0]), "seq_ids must be a 1-D array of 2"),
        (dict(tokens=[1], seq_ids=[0], positions=[5]), "continues at 1"),
        (dict(tokens=[1] * 8, seq_ids=[1] * 8), "sequence 1 is full"),
        (dict(tokens=[1], seq_ids=[0], want_logits=[True, False]), "want_logits"),
    ]
    for kw, msg in cases:
        args = {k: np.array(v) for k, v in kw.items()}
        args["tokens"] = args["tokens"].astype(np.int32)
        with pytest.raises(ValueError, match=msg):
            c.decode_batch(**args)
        assert (c.n_past_seq(0), c.n_past_seq(1)) == (1, 1)
    with pytest.raises(ValueError, match="outside 0..1"):
        c.truncate_seq(5, 0)
    with pytest.raises(ValueError, match="outside sequence 0"):
        c.truncate_seq(0, 2)
    with pytest.raises(ValueError, match="n_seq"):
        _ctx(tiny, 0)


@pytest.mark.parametrize("precision,kv", [("fast", "f16"), ("exact", "f32"), ("fast", "f32")])
def test_copy_seq_prefix_equals_evaluating_it(tiny, precision, kv):
    """Context.copy_seq_prefix (the server's cross-slot prompt-prefix sharing): a sequence that got
    the first n positions copied from another and then evaluates its own continuation gives the
    same logits, bit for bit, as evaluating everything itself. The source ran past n (a stream in
    mid-generation) and is left unchanged; the destination's previous entries are dropped."""
    rng = np.random.default_rng(7)
    src_tokens = rng.integers(0, 96, size=45).tolist()
    for n in (0, 1, 17, 33, 45):
        tail = rng.integers(0, 96, size=9).tolist()  # diverges from the source right after n
        c = _ctx(tiny, 3, precision=precision, kv=kv, n_batch=8)
        c.decode_batch(np.array(src_tokens, np.int32), np.zeros(45, np.int32))
        c.decode_batch(np.array(tail[::-1] * 3, np.int32), np.ones(27, np.int32))  # dst holds something else
        c.copy_seq_prefix(0, 1, n)
        assert c.n_past_seq(1) == n and c.n_past_seq(0) == 45
        n_tail = len(tail)
        got = c.decode_batch(np.array(tail, np.int32), np.ones(n_tail, np.int32), want_logits=np.ones(n_tail, bool))
        want = _alone(tiny, src_tokens[:n] + tail, precision, kv)[n:]
        np.testing.assert_array_equal(got, want, err_msg=f"n={n}")
        # the source continues as if nothing happened
        more = c.decode_batch(np.array(tail[:3], np.int32), np.zeros(3, np.int32), want_logits=np.ones(3, bool))
        np.testing.assert_array_equal(more, _alone(tiny, src_tokens + tail[:3], precision, kv)[45:], err_msg=f"n={n}")


def test_copy_seq_prefix_rejects_bad_arguments(tiny):
    c = _ctx(tiny, 2)
    c.decode_batch(np.arange(10, dtype=np.int32), np.zeros(10, np.int32))
    c.decode_batch(np.arange(4, dtype=np.int32), np.ones(4, np.int32))
    with pytest.raises(ValueError, match=r"copy_seq_prefix \(src\): sequence id 2 is outside 0..1"):
        c.copy_seq_prefix(2, 1, 1)
    with pytest.raises(ValueError, match=r"copy_seq_prefix \(dst\): sequence id -1 is outside 0..1"):
        c.copy_seq_prefix(0, -1, 1)
    for n in (11, -1):
        with pytest.raises(ValueError, match=rf"cannot copy {n} positions of sequence 0, which holds 10"):
            c.copy_seq_prefix(0, 1, n)
    assert c.n_past_seq(1) == 4  # unchanged
    c.copy_seq_prefix(1, 1, 2)  # onto itself: a rollback
    assert c.n_past_seq(1) == 2
