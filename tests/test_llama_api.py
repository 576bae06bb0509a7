"""llama-cpp-python 0.3.36's high-level `Llama` API on edgellama: constructor arguments, members,
saved states, prompt caches, hooks, embeddings (against the float64 reference) and import paths.
Small random models (model_factory) keep it fast; the reference is tests/reference_forward.py."""

import inspect
import pickle
import warnings

import numpy as np
import pytest

import edgellama
from edgellama import Llama
from model_factory import make_model
from reference_forward import ReferenceModel

# Llama.__init__'s parameters in llama-cpp-python 0.3.36 (llama_cpp/llama.py), so this test does
# not need its source.
LLAMA_CPP_INIT_PARAMS = [
    "model_path", "n_gpu_layers", "split_mode", "main_gpu", "tensor_split", "vocab_only", "use_mmap", "use_mlock",
    "kv_overrides", "seed", "n_ctx", "n_batch", "n_ubatch", "n_threads", "n_threads_batch", "rope_scaling_type",
    "pooling_type", "attention_type", "rope_freq_base", "rope_freq_scale", "yarn_ext_factor", "yarn_attn_factor",
    "yarn_beta_fast", "yarn_beta_slow", "yarn_orig_ctx", "logits_all", "embedding", "offload_kqv", "flash_attn",
    "op_offload", "swa_full", "no_perf", "last_n_tokens_size", "lora_base", "lora_scale", "lora_path", "numa",
    "chat_format", "chat_handler", "draft_model", "tokenizer", "type_k", "type_v", "spm_infill", "verbose",
]
LLAMA_CPP_MEMBERS = [
    "tokenize", "detokenize", "set_cache", "set_seed", "reset", "eval", "sample", "generate", "create_embedding",
    "embed", "create_completion", "__call__", "create_chat_completion", "create_chat_completion_openai_v1",
    "save_state", "load_state", "n_ctx", "n_embd", "n_vocab", "tokenizer", "token_eos", "token_bos", "token_nl",
    "pooling_type", "close", "logits_to_logprobs", "longest_token_prefix", "from_pretrained",
]
PROMPT = [1, 40, 50, 60, 70, 80, 90, 100]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("api") / "m.gguf", n_layer=2, n_embd=32, n_head=4, n_head_kv=2,
                      n_ff=64, n_vocab=300, n_ctx_train=128, seed=5)


def load(path, **kw):
    kw.setdefault("n_ctx", 64)
    kw.setdefault("n_threads", 1)
    kw.setdefault("verbose", False)
    return Llama(path, **kw)


# --------------------------------------------------------------------------------- constructor

def test_every_llama_cpp_python_parameter_and_member_exists():
    params = inspect.signature(Llama.__init__).parameters
    missing = [p for p in LLAMA_CPP_INIT_PARAMS if p not in params]
    assert not missing, missing
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert [m for m in LLAMA_CPP_MEMBERS if not hasattr(Llama, m)] == []


