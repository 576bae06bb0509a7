"""Tool calls: syntax detection, grammar + parser per syntax (hermes/Qwen <tool_call>, Llama 3.1 JSON,
chatml-function-calling), argument validation, tool_choice modes and errors, streamed deltas, and
real calls from SmolLM2 whose arguments validate against the function's parameters."""

from __future__ import annotations

import json

import pytest

from edgellama import Llama
from edgellama.constrained import constraint_for
from edgellama.tool_calls import TOOL_SYNTAXES, build_grammar, detect_syntax, parse_tool_calls

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extras")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string", "pattern": "^[A-Z]{3}$"}},
                                       "required": ["tz"]}}}
TOOLS = [WEATHER, TIME]
NAMES = ["get_weather", "get_time"]


def no_specials(_text):
    return None


# ------------------------------------------------------------------------------------------------
# detection and parsing (no model)
# ------------------------------------------------------------------------------------------------

def test_detect_syntax():
    assert detect_syntax(None, "{% for t in tools %}<tool_call>{% endfor %}").name == "hermes"
    assert detect_syntax(None, "<|python_tag|>{{ x }}").name == "llama3"
    assert detect_syntax("chatml-function-calling", None).name == "chatml-function-calling"
    assert detect_syntax(None, "plain chatml").name == "hermes"


@pytest.mark.parametrize("syntax, text, content, calls", [
    ("hermes", '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>', None,
     [("get_time", {"tz": "UTC"})]),
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>\n'
               '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}\n</tool_call>',
     "Let me check.", [("get_time", {"tz": "CET"}), ("get_weather", {"city": "Oslo", "unit": "celsius"})]),
    ("hermes", '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UT', '<tool_call>\n{"name": "get_time", '
               '"arguments": {"tz": "UT', []),  # cut by max_tokens: not a call
    ("hermes", '<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>',
     '<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>', []),
    ("llama3", '{"name": "get_time", "parameters": {"tz": "PST"}}', None, [("get_time", {"tz": "PST"})]),
    # tags that are control tokens detokenize to nothing: the bare JSON body still parses
    ("hermes", '\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n', None, [("get_time", {"tz": "UTC"})]),
    ("llama3", "It is sunny.", "It is sunny.", []),
    ("chatml-function-calling", 'functions.get_time:\n{"tz": "EST"}\nfunctions.get_time:\n{"tz": "UTC"}', None,
     [("get_time", {"tz": "EST"}), ("get_time", {"tz": "UTC"})]),
    ("chatml-function-calling", "message:\nHello!", "Hello!", []),
])
def test_parse(syntax, text, content, calls):
    got_content, got_calls = parse_tool_calls(TOOL_SYNTAXES[syntax], text, NAMES)
    assert got_content == content
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in got_calls] == calls
    for c in got_calls:
        assert c["type"] == "function" and c["id"].startswith("call_") and len(c["id"]) > 10
    assert len({c["id"] for c in got_calls}) == len(got_calls)


# ------------------------------------------------------------------------------------------------
# grammars, checked by feeding texts through a constraint on SmolLM2's vocabulary
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smol(smollm2_path):
    m = Llama(smollm2_path, n_ctx=768, seed=1)
    yield m
    m.close()


def accepts(model, grammar, text: str) -> bool:
    """The grammar accepts ``text`` (tokenized as the model would) as a complete answer."""
    c = constraint_for(model, grammar, background=False)
    toks = model.tokenize(text, add_bos=False)
    if c.validate(toks) != len(toks):
        return False
    for t in toks:
        c.accept(t)
    return c.is_accepting()


HERMES_CALL = '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>'


