"""Speculative decoding (edgellama.speculative, edgellama.llama_speculative): the n-gram index against
a brute-force scan, the back-off controller, greedy output identical to plain decoding (random
models and SmolLM2, every ISA), completions/streams/logprobs/stop strings unchanged, and seeded
sampled output identical to plain sampling (with a verifier that keeps every draft as the control
that the test can fail)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgellama import Llama, LlamaDraftModel, LlamaPromptLookupDecoding, _core
from edgellama import llama_speculative, speculative
from edgellama.speculative import DraftController, NgramIndex, SpecSession

from conftest import subprocess_env
from model_factory import make_model


# ----------------------------------------------------------------------------- n-gram index

def brute_lookup(toks, max_n, k):
    """Reference: the longest suffix (<= max_n) with an earlier occurrence that has a continuation;
    the most recent such occurrence; the k tokens after it. A suffix of one token counts only when
    max_n is 1 (a single common token predicts little)."""
    return brute_lookup_match(toks, max_n, k)[0]


def brute_lookup_match(toks, max_n, k):
    """brute_lookup's draft and the suffix length behind it (0: no draft)."""
    L = len(toks)
    shortest = 1 if max_n == 1 else 2
    for n in range(min(max_n, L - 1), shortest - 1, -1):
        suffix = toks[L - n:]
        for start in range(L - n - 1, -1, -1):  # occurrence toks[start:start+n], continuation < L
            if toks[start:start + n] == suffix:
                pos = start + n
                return toks[pos:pos + k], n
    return [], 0


@pytest.mark.parametrize("max_n", [1, 2, 4])
def test_ngram_index_matches_brute_force(max_n):
    rng = np.random.default_rng(max_n)
    for trial in range(30):
        vocab = int(rng.integers(2, 12))
        toks = [int(t) for t in rng.integers(0, vocab, size=int(rng.integers(1, 80)))]
        idx = NgramIndex(max_n)
        # grow it in random increments, checking every prefix on the way (incremental indexing)
        i = 0
        while i < len(toks):
            i = min(len(toks), i + int(rng.integers(1, 5)))
            idx.sync(toks[:i])
            for k in (1, 3, 10):
                draft, n = brute_lookup_match(toks[:i], max_n, k)
                assert idx.lookup(k) == draft, (toks[:i], k)
                assert idx.last_match == n, (toks[:i], k)
        # a different sequence (rolled back, then changed): rebuilt, still right
        cut = toks[: len(toks) // 2] + [vocab]  # a new token
        idx.sync(cut)
        assert idx.lookup(5) == brute_lookup(cut, max_n, 5)


def test_ngram_index_rejects_bad_size():
    with pytest.raises(ValueError, match="max_ngram_size"):
        NgramIndex(0)
    with pytest.raises(ValueError, match="max_ngram_size"):
        LlamaPromptLookupDecoding(max_ngram_size=0)
    with pytest.raises(ValueError, match="num_pred_tokens"):
        LlamaPromptLookupDecoding(num_pred_tokens=0)


def test_prompt_lookup_call_shape_like_llama_cpp_python():
    d = LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens=3)
    out = d(np.array([5, 6, 7, 8, 9, 5, 6], dtype=np.intc))
    assert out.dtype == np.intc and out.tolist() == [7, 8, 9]
    assert d(np.array([1, 2, 3], dtype=np.intc)).tolist() == []
    assert isinstance(d, LlamaDraftModel)


# ----------------------------------------------------------------------------- controller

def test_controller_backs_off_when_drafts_keep_failing():
    c = DraftController(max_len=10, start=4)
    steps = 2000
    verified = 0
    for _ in range(steps):
        n = c.budget()
        if n:
            verified += n
            c.update(n, 0)  # every draft rejected outright
    # with the pause growing to 64 tokens, a failing drafter costs ~1 short draft per 64 tokens
    assert verified < 0.03 * steps, verified
    # and recovers once drafts are right again
    for _ in range(200):
        n = c.budget()
        if n:
            c.update(n, n)
    assert c.budget() == 10