def test_ignored_settings_get_one_debug_line(model_path, caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="edgellama"):
        load(model_path, n_gpu_layers=-1, flash_attn=True)
    lines = [r for r in caplog.records if r.name == "edgellama" and "ignoring" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.DEBUG
    assert "n_gpu_layers=-1" in lines[0].getMessage() and "flash_attn=True" in lines[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="edgellama"):
        load(model_path)
    assert not [r for r in caplog.records if "ignoring" in r.getMessage()]


def test_gpu_and_residency_settings_are_accepted_and_change_nothing(model_path):
    with load(model_path) as plain:
        want = plain.eval(PROMPT)
    with load(model_path, n_gpu_layers=-1, main_gpu=1, split_mode=2, tensor_split=[0.5, 0.5], offload_kqv=False,
              flash_attn=True, use_mmap=False, use_mlock=True, numa=True, no_perf=True, n_ubatch=3,
              n_threads_batch=2) as m:
        np.testing.assert_array_equal(m.eval(PROMPT), want)
        assert m.n_ubatch == 3


@pytest.mark.parametrize("kw", [dict(yarn_ext_factor=1.0),
                                dict(yarn_orig_ctx=4096), dict(rope_scaling_type=2), dict(kv_overrides={"a": 1}),
                                dict(lora_path="x.gguf"), dict(type_k=8), dict(pooling_type=4),
                                dict(chat_handler=lambda **k: None)])
def test_settings_that_would_change_results_raise_not_implemented(model_path, kw):
    name = next(iter(kw))
    with pytest.raises(NotImplementedError, match=name):
        load(model_path, **kw)


def test_unknown_keyword_warns_and_is_ignored(model_path):
    with pytest.warns(UserWarning, match="n_ctxx"):
        m = load(model_path, n_ctxx=4096)
    assert m.n_ctx() == 64


def test_n_ctx_zero_is_the_trained_context_and_more_warns(model_path):
    assert load(model_path, n_ctx=0).n_ctx() == 128
    with pytest.warns(UserWarning, match="trained"):
        load(model_path, n_ctx=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(model_path, n_ctx=128)


def test_type_k_accepts_ggml_type_ids(model_path):
    f16 = load(model_path, type_k=1, type_v=1)
    f32 = load(model_path, type_k=0, type_v="f32")
    f16.eval(PROMPT)
    f32.eval(PROMPT)
    assert len(f32.save_state().llama_state) - 64 > 1.9 * (len(f16.save_state().llama_state) - 64)
    with pytest.raises(ValueError, match="type_k"):
        load(model_path, type_k=99)


def test_missing_model_path_says_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="file not found"):
        Llama(str(tmp_path / "nope.gguf"))


# --------------------------------------------------------------------------------- members

def test_tokens_logits_and_counters(model_path):
    with load(model_path, logits_all=True) as m:
        logits = m.eval(PROMPT)
        assert m.n_tokens == len(PROMPT)
        assert m.input_ids.shape == (64,) and m.input_ids[: m.n_tokens].tolist() == PROMPT
        assert list(m.eval_tokens) == PROMPT
        np.testing.assert_array_equal(m.scores[: m.n_tokens], logits)
        assert len(m.eval_logits) == len(PROMPT) and np.allclose(m.eval_logits[-1], logits[-1])
        m.n_tokens = 3  # llama-cpp-python code resets the cache by assignment
        assert list(m.eval_tokens) == PROMPT[:3]
        np.testing.assert_allclose(m.eval([PROMPT[3]])[0], logits[3], rtol=0, atol=1e-5)
    with load(model_path) as m:
        last = m.eval(PROMPT)[-1]
        assert m.scores.shape == (1, m.n_vocab())
        np.testing.assert_array_equal(m.scores[0], last)
        assert len(m.eval_logits) == 1


def test_sample_is_argmax_when_greedy_and_sees_the_processor(model_path):
    with load(model_path) as m:
        last = m.eval(PROMPT)[-1]
        assert m.sample(temp=0) == int(np.argmax(last[: m._n_text_tokens()]))
        seen = []

        def force_7(input_ids, scores):
            seen.append(input_ids.tolist())
            scores[:] = -np.inf
            scores[7] = 0.0
            return scores

        assert m.sample(temp=0.8, logits_processor=edgellama.LogitsProcessorList([force_7])) == 7
        assert seen == [PROMPT]
        with pytest.raises(ValueError, match="mirostat"):
            m.sample(mirostat_mode=5)


def test_logits_to_logprobs_and_prefix():
    x = np.array([[1.0, 2.0, -np.inf], [0.0, 0.0, 0.0]], dtype=np.float32)
    lp = Llama.logits_to_logprobs(x)
    with np.errstate(divide="ignore"):  # log(0) = -inf for the -inf logit is the expected value
        want = np.log(np.exp(x.astype(np.float64)) / np.exp(x.astype(np.float64)).sum(-1, keepdims=True))
    np.testing.assert_allclose(lp, want, rtol=1e-6)
    assert lp.dtype == np.float32
    assert Llama.longest_token_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert Llama.longest_token_prefix([], [1]) == 0


def test_detokenize_prev_tokens_token_nl_and_tokenizer(model_path):
    with load(model_path, vocab_only=True) as m:
        ids = m.tokenize(b"ab cd")
        whole = m.detokenize(ids)
        assert m.detokenize(ids[2:], prev_tokens=ids[:2]) == whole[len(m.detokenize(ids[:2])):]
        tok = m.tokenizer()
        assert tok.tokenize(b"ab cd") == ids and tok.decode(ids) == whole.decode()
        assert m.token_nl() in (-1,) + tuple(m.tokenize(b"\n", add_bos=False))
        assert m.is_eog(m.token_eos()) and not m.is_eog(ids[-1])


def test_custom_tokenizer_is_used(model_path):
    class Upper(edgellama.BaseLlamaTokenizer):
        def tokenize(self, text, add_bos=True, special=True):
            return [1, 40]

        def detokenize(self, tokens, prev_tokens=None, special=False):
            return b"X" * len(tokens)

    with load(model_path, tokenizer=Upper()) as m:
        assert m.tokenize(b"anything") == [1, 40]
        assert m.detokenize([3, 4]) == b"XX"


def test_set_seed_repeats_sampling(model_path):
    with load(model_path) as m:
        m.set_seed(42)
        a = m(PROMPT, max_tokens=6, temperature=1.0)["choices"][0]["text"]
        m.set_seed(42)
        b = m(PROMPT, max_tokens=6, temperature=1.0)["choices"][0]["text"]
        assert a == b


def test_pickle_recreates_the_object(model_path):
    with load(model_path, n_ctx=32, seed=7) as m:
        m2 = pickle.loads(pickle.dumps(m))
        assert m2.n_ctx() == 32 and m2.seed == 7
        np.testing.assert_array_equal(m2.eval(PROMPT), m.eval(PROMPT))


def test_openai_v1_types(model_path):
    pytest.importorskip("openai")
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    with load(model_path, chat_format="chatml") as m:
        r = m.create_chat_completion_openai_v1([{"role": "user", "content": "ab"}], max_tokens=3)
        assert isinstance(r, ChatCompletion) and r.choices[0].message.role == "assistant"
        chunks = list(m.create_chat_completion_openai_v1([{"role": "user", "content": "ab"}], max_tokens=3,
                                                         stream=True))
        assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)