@pytest.mark.parametrize("mode, forced, text, ok", [
    ("required", None, HERMES_CALL, True),
    ("required", None, "Just text", False),
    ("required", None, HERMES_CALL.replace('"UTC"', '"utc"'), False),  # violates the pattern
    ("required", None, HERMES_CALL.replace("get_time", "get_date"), False),  # unknown function
    ("named", "get_weather", HERMES_CALL, False),
    ("named", "get_time", HERMES_CALL, True),
    ("auto", None, HERMES_CALL, True),
    ("auto", None, "The time is noon.", True),
    ("auto", None, "<tool_call>\nnot json", False),
])
def test_hermes_grammar(smol, mode, forced, text, ok):
    checked = [{"name": t["function"]["name"], "parameters": t["function"]["parameters"]} for t in TOOLS]
    g = build_grammar(TOOL_SYNTAXES["hermes"], checked, mode, forced, no_specials)
    assert accepts(smol, g, text) == ok


def test_parallel_calls_only_when_asked(smol):
    checked = [{"name": t["function"]["name"], "parameters": t["function"]["parameters"]} for t in TOOLS]
    two = HERMES_CALL + "\n" + HERMES_CALL
    assert not accepts(smol, build_grammar(TOOL_SYNTAXES["hermes"], checked, "required", None, no_specials), two)
    assert accepts(smol, build_grammar(TOOL_SYNTAXES["hermes"], checked, "required", None, no_specials,
                                       parallel=True), two)


def test_llama3_and_chatml_fc_grammars(smol):
    checked = [{"name": t["function"]["name"], "parameters": t["function"]["parameters"]} for t in TOOLS]
    g = build_grammar(TOOL_SYNTAXES["llama3"], checked, "auto", None, no_specials)
    assert accepts(smol, g, '{"name": "get_time", "parameters": {"tz": "UTC"}}')
    assert accepts(smol, g, "Sure, it is noon.")
    assert not accepts(smol, g, '{"name": "get_time", "arguments": {"tz": "UTC"}}')
    g = build_grammar(TOOL_SYNTAXES["chatml-function-calling"], checked, "auto", None, no_specials)
    assert accepts(smol, g, 'functions.get_time:\n{"tz": "UTC"}')
    assert accepts(smol, g, "message:\nhello")
    assert not accepts(smol, g, "hello")


def test_special_token_tags_are_used_as_tokens(smol):
    # SmolLM2 has <|im_start|> as a control token: a tag that is one special token in the
    # vocabulary is produced as that token, not spelled out.
    checked = [{"name": "get_time", "parameters": TIME["function"]["parameters"]}]
    from edgellama.constrained import special_token_id
    from edgellama.tool_calls import ToolSyntax
    syntax = ToolSyntax("test", "<|im_start|>", "<|im_end|>", "arguments", parallel=False)
    g = build_grammar(syntax, checked, "required", None, lambda t: special_token_id(smol, t))
    c = constraint_for(smol, g, background=False)
    body = smol.tokenize('{"name": "get_time", "arguments": {"tz": "UTC"}}', add_bos=False)
    for t in [1] + body + [2]:
        c.accept(t)
    assert c.is_accepting()


# ------------------------------------------------------------------------------------------------
# the chat API on SmolLM2
# ------------------------------------------------------------------------------------------------

MSGS = [{"role": "user", "content": "What is the weather in Paris?"}]


def _check_call(call, tools=TOOLS):
    fn = {t["function"]["name"]: t["function"] for t in tools}[call["function"]["name"]]
    jsonschema.validate(json.loads(call["function"]["arguments"]), fn["parameters"])


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_chat_tool_calls_validate(smol, tool_choice, temperature):
    out = smol.create_chat_completion(MSGS, tools=TOOLS, tool_choice=tool_choice, temperature=temperature,
                                      seed=2, max_tokens=80)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert len(calls) == 1 and choice["message"]["content"] is None
    _check_call(calls[0])
    if isinstance(tool_choice, dict):
        assert calls[0]["function"]["name"] == "get_weather"


def test_tool_choice_none_and_auto_text(smol):
    out = smol.create_chat_completion(MSGS, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=8)
    assert "tool_calls" not in out["choices"][0]["message"]
    out = smol.create_chat_completion(MSGS, tools=TOOLS, temperature=0, max_tokens=8)  # auto
    msg = out["choices"][0]["message"]
    assert msg.get("tool_calls") or msg["content"]


