"""Perplexity windows/scoring, KL divergence against a base model, calibration statistics, and the
quantize / perplexity sub-commands."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from gguf import GGUFReader

from edgellama.perplexity import perplexity, score_windows
from edgellama.quantize import collect_importance, quantize


def test_uniform_logits_give_vocab_size():
    r = score_windows(lambda win: np.zeros((len(win), 50), np.float32), list(range(40)), 8, bos=None)
    assert r.n_windows == 5 and r.n_tokens == 5 * 3  # positions 4, 5, 6 of each window of 8
    assert math.isclose(r.ppl, 50.0, rel_tol=1e-12) and r.ppl_stderr == 0.0


def test_scores_second_half_and_bos():
    tokens = list(np.random.default_rng(0).integers(3, 20, 64))
    seen = []

    def oracle(win):
        seen.append(list(win))
        lg = np.zeros((len(win), 20))
        for i in range(len(win) - 1):
            lg[i, win[i + 1]] = 50.0  # certain about the next token
        lg[: len(win) // 2] = 0.0  # first half uninformative: must not be scored
        return lg

    r = score_windows(oracle, tokens, 16, bos=1)
    assert r.n_windows == 4 and r.ppl < 1.0 + 1e-9
    assert all(w[0] == 1 for w in seen) and seen[1][1:] == tokens[17:32]
    with pytest.raises(ValueError, match="fewer than one window of 16"):
        score_windows(oracle, tokens[:10], 16, bos=None)
    with pytest.raises(ValueError, match="at least 4"):
        score_windows(oracle, tokens, 2, bos=None)


def test_kl_top1_delta_against_base():
    rng = np.random.default_rng(1)
    base_logits = rng.standard_normal((4 * 16, 30))
    noisy = base_logits + 0.3 * rng.standard_normal(base_logits.shape)
    tokens = list(rng.integers(0, 30, 64))
    def model(win):
        k = len(seen_m)
        seen_m.append(1)
        return noisy[k * 16 : (k + 1) * 16]

    def base(win):
        k = len(seen_b)
        seen_b.append(1)
        return base_logits[k * 16 : (k + 1) * 16]

    seen_m, seen_b = [], []
    r = score_windows(model, tokens, 16, None, base)
    # independent computation
    def lsm(x):
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    kl, agree = [], []
    for w in range(4):
        b = lsm(base_logits[w * 16 + 8 : w * 16 + 15])
        m = lsm(noisy[w * 16 + 8 : w * 16 + 15])
        kl.extend((np.exp(b) * (b - m)).sum(-1))
        agree.extend(b.argmax(-1) == m.argmax(-1))
    assert math.isclose(r.kl_mean, float(np.mean(kl)), rel_tol=1e-9) and r.kl_mean > 0
    assert math.isclose(r.top1_agreement, float(np.mean(agree)), rel_tol=1e-12)
    assert math.isclose(r.delta_ppl, r.ppl - r.base_ppl, rel_tol=1e-12)


@pytest.fixture(scope="module")
def stories(stories260k_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("ppl")
    f32 = quantize(stories260k_dir / "stories260K.bin", d / "f32.gguf", "F32", tokenizer=stories260k_dir / "tok512.bin")
    q8 = quantize(f32, d / "q8.gguf", "Q8_0")
    q40 = quantize(f32, d / "q4.gguf", "Q4_0")
    # a text-like token stream: sampled from the model itself
    from edgellama import Llama

    llm = Llama(str(f32), n_ctx=256)
    rng = np.random.default_rng(0)
    toks = [1]
    for _ in range(4 * 64 - 1):
        lg = llm.eval([toks[-1]])[-1].astype(np.float64)
        p = np.exp(lg - lg.max())
        toks.append(int(rng.choice(len(p), p=p / p.sum())))
    llm.close()
    return dict(f32=f32, q8=q8, q4=q40, tokens=toks, dir=d)


def test_perplexity_matches_manual_computation(stories):
    from edgellama import Llama

    r = perplexity(stories["f32"], "", 64, tokens=stories["tokens"])
    llm = Llama(str(stories["f32"]), n_ctx=64)
    nll = []
    for w in range(4):
        win = [1] + stories["tokens"][w * 64 + 1 : (w + 1) * 64]
        llm.reset()
        lg = llm.eval(win).astype(np.float64)
        for i in range(32, 63):
            x = lg[i]
            nll.append(np.log(np.exp(x - x.max()).sum()) + x.max() - x[win[i + 1]])
    assert r.n_tokens == len(nll) == 4 * 31
    assert math.isclose(r.ppl, math.exp(np.mean(nll)), rel_tol=1e-6)
    assert 1.0 < r.ppl < 100.0 and r.ppl_stderr > 0


def test_kl_divergence_quantized_models(stories):
    same = perplexity(stories["f32"], "", 64, tokens=stories["tokens"], kl_base=stories["f32"])
    assert abs(same.kl_mean) < 1e-9 and same.top1_agreement == 1.0 and same.delta_ppl == 0.0
    q8 = perplexity(stories["q8"], "", 64, tokens=stories["tokens"], kl_base=stories["f32"])
    q4 = perplexity(stories["q4"], "", 64, tokens=stories["tokens"], kl_base=stories["f32"])
    assert 0 < q8.kl_mean < q4.kl_mean
    assert q8.top1_agreement >= q4.top1_agreement and q8.top1_agreement > 0.9
    assert abs(q8.delta_ppl) < abs(q4.delta_ppl) + 1e-3


def test_calibration_statistics_weight_the_search(stories, stories260k_dir):
    imp = collect_importance(stories["f32"], tokens=stories["tokens"], n_ctx=64)
    r = GGUFReader(stories["f32"])
    shapes = {t.name: [int(s) for s in t.shape] for t in r.tensors}
    for name in ("blk.0.attn_q.weight", "blk.4.ffn_down.weight", "blk.2.ffn_up.weight"):
        assert name in imp and imp[name].shape == (shapes[name][0],) and np.all(imp[name] >= 0)
        assert imp[name].max() > 0
    from edgellama.convert import load_checkpoint, write_gguf

    ck = load_checkpoint(stories["f32"])
    a = write_gguf(ck, stories["dir"] / "plain.gguf", "Q4_0", progress=False)
    b = write_gguf(ck, stories["dir"] / "calib.gguf", "Q4_0", importance=imp, progress=False)
    import gguf

    def werr(path, name):
        t = next(x for x in GGUFReader(path).tensors if x.name == name)
        src = next(x for x in r.tensors if x.name == name)
        w = np.asarray(src.data).reshape(-1, shapes[name][0])
        d = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(w.shape)
        return float((imp[name] * (w - d) ** 2).sum())

    for name in ("blk.0.attn_q.weight", "blk.3.ffn_gate.weight"):
        assert werr(b, name) < werr(a, name)


def test_quantize_with_calibrate_file(stories, stories260k_dir, tmp_path):
    from edgellama import Llama

    text = tmp_path / "calib.txt"
    text.write_text("Once upon a time, there was a little girl named Lily. She liked to play outside. " * 20)
    out = quantize(stories260k_dir / "stories260K.bin", tmp_path / "c.gguf", "Q4_0",
                   tokenizer=stories260k_dir / "tok512.bin", calibrate=text, calibrate_ctx=64)
    assert GGUFReader(out).fields["general.file_type"].contents() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.gguf", "calib.txt"]


def _parse(mod, argv):
    p = argparse.ArgumentParser()
    mod.add_arguments(p)
    return p.parse_args(argv)


def test_commands(stories, stories260k_dir, tmp_path, capsys):
    from edgellama.commands import perplexity as pcmd
    from edgellama.commands import quantize as qcmd

    assert qcmd.NAME == "quantize" and pcmd.NAME == "perplexity"
    out = tmp_path / "o.gguf"
    rc = qcmd.run(_parse(qcmd, [str(stories260k_dir / "stories260K.bin"), str(out), "--type", "q8_0",
                                "--tokenizer", str(stories260k_dir / "tok512.bin"), "-q", "--threads", "1"]))
    assert rc == 0 and out.is_file()
    assert "wrote" in capsys.readouterr().err
    rc = qcmd.run(_parse(qcmd, [str(tmp_path / "missing"), str(tmp_path / "x.gguf"), "-q"]))
    assert rc == 1 and "input not found" in capsys.readouterr().err
    rc = qcmd.run(_parse(qcmd, [str(out), str(tmp_path / "x.gguf"), "--type", "Q9", "-q"]))
    assert rc == 1 and "unknown --type 'Q9'" in capsys.readouterr().err
    assert not (tmp_path / "x.gguf").exists()
    rc = pcmd.run(_parse(pcmd, [str(out), "-f", str(tmp_path / "nope.txt")]))
    assert rc == 1 and "nope.txt" in capsys.readouterr().err