def test_controller_failing_drafter_costs_little_early():
    """The first tokens of an open-ended generation: with every draft rejected, the extra positions
    verified in the first 128 tokens stay at a few (each costs ~0.35 of a plain step on SmolLM2)."""
    c = DraftController(max_len=10, start=4)
    extra = [n for n in (c.budget() for _ in range(128)) if n and (c.update(n, 0) or True)]
    assert sum(extra) <= 7, extra  # 4 + 1 + 1 + 1 (pauses doubling from 2 and halving lengths: 10)
    assert len(extra) <= 4, extra


def test_controller_adapts_length():
    c = DraftController(max_len=10, start=4, cost_per_token=0.0)
    c.update(4, 4)
    assert c.length == 6
    c.update(6, 1)
    assert c.length == 4  # half way back to accepted + 1
    c.update(4, 0)
    assert c.length == 1  # rejected outright
    with pytest.raises(ValueError):
        DraftController(0)


def test_controller_cost_model():
    """Expensive verification positions shorten drafts; measured step times set the cost."""
    c = DraftController(max_len=16, start=16, cost_per_token=0.0)
    for _ in range(20):
        c.update(4, 2)  # acceptance about 2/3 per token
    c.length = 16
    assert c.budget() == 16  # free positions: draft as much as allowed
    for _ in range(50):  # 1-token steps take 10 ms, 5-token steps 20 ms: beta = 0.25
        c.observe_time(1, 0.010)
        c.observe_time(5, 0.020)
    assert abs(c.beta - 0.25) < 0.01
    k = c.budget()
    a = c.acceptance
    gains = [(1 - a ** (j + 1)) / (1 - a) / (1 + 0.25 * j) for j in range(1, 17)]
    assert k == 1 + int(np.argmax(gains)) and k < 8


# ----------------------------------------------------------------------------- random models

@pytest.fixture(scope="module")
def rand_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("spec")
    return make_model(d / "target.gguf", wtype="Q8_0", n_vocab=96, n_layer=2, seed=3)


@pytest.fixture(scope="module")
def rand_draft(tmp_path_factory):
    d = tmp_path_factory.mktemp("spec_draft")
    return make_model(d / "draft.gguf", wtype="F32", n_vocab=96, n_layer=1, seed=11)


def plain_greedy(path, prompt, n, n_ctx=256):
    llm = Llama(path, n_ctx=n_ctx, n_threads=1)
    return llm, llm(prompt, max_tokens=n, temperature=0, logprobs=3)


@pytest.mark.parametrize("drafter", ["lookup", "lookup1", "model", "same_model"])
def test_greedy_identical_on_random_model(rand_model, rand_draft, drafter):
    prompt = list(range(3, 40)) * 2 + [3, 4, 5]  # repetition: lookups find candidates
    n = 120
    llm, ref = plain_greedy(rand_model, prompt, n)
    if drafter == "lookup":
        llm.draft_model = LlamaPromptLookupDecoding()
    elif drafter == "lookup1":
        llm.draft_model = LlamaPromptLookupDecoding(max_ngram_size=1, num_pred_tokens=16)
    elif drafter == "model":
        llm.draft_model = LlamaDraftModel(rand_draft, n_draft=5, n_ctx=256, n_threads=1)
    else:  # a copy of the target: drafts are always right, so long drafts get exercised
        llm.draft_model = LlamaDraftModel(Llama(rand_model, n_ctx=256, n_threads=1), n_draft=7, p_min=0.0)
    llm.reset()
    out = llm(prompt, max_tokens=n, temperature=0, logprobs=3)
    assert out["choices"][0]["text"] == ref["choices"][0]["text"]
    assert out["choices"][0]["logprobs"] == ref["choices"][0]["logprobs"]  # same bits per position
    assert out["choices"][0]["finish_reason"] == ref["choices"][0]["finish_reason"]
    assert out["usage"] == ref["usage"]
    st = llm.draft_model.stats
    assert st.drafted > 0, "no draft was verified: the test would not exercise speculation"
    if drafter == "same_model":
        assert st.accepted == st.drafted and max(d for d, _ in st.history) > 4
    # the KV cache is consistent afterwards: a plain follow-up continues identically
    llm.draft_model = None
    again = llm(prompt, max_tokens=n, temperature=0)
    assert again["choices"][0]["text"] == ref["choices"][0]["text"]