def test_streamed_tool_call_deltas(smol):
    chunks = list(smol.create_chat_completion(MSGS, tools=TOOLS, tool_choice="required", temperature=0,
                                              max_tokens=80, stream=True))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant"}
    parts = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert parts[0]["index"] == 0 and parts[0]["id"].startswith("call_") and parts[0]["type"] == "function"
    name = parts[0]["function"]["name"]
    args = "".join(p["function"].get("arguments", "") for p in parts)
    _check_call({"function": {"name": name, "arguments": args}})
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chatml_function_calling_format(smollm2_path):
    m = Llama(smollm2_path, n_ctx=768, chat_format="chatml-function-calling")
    try:
        prompt = m.apply_chat_template(MSGS, tools=TOOLS)
        assert "functions.get_weather:" in prompt and '"maxLength": 30' in prompt
        out = m.create_chat_completion(MSGS, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=60)
        assert out["choices"][0]["finish_reason"] == "tool_calls"
        _check_call(out["choices"][0]["message"]["tool_calls"][0])
        # an answered call renders back into the conversation
        history = MSGS + [out["choices"][0]["message"], {"role": "tool", "content": "sunny"}]
        assert "functions.get_weather:\n{" in m.apply_chat_template(history, tools=TOOLS)
    finally:
        m.close()


@pytest.mark.parametrize("kwargs, why", [
    (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}), "not in tools"),
    (dict(tools=TOOLS, tool_choice="sometimes"), "tool_choice must be"),
    (dict(tools=[{"type": "function", "function": {"name": "bad name!"}}]), "function.name"),
    (dict(tools=[WEATHER, WEATHER]), "duplicate function name"),
    (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "objectx"}}}]),
     "tools[0] (f): parameters: invalid JSON schema"),
    (dict(tools=TOOLS, tool_choice="required", response_format={"type": "json_object"}), "cannot be combined"),
    (dict(tool_choice="required"), "needs tools"),
])
def test_bad_tool_arguments(smol, kwargs, why):
    with pytest.raises(ValueError, match=__import__("re").escape(why)):
        smol.create_chat_completion(MSGS, **kwargs)


# ------------------------------------------------------------------------------------------------
# a Qwen-like vocabulary where <tool_call> / </tool_call> are single added (user-defined) tokens
# ------------------------------------------------------------------------------------------------

