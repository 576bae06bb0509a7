"""llama-cpp-python's ``llama_chat_format`` names over edgellama's chat templates (chat_format.py).

`Jinja2ChatFormatter` renders a Hugging Face chat template the way edgellama renders a model's own
(sandboxed, transformers' options); `hf_tokenizer_config_to_chat_formatter` builds one from a
``tokenizer_config.json`` dict; ``format_<name>`` render the built-in formats. Chat completion
handlers (llama-cpp-python's multimodal and function-calling handlers) are not provided.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Protocol, Union

from .chat_format import (CHATML_TEMPLATE, LLAMA2_TEMPLATE, LLAMA3_TEMPLATE, MISTRAL_INSTRUCT_TEMPLATE, ChatPrompt,
                          register_formatter, render_template)
from .llama_hooks import StoppingCriteriaList

__all__ = ["ChatFormatterResponse", "ChatFormatter", "Jinja2ChatFormatter", "hf_tokenizer_config_to_chat_formatter",
           "format_chatml", "format_llama2", "format_llama3", "format_mistral_instruct", "register_chat_format",
           "CHATML_CHAT_TEMPLATE", "MISTRAL_INSTRUCT_CHAT_TEMPLATE"]

CHATML_CHAT_TEMPLATE = CHATML_TEMPLATE
MISTRAL_INSTRUCT_CHAT_TEMPLATE = MISTRAL_INSTRUCT_TEMPLATE


@dataclasses.dataclass
class ChatFormatterResponse:
    """A rendered chat prompt and what ends the answer. ``added_special``: the prompt already
    holds the BOS text, so the tokenizer must not add BOS again."""

    prompt: str
    stop: Optional[Union[str, List[str]]] = None
    stopping_criteria: Optional[StoppingCriteriaList] = None
    added_special: bool = False


class ChatFormatter(Protocol):
    def __call__(self, *, messages: List[Dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse: ...


class Jinja2ChatFormatter:
    """A chat template with its special token texts."""

    def __init__(self, template: str, eos_token: str, bos_token: str, add_generation_prompt: bool = True,
                 stop_token_ids: Optional[List[int]] = None):
        self.template = template
        self.eos_token = eos_token
        self.bos_token = bos_token
        self.add_generation_prompt = add_generation_prompt
        self.stop_token_ids = list(stop_token_ids) if stop_token_ids is not None else None

    def __call__(self, *, messages: List[Dict[str, Any]], functions: Any = None, function_call: Any = None,
                 tools: Any = None, tool_choice: Any = None, **kwargs: Any) -> ChatFormatterResponse:
        extra = {k: v for k, v in dict(functions=functions, function_call=function_call, tools=tools,
                                       tool_choice=tool_choice).items() if v is not None}
        prompt = render_template(self.template, messages, bos_token=self.bos_token, eos_token=self.eos_token,
                                 add_generation_prompt=self.add_generation_prompt, **extra, **kwargs)
        stopping = None
        if self.stop_token_ids:
            ids = set(self.stop_token_ids)
            stopping = StoppingCriteriaList([lambda tokens, logits: len(tokens) > 0 and int(tokens[-1]) in ids])
        return ChatFormatterResponse(prompt=prompt, stop=[self.eos_token], stopping_criteria=stopping,
                                     added_special=bool(self.bos_token) and prompt.startswith(self.bos_token))


def hf_tokenizer_config_to_chat_formatter(tokenizer_config: Dict[str, Any], add_generation_prompt: bool = True):
    """A formatter from a Hugging Face ``tokenizer_config.json`` (its chat_template, bos_token and
    eos_token). As llama-cpp-python does, add_generation_prompt appends an empty assistant message
    (so templates without a generation prompt still end on an assistant turn)."""
    for key in ("chat_template", "bos_token", "eos_token"):
        if not isinstance(tokenizer_config.get(key), str):
            raise ValueError(f"tokenizer_config needs a string {key!r}")
    template, bos, eos = tokenizer_config["chat_template"], tokenizer_config["bos_token"], tokenizer_config["eos_token"]

    def format_tokenizer_config(messages: List[Dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
        if add_generation_prompt:
            messages = [*messages, {"role": "assistant", "content": ""}]
        prompt = render_template(template, messages, bos_token=bos, eos_token=eos, add_generation_prompt=False, **kwargs)
        return ChatFormatterResponse(prompt=prompt, stop=[eos, bos], added_special=True)

    return format_tokenizer_config


def _builtin(template: str, bos: str, eos: str, stop: List[str]):
    def fmt(messages: List[Dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
        prompt = render_template(template, messages, bos_token=bos, eos_token=eos, add_generation_prompt=True)
        return ChatFormatterResponse(prompt=prompt, stop=stop, added_special=bool(bos) and prompt.startswith(bos))
    return fmt


format_chatml = _builtin(CHATML_TEMPLATE, "", "<|im_end|>", ["<|im_end|>"])
format_llama2 = _builtin(LLAMA2_TEMPLATE, "<s>", "</s>", ["</s>"])
format_llama3 = _builtin(LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>", ["<|eot_id|>"])
format_mistral_instruct = _builtin(MISTRAL_INSTRUCT_CHAT_TEMPLATE, "<s>", "</s>", ["</s>"])


class _RegisteredFormat:
    """A llama-cpp-python style format function (``f(messages=..., **kwargs) ->
    ChatFormatterResponse``) as edgellama's chat layer calls a formatter."""

    def __init__(self, f):
        self.f = f

    def __call__(self, messages, add_generation_prompt: bool = True, **extra: Any) -> ChatPrompt:
        r = self.f(messages=list(messages), **extra)
        stop = [r.stop] if isinstance(r.stop, str) else list(r.stop or [])
        return ChatPrompt(prompt=r.prompt, stop=stop, starts_with_bos=bool(r.added_special))


def register_chat_format(name: str):
    """Decorator: ``@register_chat_format("mine") def f(messages, **kwargs) -> ChatFormatterResponse``
    makes ``Llama(chat_format="mine")`` format chats with ``f``. ``added_special=True`` in the
    response means the prompt already holds BOS (no second one is added). A returned
    ``stopping_criteria`` is not used; ``stop`` strings are."""
    def decorator(f):
        register_formatter(name, _RegisteredFormat(f))
        return f
    return decorator
