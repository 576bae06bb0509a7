"""Chat templates: the sandboxed Jinja renderer, the built-in formats and their errors."""

from __future__ import annotations

import pytest

from edgellama import chat_format as cf

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Bye"},
]


def fmt(name, **kw):
    return cf.get_chat_formatter(name, None, **kw)


def test_chatml():
    p = fmt("chatml")(CONV)
    assert p.prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
                        "<|im_start|>assistant\n")
    assert p.stop == ["<|im_end|>"] and not p.starts_with_bos


def test_llama2():
    p = fmt("llama-2", bos_token="<s>", eos_token="</s>")(CONV)
    assert p.prompt == ("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s>"
                        "<s>[INST] Bye [/INST]")
    assert p.starts_with_bos
    with pytest.raises(ValueError, match="alternate"):
        fmt("llama-2")([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_llama3():
    p = fmt("llama-3", bos_token="<|begin_of_text|>")(CONV[:2])
    assert p.prompt == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "<|eot_id|>" in p.stop and p.starts_with_bos


def test_add_generation_prompt_false():
    assert not fmt("chatml")(CONV, add_generation_prompt=False).prompt.endswith("assistant\n")


def test_auto_uses_model_template_and_requires_one():
    t = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}"
    assert cf.get_chat_formatter("auto", t, bos_token="<B>")(CONV[1:2]).prompt == "<B>[user] Hi"
    assert cf.get_chat_formatter(None, t)(CONV[1:2]).prompt == "[user] Hi"
    with pytest.raises(ValueError, match="no chat template.*chatml"):
        cf.get_chat_formatter("auto", None)


def test_unknown_chat_format_lists_known():
    with pytest.raises(ValueError) as e:
        cf.get_chat_formatter("vicuna", "x")
    assert "'vicuna'" in str(e.value) and "chatml, llama-2, llama-3" in str(e.value)
    assert cf.validate_chat_format("llama-3") == "llama-3"


def test_hf_environment_features():
    t = ("{% for m in messages %}\n"  # trim_blocks eats this newline
         "    {% if m.role == 'tool' %}{{ raise_exception('no tools here') }}{% endif %}\n"
         "{{ m.content | tojson }}|{% endfor %}{{ strftime_now('%Y') | length }}")
    f = cf.ChatFormatter(t)
    assert f([{"role": "user", "content": "héllo \"q\""}]).prompt == '"héllo \\"q\\""|4'
    with pytest.raises(ValueError, match="no tools here"):
        f([{"role": "tool", "content": "x"}])


def test_loop_controls_and_namespace():
    t = ("{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
         "{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}")
    assert cf.ChatFormatter(t)(CONV).prompt == "3"


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% set _ = messages.append({'role': 'x'}) %}",
    "{{ messages[0].update({'content': 'pwned'}) }}",
])
def test_sandbox_blocks_unsafe_templates(template):
    with pytest.raises(ValueError, match="chat template error"):
        cf.ChatFormatter(template)(CONV)


def test_syntax_error_is_value_error():
    with pytest.raises(ValueError, match="invalid chat template"):
        cf.ChatFormatter("{% for m in messages %}")


def test_message_validation_and_content_parts():
    with pytest.raises(ValueError, match="role"):
        fmt("chatml")([{"content": "no role"}])
    with pytest.raises(ValueError, match="list"):
        fmt("chatml")("just a string")
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
             {"role": "assistant", "content": None}]
    assert fmt("chatml")(parts).prompt.startswith("<|im_start|>user\nab<|im_end|>\n<|im_start|>assistant\n<|im_end|>")


def test_smollm2_template_matches_reference(smollm2_path):
    from edgellama import GGUFFile

    t = GGUFFile(smollm2_path).metadata["tokenizer.chat_template"]
    f = cf.get_chat_formatter(None, t)
    # no system message: the template adds its own default one (as transformers renders it)
    assert f([{"role": "user", "content": "Hi"}]).prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert f(CONV).prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")
