"""JSON Schema corpus on SmolLM2-135M-Instruct: every answer, greedy and sampled, must parse and be
valid against its schema (checked by the ``jsonschema`` package, formats included), and end with
finish_reason "stop".

tests/data/structured_schemas.json holds the corpus: nesting, arrays with min/maxItems, enums and
consts, numeric ranges (exclusive, multipleOf), string patterns and formats (date, date-time, time,
email, uuid), $ref/$defs/definitions, anyOf/oneOf/allOf, nullable types, additionalProperties
false/typed, min/maxProperties, optional fields, top-level arrays and scalars. Free strings carry a
maxLength so that a 135M model finishes every object inside the token budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extras")

from edgellama import Llama  # noqa: E402

CORPUS = json.loads((Path(__file__).parent / "data" / "structured_schemas.json").read_text(encoding="utf-8"))
MAX_TOKENS = 200  # the longest corpus answer at either temperature takes well under this


def test_corpus_has_real_variety():
    assert len(CORPUS) >= 50
    text = json.dumps([c["schema"] for c in CORPUS])
    for keyword in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "minItems", "maxItems", "enum", "pattern",
                    "format", "minimum", "exclusiveMaximum", "multipleOf", '"additionalProperties": false',
                    "prefixItems", "maxProperties"):
        assert keyword in text, keyword
    for c in CORPUS:
        jsonschema.Draft202012Validator.check_schema(c["schema"])


@pytest.fixture(scope="module")
def llm(smollm2_path):
    m = Llama(smollm2_path, n_ctx=512, seed=1234)
    yield m
    m.close()


def _validator(schema):
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_every_corpus_schema_gives_valid_json(llm, temperature):
    failures = []
    for i, case in enumerate(CORPUS):
        messages = [{"role": "system", "content": "You answer with JSON only."},
                    {"role": "user", "content": case["prompt"]}]
        out = llm.create_chat_completion(
            messages, temperature=temperature, seed=100 + i, max_tokens=MAX_TOKENS,
            response_format={"type": "json_schema", "json_schema": {"name": case["name"], "schema": case["schema"]}})
        choice = out["choices"][0]
        text = choice["message"]["content"]
        if choice["finish_reason"] != "stop":
            failures.append(f"{case['name']}: finish_reason {choice['finish_reason']!r}: {text!r}")
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            failures.append(f"{case['name']}: not JSON ({e}): {text!r}")
            continue
        errors = [e.message for e in _validator(case["schema"]).iter_errors(value)]
        if errors:
            failures.append(f"{case['name']}: {errors[0]}: {text!r}")
    assert not failures, f"{len(failures)}/{len(CORPUS)} failed at temperature {temperature}:\n" + "\n".join(failures)