def test_draft_model_checks_vocabulary(rand_model, tmp_path):
    other = make_model(tmp_path / "v64.gguf", n_vocab=64, seed=1)
    llm = Llama(rand_model, n_ctx=64, n_threads=1, draft_model=LlamaDraftModel(other, n_ctx=64))
    with pytest.raises(ValueError, match="same vocabulary"):
        llm([1, 2, 3], max_tokens=4, temperature=0)
    with pytest.raises(ValueError, match="itself"):
        llm.draft_model = LlamaDraftModel(llm)
        llm([1, 2, 3], max_tokens=4, temperature=0)
    with pytest.raises(TypeError, match="GGUF path or an edgellama.Llama"):
        LlamaDraftModel(42)
    with pytest.raises(ValueError, match="n_draft"):
        LlamaDraftModel(other, n_draft=0)
    with pytest.raises(NotImplementedError, match="subclass"):
        LlamaDraftModel()(np.array([1, 2], dtype=np.intc))


class EchoLastDraft(llama_speculative.LlamaDraftModel):
    """A llama-cpp-python style drafter (only __call__, no super().__init__): guesses that the last
    token repeats, often wrong."""

    def __call__(self, input_ids, /, **kwargs):
        return np.array([input_ids[-1]] * 3, dtype=np.intc)


class OutOfVocabDraft(llama_speculative.LlamaDraftModel):
    def __call__(self, input_ids, /, **kwargs):
        return np.array([10_000], dtype=np.intc)


def test_user_drafter_and_bad_drafts(rand_model):
    prompt = [5, 6, 7, 5, 6]
    llm, ref = plain_greedy(rand_model, prompt, 40)
    llm.draft_model = EchoLastDraft()
    llm.reset()
    assert llm(prompt, max_tokens=40, temperature=0, logprobs=3) == {**ref, "id": ANY, "created": ANY}
    llm.draft_model = "small.gguf"  # not a drafter
    with pytest.raises(TypeError, match="draft_model must be a drafter"):
        llm(prompt, max_tokens=5, temperature=0)
    llm.draft_model = OutOfVocabDraft()
    with pytest.raises(ValueError, match="OutOfVocabDraft.*10000"):
        llm(prompt, max_tokens=5, temperature=0)


class _Any:
    def __eq__(self, other):
        return True


ANY = _Any()


def test_stream_stop_and_max_tokens_unchanged(rand_model):
    prompt = list(range(3, 30)) * 2
    llm = Llama(rand_model, n_ctx=256, n_threads=1)
    plain = llm(prompt, max_tokens=60, temperature=0)["choices"][0]["text"]
    stop = plain[25:28]  # a stop string inside the output (found first at or before 25)
    ref_stop = llm(prompt, max_tokens=60, temperature=0, stop=[stop])
    ref_stream = [c["choices"][0]["text"] for c in llm(prompt, max_tokens=37, temperature=0, stream=True, logprobs=2)]
    ref_short = llm(prompt, max_tokens=7, temperature=0)
    llm.draft_model = LlamaPromptLookupDecoding(num_pred_tokens=8)
    got_stop = llm(prompt, max_tokens=60, temperature=0, stop=[stop])
    assert got_stop["choices"][0] == ref_stop["choices"][0] and got_stop["usage"] == ref_stop["usage"]
    got_stream = [c["choices"][0]["text"] for c in llm(prompt, max_tokens=37, temperature=0, stream=True, logprobs=2)]
    assert got_stream == ref_stream
    got_short = llm(prompt, max_tokens=7, temperature=0)
    assert got_short["choices"][0] == ref_short["choices"][0] and got_short["usage"]["completion_tokens"] == 7
    assert llm.draft_model.stats.drafted > 0
    # drafts never run past max_tokens: at most max_tokens - 1 draft tokens after the first token
    assert all(d <= 6 for d, _ in llm.draft_model.stats.history)


