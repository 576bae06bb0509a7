"""Mirostat v1/v2 in the C++ sampler (cpp/sampling/mirostat.cpp) against a float64 NumPy
reference of the algorithm as llama.cpp implements it: the distribution offered at each step
(``probabilities``) and mu after each draw must match, over a run of draws."""

import math

import numpy as np
import pytest

import edgellama
from edgellama import _core


def ref_distribution(logits, temp, mu, mode, m=100):
    """(ids kept, their probabilities) for the current mu."""
    x = np.asarray(logits, dtype=np.float64)
    ids = [i for i in np.argsort(-x, kind="stable") if np.isfinite(x[i])]  # logit desc, id asc
    z = x[ids] / temp
    p = np.exp(z - z.max())
    p /= p.sum()
    if mode == 2:
        keep = 0
        while keep < len(p) and -math.log2(p[keep]) <= mu:
            keep += 1
    else:
        tb = tt = 0.0
        for i in range(min(m - 1, len(p) - 1)):
            t = math.log((i + 2) / (i + 1))
            tb += t * math.log(p[i] / p[i + 1])
            tt += t * t
        s = tb / tt
        eps = s - 1
        k = (eps * 2.0 ** mu / (1 - len(x) ** -eps)) ** (1 / s)
        keep = int(min(k, len(p)))
    keep = max(keep, 1)
    q = p[:keep] / p[:keep].sum()
    return ids[:keep], q


@pytest.mark.parametrize("mode", [1, 2])
@pytest.mark.parametrize("temp", [0.75, 1.0, 1.5])  # exact in float32
def test_mirostat_matches_the_reference_step_by_step(mode, temp):
    rng = np.random.default_rng(mode * 10 + int(temp * 10))
    n_vocab = 301
    tau, eta = 3.0, 0.125  # exact in float32 (the C++ parameters are floats)
    s = _core.Sampler(temperature=temp, seed=7, mirostat=mode, mirostat_tau=tau, mirostat_eta=eta, top_k=5,
                      top_p=0.5, min_p=0.2)  # truncation stages are replaced by mirostat
    mu = 2 * tau
    assert s.mirostat_mu == pytest.approx(mu)
    kept_sizes = set()
    for step in range(40):
        logits = (rng.standard_normal(n_vocab) * 3).astype(np.float32)
        logits[rng.integers(0, n_vocab, 20)] = -np.inf
        ids, q = ref_distribution(logits, temp, mu, mode)
        got = np.asarray(s.probabilities(logits))
        want = np.zeros(n_vocab)
        want[ids] = q
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"step {step}")
        tok = s.sample(logits)
        assert tok in ids
        mu -= eta * (-math.log2(q[ids.index(tok)]) - tau)
        assert s.mirostat_mu == pytest.approx(mu, rel=1e-9, abs=1e-9), step
        kept_sizes.add(len(ids))
    assert len(kept_sizes) > 3  # mu moved the truncation around


def test_mirostat_v2_steers_surprise_to_tau():
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal(500) * 2).astype(np.float32)
    surprises = []
    for tau in (2.0, 5.0):
        s = _core.Sampler(temperature=1.0, seed=3, mirostat=2, mirostat_tau=tau, mirostat_eta=0.1)
        obs = []
        for _ in range(1500):
            mu = s.mirostat_mu
            ids, q = ref_distribution(logits, 1.0, mu, 2)
            tok = s.sample(logits)
            obs.append(-math.log2(q[ids.index(tok)]))
        surprises.append(np.mean(obs[500:]))
        assert abs(surprises[-1] - tau) < 0.5, (tau, surprises[-1])


@pytest.mark.parametrize("kw", [dict(mirostat=3), dict(mirostat=-1), dict(mirostat=2, mirostat_tau=float("nan")),
                                dict(mirostat=2, mirostat_eta=-0.1), dict(mirostat=1, mirostat_m=0)])
def test_bad_mirostat_parameters(kw):
    with pytest.raises(ValueError, match="mirostat"):
        _core.Sampler(**kw)


def test_mirostat_through_the_llama_api(tmp_path):
    from model_factory import make_model

    path = make_model(tmp_path / "m.gguf", n_layer=1, n_embd=32, n_head=4, n_head_kv=2, n_ff=64, n_vocab=300)
    with edgellama.Llama(path, n_ctx=64, n_threads=1, verbose=False) as m:
        a = m([1, 40, 50], max_tokens=8, mirostat_mode=2, mirostat_tau=4.0, seed=5)["choices"][0]["text"]
        b = m([1, 40, 50], max_tokens=8, mirostat_mode=2, mirostat_tau=4.0, seed=5)["choices"][0]["text"]
        assert a == b
        m.eval([1, 40, 50])
        assert 0 <= m.sample(mirostat_mode=1, temp=1.0) < 300
        with pytest.raises(ValueError, match="mirostat_mode"):
            m([1, 40], max_tokens=2, mirostat_mode=3)
