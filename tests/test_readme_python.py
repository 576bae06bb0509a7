"""README's Python section runs as written right after README's first command (which pulls
smollm2-135m-instruct): its code blocks are executed in order against the real model placed where
`edgellama pull` puts it, and the values its comments claim are checked."""

import ast
import contextlib
import io
import os
import re
from pathlib import Path

import edgellama.hub as hub

ROOT = Path(__file__).resolve().parents[1]


def python_blocks():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_runs_after_the_first_command(smollm2_path, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELLAMA_CACHE", str(tmp_path))
    dst = hub.model_path("smollm2-135m-instruct")
    dst.parent.mkdir(parents=True)
    os.symlink(smollm2_path, dst)  # what `edgellama pull smollm2-135m-instruct` leaves
    blocks = python_blocks()
    assert len(blocks) >= 2
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in blocks:
            assert "._" not in re.sub(r"#.*", "", code), "README uses a private name"
            exec(compile(code, "README.md", "exec"), ns)
    # the comments' claims
    first = blocks[0]
    claimed_tokens = ast.literal_eval(re.search(r"add_bos=False\)\s*#\s*(\[[^\]]*\])", first).group(1))
    assert ns["tokens"] == claimed_tokens
    claimed_text = ast.literal_eval(re.search(r"n_tokens\]\)\)\s*#\s*(b'.*')", first).group(1))
    assert out.getvalue().splitlines()[0] == repr(claimed_text)
    assert len(out.getvalue()) > len(repr(claimed_text)) + 10  # the completion and the chat printed text


def test_docs_code_uses_no_private_names():
    offenders = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for code in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S):
            for line in code.splitlines():
                code_part = line.split("#", 1)[0]
                if re.search(r"\._(?!core\b)[A-Za-z]", code_part):
                    offenders.append((doc.name, line.strip()))
    assert offenders == []
