"""Cross-slot prompt-prefix sharing in the batch engine (edgellama.server.engine, issue 14): a request
whose prompt starts with tokens another slot's KV cache already holds gets those K/V rows copied into
its own slot (Context.copy_seq_prefix) and evaluates only the rest. The engine promises bits that do
not depend on batching, so every request here must give exactly the tokens AND logprobs of the same
request on a fresh engine (nothing cached anywhere), and the counters must show what was reused.
In-process, SmolLM2 (no BOS token: unrelated prompts share nothing), all waits bounded."""

from __future__ import annotations

import threading
import time

import pytest

from edgellama import Llama, _core
from edgellama.generation import _common_prefix
from edgellama.server.engine import BatchEngine, Slot, _slot_preference
from edgellama.server.slot_model import SlotModel

N_CTX = 256
SYSTEM = ("You are a helpful assistant. Answer briefly and precisely, and say so when you do not know. "
          "Use the metric system. ")  # the shared prefix: ~25 tokens
QUESTIONS = ["What is the boiling point of water?", "How far is the moon?", "Name three colours."]


@pytest.fixture(scope="module")
def model(smollm2_path):
    return _core.Model(str(smollm2_path))


@pytest.fixture(scope="module")
def vocab(smollm2_path):
    return Llama(str(smollm2_path), vocab_only=True)


def _engine(model, kv="f16", n_slots=3):
    return BatchEngine(model, n_slots=n_slots, n_ctx=N_CTX, n_threads=2, step_tokens=32, type_k=kv, type_v=kv)


_LOGPROBS = ("tokens", "token_logprobs", "top_logprobs")  # (text_offset differs in streamed chunks)


def _complete(engine, vocab, prompt, max_tokens=6, stream=False, progress=None):
    """One greedy request with logprobs: (text, logprobs); progress(n) after each streamed chunk."""
    sm = SlotModel(engine, vocab, "m")
    try:
        kw = dict(temperature=0, max_tokens=max_tokens, logprobs=2)
        if not stream:
            c = sm.create_completion(prompt, **kw)["choices"][0]
            return c["text"], {k: c["logprobs"][k] for k in _LOGPROBS}
        text, lp = [], {k: [] for k in _LOGPROBS}
        for i, chunk in enumerate(sm.create_completion(prompt, stream=True, **kw)):
            c = chunk["choices"][0]
            text.append(c["text"])
            for k in lp:
                lp[k] += c["logprobs"][k]
            if progress:
                progress(i + 1)
        return "".join(text), lp
    finally:
        sm.close()


_REFERENCE: dict = {}


def _alone(model, vocab, prompt, kv, max_tokens=6, rows=False):
    """The same request on a fresh one-slot engine (nothing is cached or shared): (text, logprobs),
    and with rows=True the number of token rows it evaluated."""
    key = (prompt, kv, max_tokens)
    if key not in _REFERENCE:
        fresh = _engine(model, kv, n_slots=1)
        try:
            _REFERENCE[key] = (_complete(fresh, vocab, prompt, max_tokens), fresh.rows_evaluated)
        finally:
            fresh.stop()
    return _REFERENCE[key] if rows else _REFERENCE[key][0]


def _n_tokens(vocab, text):
    return vocab.tokenize(text.encode(), add_bos=True)


def _counters(engine):
    e = engine
    return e.prompt_tokens_shared, e.prompt_tokens_own_cache, e.shared_prefix_copies, e.rows_evaluated


@pytest.mark.parametrize("kv", ["f16", "f32"])
def test_prefix_copied_from_a_held_slot_gives_the_same_bits(model, vocab, kv):
    """Request 1 fills a slot; while that slot is held (busy), requests with the same system prompt
    and other questions, one diverging in the middle of the system prompt, and the exact same
    prompt (all but its last token copied: it must still be evaluated for its logits) run on other
    slots with the shared tokens copied in."""
    engine = _engine(model, kv)
    try:
        first = SYSTEM + QUESTIONS[0]
        assert _complete(engine, vocab, first) == _alone(model, vocab, first, kv)
        holder = engine.acquire(_n_tokens(vocab, first))  # keeps the filled slot busy
        assert holder.tokens[: len(_n_tokens(vocab, first)) - 1] == _n_tokens(vocab, first)[:-1]
        diverging = SYSTEM[:40] + " Forget that. " + QUESTIONS[2]
        try:
            for i, prompt in enumerate((SYSTEM + QUESTIONS[1], diverging, first)):
                ids = _n_tokens(vocab, prompt)
                reused = _common_prefix(holder.tokens, ids[:-1])
                assert 5 < reused < len(ids)
                shared0, own0, copies0, rows0 = _counters(engine)
                got = _complete(engine, vocab, prompt)
                assert got == _alone(model, vocab, prompt, kv), prompt
                shared, own, copies, rows = _counters(engine)
                # the first goes to an empty slot and copies everything it reuses; the later ones
                # may find part of it in the slot they take (the system prompt) and copy the rest
                assert (shared - shared0) + (own - own0) == reused, prompt
                if i == 0:
                    assert (shared - shared0, copies - copies0) == (reused, 1)
                if i == 2:  # the whole prompt but its last token: only the held slot has it
                    assert copies - copies0 == 1 and shared - shared0 > 0
                # evaluated: what the fresh engine evaluated, less the reused tokens
                assert rows - rows0 == _alone(model, vocab, prompt, kv, rows=True)[1] - reused, prompt
        finally:
            engine.release(holder)
    finally:
        engine.stop()