QWEN_LIKE_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if tools %}<|im_start|>system\nCall tools as <tool_call>{json}</tool_call><|im_end|>\n{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def qwen_like(tmp_path_factory):
    import gguf
    from model_factory import make_model

    tokens = ["<unk>", "<|im_start|>", "<|im_end|>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    tokens += ["<tool_call>", "</tool_call>"]
    types += [gguf.TokenType.USER_DEFINED] * 2
    tokens += ["\u2581" + c for c in "abcdefghijklmnopqrstuvwxyz"] + list("{}\":, abcdefghijklmnopqrstuvwxyz")
    types += [gguf.TokenType.NORMAL] * (len(tokens) - len(types))

    def add_vocab(w):
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores([-float(i) for i in range(len(tokens))])
        w.add_token_types([int(t) for t in types])
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
        w.add_chat_template(QWEN_LIKE_TEMPLATE)

    path = make_model(tmp_path_factory.mktemp("q") / "qwenlike.gguf", n_vocab=len(tokens), n_embd=32, n_layer=1,
                      tokenizer=False, extra_kv=add_vocab, seed=11)
    m = Llama(path, n_ctx=256, seed=1)
    yield m
    m.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tag_tokens_are_emitted_as_tokens_and_parsed(qwen_like, seed):
    tool = {"type": "function", "function": {"name": "pick", "parameters": {
        "type": "object", "properties": {"v": {"enum": ["a", "b"]}}, "required": ["v"]}}}
    tag = qwen_like._vocab_checked().token_id("<tool_call>")
    seen = []
    orig = qwen_like._generate

    def spy(*a, **kw):  # record the generated token ids
        for tok, logits in orig(*a, **kw):
            seen.append(tok)
            yield tok, logits

    qwen_like._generate = spy
    try:
        out = qwen_like.create_chat_completion([{"role": "user", "content": "pick"}], tools=[tool],
                                               tool_choice="required", temperature=1.0, seed=seed, max_tokens=60)
    finally:
        del qwen_like._generate
    assert seen[0] == tag  # the tag is the added token, not spelled with bytes
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"])["v"] in ("a", "b")


def test_tools_described_only_when_the_template_ignores_them(smol):
    from edgellama.chat_format import CHATML_TEMPLATE, ChatFormatter, get_chat_formatter
    from edgellama.tool_calls import messages_with_tools, plan_tool_calls

    plan = plan_tool_calls(TOOLS, "auto", TOOL_SYNTAXES["hermes"], no_specials)
    ignores = ChatFormatter(CHATML_TEMPLATE)
    msgs = messages_with_tools(ignores, MSGS, TOOLS, plan)
    assert msgs[0]["role"] == "system" and "get_weather" in msgs[0]["content"] and "<tool_call>" in msgs[0]["content"]
    assert msgs[1:] == MSGS
    with_system = [{"role": "system", "content": "Be brief."}] + MSGS
    msgs = messages_with_tools(ignores, with_system, TOOLS, plan)
    assert len(msgs) == 2 and msgs[0]["content"].startswith("Be brief.\n\n") and with_system[0]["content"] == "Be brief."
    shows = get_chat_formatter("chatml-function-calling", None)
    assert messages_with_tools(shows, MSGS, TOOLS, plan) is MSGS
    none_plan = plan_tool_calls(TOOLS, "none", TOOL_SYNTAXES["hermes"], no_specials)
    assert messages_with_tools(ignores, MSGS, TOOLS, none_plan) is MSGS


def test_stream_mode_decisions():
    from edgellama.tool_calls import ToolCallPlan

    hermes = ToolCallPlan(TOOL_SYNTAXES["hermes"], NAMES, grammar=object())
    assert hermes.stream_mode("<tool") is None and hermes.stream_mode("<tool_call>\n{") == "calls"
    assert hermes.stream_mode("Sure") == "text" and hermes.stream_mode("<b>") == "text"
    fc = ToolCallPlan(TOOL_SYNTAXES["chatml-function-calling"], NAMES, grammar=object())
    assert fc.stream_mode("mess") is None and fc.stream_mode("message:\nHi") == "text"
    assert fc.text_of("message:\nHi") == "Hi" and fc.stream_mode("functions.") == "calls"
    llama3 = ToolCallPlan(TOOL_SYNTAXES["llama3"], NAMES, grammar=object())
    assert llama3.stream_mode('{"na') == "calls" and llama3.stream_mode("It") == "text"


def test_streamed_text_answer_with_tools_streams_content(smollm2_path):
    # chatml-function-calling, tool_choice auto: whichever the model picks, the stream's pieces
    # reassemble into what the non-streamed call returns, and a text answer arrives in pieces.
    m = Llama(smollm2_path, n_ctx=768, chat_format="chatml-function-calling")
    try:
        q = [{"role": "user", "content": "Say hello to me."}]
        whole = m.create_chat_completion(q, tools=TOOLS, temperature=0, max_tokens=24)["choices"][0]
        chunks = list(m.create_chat_completion(q, tools=TOOLS, temperature=0, max_tokens=24, stream=True))
        deltas = [c["choices"][0]["delta"] for c in chunks]
        content = [d["content"] for d in deltas if "content" in d]
        assert chunks[-1]["choices"][0]["finish_reason"] == whole["finish_reason"]
        if whole["message"].get("tool_calls"):
            assert any("tool_calls" in d for d in deltas)
        else:
            assert "".join(content) == whole["message"]["content"] and len(content) > 1
            assert not whole["message"]["content"].startswith("message:")
    finally:
        m.close()
