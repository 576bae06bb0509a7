"""GenerationMixin against a fake model that follows the model contract exactly: byte-level toy
tokenizer, deterministic logits that spell out a scripted reply. These tests pin down the logic
(prefix reuse, stop strings, UTF-8, finish reasons, shapes, logprobs) independently of the real
model; tests/test_generation_real.py runs the same paths on SmolLM2.

Other test modules import FakeLlama from here."""

from __future__ import annotations

import json
import random
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest

from edgellama.generation import GenerationMixin

BOS, EOS, IM_START, IM_END = 256, 257, 258, 259
SPECIALS = {BOS: b"<s>", EOS: b"</s>", IM_START: b"<|im_start|>", IM_END: b"<|im_end|>"}
# a few multi-byte tokens so that not every token is one byte
PIECES = [b" world", b"Hello", "你好".encode(), b"\xe4\xb8"]  # the last one: half of a CJK char
N_VOCAB = 260 + len(PIECES)
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class FakeLlama(GenerationMixin):
    """Deterministic toy model. The next token continues ``reply`` (token ids) from the longest tail
    of the context that is a prefix of it; after the whole reply it predicts EOS (or, with
    ``eos=False``, starts over). ``peak`` is the logit margin of the scripted token over the rest
    (small peak + temperature > 0 -> sampling really varies with the seed)."""

    def __init__(self, reply: bytes | str = b"Hello world", n_ctx: int = 256, peak: float = 20.0,
                 eos: bool = True, chat_template: Optional[str] = CHATML, chat_format: Optional[str] = None,
                 seed: int = 0xFFFFFFFF, spm_like: bool = False):
        # spm_like: detokenize drops the leading space of a sequence's first (non-special) token,
        # as SentencePiece tokenizers with add_space_prefix do
        self.spm_like = spm_like
        self.reply = self.tokenize(reply, add_bos=False, special=True) if reply else []
        self._n_ctx, self.peak, self.eos = n_ctx, peak, eos
        self.chat_template, self.chat_format, self.seed = chat_template, chat_format, seed
        self.model_path = "fake.gguf"
        self.metadata = {"tokenizer.chat_template": chat_template} if chat_template else {}
        self._cache: List[int] = []
        self.eval_count = 0
        noise = np.random.default_rng(1234)
        self._noise = noise.standard_normal((64, N_VOCAB)).astype(np.float32)

    # --- tokenizer
    def tokenize(self, text, add_bos=True, special=False):
        if isinstance(text, str):
            text = text.encode("utf-8")
        text.decode("utf-8")  # invalid UTF-8 -> UnicodeDecodeError, a ValueError
        out = [BOS] if add_bos else []
        i = 0
        while i < len(text):
            for t, s in (SPECIALS.items() if special else ()):
                if text.startswith(s, i):
                    out.append(t)
                    i += len(s)
                    break
            else:
                for j, p in enumerate(PIECES[:3]):
                    if text.startswith(p, i):
                        out.append(260 + j)
                        i += len(p)
                        break
                else:
                    out.append(text[i])
                    i += 1
        return out

    def detokenize(self, tokens, prev_tokens=None, special=False):
        if prev_tokens:  # the model contract: the bytes tokens add after prev_tokens
            before = self.detokenize(prev_tokens, special=special)
            both = self.detokenize(list(prev_tokens) + list(tokens), special=special)
            return both[len(before):] if both.startswith(before) else self.detokenize(tokens, special=special)
        out = b""
        for t in tokens:
            if t < 256:
                out += bytes([t])
            elif t in SPECIALS:
                out += SPECIALS[t] if special else b""
            else:
                out += PIECES[t - 260]
        if self.spm_like and tokens and tokens[0] not in SPECIALS and out.startswith(b" "):
            out = out[1:]
        return out

    def token_bos(self):
        return BOS

    def token_eos(self):
        return EOS

    def _is_eog(self, t):
        return t in (EOS, IM_END)

    def n_ctx(self):
        return self._n_ctx

    def n_vocab(self):
        return N_VOCAB

    # --- evaluation
    @property
    def tokens_in_cache(self):
        return list(self._cache)

    def _truncate_cache(self, n):
        assert 0 <= n <= len(self._cache)
        del self._cache[n:]

    def _next(self, ctx: Sequence[int]) -> int:
        r = self.reply
        if not r:
            return EOS
        for j in range(min(len(r), len(ctx)), 0, -1):
            if list(ctx[len(ctx) - j:]) == r[:j]:
                if j == len(r):
                    return EOS if self.eos else r[0]
                return r[j]
        return r[0]

    def _logits(self, ctx: Sequence[int]) -> np.ndarray:
        x = self._noise[len(ctx) % 64].copy()
        x[self._next(ctx)] += self.peak
        return x

    def eval(self, tokens):
        tokens = [int(t) for t in tokens]
        if len(self._cache) + len(tokens) > self._n_ctx:
            raise RuntimeError("KV cache full")
        rows = []
        for t in tokens:
            self._cache.append(t)
            rows.append(self._logits(self._cache))
        self.eval_count += len(tokens)
        return np.stack(rows)

    def _eval_last(self, tokens):
        return self.eval(tokens)[-1]