# --------------------------------------------------------------------------------- states and caches

def test_save_load_state_round_trip_gives_identical_continuations(model_path):
    with load(model_path) as m:
        m.eval(PROMPT)
        state = m.save_state()
        first = m(PROMPT + [120, 130], max_tokens=8, temperature=0.7, seed=3)["choices"][0]["text"]
        m.eval([5, 6, 7])  # change the cache
        m.load_state(state)
        assert m.n_tokens == len(PROMPT)
        # continuing from the loaded cache, with no re-evaluation of the prompt
        before = m.eval_count
        again = m(PROMPT + [120, 130], max_tokens=8, temperature=0.7, seed=3)["choices"][0]["text"]
        assert again == first
        assert m.eval_count - before <= 2 + 8  # only the two new prompt tokens and the answer
        # the KV cache itself was restored: the next logits equal a fresh evaluation's
        m.load_state(state)
        restored = m.eval([120])[0]
    with load(model_path) as fresh:
        fresh.load_state(state)  # into another object
        np.testing.assert_array_equal(fresh.eval([120])[0], restored)
        want = fresh.eval([130])[0]
    with load(model_path) as ref:
        np.testing.assert_allclose(ref.eval(PROMPT + [120, 130])[-1], want, rtol=0, atol=1e-5)


