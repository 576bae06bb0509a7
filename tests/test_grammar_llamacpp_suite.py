"""llama-cpp-python 0.3.36's own grammar tests (tests/test_llama_grammar.py), run against our
LlamaGrammar: the module is imported with ``llama_cpp`` resolving to edgellama (when the reference
tree is on this machine; it is not in CI). Its tests only construct grammars (a GBNF tree, a
pydantic-style composed schema with $defs, anyOf with null); the same grammars are restated below
and checked to constrain real generation on SmolLM2, which runs everywhere."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

import edgellama

SUITE = Path("/work/llamacpp/llama_cpp_python-0.3.36/tests/test_llama_grammar.py")


def load_suite():
    if not SUITE.is_file():
        pytest.skip(f"llama-cpp-python reference tree not found: {SUITE}")
    shim = types.ModuleType("llama_cpp")
    shim.LlamaGrammar = edgellama.LlamaGrammar
    shim.Llama = edgellama.Llama
    saved = sys.modules.get("llama_cpp")
    sys.modules["llama_cpp"] = shim
    try:
        spec = importlib.util.spec_from_file_location("llama_cpp_grammar_suite", SUITE)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if saved is None:
            sys.modules.pop("llama_cpp", None)
        else:
            sys.modules["llama_cpp"] = saved
    return mod


def test_llama_cpp_python_grammar_suite_passes():
    mod = load_suite()
    tests = [getattr(mod, n) for n in dir(mod) if n.startswith("test_")]
    assert len(tests) >= 3
    for t in tests:
        t()


TREE_GBNF = """
leaf ::= "."
node ::= leaf | "(" node node ")"
root ::= node
"""
COMPOSED = {"$defs": {"A": {"properties": {"a": {"title": "A", "type": "integer"}}, "required": ["a"], "title": "A",
                            "type": "object"}},
            "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"title": "B", "type": "integer"}},
            "required": ["a", "b"], "title": "B", "type": "object"}


def test_suite_grammars_constrain_generation(smollm2_path):
    llm = edgellama.Llama(smollm2_path, n_ctx=256)
    try:
        out = llm("A binary tree:", grammar=edgellama.LlamaGrammar.from_string(TREE_GBNF), max_tokens=40,
                  temperature=0)
        text = out["choices"][0]["text"]
        if out["choices"][0]["finish_reason"] == "stop":  # a complete tree: balanced
            assert text.count("(") == text.count(")")
        assert set(text) <= set(".()")
        # the same grammars the suite builds from schemas, generated and parsed
        schema = {"properties": {"temperature": {"type": "number", "minimum": -50, "maximum": 60},
                                 "unit": {"anyOf": [{"enum": ["celsius", "fahrenheit"], "type": "string"},
                                                    {"type": "null"}]}},
                  "required": ["temperature", "unit"], "type": "object"}
        out = llm("The temperature today as JSON:", grammar=edgellama.LlamaGrammar.from_json_schema(json.dumps(schema)),
                  max_tokens=40, temperature=0)
        value = json.loads(out["choices"][0]["text"])
        assert value["unit"] in ("celsius", "fahrenheit", None) and -50 <= value["temperature"] <= 60
        out = llm("Two numbers as JSON:", grammar=edgellama.LlamaGrammar.from_json_schema(json.dumps(COMPOSED)),
                  max_tokens=40, temperature=0)
        value = json.loads(out["choices"][0]["text"])
        assert isinstance(value["a"]["a"], int) and isinstance(value["b"], int)
    finally:
        llm.close()
