"""`edgellama bench` (src/edgellama/bench.py): the rows llama-bench prints, and that a depth (-d,
llama-bench's --n-depth) really runs each test after that many tokens in the cache."""

from __future__ import annotations

import pytest

import edgellama
from edgellama import bench


def test_depth_runs_each_test_after_that_many_cached_tokens(smollm2_path, monkeypatch):
    calls = []  # (tokens in the cache before the eval, tokens evaluated)
    real = edgellama.Llama._eval_last

    def recording(self, tokens):
        calls.append((self.n_tokens, len(tokens)))
        return real(self, tokens)

    monkeypatch.setattr(edgellama.Llama, "_eval_last", recording)
    rows = bench.run_bench(str(smollm2_path), n_prompt=[8], n_gen=[3], threads=[1], repetitions=2, n_depth=[0, 40])
    assert [r["test"] for r in rows] == ["pp8", "pp8 @ d40", "tg3", "tg3 @ d40"]
    assert [r["n_depth"] for r in rows] == [0, 40, 0, 40]
    assert all(r["tokens_per_second"] > 0 and len(r["samples"]) == 2 for r in rows)
    # pp8: warm-up + 2 runs from an empty cache; pp8 @ d40: each of the 3 prefills 40 tokens first
    assert calls[:3] == [(0, 8)] * 3
    assert calls[3:9] == [(0, 40), (40, 8)] * 3
    # tg3: warm-up of 3 tokens, then 2 x 3 single-token evals, each run from an empty cache
    assert calls[9:18] == [(0, 1), (1, 1), (2, 1)] * 3
    assert calls[18:] == [(0, 40), (40, 1), (41, 1), (42, 1)] * 3


def test_cli_prints_depth_rows(smollm2_path, capsys):
    assert bench.main([str(smollm2_path), "-p", "0", "-n", "2", "-d", "16", "-t", "1", "-r", "1"]) == 0
    out = capsys.readouterr().out
    assert "tg2 @ d16" in out


def test_negative_depth_is_refused(smollm2_path):
    with pytest.raises(ValueError, match="n_depth"):
        bench.run_bench(str(smollm2_path), n_prompt=[4], n_gen=[0], threads=[1], repetitions=1, n_depth=[-1])