def test_prefix_copied_from_a_streaming_slot(model, vocab):
    """The source slot is mid-generation (its cache holds its prompt and the tokens generated so
    far, and grows while the copy is made): only the prompt prefix that matches is copied; both
    streams give the bits they give alone."""
    engine = _engine(model)
    try:
        a_prompt, b_prompt = SYSTEM + "Count to fifty: 1, 2, 3, 4, 5,", SYSTEM + QUESTIONS[1]
        streamed = threading.Event()
        out = {}

        def run_a():
            try:
                out["a"] = _complete(engine, vocab, a_prompt, max_tokens=40, stream=True,
                                     progress=lambda n: n >= 4 and streamed.set())
            finally:
                streamed.set()

        a = threading.Thread(target=run_a)
        a.start()
        assert streamed.wait(60) and a.is_alive()
        source = next(s for s in engine.slots if s.busy)
        assert len(source.tokens) > len(_n_tokens(vocab, a_prompt))  # generated tokens are in its cache
        shared0 = engine.prompt_tokens_shared
        b = _complete(engine, vocab, b_prompt)
        a.join(120)
        assert not a.is_alive()
        expect = _common_prefix(_n_tokens(vocab, a_prompt), _n_tokens(vocab, b_prompt))
        assert engine.prompt_tokens_shared - shared0 == expect > 10
        assert b == _alone(model, vocab, b_prompt, "f16")
        assert out["a"] == _alone(model, vocab, a_prompt, "f16", max_tokens=40)
    finally:
        engine.stop()


def test_unrelated_prompt_copies_nothing_and_own_slot_is_preferred(model, vocab):
    """Prefix length 0 (SmolLM2 has no BOS: unrelated prompts share no token): no copy. A repeated
    prompt whose slot is free goes back to that slot (nothing to copy, counted as own-cache reuse)."""
    engine = _engine(model)
    try:
        first = SYSTEM + QUESTIONS[0]
        _complete(engine, vocab, first)
        other = "1, 2, 3, 4,"
        shared0, own0, copies0, _ = _counters(engine)
        assert _complete(engine, vocab, other) == _alone(model, vocab, other, "f16")
        assert _counters(engine)[:3] == (shared0, own0, copies0)
        # the repeated prompt: its own slot, all but the last prompt token reused in place
        got = _complete(engine, vocab, first)
        assert got == _alone(model, vocab, first, "f16")
        shared, own, copies, _ = _counters(engine)
        assert (shared - shared0, copies - copies0) == (0, 0)
        assert own - own0 == len(_n_tokens(vocab, first)) - 1
        # the third slot was never needed: both prompts kept their own slots
        assert sum(1 for s in engine.slots if not s.tokens) == 1
    finally:
        engine.stop()


def _slot(seq, tokens, last_used=0.0):
    s = Slot(seq)
    s.tokens, s.last_used = list(tokens), last_used
    return s


def test_slot_preference():
    wanted = [5, 6, 7, 8, 9]
    holder, empty, other, bos_only = (_slot(0, [5, 6, 7, 1]), _slot(1, []), _slot(2, [5, 3], 2.0),
                                      _slot(3, [5, 4], 1.0))
    slots = [holder, empty, other, bos_only]
    pick = lambda free: max(free, key=_slot_preference(slots, wanted))  # noqa: E731
    assert pick([holder, empty, other]) is holder  # holds the longest prefix: nothing to copy
    assert pick([empty, other, bos_only]) is empty  # the prefix is copied in; no cache is lost
    assert pick([other, bos_only]) is bos_only  # same own prefix: the least recently used
    # a single shared token (a BOS) is no reason to overwrite a cache while an empty slot is free
    slots1 = [_slot(0, [5, 1]), _slot(1, [])]
    assert max(slots1, key=_slot_preference(slots1, wanted)).seq == 1