def test_load_state_restores_where_the_call_seeds_stood(model_path):
    """llama-cpp-python's test_real_llama: calls without a seed draw theirs from the object's RNG;
    after load_state the next call repeats the one made right after save_state."""
    kw = dict(max_tokens=6, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    with load(model_path, seed=7) as m:
        m(PROMPT, **kw)  # start the RNG
        state = m.save_state()
        first = m(PROMPT, **kw)["choices"][0]["text"]
        second = m(PROMPT, **kw)["choices"][0]["text"]
        m.load_state(state)
        assert m(PROMPT, **kw)["choices"][0]["text"] == first
        assert first != second  # different draws (6 tokens at temperature 1 on a random model)


def test_load_state_rejects_foreign_or_damaged_states(model_path, tmp_path):
    other = make_model(tmp_path / "o.gguf", n_layer=3, n_embd=32, n_head=4, n_head_kv=2, n_ff=64, n_vocab=300)
    with load(model_path) as m:
        m.eval(PROMPT)
        state = m.save_state()
        bad = edgellama.LlamaState(state.input_ids, state.scores, state.n_tokens, state.llama_state[:-3],
                                   state.llama_state_size - 3, state.seed)
        with pytest.raises(ValueError, match="load_state"):
            m.load_state(bad)
        assert m.n_tokens == len(PROMPT)  # unchanged after the error
        with pytest.raises(ValueError, match="magic"):
            m.load_state(edgellama.LlamaState(state.input_ids, state.scores, 0, b"x" * 64, 64, 0))
    with load(other) as o, pytest.raises(ValueError, match="layers"):
        o.load_state(state)
    with load(model_path, type_k="f32") as m32, pytest.raises(ValueError, match="type"):
        m32.load_state(state)
    with load(model_path, n_ctx=4) as small, pytest.raises(ValueError, match="n_ctx"):
        small.load_state(state)


@pytest.mark.parametrize("kind", ["ram", "disk"])
def test_prompt_cache_reuses_the_longest_prefix(model_path, tmp_path, kind):
    def make_cache():
        return edgellama.LlamaRAMCache() if kind == "ram" else edgellama.LlamaDiskCache(cache_dir=str(tmp_path / "c"))

    prompt = PROMPT * 3
    with load(model_path) as ref:
        want = ref(prompt + [11, 12], max_tokens=5, temperature=0)["choices"][0]["text"]
    cache = make_cache()
    with load(model_path) as m:
        m.set_cache(cache)
        m(prompt, max_tokens=5, temperature=0)
        assert len(cache._keys()) == 1
    if kind == "disk":
        cache = make_cache()  # a new process would see the files
    with load(model_path) as m2:
        m2.set_cache(cache)
        got = m2(prompt + [11, 12], max_tokens=5, temperature=0)["choices"][0]["text"]
        assert got == want
        assert m2.eval_count <= 2 + 5 + 1  # the prompt prefix came from the cache
    assert len(cache._keys()) == 2


def test_ram_cache_evicts_least_recently_used(model_path):
    with load(model_path) as m:
        m.eval(PROMPT)
        s = m.save_state()
    size = len(s.llama_state) + s.scores.nbytes + s.input_ids.nbytes
    cache = edgellama.LlamaRAMCache(capacity_bytes=2 * size + 1)
    cache[[1, 2]] = s
    cache[[3, 4]] = s
    _ = cache[[1, 2, 9]]  # touch [1, 2]
    cache[[5, 6]] = s
    assert [1, 2] in cache and [5, 6] in cache and [3, 4, 7] not in cache
    with pytest.raises(KeyError):
        cache[[8]]


# --------------------------------------------------------------------------------- hooks

def test_logits_processor_and_stopping_criteria_in_completions(model_path):
    with load(model_path) as m:
        def only_260(input_ids, scores):
            scores[:] = -np.inf
            scores[260] = 0.0
            return scores

        out = m(PROMPT, max_tokens=4, logits_processor=edgellama.LogitsProcessorList([only_260]))
        assert out["choices"][0]["text"] == m.detokenize([260] * 4, prev_tokens=PROMPT).decode()
        assert out["choices"][0]["text"] != m(PROMPT, max_tokens=4)["choices"][0]["text"]
        seen = []

        def after_two(input_ids, logits):
            seen.append(len(input_ids))
            return len(input_ids) >= len(PROMPT) + 2

        out = m(PROMPT, max_tokens=10, temperature=0, stopping_criteria=edgellama.StoppingCriteriaList([after_two]))
        assert out["choices"][0]["finish_reason"] == "stop"
        assert out["usage"]["completion_tokens"] == 2 and seen == [len(PROMPT), len(PROMPT) + 1, len(PROMPT) + 2]
        assert m(PROMPT, max_tokens=1, model="mine")["model"] == "mine"


# --------------------------------------------------------------------------------- embeddings

@pytest.mark.parametrize("pooling,pool", [(1, lambda h: h.mean(0)), (2, lambda h: h[0]), (3, lambda h: h[-1])])
def test_embeddings_match_the_float64_reference(model_path, pooling, pool):
    texts = ["ab cd ef", "b", "cab abc d e f g"]
    ref = ReferenceModel(model_path)
    with load(model_path, embedding=True, pooling_type=pooling, precision="exact", type_k="f32", type_v="f32") as m:
        toks = [m.tokenize(t.encode()) for t in texts]
        got, count = m.embed(texts, return_count=True)
        assert count == sum(map(len, toks))
        hidden = ref.forward_many(toks, hidden=True)
        for g, h in zip(got, hidden):
            want = pool(h)
            np.testing.assert_allclose(np.array(g), want, rtol=0, atol=2e-5 * np.abs(want).max())
        unit = m.embed(texts[0], normalize=True)
        np.testing.assert_allclose(np.array(unit), np.array(got[0]) / np.linalg.norm(got[0]), rtol=1e-5, atol=1e-7)
        r = m.create_embedding(texts[:2])
        assert r["object"] == "list" and [d["index"] for d in r["data"]] == [0, 1]
        assert r["usage"]["prompt_tokens"] == len(toks[0]) + len(toks[1])
        assert r["data"][1]["embedding"] == got[1]


@pytest.mark.parametrize("precision", ["fast", "exact"])
def test_embeddings_of_many_inputs_share_passes_and_equal_each_alone(model_path, precision):
    """Several inputs go through one forward pass (one sequence each); each input's hidden states
    must be bit-identical to evaluating it alone in the object's own context, including when a
    group is cut by n_batch; the object's KV cache is not touched."""
    texts = ["ab cd ef", "b", "cab abc d e f g", "d d d", "a"] * 3
    with load(model_path, embedding=True, pooling_type="none", precision=precision, n_batch=16) as m:
        toks = [m.tokenize(t.encode()) for t in texts]
        m.eval(PROMPT)
        cache_before = list(m.tokens_in_cache)
        many = m._hidden_states_many(toks)
        assert m.tokens_in_cache == cache_before
        for t, h in zip(toks, many):
            np.testing.assert_array_equal(h, m._hidden_states(t))
        assert np.array(m.embed(texts)[2]).shape == (len(toks[2]), m.n_embd())


def test_embeddings_pooling_none_truncate_and_errors(model_path):
    with load(model_path, n_ctx=8, embedding=True, pooling_type="none") as m:
        assert m.pooling_type() == 0
        rows = m.embed("ab cd")
        assert len(rows) == len(m.tokenize(b"ab cd")) and len(rows[0]) == m.n_embd()
        long = "a b c d e f g h i j k"
        assert len(m.embed(long)) == 8
        with pytest.raises(ValueError, match="n_ctx"):
            m.embed(long, truncate=False)
    with load(model_path) as m, pytest.raises(RuntimeError, match="embedding=True"):
        m.embed("ab")


# --------------------------------------------------------------------------------- import paths

def test_names_import_where_llama_cpp_python_users_import_them():
    from edgellama import (Llama, LlamaCache, LlamaDiskCache, LlamaRAMCache, LlamaState,  # noqa: F401
                           LogitsProcessorList, StoppingCriteriaList, ChatCompletionRequestUserMessage)
    from edgellama.llama_cache import BaseLlamaCache  # noqa: F401
    from edgellama.llama_chat_format import Jinja2ChatFormatter, hf_tokenizer_config_to_chat_formatter  # noqa: F401
    from edgellama.llama_tokenizer import LlamaHFTokenizer, LlamaTokenizer  # noqa: F401
    from edgellama.llama_types import CreateChatCompletionResponse, CreateCompletionResponse  # noqa: F401


def test_jinja2_chat_formatter_renders_like_transformers():
    from edgellama.llama_chat_format import Jinja2ChatFormatter

    f = Jinja2ChatFormatter("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}",
                            eos_token="</s>", bos_token="<s>")
    r = f(messages=[{"role": "user", "content": "hi"}])
    assert r.prompt == "<s>[user]hi" and r.added_special and r.stop == ["</s>"]


# --------------------------------------------------------------------------------- rough edges

@pytest.mark.parametrize("kw", [dict(top_p=1.5), dict(top_p=-0.1), dict(top_k=-1), dict(top_k=2.5), dict(min_p=1.2),
                                dict(min_p=-0.5), dict(typical_p=2.0), dict(temperature=float("nan")),
                                dict(repeat_penalty=0.0), dict(frequency_penalty=float("inf"))])
def test_sampling_parameters_are_validated(model_path, kw):
    name = next(iter(kw))
    with load(model_path, chat_format="chatml") as m:
        with pytest.raises(ValueError, match=name):
            m(PROMPT, max_tokens=2, **kw)
        with pytest.raises(ValueError, match=name):
            m.create_chat_completion([{"role": "user", "content": "ab"}], max_tokens=2, **kw)
        with pytest.raises(ValueError, match=name):
            next(m.create_completion(PROMPT, max_tokens=2, stream=True, **kw))
    with pytest.raises(TypeError, match="top_p"):
        with load(model_path) as m:
            m(PROMPT, max_tokens=2, top_p="high")


def test_chat_roles_and_empty_messages_are_validated(model_path):
    with load(model_path, chat_format="chatml", n_ctx=128) as m:
        with pytest.raises(ValueError, match="empty"):
            m.create_chat_completion([])
        with pytest.raises(ValueError, match="role 'usr'"):
            m.create_chat_completion([{"role": "usr", "content": "hi"}])
        out = m.create_chat_completion([{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}],
                                       max_tokens=2)
        assert out["choices"][0]["message"]["role"] == "assistant"


def test_llama_and_the_test_fake_follow_the_model_contract(model_path):
    from edgellama.model_contract import GenerationModel
    from test_generation import FakeLlama

    with load(model_path) as m:
        assert isinstance(m, GenerationModel)
    assert isinstance(FakeLlama("abc"), GenerationModel)

    class Incomplete:
        def eval(self, tokens):
            return None

    assert not isinstance(Incomplete(), GenerationModel)


def test_llama_cpp_python_chat_format_names(model_path):
    msgs = [{"role": "user", "content": "Instruction"}, {"role": "assistant", "content": "Answer"},
            {"role": "user", "content": "Again"}]
    with load(model_path, chat_format="mistral-instruct", n_ctx=128) as m:
        assert m.apply_chat_template(msgs) == "<s>[INST] Instruction [/INST]Answer</s>[INST] Again [/INST]"
        with pytest.raises(ValueError, match="alternate"):
            m.apply_chat_template(msgs[1:])
    with load(model_path, chat_format="qwen") as q, load(model_path, chat_format="chatml") as c:
        assert q.apply_chat_template(msgs) == c.apply_chat_template(msgs)


def test_register_chat_format(model_path):
    from edgellama.llama_chat_format import ChatFormatterResponse, register_chat_format

    @register_chat_format("test-brackets")
    def brackets(messages, **kwargs):
        return ChatFormatterResponse(prompt="".join(f"[{m['role']}]{m['content']}" for m in messages) + "[assistant]",
                                     stop=["[user]"])

    with load(model_path, chat_format="test-brackets", n_ctx=128) as m:
        assert m.apply_chat_template([{"role": "user", "content": "ab"}]) == "[user]ab[assistant]"
        out = m.create_chat_completion([{"role": "user", "content": "ab"}], max_tokens=3)
        assert out["usage"]["prompt_tokens"] == len(m.tokenize(b"[user]ab[assistant]"))
    with pytest.raises(ValueError, match="built in"):
        register_chat_format("chatml")(brackets)


def test_load_state_survives_random_header_damage(model_path):
    """Flipped header bytes or a wrong length: a ValueError or a consistent load, never a crash."""
    rng = np.random.default_rng(0)
    with load(model_path) as m:
        m.eval(PROMPT)
        good = m.save_state()
        for _ in range(200):
            data = bytearray(good.llama_state)
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, 48))] ^= 1 << int(rng.integers(0, 8))
            if rng.random() < 0.3:
                data = data[: int(rng.integers(0, len(data)))]
            bad = edgellama.LlamaState(good.input_ids, good.scores, good.n_tokens, bytes(data), len(data), 0)
            try:
                m.load_state(bad)
            except ValueError:
                assert m.n_tokens == len(PROMPT)  # unchanged by the failed load
        m.load_state(good)
        m.eval([3])  # still usable