def test_generate_send_extra_tokens_mid_draft(rand_model):
    """gen.send(extra) after an accepted draft token: the rest of the draft is dropped and the loop
    goes on from the extra tokens exactly as plain decoding does."""
    prompt = list(range(3, 30)) * 2

    def run(draft):
        llm = Llama(rand_model, n_ctx=256, n_threads=1, draft_model=draft)
        gen = llm.generate(prompt, temp=0)
        out = [next(gen) for _ in range(5)]
        out.append(gen.send([7, 8]))
        out += [next(gen) for _ in range(20)]
        gen.close()
        return out

    d = LlamaDraftModel(Llama(rand_model, n_ctx=256, n_threads=1), n_draft=8, p_min=0.0)  # always right
    assert run(d) == run(None)
    assert d.stats.drafted > 0


def test_n_ctx_limit_unchanged(rand_model):
    prompt = list(range(3, 20)) * 2
    llm = Llama(rand_model, n_ctx=60, n_threads=1)
    ref = llm(prompt, max_tokens=None, temperature=0)
    llm.draft_model = LlamaDraftModel(Llama(rand_model, n_ctx=64, n_threads=1), n_draft=8, p_min=0.0)
    got = llm(prompt, max_tokens=None, temperature=0)
    assert got["choices"][0] == ref["choices"][0] and got["usage"] == ref["usage"]


# ----------------------------------------------------------------------------- every ISA, SmolLM2

_ISA_SCRIPT = textwrap.dedent("""
    import json, sys
    from edgellama import Llama, LlamaPromptLookupDecoding, _core
    path, prompt_json, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    prompt = json.loads(prompt_json)
    llm = Llama(path, n_ctx=512, n_threads=1)
    plain = llm(prompt, max_tokens=n, temperature=0, logprobs=1)
    llm.draft_model = LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=10)
    # (the prompt stays in the KV cache: only the generation is evaluated again)
    spec = llm(prompt, max_tokens=n, temperature=0, logprobs=1)
    st = llm.draft_model.stats
    print(json.dumps({"isa": _core.isa(), "same": plain["choices"][0] == spec["choices"][0],
                      "text": plain["choices"][0]["text"], "drafted": st.drafted, "accepted": st.accepted}))
""")


