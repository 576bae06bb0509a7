"""The batch engine behind `edgellama serve` (edgellama.server.engine / slot_model), in-process and
without HTTP: chunked prefill interleaved with running streams, results equal to Llama alone,
cancellation within one step, prompt-prefix reuse per slot. Needs no server extra."""

from __future__ import annotations

import threading
import time

import pytest

from edgellama import Llama, _core
from edgellama.server.engine import BatchEngine, RequestCancelled
from edgellama.server.slot_model import SlotModel

N_CTX = 256


@pytest.fixture(scope="module")
def setup(smollm2_path):
    vocab = Llama(str(smollm2_path), vocab_only=True)
    engine = BatchEngine(_core.Model(str(smollm2_path)), n_slots=2, n_ctx=N_CTX, n_threads=2, step_tokens=8)
    yield engine, vocab
    engine.stop()


@pytest.fixture(scope="module")
def llm(smollm2_path):
    with Llama(str(smollm2_path), n_ctx=N_CTX, n_threads=2) as m:
        yield m


def _complete(engine, vocab, prompt, out, key, **kw):
    sm = SlotModel(engine, vocab, "m")
    try:
        out[key] = sm.create_completion(prompt, temperature=0, **kw)["choices"][0]["text"]
    except RequestCancelled as e:
        out[key] = e
    finally:
        sm.close()


def test_chunked_prefill_interleaves_with_running_stream(setup, llm):
    engine, vocab = setup
    long_prompt = "The history of the Roman Empire is long. " * 6  # ~60 tokens: 8 chunks of 8
    out: dict = {}
    engine.step_log = log = []
    try:
        a = threading.Thread(target=_complete, args=(engine, vocab, "1, 2, 3, 4,", out, "a"), kwargs={"max_tokens": 40})
        a.start()
        t0 = time.monotonic()
        while sum(1 for step in log if (0, 1) in step or (1, 1) in step) < 3 and time.monotonic() - t0 < 30:
            time.sleep(0.01)  # the stream is decoding
        b = threading.Thread(target=_complete, args=(engine, vocab, long_prompt, out, "b"), kwargs={"max_tokens": 4})
        b.start()
        a.join(60)
        b.join(60)
    finally:
        engine.step_log = None
    assert not a.is_alive() and not b.is_alive()
    assert out["a"] == llm.create_completion("1, 2, 3, 4,", max_tokens=40, temperature=0)["choices"][0]["text"]
    assert out["b"] == llm.create_completion(long_prompt, max_tokens=4, temperature=0)["choices"][0]["text"]
    assert all(sum(k for _, k in step) <= 8 for step in log)
    # steps where the stream decoded one token while the other slot prefilled a chunk of its prompt
    mixed = [step for step in log if len(step) == 2 and sorted(k for _, k in step)[0] == 1
             and sorted(k for _, k in step)[1] > 1]
    assert len(mixed) >= 3, log


def test_cancel_frees_slot_within_a_step(setup):
    engine, vocab = setup
    out: dict = {}
    sm = SlotModel(engine, vocab, "m")

    def run():
        try:
            for _ in sm.create_completion("1, 2, 3, 4,", max_tokens=200, temperature=0, stream=True):
                out["n"] = out.get("n", 0) + 1
        except RequestCancelled as e:
            out["err"] = e
        finally:
            sm.close()

    t = threading.Thread(target=run)
    t.start()
    t0 = time.monotonic()
    while out.get("n", 0) < 3 and time.monotonic() - t0 < 30:
        time.sleep(0.01)
    steps = engine.steps
    sm.cancel()
    t.join(30)
    assert not t.is_alive() and isinstance(out.get("err"), RequestCancelled)
    assert engine.steps - steps <= 2  # at most the step in flight and one more
    assert engine.busy_slots == 0


def test_prefix_reuse_picks_the_matching_slot(setup):
    engine, vocab = setup
    out: dict = {}
    p1 = "Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    p2 = "Completely different words here about cooking pasta and sauce"
    _complete(engine, vocab, p1, out, 1, max_tokens=2)
    _complete(engine, vocab, p2, out, 2, max_tokens=2)
    rows = engine.rows_evaluated
    _complete(engine, vocab, p1, out, 3, max_tokens=2)
    assert out[3] == out[1]
    assert engine.rows_evaluated - rows <= 3  # only the last prompt token and the new one(s)