def text_of(r):
    return r["choices"][0]["text"]


# --------------------------------------------------------------------------- generate


def test_generate_greedy_follows_script_and_yields_eos():
    llm = FakeLlama("abc")
    out = []
    for t in llm.generate(llm.tokenize("Q:"), temp=0):
        out.append(t)
        if t == EOS:
            break
    assert out == [ord("a"), ord("b"), ord("c"), EOS]


def test_generate_reuses_common_prefix():
    llm = FakeLlama("xyz")
    p1 = llm.tokenize("The quick brown fox")
    g = llm.generate(p1, temp=0)
    next(g)
    g.close()
    assert llm.eval_count == len(p1)
    # a prompt that shares a prefix: only the new suffix is evaluated
    p2 = llm.tokenize("The quick brown cat")
    g = llm.generate(p2, temp=0)
    next(g)
    g.close()
    common = len(llm.tokenize("The quick brown "))
    assert llm.eval_count == len(p1) + (len(p2) - common)
    assert llm.tokens_in_cache == p2


def test_generate_fully_cached_prompt_reevaluates_last_token():
    llm = FakeLlama("xyz")
    p = llm.tokenize("same prompt")
    for _ in range(2):
        g = llm.generate(p, temp=0)
        assert next(g) == ord("x")
        g.close()
    assert llm.eval_count == len(p) + 1


def test_cached_prefix_is_not_counted_twice_against_the_context():
    llm = FakeLlama("ab", n_ctx=40)
    p = llm.tokenize("x" * 30)
    for _ in range(3):  # each prompt shares 30 tokens with the cache and still fits
        assert text_of(llm(p, max_tokens=5, temperature=0)) == "ab"
        p = p + llm.tokenize("y", add_bos=False)


def test_generate_reset_false_appends():
    llm = FakeLlama("xyz")
    p = llm.tokenize("ab")
    g = llm.generate(p, temp=0)
    next(g)
    g.close()
    g = llm.generate(p, temp=0, reset=False)
    next(g)
    g.close()
    assert llm.tokens_in_cache == p + p


def test_generate_stops_when_context_full():
    llm = FakeLlama("ab", n_ctx=10, eos=False)
    p = llm.tokenize("12345")
    out = list(llm.generate(p, temp=0))
    # 6 prompt tokens (BOS + 5); each yielded token but the last is evaluated: 10 - 6 + 1 = 5
    assert len(out) == 5
    assert len(llm.tokens_in_cache) == 10


def test_interleaved_streams_on_one_object_stay_independent():
    llm = FakeLlama("Hello world, how are you", peak=30.0)
    alone = text_of(llm("A:", max_tokens=8, temperature=0))
    llm2 = FakeLlama("Hello world, how are you")
    a = llm2("A:", max_tokens=8, temperature=0, stream=True)
    b = llm2("Totally different prompt", max_tokens=8, temperature=0, stream=True)
    ta, tb = [], []
    for ca, cb in zip(a, b):  # alternate: each step finds the other's tokens in the cache
        ta.append(ca["choices"][0]["text"])
        tb.append(cb["choices"][0]["text"])
    ta += [c["choices"][0]["text"] for c in a]
    assert "".join(ta) == alone
    assert "".join(tb) == text_of(FakeLlama("Hello world, how are you")("Totally different prompt", max_tokens=8,
                                                                           temperature=0))


