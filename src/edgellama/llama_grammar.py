"""``LlamaGrammar``: a grammar that constrains generation, in llama-cpp-python's shape.

    grammar = LlamaGrammar.from_string(r'root ::= "yes" | "no"')        # GBNF (llama.cpp) or Lark
    grammar = LlamaGrammar.from_json_schema('{"type": "object", ...}')   # JSON Schema (text or dict)
    grammar = LlamaGrammar.from_file("list.gbnf")
    llm("Is the sky blue?", grammar=grammar)

The grammar engine is llguidance (see docs/structured_output.md for why): a grammar is compiled to
llguidance's grammar text here and checked once, so that a bad grammar or schema raises ValueError at
construction, naming what is wrong, instead of failing mid-generation. The per-step work (the
allowed-token mask) lives in :mod:`edgellama.constrained`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Union

import llguidance

__all__ = ["LlamaGrammar", "JSON_OPTIONS"]

# JSON is generated compactly, with one space after ',' and ':' (like json.dumps): with llguidance's
# default "flexible whitespace" a small model can emit newlines and spaces forever between tokens and
# never finish the object inside max_tokens. A schema can still ask otherwise through "x-guidance".
JSON_OPTIONS: Dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class LlamaGrammar:
    """A validated llguidance grammar. Build it with one of the ``from_*`` class methods."""

    def __init__(self, *, _grammar: str, _source: str = "", _kind: str = "grammar"):
        self._grammar = _grammar  # llguidance grammar text (what LLMatcher takes)
        self._source = _source  # what the user gave us, for repr and error messages
        self._kind = _kind
        error = llguidance.LLMatcher.validate_grammar(_grammar)
        if error and not error.startswith("WARNING"):
            raise ValueError(f"invalid {_kind}: {error}")

    # --------------------------------------------------------------------------------- builders

    @classmethod
    def from_string(cls, grammar: str, verbose: bool = True) -> "LlamaGrammar":
        """A GBNF grammar (llama.cpp syntax, start rule ``root``) or a Lark grammar (llguidance
        syntax, start rule ``start``)."""
        if not isinstance(grammar, str):
            raise TypeError(f"grammar must be a str, got {type(grammar).__name__}")
        if not grammar.strip():
            raise ValueError("grammar is empty")
        try:
            compiled = llguidance.grammar_from("grammar", grammar)
        except Exception as e:  # the GBNF -> Lark converter raises on syntax errors
            raise ValueError(f"invalid grammar: {e}") from None
        return cls(_grammar=compiled, _source=grammar, _kind="grammar")

    @classmethod
    def from_file(cls, file: Union[str, "os.PathLike[str]"], verbose: bool = True) -> "LlamaGrammar":
        """A GBNF or Lark grammar read from ``file``."""
        try:
            with open(file, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"{os.fspath(file)}: cannot read grammar file: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{os.fspath(file)}: grammar file is not UTF-8 text: {e}") from None
        if not text.strip():
            raise ValueError(f"{os.fspath(file)}: grammar file is empty")
        try:
            return cls.from_string(text, verbose=verbose)
        except ValueError as e:
            raise ValueError(f"{os.fspath(file)}: {e}") from None

    @classmethod
    def from_json_schema(cls, json_schema: Union[str, Dict[str, Any]], verbose: bool = True) -> "LlamaGrammar":
        """Output must be JSON valid against ``json_schema`` (JSON text or a dict)."""
        schema = close_objects(_load_schema(json_schema))
        try:
            compiled = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
        except Exception as e:
            raise ValueError(f"invalid JSON schema: {e}") from None
        return cls(_grammar=compiled, _source=json.dumps(schema), _kind="JSON schema")

    @classmethod
    def json_object(cls) -> "LlamaGrammar":
        """Any JSON object (``response_format={"type": "json_object"}`` without a schema)."""
        return cls.from_json_schema({"type": "object"})

    @classmethod
    def from_regex(cls, regex: str) -> "LlamaGrammar":
        """Output must match ``regex`` (Rust regex syntax) as a whole."""
        if not isinstance(regex, str):
            raise TypeError(f"regex must be a str, got {type(regex).__name__}")
        return cls(_grammar=llguidance.grammar_from("regex", regex), _source=regex, _kind="regex")

    @classmethod
    def from_lark(cls, lark: str) -> "LlamaGrammar":
        """A Lark grammar in llguidance's syntax (special tokens as ``<|name|>``)."""
        if not isinstance(lark, str):
            raise TypeError(f"grammar must be a str, got {type(lark).__name__}")
        return cls(_grammar=llguidance.grammar_from("lark", lark), _source=lark, _kind="grammar")

    # --------------------------------------------------------------------------------- accessors

    @property
    def grammar(self) -> str:
        """The compiled llguidance grammar."""
        return self._grammar

    def __repr__(self) -> str:
        src = self._source if len(self._source) <= 60 else self._source[:57] + "..."
        return f"LlamaGrammar({self._kind}: {src!r})"