class _FixedStepCost:
    """Stands in for the engine's fitted step-cost model (server/step_cost.py)."""

    def __init__(self, cost):
        self.cost = cost

    def observe(self, rows, seconds):
        pass

    def draft_cost(self, n_streams):
        return self.cost


@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=0.7, seed=7)], ids=["greedy", "sampled"])
def test_prompt_lookup_drafts_in_shared_steps_only_when_they_pay(setup, llm, sampling):
    """Alone, a request drafts from its repetitive prompt. With another slot busy, its draft rows
    delay the other stream too: it drafts only when the engine's step-cost estimate says a row is
    cheap next to the shared step, never without an estimate, and its text is the same either way
    and Llama's (greedy, or sampled with the same seed: where drafts are made, which depends on
    timings, never changes a sampled text)."""
    engine, vocab = setup
    prompt = "one, two, three, four, five, six, seven, eight, nine, ten, " * 3
    drafted, texts = {}, {}
    real = engine.step_cost
    try:
        for case, cost in (("alone", None), ("no estimate", None), ("cheap rows", 0.05)):
            engine.step_cost = _FixedStepCost(cost)
            held = engine.acquire() if case != "alone" else None
            sm = SlotModel(engine, vocab, "m", draft="lookup")
            try:
                texts[case] = sm.create_completion(prompt, max_tokens=24, **sampling)["choices"][0]["text"]
                drafted[case] = sm.draft_model.stats.drafted
            finally:
                sm.close()
                if held is not None:
                    engine.release(held)
    finally:
        engine.step_cost = real
    assert drafted["alone"] > 0, drafted  # the prompt gives the lookup candidates
    assert drafted["no estimate"] == 0, drafted
    assert drafted["cheap rows"] > 0, drafted
    assert texts["alone"] and texts["alone"] == texts["no estimate"] == texts["cheap rows"]
    llm.reset()
    assert texts["alone"] == llm.create_completion(prompt, max_tokens=24, **sampling)["choices"][0]["text"]


def test_engine_fits_its_step_cost(setup):
    """The engine feeds its steps to its cost model: a lone stream's plain and drafted steps reach
    observe() with their row counts and positive times, and the model then has a line. (The line's
    slope is timing: on a loaded 2-core runner a 1-row and a 3-row SmolLM2 step can take the same
    time, so its sign is not asserted here; test_step_cost.py checks the fit on given times.)"""
    engine, vocab = setup
    seen = []
    model = engine.step_cost
    real_observe = model.observe

    def spy(rows, seconds):
        seen.append((rows, seconds))
        real_observe(rows, seconds)

    model.observe = spy
    sm = SlotModel(engine, vocab, "m", draft="lookup")
    try:
        sm.create_completion("one, two, three, four, five, six, seven, eight, " * 3, temperature=0, max_tokens=16)
    finally:
        sm.close()
        del model.observe
    counts = {rows for rows, _ in seen}
    assert seen and all(seconds > 0 for _, seconds in seen), seen
    assert 1 in counts and any(rows > 1 for rows in counts), seen  # plain steps; prompt chunks, drafts
    fixed, per_row = model.line()
    assert per_row >= 0 and fixed >= 0


def test_engine_rejects_bad_arguments(smollm2_path, setup):
    engine, _ = setup
    with pytest.raises(ValueError, match="n_slots"):
        BatchEngine(_core.Model(str(smollm2_path)), n_slots=0, n_ctx=16)
    slot = engine.acquire()
    try:
        with pytest.raises(ValueError, match="outside the vocabulary"):
            engine.evaluate(slot, [10 ** 7], all_logits=False)
        with pytest.raises(ValueError, match="context window full"):
            engine.evaluate(slot, [1] * (N_CTX + 1), all_logits=False)
    finally:
        engine.release(slot)
