"""`edgellama run --json-schema FILE` / `--grammar FILE` on SmolLM2, and their file errors."""

from __future__ import annotations

import json

import pytest

from edgellama import cli


def run_main(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_json_schema_and_grammar(smollm2_path, tmp_path, capsys):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"]}
    (tmp_path / "person.json").write_text(json.dumps(schema))
    code, out, _ = run_main(["run", str(smollm2_path), "--chat", "-p", "Describe a person", "--temp", "0",
                             "-c", "256", "--json-schema", str(tmp_path / "person.json")], capsys)
    assert code == 0
    value = json.loads(out)
    assert set(value) == {"name", "age"} and 0 <= value["age"] <= 120
    (tmp_path / "yn.gbnf").write_text('root ::= "yes" | "no"\n')
    code, out, _ = run_main(["run", str(smollm2_path), "-p", "Is the sky blue? Answer:", "--temp", "0.9",
                             "-c", "256", "--grammar", str(tmp_path / "yn.gbnf")], capsys)
    assert code == 0 and out.strip() in ("yes", "no")


@pytest.mark.parametrize("flag, content, why", [
    ("--grammar", 'root ::= "y', "invalid grammar"),
    ("--grammar", None, "cannot read grammar file"),
    ("--json-schema", "root ::= x", "invalid JSON schema: not JSON text"),
    ("--json-schema", '{"type": "nope"}', "invalid JSON schema"),
    ("--json-schema", None, "cannot read JSON schema file"),
])
def test_run_structured_file_errors(tmp_path, capsys, flag, content, why):
    path = tmp_path / "spec.txt"
    if content is not None:
        path.write_text(content)
    # the file is checked before the model is opened: a missing model is not what is reported
    code, out, err = run_main(["run", str(tmp_path / "no-model.gguf"), "-p", "x", flag, str(path)], capsys)
    assert code != 0 and str(path) in err and why in err


def test_json_schema_and_grammar_are_exclusive(capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["run", "m.gguf", "-p", "x", "--grammar", "a", "--json-schema", "b"])
    assert "not allowed with argument" in capsys.readouterr().err
