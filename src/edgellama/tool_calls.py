"""Tool calls (OpenAI ``tools`` / ``tool_choice``): the grammar that makes the model's answer a
well-formed call in its own syntax, and the parser that turns that answer into ``tool_calls``.

Each chat-template family writes calls its own way; one table row per family:

==========================  ======================================================================
``hermes``                  ``<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>`` (one or
                            more, newline separated). Qwen2.5/Qwen3, Hermes 2/3, and the default for
                            templates that show no syntax of their own (e.g. SmolLM2).
``llama3``                  ``{"name": "f", "parameters": {...}}`` (Llama 3.1/3.2 JSON tool calling)
``chatml-function-calling`` ``functions.f:\\n{...}`` (llama-cpp-python's chat format of that name);
                            a plain answer starts with ``message:\\n``
==========================  ======================================================================

``tool_choice``: ``"none"`` (no constraint: the answer is text), ``"auto"`` (text, or calls that are
well-formed and valid against the functions' ``parameters``), ``"required"`` (one or more calls),
``{"type": "function", "function": {"name": "f"}}`` (exactly calls of ``f``).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .llama_grammar import JSON_OPTIONS, LlamaGrammar, close_objects

__all__ = ["ToolSyntax", "TOOL_SYNTAXES", "ToolCallPlan", "plan_tool_calls", "detect_syntax", "parse_tool_calls"]


@dataclass(frozen=True)
class ToolSyntax:
    name: str
    open_tag: str  # before each call ("" for none); "{name}" is replaced by the function name
    close_tag: str  # after each call
    args_key: Optional[str]  # JSON body {"name": f, args_key: {...}}; None: the body is the arguments
    parallel: bool  # several calls in one answer, separated by a newline
    text_prefix: str = ""  # a plain-text answer starts with this (chatml-function-calling)


TOOL_SYNTAXES: Dict[str, ToolSyntax] = {
    "hermes": ToolSyntax("hermes", "<tool_call>\n", "\n</tool_call>", "arguments", parallel=True),
    "llama3": ToolSyntax("llama3", "", "", "parameters", parallel=False),
    "chatml-function-calling": ToolSyntax("chatml-function-calling", "functions.{name}:\n", "", None,
                                          parallel=True, text_prefix="message:\n"),
}


def detect_syntax(chat_format: Optional[str], chat_template: Optional[str]) -> ToolSyntax:
    """The tool-call syntax of a chat format / template (see the module table)."""
    if chat_format == "chatml-function-calling":
        return TOOL_SYNTAXES["chatml-function-calling"]
    t = chat_template or ""
    if "<tool_call>" in t:
        return TOOL_SYNTAXES["hermes"]
    if "<|python_tag|>" in t or "ipython" in t or (chat_format == "llama-3"):
        return TOOL_SYNTAXES["llama3"]
    return TOOL_SYNTAXES["hermes"]


# ------------------------------------------------------------------------------------ validation

def _check_tools(tools: Any) -> List[Dict[str, Any]]:
    if not isinstance(tools, list) or not tools:
        raise ValueError("tools must be a non-empty list of {'type': 'function', 'function': {...}}")
    out = []
    names = set()
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(t.get("function"), dict):
            raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., 'parameters': ...}}}}")
        fn = t["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name):
            raise ValueError(f"tools[{i}].function.name must be 1-64 letters, digits, '_', '.', '-', got {name!r}")
        if name in names:
            raise ValueError(f"tools[{i}]: duplicate function name {name!r}")
        names.add(name)
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise ValueError(f"tools[{i}].function.parameters must be a JSON schema object")
        try:
            LlamaGrammar.from_json_schema(params)  # a bad schema fails here, naming the tool
        except ValueError as e:
            raise ValueError(f"tools[{i}] ({name}): parameters: {e}") from None
        out.append({"name": name, "parameters": params})
    return out


def _check_choice(tool_choice: Any, names: List[str]) -> Tuple[str, Optional[str]]:
    """-> (mode, forced name): mode one of none/auto/required/named."""
    if tool_choice is None:
        return "auto", None
    if tool_choice in ("none", "auto", "required"):
        return tool_choice, None
    if isinstance(tool_choice, dict) and tool_choice.get("type", "function") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        if name not in names:
            raise ValueError(f"tool_choice names function {name!r}, which is not in tools ({', '.join(names)})")
        return "named", name
    raise ValueError("tool_choice must be 'none', 'auto', 'required' or "
                     f"{{'type': 'function', 'function': {{'name': ...}}}}, got {tool_choice!r}")


# ------------------------------------------------------------------------------------ grammar

def _lark_literal(text: str, special_id: Callable[[str], Optional[int]]) -> str:
    """A Lark item producing ``text``: the special token itself when the vocabulary has ``text``
    as one special token (Qwen's <tool_call>), else the string."""
    tid = special_id(text.strip()) if text.strip().startswith("<") else None
    if tid is not None:
        core = text.strip()
        lead, trail = text[: text.index(core)], text[text.index(core) + len(core):]
        parts = ([json.dumps(lead)] if lead else []) + [f"<[{tid}]>"] + ([json.dumps(trail)] if trail else [])
        return " ".join(parts)
    return json.dumps(text)


def _json_item(schema: Dict[str, Any]) -> str:
    s = close_objects(schema)
    s["x-guidance"] = dict(JSON_OPTIONS)
    return "%json " + json.dumps(s)


def build_grammar(syntax: ToolSyntax, tools: List[Dict[str, Any]], mode: str, forced: Optional[str],
                  special_id: Callable[[str], Optional[int]], parallel: bool = False) -> LlamaGrammar:
    """The Lark grammar for tool_choice ``mode`` (auto / required / named). ``parallel``: allow
    several calls (when the syntax can express them)."""
    chosen = [t for t in tools if forced is None or t["name"] == forced]
    rules = []
    call_names = []
    for i, t in enumerate(chosen):
        if syntax.args_key is None:
            body = _json_item(t["parameters"])
        else:
            body = _json_item({"type": "object",
                               "properties": {"name": {"const": t["name"]}, syntax.args_key: t["parameters"]},
                               "required": ["name", syntax.args_key], "additionalProperties": False})
        items = [_lark_literal(syntax.open_tag.replace("{name}", t["name"]), special_id) if syntax.open_tag else "",
                 body,
                 _lark_literal(syntax.close_tag, special_id) if syntax.close_tag else ""]
        rules.append(f"call_{i}: " + " ".join(x for x in items if x))
        call_names.append(f"call_{i}")
    rules.append("call: " + " | ".join(call_names))
    rules.append('calls: call ("\\n" call)*' if syntax.parallel and parallel else "calls: call")
    if mode == "auto":
        rules.insert(0, "start: text | calls")
        if syntax.text_prefix:
            rules.append(f"text: {json.dumps(syntax.text_prefix)} /(.|\\n)*/")
        else:
            first = syntax.open_tag[:1] or "{"
            tid = special_id(syntax.open_tag.strip()) if syntax.open_tag.strip().startswith("<") else None
            if tid is not None:  # the tag is a special token: text can never spell it
                rules.append("text: /(.|\\n)+/")
            else:  # text may not start like a call (keeps the two alternatives apart)
                second = syntax.open_tag[1:2] or '"'
                rules.append(f"text: /([^{re.escape(first)}]|{re.escape(first)}[^{re.escape(second)}])(.|\\n)*/")
    else:
        rules.insert(0, "start: calls")
    return LlamaGrammar.from_lark("\n".join(rules) + "\n")


# ------------------------------------------------------------------------------------ parsing

def _call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _as_call(name: str, arguments: Any) -> Dict[str, Any]:
    return {"id": _call_id(), "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def parse_tool_calls(syntax: ToolSyntax, text: str, names: List[str]) -> Tuple[Optional[str], List[Dict[str, Any]]]:
    """Split a generated answer into (content, tool_calls). Calls that do not parse completely (the
    answer was cut by max_tokens) are not returned: the text stays content."""
    dec = json.JSONDecoder()
    calls: List[Dict[str, Any]] = []
    if syntax.args_key is None:  # functions.NAME:\n{args}
        if syntax.text_prefix and text.startswith(syntax.text_prefix):
            return text[len(syntax.text_prefix):], []
        pos = 0
        pat = re.compile(r"\s*functions\.([A-Za-z0-9_.\-]+):\n")
        while pos < len(text):
            m = pat.match(text, pos)
            if not m or m.group(1) not in names:
                break
            try:
                args, end = dec.raw_decode(text, m.end())
            except json.JSONDecodeError:
                break
            calls.append(_as_call(m.group(1), args))
            pos = end
        if not calls or text[pos:].strip():
            return text, []
        return None, calls
    open_tag, close_tag = syntax.open_tag.strip(), syntax.close_tag.strip()
    pos = 0
    start = None
    while True:
        i = text.find(open_tag, pos) if open_tag else -1
        tag_len = len(open_tag)
        if i < 0 and text[pos:].lstrip().startswith("{"):
            # no tag (Llama 3 JSON), or the tag is a control token that detokenizes to nothing
            i, tag_len = pos, 0
        if i < 0:
            break
        j = i + tag_len
        while j < len(text) and text[j].isspace():
            j += 1
        try:
            body, end = dec.raw_decode(text, j)
        except json.JSONDecodeError:
            break
        if not isinstance(body, dict) or body.get("name") not in names or syntax.args_key not in body:
            break
        if close_tag and tag_len:
            k = text.find(close_tag, end)
            if k < 0 or text[end:k].strip():
                break
            end = k + len(close_tag)
        if start is None:
            start = i
        calls.append(_as_call(body["name"], body[syntax.args_key]))
        pos = end
        if not syntax.parallel:
            break
    if not calls:
        return text, []
    content = text[:start].strip() or None
    return content, calls


# ------------------------------------------------------------------------------------ plan

@dataclass
class ToolCallPlan:
    """What create_chat_completion needs for one request with tools."""
    syntax: ToolSyntax
    names: List[str]
    grammar: Optional[LlamaGrammar]  # None for tool_choice="none"

    def parse(self, text: str) -> Tuple[Optional[str], List[Dict[str, Any]]]:
        if self.grammar is None:
            return text, []
        return parse_tool_calls(self.syntax, text, self.names)

    def stream_mode(self, head: str) -> Optional[str]:
        """From the start of the answer: "text" (stream it as content), "calls" (collect and parse
        it), or None (too short to tell). The grammar keeps the two apart: text never starts like
        a call."""
        sx = self.syntax
        if sx.text_prefix:  # chatml-function-calling: "message:\n" or "functions.NAME:\n"
            if head.startswith(sx.text_prefix):
                return "text"
            return None if sx.text_prefix.startswith(head) else "calls"
        call_start = sx.open_tag.strip() or "{"
        if head.startswith(call_start):
            return "calls"
        return None if call_start.startswith(head) else "text"

    def text_of(self, head: str) -> str:
        """The content of a text answer's beginning (without chatml-function-calling's "message:")."""
        p = self.syntax.text_prefix
        return head[len(p):] if p and head.startswith(p) else head


def plan_tool_calls(tools: Any, tool_choice: Any, syntax: ToolSyntax,
                    special_id: Callable[[str], Optional[int]], parallel: bool = False) -> ToolCallPlan:
    checked = _check_tools(tools)
    names = [t["name"] for t in checked]
    mode, forced = _check_choice(tool_choice, names)
    grammar = None if mode == "none" else build_grammar(syntax, checked, mode, forced, special_id, parallel)
    return ToolCallPlan(syntax, names, grammar)


def stream_tool_chunks(calls: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The ``delta`` dicts OpenAI streams for ``calls``: per call, first its id, type and name with
    empty arguments, then the arguments text."""
    deltas = []
    for i, c in enumerate(calls):
        deltas.append({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                       "function": {"name": c["function"]["name"], "arguments": ""}}]})
        deltas.append({"tool_calls": [{"index": i, "function": {"arguments": c["function"]["arguments"]}}]})
    return deltas


def chat_structure(model: Any, tools: Any, tool_choice: Any, response_format: Any, grammar: Any,
                   parallel_tool_calls: Optional[bool] = None) -> Tuple[Optional[LlamaGrammar], Optional[ToolCallPlan]]:
    """create_chat_completion's structured-output arguments -> (grammar to decode with, tool plan).
    ``parallel_tool_calls`` defaults to False (unlike OpenAI): small models otherwise tend to repeat
    the same call until max_tokens.
    Errors (unknown tool, bad schema, conflicting arguments) raise ValueError before generation."""
    from .constrained import special_token_id
    from .llama_grammar import as_grammar, grammar_for_response_format

    explicit = as_grammar(grammar)
    rf = grammar_for_response_format(response_format)
    if explicit is not None and rf is not None:
        raise ValueError("pass either grammar= or response_format=, not both")
    chosen = explicit or rf
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise ValueError(f"tool_choice={tool_choice!r} needs tools")
        return chosen, None
    syntax = detect_syntax(getattr(model, "chat_format", None), getattr(model, "chat_template", None))
    plan = plan_tool_calls(tools, tool_choice, syntax, lambda text: special_token_id(model, text),
                           parallel=bool(parallel_tool_calls))
    if plan.grammar is not None and chosen is not None:
        raise ValueError("tools with tool_choice other than 'none' cannot be combined with grammar= or "
                         "response_format= (the tool-call grammar decides the answer's shape)")
    return (plan.grammar or chosen), plan


def _tools_instruction(syntax: ToolSyntax, tools: List[Dict[str, Any]]) -> str:
    lines = ["You can call these functions. Their JSON Schema parameters:"]
    for t in tools:
        fn = t.get("function", {})
        desc = f" ({fn['description']})" if fn.get("description") else ""
        lines.append(f"- {fn.get('name')}{desc}: {json.dumps(fn.get('parameters', {}), ensure_ascii=False)}")
    if syntax.args_key is None:
        example = 'functions.NAME:\n{"arg": "value"}'
    else:
        example = (syntax.open_tag + '{"name": "NAME", "%s": {"arg": "value"}}' % syntax.args_key + syntax.close_tag)
    lines.append("To call a function, answer with exactly:\n" + example)
    return "\n".join(lines)


def messages_with_tools(formatter: Any, messages: List[Dict[str, Any]], tools: Any,
                        plan: Optional[ToolCallPlan]) -> List[Dict[str, Any]]:
    """``messages``, plus a description of ``tools`` in the system turn when the chat template
    ignores ``tools`` (SmolLM2's does: it renders the same prompt with and without them), so that
    a model can choose to call one with tool_choice="auto". Templates that show tools are left alone."""
    if plan is None or plan.grammar is None or not tools:
        return messages
    with_tools = formatter(messages, add_generation_prompt=True, tools=tools).prompt
    if with_tools != formatter(messages, add_generation_prompt=True).prompt:
        return messages
    text = _tools_instruction(plan.syntax, tools)
    msgs = [dict(m) for m in messages]
    if msgs and msgs[0].get("role") == "system" and isinstance(msgs[0].get("content"), str):
        msgs[0]["content"] = msgs[0]["content"] + "\n\n" + text
    else:
        msgs.insert(0, {"role": "system", "content": text})
    return msgs