def test_load_state_rejects_inconsistent_token_counts(model_path):
    with load(model_path) as m:
        m.eval(PROMPT)
        s = m.save_state()
        with pytest.raises(ValueError, match="n_tokens"):
            m.load_state(edgellama.LlamaState(s.input_ids, s.scores, s.n_tokens - 1, s.llama_state, s.llama_state_size, 0))
        assert m.n_tokens == 0  # a cleared, consistent cache
        m.eval([1, 2])
        with pytest.raises(ValueError, match="n_tokens"):
            m.load_state(edgellama.LlamaState(s.input_ids[:3], s.scores, s.n_tokens, s.llama_state, s.llama_state_size, 0))
        assert m.n_tokens == 2  # checked before anything was loaded


@pytest.mark.parametrize("file_kw,override", [
    (dict(freq_base=5000.0), dict(rope_freq_base=5000.0)),         # base from the argument
    (dict(rope_linear_factor=4.0), dict(rope_freq_scale=0.25)),   # llama.cpp: freq_scale = 1 / factor
    (dict(freq_base=500.0, rope_linear_factor=2.0), dict(rope_freq_base=500.0, rope_freq_scale=0.5)),
    (dict(rope_linear_factor=2.0), dict(rope_scaling_type=1, rope_freq_scale=0.5)),
])
def test_rope_overrides_equal_a_file_with_those_settings(tmp_path, file_kw, override):
    shape = dict(n_layer=2, n_embd=32, n_head=4, n_head_kv=2, n_ff=64, n_vocab=300, seed=9)
    plain = make_model(tmp_path / "plain.gguf", **shape)
    baked = make_model(tmp_path / "baked.gguf", **shape, **file_kw)
    tokens = [1] + list(range(40, 80))
    with load(baked, precision="exact") as b, load(plain, precision="exact", **override) as o, \
            load(plain, precision="exact") as p:
        want = b.eval(tokens)
        np.testing.assert_array_equal(o.eval(tokens), want)
        assert np.abs(p.eval(tokens) - want).max() > 1e-3  # the override changed the results
    with pytest.raises(ValueError, match="rope_freq_base"):
        load(plain, rope_freq_base=-1.0)
    with pytest.raises(ValueError, match="rope_freq_scale"):
        load(plain, rope_freq_scale=float("inf"))


