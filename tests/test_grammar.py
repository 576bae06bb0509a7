"""LlamaGrammar (construction, errors), the llguidance glue (TokenConstraint over our vocabulary:
byte-fallback tokens, partial UTF-8, special tokens, rollback) and grammar= on completions."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgellama import Llama, LlamaGrammar
from edgellama.constrained import GrammarViolation, constraint_for, llg_tokenizer, token_bytes
from model_factory import make_model


def allowed_ids(mask: np.ndarray, n: int) -> np.ndarray:
    return np.flatnonzero(np.unpackbits(mask.view(np.uint8), bitorder="little")[:n])


# ------------------------------------------------------------------------------------------------
# construction and errors (no model needed)
# ------------------------------------------------------------------------------------------------

def test_from_string_accepts_gbnf_and_lark():
    assert "grammar" in repr(LlamaGrammar.from_string('root ::= "yes" | "no"'))
    LlamaGrammar.from_string('start: "yes" | "no"')  # Lark (llguidance syntax)
    LlamaGrammar.from_string(r'''
root  ::= (expr "=" ws term "\n")+
expr  ::= term ([-+*/] term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num   ::= [0-9]+ ws
ws    ::= [ \t\n]*
''')


@pytest.mark.parametrize("text, why", [
    ('root ::= "yes', "Unexpected end of input"),
    ("root ::= undefined_rule", "undefined_rule"),
    ("", "empty"),
    ("start: x", "unknown name"),
])
def test_invalid_grammar_raises_at_construction(text, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        LlamaGrammar.from_string(text)


@pytest.mark.parametrize("schema, why", [
    ('{"type": "objectx"}', "objectx"),
    ("{", "not JSON text"),
    ('[1, 2]', "must be a JSON object"),
    ('{"type": "string", "pattern": "["}', "unclosed character class"),
    ('{"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}', "/$defs/missing"),
    ('{"type": "number", "minimum": "zero"}', "minimum"),
])
def test_invalid_schema_raises_at_construction(schema, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        LlamaGrammar.from_json_schema(schema)


def test_bad_argument_types():
    with pytest.raises(TypeError, match="json_schema must be JSON text or a dict"):
        LlamaGrammar.from_json_schema(3)
    with pytest.raises(TypeError, match="grammar must be a str"):
        LlamaGrammar.from_string(b'root ::= "a"')


def test_from_file(tmp_path):
    p = tmp_path / "yn.gbnf"
    p.write_text('root ::= "yes" | "no"\n')
    assert LlamaGrammar.from_file(p).grammar
    with pytest.raises(ValueError, match=r"missing\.gbnf: cannot read grammar file"):
        LlamaGrammar.from_file(tmp_path / "missing.gbnf")
    (tmp_path / "empty.gbnf").write_text("  \n")
    with pytest.raises(ValueError, match=r"empty\.gbnf: grammar file is empty"):
        LlamaGrammar.from_file(tmp_path / "empty.gbnf")
    (tmp_path / "bad.gbnf").write_text('root ::= "yes')
    with pytest.raises(ValueError, match=r"bad\.gbnf: invalid grammar"):
        LlamaGrammar.from_file(tmp_path / "bad.gbnf")
    (tmp_path / "latin1.gbnf").write_bytes(b'root ::= "\xe9"')
    with pytest.raises(ValueError, match="not UTF-8"):
        LlamaGrammar.from_file(tmp_path / "latin1.gbnf")


# ------------------------------------------------------------------------------------------------
# the constraint over a SentencePiece vocabulary with byte-fallback tokens (tiny random model)
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    path = make_model(tmp_path_factory.mktemp("g") / "spm.gguf", n_vocab=400, n_embd=32, n_layer=1, seed=5)
    m = Llama(path, n_ctx=128, seed=1)
    yield m
    m.close()


def test_token_bytes_byte_fallback_and_specials(spm_model):
    vocab = spm_model._vocab_checked()
    toks = token_bytes(vocab, spm_model.n_vocab())
    assert toks[0] == b"\xff<unk>" and toks[1] == b"\xff<s>" and toks[2] == b"\xff</s>"
    assert toks[3 + 0x41] == b"A" and toks[3 + 0xE6] == b"\xe6"  # <0x41>, <0xE6>
    assert toks[3 + 256] == b" a"  # "\u2581a"
    tk = llg_tokenizer(spm_model)
    assert tk is llg_tokenizer(spm_model)  # cached
    assert tk.vocab_size == spm_model.n_vocab() and 2 in tk.eos_tokens


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_multibyte_text_only_reachable_through_byte_tokens(spm_model, temperature):
    # The vocabulary has no token for these characters: each UTF-8 byte is its own <0xNN> token,
    # so every intermediate state is a partial character.
    g = LlamaGrammar.from_string('root ::= "日本" ("é" | "ü"){1,3} "!"')
    out = spm_model("a", grammar=g, max_tokens=40, temperature=temperature, seed=3)
    text = out["choices"][0]["text"]
    assert re.fullmatch(r"日本[éü]{1,3}!", text), text
    assert out["choices"][0]["finish_reason"] == "stop"


def test_streamed_partial_utf8_joins_to_the_same_text(spm_model):
    g = LlamaGrammar.from_string('root ::= "ça" "→" "✓"')
    chunks = [c["choices"][0]["text"] for c in spm_model("a", grammar=g, max_tokens=30, temperature=0, stream=True)]
    assert "".join(chunks) == "ça→✓"
    assert all("\ufffd" not in c for c in chunks)


def test_constraint_interface_accept_validate_rollback(spm_model):
    g = LlamaGrammar.from_string('root ::= "ab" | "ac"')
    c = constraint_for(spm_model, g)
    n = spm_model.n_vocab()
    # tokens spelling exactly "ab" (our tokenizer would add SentencePiece's space prefix)
    ids = llg_tokenizer(spm_model).tokenize_bytes(b"ab")
    assert spm_model.detokenize(ids) == b"ab"
    first_allowed = allowed_ids(c.fill_mask(), n)
    assert ids[0] in first_allowed and 2 not in first_allowed  # EOS not before the grammar is complete
    assert c.validate(ids) == len(ids)
    bad = llg_tokenizer(spm_model).tokenize_bytes(b"b")
    assert c.validate(bad) == 0
    for t in ids:
        c.accept(t)
    assert c.is_accepting() and c.n_accepted == len(ids)
    assert 2 in allowed_ids(c.fill_mask(), n)  # complete: EOS allowed
    c.rollback(len(ids))
    assert c.n_accepted == 0 and not c.is_accepting()
    assert allowed_ids(c.fill_mask(), n).tolist() == first_allowed.tolist()
    with pytest.raises(ValueError, match="only 0 tokens were accepted"):
        c.rollback(1)
    with pytest.raises(GrammarViolation, match="not allowed"):
        c.accept(bad[0])


def test_accept_many_for_speculative_drafts(spm_model):
    g = LlamaGrammar.from_string('root ::= "ab" "cd" "ef"')
    tk = llg_tokenizer(spm_model)
    c = constraint_for(spm_model, g)
    good, bad = tk.tokenize_bytes(b"abcd"), tk.tokenize_bytes(b"x")
    assert c.validate(good + bad) == len(good)  # a draft is cut where the grammar rejects it
    with pytest.raises(GrammarViolation, match=f"draft position {len(good)}"):
        c.accept_many(good + bad)
    assert c.n_accepted == 0  # a rejected draft changes nothing
    c.accept_many(good)
    assert c.n_accepted == len(good) and not c.is_done()
    c.rollback(len(good))
    c.accept_many(tk.tokenize_bytes(b"abcdef"))
    assert c.is_accepting()


def test_grammar_forces_tokens_the_model_would_not_pick(spm_model):
    g = LlamaGrammar.from_regex(r"[0-9]{3}-[a-c]{2}")
    for seed in range(3):
        text = spm_model("a", grammar=g, max_tokens=40, temperature=1.0, seed=seed)["choices"][0]["text"]
        assert re.fullmatch(r"[0-9]{3}-[a-c]{2}", text), text


def test_max_tokens_mid_object_is_length_not_a_complete_object(spm_model):
    g = LlamaGrammar.from_json_schema({"type": "object", "properties": {"k": {"type": "string", "minLength": 30}},
                                       "required": ["k"]})
    out = spm_model("a", grammar=g, max_tokens=5, temperature=0)
    assert out["choices"][0]["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(out["choices"][0]["text"])


def test_bad_grammar_argument(spm_model):
    with pytest.raises(TypeError, match="grammar must be a LlamaGrammar"):
        spm_model("a", grammar=42)
    with pytest.raises(ValueError, match="invalid grammar"):
        spm_model("a", grammar='root ::= "x')


# ------------------------------------------------------------------------------------------------
# SmolLM2 (byte-level BPE, 49k vocabulary, chat template)
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smol(smollm2_path):
    m = Llama(smollm2_path, n_ctx=512, seed=1)
    yield m
    m.close()


def test_control_tokens_are_special_and_never_spelled(smol):
    toks = token_bytes(smol._vocab_checked(), smol.n_vocab())
    assert toks[2] == b"\xff<|im_end|>" and toks[1] == b"\xff<|im_start|>"
    # a grammar that allows any text still never allows <|im_start|> as a token
    c = constraint_for(smol, LlamaGrammar.from_regex(r"(.|\n)*"))
    allowed = set(allowed_ids(c.fill_mask(), smol.n_vocab()).tolist())
    assert 1 not in allowed and 2 in allowed and 0 in allowed  # EOG ids end an accepting grammar


def test_gbnf_completion_on_smollm2(smol):
    arith = r'''
root ::= num " " op " " num " = " num
op ::= "+" | "-" | "*"
num ::= [1-9] [0-9]?
'''
    for t in (0.0, 0.9):
        out = smol("Write a simple arithmetic equation:", grammar=LlamaGrammar.from_string(arith), max_tokens=30,
                   temperature=t, seed=4)
        assert re.fullmatch(r"[1-9][0-9]? [-+*] [1-9][0-9]? = [1-9][0-9]?", out["choices"][0]["text"])
        assert out["choices"][0]["finish_reason"] == "stop"


def test_token_boundaries_inside_literals(smol):
    # "Hello world" tokenizes as [Hello][ world]; the grammar splits the space off: the model must
    # be able to produce text whose canonical tokens straddle grammar items.
    g = LlamaGrammar.from_string('root ::= "Hel" "lo" " " "wor" "ld" ("!" | ".")')
    out = smol("Say hello:", grammar=g, max_tokens=20, temperature=0)
    assert re.fullmatch(r"Hello world[!.]", out["choices"][0]["text"]), out["choices"][0]["text"]


def test_chat_response_format_json_object_and_schema(smol):
    msgs = [{"role": "user", "content": "Describe a dog as JSON."}]
    out = smol.create_chat_completion(msgs, response_format={"type": "json_object", "schema": {
        "type": "object", "properties": {"name": {"type": "string", "maxLength": 16}, "legs": {"type": "integer"}},
        "required": ["name", "legs"]}}, temperature=0, max_tokens=60)
    value = json.loads(out["choices"][0]["message"]["content"])
    assert set(value) == {"name", "legs"} and isinstance(value["legs"], int)
    out = smol.create_chat_completion(msgs, response_format={"type": "json_object"}, temperature=0, max_tokens=5)
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["choices"][0]["message"]["content"].startswith("{")
    with pytest.raises(ValueError, match="response_format type must be"):
        smol.create_chat_completion(msgs, response_format={"type": "xml"})
    with pytest.raises(ValueError, match="needs 'json_schema'"):
        smol.create_chat_completion(msgs, response_format={"type": "json_schema"})
    with pytest.raises(ValueError, match="not both"):
        smol.create_chat_completion(msgs, response_format={"type": "json_object"}, grammar='root ::= "a"')


def test_streamed_json_chunks_concatenate(smol):
    schema = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}, "n": {"type": "integer",
              "minimum": 0, "maximum": 99}}, "required": ["city", "n"]}
    chunks = list(smol.create_chat_completion([{"role": "user", "content": "A city."}], stream=True, temperature=0,
                                              max_tokens=40, response_format={"type": "json_object", "schema": schema}))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert json.loads(text)["city"] in ("Paris", "Rome")


def test_background_and_inline_masks_give_the_same_tokens(smol, monkeypatch):
    import edgellama.constrained as constrained

    g = LlamaGrammar.from_json_schema({"type": "object", "properties": {
        "word": {"type": "string", "maxLength": 12}, "n": {"type": "integer", "minimum": 0, "maximum": 999}}})
    outs = []
    for background in (True, False):
        monkeypatch.setattr(constrained, "BACKGROUND_MASK", background)
        outs.append(smol("Some JSON:", grammar=g, max_tokens=40, temperature=0.9, seed=21)["choices"][0])
    assert outs[0] == outs[1]
    json.loads(outs[0]["text"])


# sampled: untruncated and hot, so that the text is not the copy and drafts are also cut (the old
# rejection-test verifier, session 18, gave another text for every seed 1-8 here)
@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=4)],
                         ids=["greedy", "sampled"])
def test_speculative_drafts_under_a_json_schema_give_the_same_text(smol, sampling):
    """Prompt-lookup drafts are checked against the grammar (a draft token the schema forbids ends
    the draft) and verified under the grammar's mask: the constrained text, greedy or sampled with a
    seed, must be exactly the one plain constrained decoding gives, and some drafts must actually be
    accepted."""
    from edgellama import LlamaPromptLookupDecoding

    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                               "country": {"type": "string", "maxLength": 40}},
              "required": ["city", "country"]}
    prompt = ('Copy this record as JSON: {"city": "Paris", "country": "France"}\n'
              'Again: {"city": "Paris", "country": "France"}\nJSON:')
    grammar = LlamaGrammar.from_json_schema(json.dumps(schema))
    kw = dict(max_tokens=40, grammar=grammar, **sampling)
    smol.draft_model = None
    plain = smol(prompt, **kw)["choices"][0]["text"]
    drafter = LlamaPromptLookupDecoding(max_ngram_size=2, num_pred_tokens=8)
    smol.draft_model = drafter
    try:
        spec = smol(prompt, **kw)["choices"][0]["text"]
    finally:
        smol.draft_model = None
    assert spec == plain
    if sampling["temperature"] == 0:
        json.loads(plain)  # (a hot sample may still be inside a string at max_tokens)
    assert drafter.stats is not None and drafter.stats.accepted > 0