def _run_isa(isa, path, prompt, n):
    r = subprocess.run([sys.executable, "-c", _ISA_SCRIPT, str(path), json.dumps(prompt), str(n)],
                       env=subprocess_env(EDGELLAMA_ISA=isa), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("isa", _core.available_isas())
def test_greedy_identical_every_isa_random_model(isa, rand_model):
    res = _run_isa(isa, rand_model, list(range(3, 40)) * 2, 80)
    assert res["isa"] == isa and res["same"] and res["drafted"] > 0


@pytest.mark.parametrize("isa", _core.available_isas())
def test_greedy_identical_every_isa_smollm2(isa, smollm2_path):
    code = "def area(width, height):\n    return width * height\n"
    llm = Llama(smollm2_path, vocab_only=True)
    text = llm.apply_chat_template([{"role": "user", "content":
                                     "Rewrite this code with the parameter width renamed to w:\n\n" + code}])
    prompt = llm.tokenize(text.encode(), add_bos=False, special=True)
    res = _run_isa(isa, smollm2_path, prompt, 24)
    assert res["isa"] == isa and res["same"]
    assert res["accepted"] >= 6, res  # the answer copies the code: most drafts are right


# ----------------------------------------------------------------------------- sampling is exact

SAMPLING = dict(temperature=1.3, top_k=30, top_p=0.95, min_p=0.02, repeat_penalty=1.3, presence_penalty=0.3)


def _sampled_texts(llm, prompt, seeds, n=40, **sampling):
    """(text, token logprobs) per seed; llm.spec_totals: the drafter's stats summed over the calls."""
    out = []
    llm.spec_totals = speculative.SpecStats()
    for s in seeds:
        c = llm(prompt, max_tokens=n, seed=s, logprobs=2, **{**SAMPLING, **sampling})["choices"][0]
        out.append((c["text"], c["logprobs"]["token_logprobs"]))
        st = getattr(llm.draft_model, "stats", None)
        if st is not None:
            llm.spec_totals.drafted += st.drafted
            llm.spec_totals.accepted += st.accepted
    return out


@pytest.mark.parametrize("drafter", ["lookup1", "same_model"])
def test_sampled_text_with_speculation_equals_plain(rand_model, drafter):
    """Seeded sampling with drafts gives the plain sampled text token for token: each drafted
    position is the sampler's own pick (one draw, as without drafts). The drafters: prompt lookup
    on a prompt the sampled random-weight text keeps echoing (one-token matches), and a copy of the
    target drafting greedily, whose guess (the mode) is kept with probability p(mode) < 1 after the
    sampler's transforms, so drafts are both kept and cut. (Prompt lookup's drafts are kept only at
    a low temperature without repeat penalty: the random model echoes little.)"""
    prompt = list(range(3, 30)) * 2
    seeds = list(range(1, 11))
    sampling = dict(temperature=0.3, repeat_penalty=1.0) if drafter == "lookup1" else {}
    llm = Llama(rand_model, n_ctx=256, n_threads=1)
    plain = _sampled_texts(llm, prompt, seeds, **sampling)
    if drafter == "lookup1":
        llm.draft_model = LlamaPromptLookupDecoding(max_ngram_size=1)
    else:
        llm.draft_model = LlamaDraftModel(Llama(rand_model, n_ctx=256, n_threads=1), n_draft=4, p_min=0.0)
    spec = _sampled_texts(llm, prompt, seeds, **sampling)
    st = llm.spec_totals
    assert 0 < st.accepted < st.drafted, "drafts must be both kept and cut for the test to mean anything"
    assert spec == plain
    assert len({t for t, _ in plain}) == len(seeds)  # the seeds matter: not a greedy text in disguise


def test_sampled_equality_test_catches_a_verifier_that_keeps_drafts(rand_model, monkeypatch):
    """Control for the test above: a verifier that keeps every draft token changes the text."""
    prompt = list(range(3, 30)) * 2
    llm = Llama(rand_model, n_ctx=256, n_threads=1)
    plain = _sampled_texts(llm, prompt, [1, 2, 3])
    llm.draft_model = LlamaDraftModel(Llama(rand_model, n_ctx=256, n_threads=1), n_draft=4, p_min=0.0)
    monkeypatch.setattr(SpecSession, "verify", lambda self, logits, d, allowed=None: (d, True))
    assert _sampled_texts(llm, prompt, [1, 2, 3]) != plain


def test_verify_is_the_samplers_pick(rand_model):
    """One position, many draws: verify emits what a twin sampler (same seed) samples, keeps the
    draft iff it is that token, and so keeps it with frequency ~p(draft)."""
    llm = Llama(rand_model, n_ctx=64, n_threads=1)
    logits = llm.eval([3, 4, 5])[-1]
    make = lambda: _core.Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=5)  # noqa: E731
    sampler, twin = make(), make()
    p = np.asarray(twin.probabilities(logits), dtype=np.float64)
    draft_tok = int(np.argsort(-p)[1])  # the second most likely: both outcomes are common
    sess = SpecSession(LlamaPromptLookupDecoding(), sampler, p.shape[0])
    n = 4000
    kept = 0
    for _ in range(n):
        tok, acc = sess.verify(logits, draft_tok)
        assert tok == int(twin.sample(logits)) and acc == (tok == draft_tok)
        kept += acc
    assert abs(kept / n - p[draft_tok]) < 4 * np.sqrt(p[draft_tok] * (1 - p[draft_tok]) / n)


# ----------------------------------------------------------------------------- CLI

