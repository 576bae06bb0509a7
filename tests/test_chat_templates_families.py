"""The chat templates of the families in the architecture table render through edgellama's Jinja path
exactly as transformers renders them (tokenizer.apply_chat_template, the reference implementation).

Templates: the published templates that llama.cpp keeps in its tree (models/templates/*.jinja in the
llama-cpp-python sdist; skipped with a reason when absent) plus two short ones embedded here as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellama.chat_format import render_template

import hf_tiny_models as H

pytest.importorskip("transformers")

TEMPLATE_DIR = H.LLAMA_CPP_DIR / "models" / "templates"

FAMILY_TEMPLATE_FILES = {
    "qwen3": "Qwen-Qwen3-0.6B.jinja",
    "qwen2": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "gemma2": "google-gemma-2-2b-it.jinja",
    "phi3": "microsoft-Phi-3.5-mini-instruct.jinja",
    "granite": "ibm-granite-granite-3.3-2B-Instruct.jinja",
    "smollm3": "HuggingFaceTB-SmolLM3-3B.jinja",
    "llama3": "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "mistral": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
}

# Short templates as published with the models (data, not code).
EMBEDDED = {
    # google/gemma-3-1b-it without its image branches (text chat: system folded into the first user turn)
    "gemma3": (
        "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
        "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}{%- set loop_messages = messages -%}"
        "{%- endif -%}{%- for message in loop_messages -%}{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
        "{{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}{%- endif -%}"
        "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}{%- set role = message['role'] -%}"
        "{%- endif -%}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
        "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}"
        "{{'<start_of_turn>model\n'}}{%- endif -%}"
    ),
    # allenai/OLMo-2-1124-7B-Instruct
    "olmo2": (
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '\n' }}"
        "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '\n' }}{% elif message['role'] == 'assistant' %}"
        "{% if not loop.last %}{{ '<|assistant|>\n'  + message['content'] + eos_token + '\n' }}{% else %}"
        "{{ '<|assistant|>\n'  + message['content'] + eos_token }}{% endif %}{% endif %}"
        "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}{% endfor %}"
    ),
}

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "7"},
    {"role": "user", "content": "  Another one, please.  "},
]
NO_SYSTEM = {"gemma2", "mistral"}  # these templates reject a system message


def _template(family: str) -> str:
    if family in EMBEDDED:
        return EMBEDDED[family]
    p = TEMPLATE_DIR / FAMILY_TEMPLATE_FILES[family]
    if not p.is_file():
        pytest.skip(f"{p} not present (llama-cpp-python sdist's llama.cpp tree)")
    return p.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import PreTrainedTokenizerFast

    tok = H._bpe_tokenizer()
    return PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, bos_token="<s>", eos_token="</s>")


@pytest.mark.parametrize("family", list(FAMILY_TEMPLATE_FILES) + list(EMBEDDED))
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_family_template_renders_like_transformers(hf_tokenizer, family, generation_prompt):
    template = _template(family)
    messages = CONVERSATION[1:] if family in NO_SYSTEM else CONVERSATION
    want = hf_tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
    )
    got = render_template(template, messages, bos_token="<s>", eos_token="</s>", add_generation_prompt=generation_prompt)
    assert got == want
    assert "Another one" in got and "Name a prime." in got