# Keywords whose value is a subschema, a list of subschemas, or a map name -> subschema.
_SUBSCHEMA = ("items", "additionalItems", "contains", "not", "if", "then", "else", "additionalProperties",
              "propertyNames", "unevaluatedItems", "unevaluatedProperties")
_SUBSCHEMA_LIST = ("anyOf", "oneOf", "prefixItems", "items")
_SUBSCHEMA_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def close_objects(schema: Any, _in_all_of: bool = False) -> Any:
    """A copy of ``schema`` where every object schema that lists ``properties`` but says nothing
    about ``additionalProperties`` gets ``additionalProperties: false``, as llama.cpp's
    json-schema-to-grammar does: a small model otherwise invents extra keys (and so rarely finishes).
    Every output of the closed schema is still valid against the original. Branches of ``allOf``
    are left open (closing them would make their intersection empty)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for k in _SUBSCHEMA:
        if isinstance(out.get(k), dict):
            out[k] = close_objects(out[k])
    for k in _SUBSCHEMA_LIST:
        if isinstance(out.get(k), list):
            out[k] = [close_objects(x) for x in out[k]]
    for k in _SUBSCHEMA_MAP:
        if isinstance(out.get(k), dict):
            out[k] = {name: close_objects(x) for name, x in out[k].items()}
    if isinstance(out.get("allOf"), list):
        out["allOf"] = [close_objects(x, _in_all_of=True) for x in out["allOf"]]
    if (not _in_all_of and "allOf" not in out and isinstance(out.get("properties"), dict)
            and "additionalProperties" not in out and "unevaluatedProperties" not in out
            and "patternProperties" not in out):
        out["additionalProperties"] = False
    return out


def _load_schema(json_schema: Union[str, bytes, Dict[str, Any]]) -> Dict[str, Any]:
    if isinstance(json_schema, (str, bytes)):
        try:
            schema = json.loads(json_schema)
        except json.JSONDecodeError as e:
            raise ValueError(f"invalid JSON schema: not JSON text ({e})") from None
    elif isinstance(json_schema, dict):
        schema = json_schema
    else:
        raise TypeError(f"json_schema must be JSON text or a dict, got {type(json_schema).__name__}")
    if isinstance(schema, bool):
        schema = {} if schema else {"not": {}}
    if not isinstance(schema, dict):
        raise ValueError(f"invalid JSON schema: must be a JSON object, got {type(schema).__name__}")
    return schema


def as_grammar(grammar: Optional[Union["LlamaGrammar", str]]) -> Optional["LlamaGrammar"]:
    """``grammar=`` arguments: a LlamaGrammar, GBNF/Lark text, or None."""
    if grammar is None or isinstance(grammar, LlamaGrammar):
        return grammar
    if isinstance(grammar, str):
        return LlamaGrammar.from_string(grammar)
    raise TypeError(f"grammar must be a LlamaGrammar, a GBNF string or None, got {type(grammar).__name__}")


def grammar_for_response_format(response_format: Optional[Dict[str, Any]]) -> Optional["LlamaGrammar"]:
    """``response_format`` of create_chat_completion -> a grammar (None for plain text):
    ``{"type": "text"}``; ``{"type": "json_object"}`` with an optional ``"schema"`` (llama-cpp-python);
    OpenAI's ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or "type" not in response_format:
        raise ValueError(f"response_format must be a dict with a 'type', got {response_format!r}")
    kind = response_format["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        return LlamaGrammar.json_object() if schema is None else LlamaGrammar.from_json_schema(schema)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise ValueError("response_format {'type': 'json_schema'} needs 'json_schema': "
                             "{'name': ..., 'schema': {...}}")
        return LlamaGrammar.from_json_schema(spec["schema"])
    raise ValueError(f"response_format type must be 'text', 'json_object' or 'json_schema', got {kind!r}")
