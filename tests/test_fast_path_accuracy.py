"""The fast (int8-activation) path must stay as close to the exact forward as llama.cpp's own fast
path does: on SmolLM2, over >= 180 positions of ordinary English text, top-1 agreement >= 96% and
mean KL(exact || fast) <= 3e-3 (llama.cpp 0.3.36 measured on this machine: 96.2% and 2.5e-3)."""

from __future__ import annotations

import numpy as np
import pytest

import edgellama

TEXT = (
    "The history of the bicycle begins in the early nineteenth century, when inventors in Germany and "
    "France experimented with two-wheeled machines that riders pushed along with their feet. These early "
    "designs were heavy and uncomfortable, but they showed that a person could balance on two wheels in a "
    "line. Over the following decades, engineers added pedals to the front wheel, then moved them to a chain "
    "that drove the rear wheel, which made the machine safer and easier to ride. By the end of the century, "
    "the safety bicycle with two wheels of equal size and air-filled tyres had become popular across Europe "
    "and North America. Cycling clubs were founded, roads were improved, and many women found in the bicycle "
    "a new kind of freedom to travel on their own. Today bicycles are used for commuting, sport and leisure, "
    "and cities around the world are building separate lanes so that people can ride to work without fear of "
    "heavy traffic. Doctors recommend regular cycling because it strengthens the heart and lungs while putting "
    "little strain on the joints, and town planners value it because it takes up little space and makes no noise."
)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _logits(path, tokens, precision, threads=2):
    with edgellama.Llama(path, n_ctx=512, n_threads=threads, precision=precision) as llm:
        return llm.eval(tokens)


@pytest.fixture(scope="module")
def tokens(smollm2_path):
    with edgellama.Llama(smollm2_path, vocab_only=True) as v:
        ids = v.tokenize(TEXT, add_bos=False)
    assert len(ids) >= 180, len(ids)
    return ids


@pytest.fixture(scope="module")
def exact_logits(smollm2_path, tokens):
    return _logits(smollm2_path, tokens, "exact")


def _agreement(exact: np.ndarray, fast: np.ndarray):
    lp, lq = _log_softmax(exact), _log_softmax(fast)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    top1 = float((exact.argmax(-1) == fast.argmax(-1)).mean())
    return top1, float(kl.mean())


def test_fast_path_close_to_exact(smollm2_path, tokens, exact_logits):
    fast = _logits(smollm2_path, tokens, "fast")
    top1, kl = _agreement(exact_logits, fast)
    print(f"fast vs exact over {len(tokens)} positions ({edgellama._core.isa() if hasattr(edgellama._core, 'isa') else 'scalar'}): "
          f"top-1 {top1:.4f}, mean KL {kl:.2e}")
    assert top1 >= 0.96
    assert kl <= 3e-3


def test_exact_path_unaffected_by_precision_switch(smollm2_path, tokens, exact_logits):
    """Asking for 'exact' twice gives identical logits (the reference path is deterministic)."""
    again = _logits(smollm2_path, tokens[:32], "exact", threads=1)
    np.testing.assert_array_equal(again, exact_logits[:32])