def _cli(argv, capsys):
    from edgellama import cli

    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_run_spec_on_by_default_same_text(rand_model, rand_draft, capsys):
    cli_prompt = "abcdefghij" * 4  # 40 byte tokens: long enough for auto prompt lookup
    base = ["run", str(rand_model), "-p", cli_prompt, "-n", "40", "--temp", "0", "-t", "1", "-c", "128", "-v"]
    code, plain, err_plain = _cli(base + ["--no-spec"], capsys)
    assert code == 0 and "speculative" not in err_plain
    code, spec, err = _cli(base, capsys)
    assert code == 0 and spec == plain
    assert "[speculative:" in err and "draft tokens accepted" in err
    code, spec2, err = _cli(base + ["--draft-model", str(rand_draft), "--draft-max", "4"], capsys)
    assert code == 0 and spec2 == plain and "[speculative:" in err
    # a short prompt: auto leaves speculation off
    code, _, err = _cli(["run", str(rand_model), "-p", "ab", "-n", "8", "--temp", "0", "-t", "1", "-c", "64", "-v"], capsys)
    assert code == 0 and "speculative" not in err


def test_cli_spec_option_errors(rand_model, capsys):
    code, _, err = _cli(["run", str(rand_model), "-p", "ab", "--draft-max", "0"], capsys)
    assert code == 1 and "--draft-max must be positive" in err
    code, _, err = _cli(["run", str(rand_model), "-p", "ab", "--no-spec", "--draft-model", str(rand_model)], capsys)
    assert code == 1 and "--draft-model cannot be combined" in err


# ----------------------------------------------------------------------------- interleaving, constraints

def test_interleaved_streams_on_one_object(rand_model):
    """Two streams on one Llama alternate tokens: each must still see its own context (the restore
    step also cuts rejected draft tokens another stream's step left behind)."""
    p1, p2 = list(range(3, 30)) * 2, list(range(40, 60)) * 2

    def run(draft):
        llm = Llama(rand_model, n_ctx=256, n_threads=1, draft_model=draft)
        a = llm(p1, max_tokens=30, temperature=0, stream=True)
        b = llm(p2, max_tokens=30, temperature=0, stream=True)
        ta, tb = [], []
        for ca, cb in zip(a, b):
            ta.append(ca["choices"][0]["text"])
            tb.append(cb["choices"][0]["text"])
        return "".join(ta), "".join(tb)

    d = LlamaPromptLookupDecoding()
    assert run(d) == run(None)
    assert d.stats.drafted > 0


class ForbidToken:
    """A toy constraint: every token but `banned` is allowed (TokenConstraint's validate())."""

    def __init__(self, banned):
        self.banned = banned

    def validate(self, tokens):
        return next((i for i, t in enumerate(tokens) if t == self.banned), len(tokens))


def test_filter_draft_cuts_at_first_forbidden_token():
    c = ForbidToken(banned=7)
    assert speculative.filter_draft([3, 4, 7, 5], c) == [3, 4]
    assert speculative.filter_draft([7, 3], c) == []
    assert speculative.filter_draft([3, 4], None) == [3, 4]


# ----------------------------------------------------------------------------- benchmarks (tiny runs)

def test_bench_spec_cli_tiny(rand_model, capsys):
    code, out, err = _cli(["bench", str(rand_model), "--spec", "-n", "12", "-t", "1", "-r", "1", "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["task"] for r in rows] == ["copy-substitute", "open-ended"]
    for r in rows:
        assert r["identical"] and r["tokens"] >= 1 and r["plain_tps"] > 0 and r["spec_tps"] > 0
        assert r["spec_forward_passes"] == r["tokens"] - r["accepted"]


def test_spec_bench_script_tiny(rand_model, capsys):
    import importlib.util
    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("spec_bench", ROOT / "benchmarks" / "spec_bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    code = mod.main([str(rand_model), "-n", "8", "-r", "1", "--tasks", "substitute,open-story", "--llama-bench", ""])
    out = capsys.readouterr().out
    assert code == 0
    assert "| substitute | yes |" in out and "| open-story | no |" in out and "worst speculative" in out