def test_rope_scaling_type_none_turns_the_files_linear_scaling_off(tmp_path):
    shape = dict(n_layer=1, n_embd=32, n_head=4, n_head_kv=2, n_ff=64, n_vocab=300, seed=4)
    plain = make_model(tmp_path / "plain.gguf", **shape)
    scaled = make_model(tmp_path / "scaled.gguf", **shape, rope_linear_factor=4.0)
    tokens = [1] + list(range(40, 70))
    with load(plain, precision="exact") as p, load(scaled, precision="exact", rope_scaling_type=0) as s, \
            load(scaled, precision="exact", rope_scaling_type=1) as lin:
        want = p.eval(tokens)
        np.testing.assert_array_equal(s.eval(tokens), want)
        assert np.abs(lin.eval(tokens) - want).max() > 1e-3
    with pytest.raises(ValueError, match="rope_scaling_type"):
        load(plain, rope_scaling_type=7)


def test_state_keeps_kv_rows_position_major(model_path):
    """The state's K and V sections are position-major rows whatever the caches' block layout in memory
    (kernels.h k_cache_index / v_cache_index, blocks of 64 positions): per layer, the state of the first
    70 positions is the first 70 rows of the state of 100 positions (both past one block), and it
    loads into a context of another n_ctx and continues with the same logits."""
    from edgellama import _core

    toks = np.arange(3, 103, dtype=np.int32)
    model = _core.Model(str(model_path))

    def state_of(n, n_ctx=128):
        c = _core.Context(model, n_ctx, 1, 32, "f32", "f32", "exact")
        c.decode(toks[:n], False)
        return c, np.frombuffer(c.save_state(), dtype=np.uint8)

    c70, s70 = state_of(70)
    _, s100 = state_of(100)
    header = 48  # magic, n_layer, kv_width, type_k, type_v, n_past, window_lo
    n_layer, kv_width = (int(x) for x in s70[8:24].view(np.int64))
    row = kv_width * 4
    assert s70.size == header + n_layer * 2 * 70 * row and s100.size == header + n_layer * 2 * 100 * row
    for il in range(n_layer):
        for cache in range(2):  # K rows, then V rows
            a = header + (il * 2 + cache) * 70 * row
            b = header + (il * 2 + cache) * 100 * row
            np.testing.assert_array_equal(s70[a:a + 70 * row], s100[b:b + 70 * row])
    other = _core.Context(model, 100, 1, 32, "f32", "f32", "exact")
    other.load_state(s70.tobytes())
    np.testing.assert_array_equal(other.decode(toks[70:75], True), c70.decode(toks[70:75], True))