def test_generate_send_appends_tokens():
    llm = FakeLlama("ab", eos=False)
    g = llm.generate(llm.tokenize("x"), temp=0)
    first = next(g)
    g.send([ord("Z")])
    assert llm.tokens_in_cache[-2:] == [first, ord("Z")]


# --------------------------------------------------------------------------- completion


def test_completion_shape_and_usage():
    llm = FakeLlama("Hello world")
    r = llm.create_completion("Say hi:", max_tokens=50, temperature=0)
    assert set(r) == {"id", "object", "created", "model", "choices", "usage"}
    assert r["object"] == "text_completion" and r["id"].startswith("cmpl-")
    assert r["model"] == "fake.gguf" and isinstance(r["created"], int)
    c = r["choices"][0]
    assert c["text"] == "Hello world" and c["index"] == 0 and c["logprobs"] is None
    assert c["finish_reason"] == "stop"
    n_prompt = len(llm.tokenize("Say hi:"))
    assert r["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 2, "total_tokens": n_prompt + 2}
    json.dumps(r)  # plain JSON types


def test_leading_space_kept_when_tokenizer_strips_first_space():
    llm = FakeLlama(" world Hello world", spm_like=True)
    assert llm.detokenize([260]) == b"world"  # alone, the token loses its space...
    r = llm("Say:", max_tokens=50, temperature=0)
    assert text_of(r) == " world Hello world"  # ...in context it keeps it
    chunks = [c["choices"][0]["text"] for c in llm("Say:", max_tokens=50, temperature=0, stream=True)]
    assert "".join(chunks) == " world Hello world"


def test_call_is_create_completion():
    llm = FakeLlama("Hello world")
    assert text_of(llm("Say hi:", max_tokens=50, temperature=0)) == "Hello world"


def test_max_tokens_length():
    llm = FakeLlama("abcdefgh")
    r = llm("go", max_tokens=3, temperature=0)
    assert text_of(r) == "abc" and r["choices"][0]["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 3


def test_max_tokens_none_runs_to_context_end():
    llm = FakeLlama("ab", n_ctx=20, eos=False)
    r = llm("0123456789", max_tokens=None, temperature=0)
    n_prompt = r["usage"]["prompt_tokens"]
    assert r["usage"]["completion_tokens"] == 20 - n_prompt
    assert r["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("bad", [0, -1])
def test_max_tokens_nonpositive_is_an_error(bad):
    llm = FakeLlama()
    with pytest.raises(ValueError, match="max_tokens"):
        llm("x", max_tokens=bad)
    with pytest.raises(ValueError, match="max_tokens"):
        llm("x", max_tokens=bad, stream=True)  # eagerly, not at the first next()


def test_prompt_longer_than_context_names_both_lengths():
    llm = FakeLlama(n_ctx=16)
    with pytest.raises(ValueError) as ei:
        llm("x" * 40)
    assert "41" in str(ei.value) and "16" in str(ei.value)


def test_echo_and_suffix():
    llm = FakeLlama("abc")
    assert text_of(llm("P:", temperature=0, echo=True)) == "P:abc"
    assert text_of(llm("P:", temperature=0, suffix="!")) == "abc!"


def test_token_list_prompt():
    llm = FakeLlama("abc")
    assert text_of(llm(llm.tokenize("P:"), temperature=0)) == "abc"
    with pytest.raises(ValueError, match="out of range"):
        llm([BOS, 10_000])


def test_invalid_utf8_prompt_is_value_error():
    llm = FakeLlama()
    with pytest.raises(ValueError):
        llm(b"\xff\xfe bad")


@pytest.mark.parametrize("stop, expected", [
    ("wor", "Hello "),            # stop inside a multi-byte token
    ([" w", "zzz"], "Hello"),      # earliest of several; spans the token boundary
    ("lo wo", "Hel"),              # spans two tokens
    ("Hello world", ""),           # the whole answer
    ("xyz", "Hello world"),        # never matches: held-back text is released at the end
    ("world!", "Hello world"),     # a prefix matches at the end but the stop never completes
])
def test_stop_strings(stop, expected):
    llm = FakeLlama("Hello world")
    r = llm("Say:", max_tokens=50, temperature=0, stop=stop)
    assert text_of(r) == expected
    full = expected != "Hello world"
    assert r["choices"][0]["finish_reason"] == "stop"
    chunks = list(llm("Say:", max_tokens=50, temperature=0, stop=stop, stream=True))
    texts = [c["choices"][0]["text"] for c in chunks]
    assert "".join(texts) == expected
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    if full:
        assert all(stop_s not in "".join(texts) for stop_s in ([stop] if isinstance(stop, str) else stop))


def test_stop_string_is_never_streamed_partly():
    llm = FakeLlama("one. END two")
    seen = ""
    for c in llm("x", max_tokens=50, temperature=0, stop="END", stream=True):
        seen += c["choices"][0]["text"]
        assert not seen.endswith("E") and not seen.endswith("EN")
    assert seen == "one. "


def test_stream_chunks_shape():
    llm = FakeLlama("Hello world")
    chunks = list(llm("x", max_tokens=50, temperature=0, stream=True))
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and all(c["object"] == "text_completion" for c in chunks)
    assert len(chunks) >= 3


def test_streaming_utf8_never_splits_characters():
    # byte-level tokens and a token holding half a character: chunks must be whole characters
    text = "中文 ok 你好 👨‍👩‍👧 é"
    llm = FakeLlama(text)
    llm.reply = list(text.encode())  # one token per byte
    chunks = [c["choices"][0]["text"] for c in llm("x", max_tokens=200, temperature=0, stream=True)]
    for ch in chunks:
        ch.encode("utf-8")  # no lone surrogates
        assert "\ufffd" not in ch
    assert "".join(chunks) == text == text_of(llm("x", max_tokens=200, temperature=0))


def test_invalid_bytes_become_replacement_char_and_do_not_stall():
    llm = FakeLlama("a")
    llm.reply = [ord("a"), 0xFF, ord("b"), 263, ord("c")]  # 263 = b"\xe4\xb8", cut short by "c"
    chunks = [c["choices"][0]["text"] for c in llm("x", max_tokens=20, temperature=0, stream=True)]
    assert "".join(chunks) == "a\ufffdb\ufffdc"
    assert chunks[:3] == ["a", "\ufffd", "b"]  # emitted at once, not held until the end


def test_incomplete_char_at_the_end_is_flushed():
    llm = FakeLlama("a")
    llm.reply = [ord("a"), 263]
    assert text_of(llm("x", max_tokens=20, temperature=0)) == "a\ufffd"


# --------------------------------------------------------------------------- sampling


def test_seed_reproducible_and_varies():
    llm = FakeLlama("abcdefghijklmnop", peak=1.0)
    a = text_of(llm("x", max_tokens=12, temperature=1.5, top_k=0, seed=7))
    b = text_of(llm("x", max_tokens=12, temperature=1.5, top_k=0, seed=7))
    assert a == b
    others = {text_of(llm("x", max_tokens=12, temperature=1.5, top_k=0, seed=s)) for s in range(8, 14)}
    assert len(others | {a}) > 1


def test_call_seed_becomes_the_seed_of_later_calls():
    """As llama-cpp-python 0.3.36 (create_completion(seed=s) calls set_seed(s)): a call with a seed
    followed by calls without one samples those as set_seed(s) would."""
    kw = dict(max_tokens=12, temperature=1.5, top_k=0)
    a = FakeLlama("abcdefghijklmnop", peak=1.0, seed=1)
    a("x", **kw)  # move a's RNG on
    seeded = text_of(a("x", seed=99, **kw))
    after = [text_of(a("x", **kw)) for _ in range(3)]
    b = FakeLlama("abcdefghijklmnop", peak=1.0, seed=1)
    b.set_seed(99)
    assert [text_of(b("x", **kw)) for _ in range(3)] == after
    assert text_of(FakeLlama("abcdefghijklmnop", peak=1.0)("x", seed=99, **kw)) == seeded
    assert len(set(after)) > 1  # the later calls still draw different seeds


def test_seed_chain_is_llama_cpp_pythons():
    """llama-cpp-python 0.3.36's create_completion without seed= sets its seed to
    random.Random(seed).randint(0, 2**32) and samples with that, mod 2^32 (ctypes.c_uint32)."""
    kw = dict(max_tokens=8, temperature=1.5, top_k=0)
    llm = FakeLlama("abcdefghijklmnop", peak=1.0, seed=1337)
    want = 1337
    for _ in range(3):
        got = text_of(llm("x", **kw))
        want = random.Random(want).randint(0, 2**32)
        assert llm.seed == want
        assert got == text_of(FakeLlama("abcdefghijklmnop", peak=1.0)("x", seed=want & 0xFFFFFFFF, **kw))
    assert text_of(llm("x", seed=2**32 + 9, **kw)) == text_of(llm("x", seed=9, **kw))
    # the default seed starts the chain from a random seed (llama-cpp-python: from 0xFFFFFFFF)
    chains = {text_of(FakeLlama("abcdefghijklmnop", peak=1.0)("x", **kw)) for _ in range(4)}
    assert len(chains) > 1


def test_generate_samples_with_the_objects_seed():
    """generate() (and sample()) seed their sampler with the object's seed as it is, as
    llama-cpp-python's do; only create_completion moves the seed on."""
    llm = FakeLlama("abcdefghijklmnop", peak=1.0, seed=77)
    toks = llm.tokenize("x")

    def draw():
        g = llm.generate(toks, temp=1.5, top_k=0)
        out = [next(g) for _ in range(8)]
        g.close()
        return out

    first = draw()
    assert draw() == first and llm.seed == 77
    llm.set_seed(78)
    assert draw() != first


def test_constructor_seed_reproducible_across_objects():
    a = FakeLlama("abcdefghijklmnop", peak=1.0, seed=42)
    b = FakeLlama("abcdefghijklmnop", peak=1.0, seed=42)
    ra = [text_of(a("x", max_tokens=10, temperature=1.5, top_k=0)) for _ in range(2)]
    rb = [text_of(b("x", max_tokens=10, temperature=1.5, top_k=0)) for _ in range(2)]
    assert ra == rb


def test_logit_bias_string_keys():
    llm = FakeLlama("abc")
    r = llm("x", max_tokens=1, temperature=0, logit_bias={str(ord("q")): 100.0})
    assert text_of(r) == "q"
    with pytest.raises(ValueError, match="logit_bias"):
        llm("x", logit_bias={"nope": 1.0})


# --------------------------------------------------------------------------- logprobs


def test_logprobs_shape_and_values():
    llm = FakeLlama("Hello world")
    r = llm("Say:", max_tokens=50, temperature=0, logprobs=3)
    lp = r["choices"][0]["logprobs"]
    assert lp["tokens"] == ["Hello", " world"]
    assert lp["text_offset"] == [0, 5]
    assert len(lp["token_logprobs"]) == 2 and all(v <= 0 for v in lp["token_logprobs"])
    # the chosen token has the top logprob in greedy decoding
    for tok, v, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert len(top) >= 3 and top[tok] == v == max(top.values())
    # matches a direct log-softmax of the model's logits
    ctx = llm.tokenize("Say:")
    x = llm._logits(ctx).astype(np.float64)
    ref = x - np.log(np.exp(x - x.max()).sum()) - x.max()
    assert lp["token_logprobs"][0] == pytest.approx(ref[260 + 1], abs=1e-4)


def test_logprobs_streamed_equal_non_streamed_and_exclude_stop():
    llm = FakeLlama("Hello world")
    full = llm("Say:", max_tokens=50, temperature=0, logprobs=2, stop=" wor")["choices"][0]["logprobs"]
    assert full["tokens"] == ["Hello"]
    merged: Dict[str, list] = {"tokens": [], "token_logprobs": [], "text_offset": []}
    for c in llm("Say:", max_tokens=50, temperature=0, logprobs=2, stop=" wor", stream=True):
        lp = c["choices"][0]["logprobs"]
        for k in merged:
            merged[k] += lp[k]
    assert merged["tokens"] == full["tokens"] and merged["text_offset"] == full["text_offset"]


def test_echo_logprobs_cover_prompt():
    llm = FakeLlama("ab")
    r = llm("xy", max_tokens=5, temperature=0, echo=True, logprobs=1)
    lp = r["choices"][0]["logprobs"]
    assert text_of(r) == "xyab"
    assert lp["tokens"] == ["", "x", "y", "a", "b"]  # BOS renders as ""
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["text_offset"] == [0, 0, 1, 2, 3]


# --------------------------------------------------------------------------- chat


def test_chat_completion_shape():
    llm = FakeLlama("Hi there")
    r = llm.create_chat_completion([{"role": "user", "content": "hello"}], temperature=0)
    assert r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")
    c = r["choices"][0]
    assert c["message"] == {"role": "assistant", "content": "Hi there"}
    assert c["finish_reason"] == "stop"
    assert r["usage"]["prompt_tokens"] == len(llm.tokenize(
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", special=True))


def test_chat_stream_chunks():
    llm = FakeLlama("Hi there")
    chunks = list(llm.create_chat_completion([{"role": "user", "content": "hello"}], temperature=0, stream=True))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hi there"


def test_chat_stops_at_im_end_text_and_eog_token():
    llm = FakeLlama("Sure<|im_end|>junk")  # the model emits the EOG token <|im_end|>
    r = llm.create_chat_completion([{"role": "user", "content": "q"}], temperature=0)
    assert r["choices"][0]["message"]["content"] == "Sure"
    # a model without the special token spells it out byte by byte: the chatml stop string catches it
    llm = FakeLlama("Sure", chat_template=None, chat_format="chatml")
    llm.reply = llm.tokenize("Sure<|im_end|>junk", add_bos=False, special=False)
    r = llm.create_chat_completion([{"role": "user", "content": "q"}], temperature=0)
    assert r["choices"][0]["message"]["content"] == "Sure"


def test_chat_second_turn_evaluates_only_new_tokens():
    llm = FakeLlama("Fine, thanks")
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How are you?"}]
    r1 = llm.create_chat_completion(msgs, temperature=0)
    answer = r1["choices"][0]["message"]["content"]
    assert answer == "Fine, thanks"
    cache_after_1 = llm.tokens_in_cache
    before = llm.eval_count
    msgs += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And now?"}]
    r2 = llm.create_chat_completion(msgs, temperature=0)
    prompt2 = llm.tokenize(llm.apply_chat_template(msgs), special=True)
    assert len(prompt2) == r2["usage"]["prompt_tokens"]
    common = 0
    while common < len(cache_after_1) and cache_after_1[common] == prompt2[common]:
        common += 1
    assert common >= r1["usage"]["prompt_tokens"] + r1["usage"]["completion_tokens"] - 1
    n2 = r2["usage"]["completion_tokens"]
    # new prompt tokens + every generated token but the last (the EOS is never evaluated)
    assert llm.eval_count - before == (len(prompt2) - common) + n2


def test_chat_without_template_needs_chat_format():
    llm = FakeLlama(chat_template=None)
    with pytest.raises(ValueError, match="chat_format"):
        llm.create_chat_completion([{"role": "user", "content": "q"}])
    llm.chat_format = "nonsense"
    with pytest.raises(ValueError, match="chatml"):
        llm.create_chat_completion([{"role": "user", "content": "q"}])


def test_chat_template_bos_not_doubled():
    tmpl = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    llm = FakeLlama("ok", chat_template=tmpl)
    r = llm.create_chat_completion([{"role": "user", "content": "q"}], temperature=0)
    assert r["usage"]["prompt_tokens"] == 3  # <s> q \n
    assert llm.tokens_in_cache[:2] == [BOS, ord("q")]


def test_chat_logprobs_openai_shape():
    llm = FakeLlama("Hi")
    r = llm.create_chat_completion([{"role": "user", "content": "q"}], temperature=0, logprobs=True,
                                   top_logprobs=2)
    content = r["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in content] == ["H", "i"]
    assert content[0]["bytes"] == [ord("H")] and len(content[0]["top_logprobs"]) == 2