def test_metrics_render_the_sharing_counters(model):
    from edgellama.server.metrics import Metrics

    engine = _engine(model, n_slots=1)
    try:
        engine.prompt_tokens_shared, engine.prompt_tokens_own_cache, engine.shared_prefix_copies = 17, 5, 2
        st = engine.stats()
        st["queue_depth"] = 0
        text = Metrics().render(lambda: st)
    finally:
        engine.stop()
    lines = set(text.splitlines())
    assert {"edgellama_prompt_tokens_shared_total 17", "edgellama_prompt_tokens_cached_total 5",
            "edgellama_prefix_copies_total 2", "# TYPE edgellama_prompt_tokens_shared_total counter"} <= lines


def test_burst_of_new_prompts_evaluates_the_shared_prefix_once(model, vocab):
    """Three requests arrive together with a system prompt no slot holds yet (an agent's parallel
    calls, the first burst after a start). Prefill is chunked (8 rows a step); a chunk another
    request computes in the same step waits a step and is copied, a chunk another slot already
    holds is copied: each shared position is evaluated once, whatever the arrival timing. Each
    request gives the bits it gives alone."""
    engine = BatchEngine(model, n_slots=3, n_ctx=N_CTX, n_threads=2, step_tokens=8)
    try:
        prompts = [SYSTEM + q for q in QUESTIONS]
        ids = [_n_tokens(vocab, p) for p in prompts]
        common = min(_common_prefix(ids[0], i) for i in ids[1:])
        assert common > 16 and all(_common_prefix(ids[1], i) == common for i in (ids[0], ids[2]))
        start = threading.Barrier(3)
        out = {}

        def run(i):
            start.wait(10)
            out[i] = _complete(engine, vocab, prompts[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        for i, p in enumerate(prompts):
            assert out[i] == _alone(model, vocab, p, "f16"), p
        assert engine.prompt_tokens_shared == 2 * common
        assert engine.rows_evaluated == sum(_alone(model, vocab, p, "f16", rows=True)[1] for p in prompts) - 2 * common
    finally:
        engine.stop()


def test_plan_defers_a_chunk_another_request_computes_in_the_same_step(model):
    """_plan on requests queued together: of two with the same prompt, one is planned and the other
    waits (the copy follows in the next step); a different prompt and a decode row are planned."""
    from edgellama.server.engine import _EvalRequest
    import numpy as np

    engine = BatchEngine(model, n_slots=4, n_ctx=N_CTX, n_threads=2, step_tokens=64)
    slots = [engine.acquire() for _ in range(4)]
    try:
        prompt = np.arange(100, 130, dtype=np.int32)
        reqs = [_EvalRequest(slots[0], prompt, False), _EvalRequest(slots[1], prompt.copy(), False),
                _EvalRequest(slots[2], prompt[::-1].copy(), False), _EvalRequest(slots[3], prompt[:1].copy(), False)]
        with engine._cond:
            plan = engine._plan(list(reqs))
        assert [(r.slot.seq, start, k) for r, start, k in plan] == [(3, 0, 1), (0, 0, 30), (2, 0, 30)]
        # all-logits requests (speculative verification) never wait or copy
        reqs[1].all_logits = True
        with engine._cond:
            plan = engine._plan(list(reqs))
        assert sorted((r.slot.seq, k) for r, _, k in plan) == [(0, 30), (1, 30), (2, 3), (3, 1)]  # budget 64
    finally:
        for s in slots:
            engine.release(s)
        engine.stop()


def test_a_failing_copy_fails_its_request_not_the_engine(model, vocab, monkeypatch):
    """Should a step-time copy ever raise, that request gets the error and the engine thread keeps
    serving the others."""
    engine = _engine(model, n_slots=1)
    try:
        slot = engine.acquire()
        real = engine._take_longest_prefix
        monkeypatch.setattr(engine, "_take_longest_prefix", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            engine.evaluate(slot, [100, 101, 102], all_logits=False)
        monkeypatch.setattr(engine, "_take_longest_prefix", real)
        engine.release(slot)
        prompt = QUESTIONS[0]
        assert _complete(engine, vocab, prompt) == _alone(model, vocab, prompt, "f16")
    finally:
        engine.stop()
