"""Chat prompts: render a list of messages into the text a chat model was trained on.

The model's own template (GGUF key ``tokenizer.chat_template``, a Hugging Face Jinja template) is
rendered in a sandbox the way ``transformers`` renders it: ``ImmutableSandboxedEnvironment`` with
``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension, the helpers
``raise_exception(msg)`` and ``strftime_now(fmt)``, a ``tojson`` filter that keeps non-ASCII text,
and the variables ``messages``, ``bos_token``, ``eos_token``, ``add_generation_prompt``.

Files without a template can use a built-in format, chosen with ``Llama(..., chat_format=NAME)``:

- ``auto``: the file's own template (the default; an error if it has none)
- ``chatml`` (also ``qwen``): ``<|im_start|>role\\ncontent<|im_end|>`` (Qwen, SmolLM, many fine-tunes)
- ``llama-2``: ``<s>[INST] <<SYS>>...<</SYS>> user [/INST] assistant </s>``
- ``llama-3``: ``<|start_header_id|>role<|end_header_id|>\\n\\ncontent<|eot_id|>``
- ``mistral-instruct``: ``<s>[INST] user [/INST] assistant</s>``
- ``chatml-function-calling``: chatml with ``tools`` listed in the system turn; calls are written
  ``functions.NAME:\\n{json arguments}``, text answers ``message:\\n...`` (the format of that name in
  llama-cpp-python; see edgellama.tool_calls)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "CHAT_FORMATS",
    "ChatPrompt",
    "ChatFormatter",
    "validate_chat_format",
    "get_chat_formatter",
    "render_template",
]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Meta's Llama 2 chat layout (as in the Hugging Face tokenizer config): the system prompt is folded
# into the first user turn, every user turn opens with BOS, every assistant turn closes with EOS.
LLAMA2_TEMPLATE = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% set system_message = '<<SYS>>\n' + messages[0]['content'] | trim + '\n<</SYS>>\n\n' %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = '' %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('llama-2 format: conversation roles must alternate user/assistant/user/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 %}{% set content = system_message + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content | trim + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content | trim + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# chatml plus tools: the function list goes into the system turn (a default one if the
# conversation has none); an assistant turn with tool_calls is written in the same
# "functions.NAME:" form the tool-call grammar makes the model produce.
_FC_TOOLS = (
    "{% if tools %}{{ '\\n\\nYou can call these functions:\\n' }}"
    "{% for tool in tools %}{{ '\\nfunctions.' + tool.function.name + ':' }}"
    "{% if tool.function.description %}{{ ' ' + tool.function.description }}{% endif %}"
    "{{ '\\n' }}{{ tool.function.parameters | tojson }}{{ '\\n' }}{% endfor %}"
    "{{ '\\nAnswer with a message, starting with \\'message:\\' on its own line, or with function calls, '"
    "'each written as \\'functions.<name>:\\' on its own line followed by the JSON arguments.' }}{% endif %}"
)
CHATML_FUNCTION_CALLING_TEMPLATE = (
    "{% if tools and (not messages or messages[0]['role'] != 'system') %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.' }}" + _FC_TOOLS + "{{ '<|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}" + _FC_TOOLS +
    "{% elif message['role'] == 'assistant' and message.get('tool_calls') %}"
    "{% for call in message['tool_calls'] %}{% if not loop.first %}{{ '\\n' }}{% endif %}"
    "{{ 'functions.' + call['function']['name'] + ':\\n' + call['function']['arguments'] }}{% endfor %}"
    "{% elif message['role'] == 'assistant' and tools %}{{ 'message:\\n' + (message['content'] or '') }}"
    "{% else %}{{ message['content'] or '' }}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Mistral-Instruct: [INST] user [/INST] answer</s>, user/assistant strictly alternating
MISTRAL_INSTRUCT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('mistral-instruct format: conversation roles must alternate user/assistant/user/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('mistral-instruct format: only user and assistant roles') }}{% endif %}"
    "{% endfor %}"
)

# name -> (template, extra stop strings). "auto" is resolved to the model's own template. The
# names are llama-cpp-python's chat_format names.
_BUILTIN: Dict[str, tuple] = {
    "chatml": (CHATML_TEMPLATE, ["<|im_end|>"]),
    "llama-2": (LLAMA2_TEMPLATE, []),  # EOS ends the turn; EOS is an end-of-generation token
    "llama-3": (LLAMA3_TEMPLATE, ["<|eot_id|>"]),
    "chatml-function-calling": (CHATML_FUNCTION_CALLING_TEMPLATE, ["<|im_end|>"]),
    "mistral-instruct": (MISTRAL_INSTRUCT_TEMPLATE, []),  # EOS ends the turn
    "qwen": (CHATML_TEMPLATE, ["<|im_end|>"]),  # Qwen's chat layout is ChatML
}
CHAT_FORMATS = ("auto",) + tuple(_BUILTIN)


# Formats registered at run time (edgellama.llama_chat_format.register_chat_format): name -> a
# formatter object with ChatFormatter's call signature.
_REGISTERED: Dict[str, Any] = {}


def register_formatter(name: str, formatter: Any) -> None:
    """Make ``Llama(chat_format=name)`` use ``formatter(messages, add_generation_prompt=True, **extra)
    -> ChatPrompt``. A built-in name cannot be replaced."""
    if name in CHAT_FORMATS:
        raise ValueError(f"chat_format {name!r} is built in and cannot be re-registered")
    _REGISTERED[name] = formatter


def validate_chat_format(name: Optional[str]) -> Optional[str]:
    """Return ``name`` if it is a known chat format (or None), else raise ValueError."""
    if name is None or name in CHAT_FORMATS or name in _REGISTERED:
        return name
    known = ", ".join(CHAT_FORMATS + tuple(_REGISTERED))
    raise ValueError(f"unknown chat_format {name!r}; known formats: {known}")


@dataclass
class ChatPrompt:
    prompt: str
    stop: List[str] = field(default_factory=list)
    # True when the rendered prompt already starts with the BOS token text (the template added it),
    # so the tokenizer must not add another one.
    starts_with_bos: bool = False


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # transformers' tojson: keeps non-ASCII and does not HTML-escape like jinja's built-in one.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


# Templates come from model files, i.e. from strangers: besides the sandbox (no attribute access to
# internals), `*` and `**` are bounded so that `{{ 'a' * 10**10 }}` or `{{ 10**10**10 }}` is an error
# instead of a process killed by the OOM killer or a CPU stuck computing a huge integer.
_MAX_TEMPLATE_VALUE_LEN = 1 << 24  # characters / items of one `*` product
_MAX_POW_BITS = 4096  # bits of an integer `**` result


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > _MAX_TEMPLATE_VALUE_LEN:
                    raise jinja2.exceptions.SecurityError(
                        f"chat template builds a value of {len(seq) * n} items (limit {_MAX_TEMPLATE_VALUE_LEN})")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and max(abs(left).bit_length() - 1, 1) * right > _MAX_POW_BITS:
                raise jinja2.exceptions.SecurityError("chat template computes a huge power")
        return super().call_binop(context, operator, left, right)


_ENV: Optional[ImmutableSandboxedEnvironment] = None


def _env() -> ImmutableSandboxedEnvironment:
    global _ENV
    if _ENV is None:
        env = _BoundedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        _ENV = env
    return _ENV


_COMPILED: Dict[str, jinja2.Template] = {}


def _compile(template: str) -> jinja2.Template:
    t = _COMPILED.get(template)
    if t is None:
        try:
            t = _env().from_string(template)
        except jinja2.exceptions.TemplateSyntaxError as e:
            raise ValueError(f"invalid chat template (line {e.lineno}): {e.message}") from None
        if len(_COMPILED) > 32:
            _COMPILED.clear()
        _COMPILED[template] = t
    return t


# The OpenAI chat roles, plus Llama 3.1's "ipython" (tool output in its template)
ROLES = ("system", "developer", "user", "assistant", "tool", "function", "ipython")


def _check_messages(messages: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    if len(messages) == 0:
        raise ValueError("messages is empty: a chat needs at least one message")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m:
            raise ValueError(f"messages[{i}] must be a dict with a 'role' key, got {m!r}")
        if m["role"] not in ROLES:
            raise ValueError(f"messages[{i}] has role {m['role']!r}; roles are {', '.join(ROLES)}")
        out.append(dict(m))
    return out


def _flatten_content(messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """For the built-in formats: None -> '', OpenAI content parts -> their joined text."""
    out = []
    for m in messages:
        c = m.get("content")
        if c is None:
            c = ""
        elif isinstance(c, list):
            parts = []
            for p in c:
                if isinstance(p, str):
                    parts.append(p)
                elif isinstance(p, Mapping) and p.get("type") == "text":
                    parts.append(str(p.get("text", "")))
                else:
                    raise ValueError(f"unsupported message content part {p!r} (only text is supported)")
            c = "".join(parts)
        elif not isinstance(c, str):
            raise ValueError(f"message content must be a string, got {type(c).__name__}")
        out.append({**m, "content": c})
    return out


def render_template(template: str, messages: Sequence[Mapping[str, Any]], *, bos_token: str = "",
                    eos_token: str = "", add_generation_prompt: bool = True, **extra: Any) -> str:
    """Render a Hugging Face chat template. Template errors -> ValueError with the message."""
    t = _compile(template)
    try:
        return t.render(messages=list(messages), bos_token=bos_token, eos_token=eos_token,
                        add_generation_prompt=add_generation_prompt, **extra)
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"chat template error: {e.message or e}") from None
    except (TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError, MemoryError) as e:
        # OverflowError: the sandbox's range() limit; RecursionError: a template macro calling itself
        raise ValueError(f"chat template error: {type(e).__name__}: {e}") from None


class ChatFormatter:
    """A template plus the stop strings and special token texts it needs.

    >>> f = ChatFormatter(CHATML_TEMPLATE, stop=["<|im_end|>"])
    >>> f([{"role": "user", "content": "hi"}]).prompt
    '<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n'
    """

    def __init__(self, template: str, *, bos_token: str = "", eos_token: str = "",
                 stop: Sequence[str] = (), name: str = "auto", flatten_content: bool = False):
        self.template = template
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.stop = list(stop)
        self.name = name
        self.flatten_content = flatten_content
        _compile(template)  # syntax errors surface when the formatter is made

    def __call__(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                 **extra: Any) -> ChatPrompt:
        msgs = _check_messages(messages)
        if self.flatten_content:
            msgs = _flatten_content(msgs)
        text = render_template(self.template, msgs, bos_token=self.bos_token, eos_token=self.eos_token,
                               add_generation_prompt=add_generation_prompt, **extra)
        return ChatPrompt(prompt=text, stop=list(self.stop),
                          starts_with_bos=bool(self.bos_token) and text.startswith(self.bos_token))


def get_chat_formatter(chat_format: Optional[str], chat_template: Optional[str], *, bos_token: str = "",
                       eos_token: str = "") -> ChatFormatter:
    """Pick the formatter: ``None``/``"auto"`` -> the model's template; else a built-in format."""
    validate_chat_format(chat_format)
    if chat_format in _REGISTERED:
        return _REGISTERED[chat_format]
    if chat_format in (None, "auto"):
        if not chat_template:
            raise ValueError(
                "this model has no chat template (GGUF key tokenizer.chat_template); choose one with "
                f"Llama(..., chat_format=NAME), NAME one of: {', '.join(n for n in CHAT_FORMATS if n != 'auto')}")
        return ChatFormatter(chat_template, bos_token=bos_token, eos_token=eos_token, name="auto")
    template, stop = _BUILTIN[chat_format]
    return ChatFormatter(template, bos_token=bos_token, eos_token=eos_token, stop=stop, name=chat_format,
                         flatten_content=True)
