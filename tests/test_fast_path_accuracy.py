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

# A second, unrelated passage: top-1 agreement over ~200 positions moves by a position or two with
# any change in rounding (a dozen positions have exact-path top-2 margins under 0.1 logits), so the
# bar is checked over both passages (~440 positions) to measure the path, not one noise realization.
TEXT2 = (
    "To bake a simple loaf of bread at home you need only flour, water, salt and yeast. Mix the yeast with "
    "warm water and a pinch of sugar, and wait a few minutes until the surface begins to foam. Stir the "
    "flour and salt together in a large bowl, pour in the liquid, and work the mixture with your hands until "
    "it forms a rough dough. Turn it out onto the table and knead it for about ten minutes, folding and "
    "pressing, until it feels smooth and springs back when you poke it. Place the dough in an oiled bowl, "
    "cover it with a damp cloth, and leave it somewhere warm for an hour or two, until it has doubled in "
    "size. Then press out the air, shape it into a loaf, and let it rise once more while the oven heats. "
    "Bake it for thirty to forty minutes, until the crust is golden brown and the bottom sounds hollow when "
    "you tap it. Let the bread cool on a rack before you cut it, because the inside keeps cooking for a "
    "while after it leaves the oven, and a loaf sliced too early will be gummy in the middle."
)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _logits(path, tokens, precision, threads=2):
    with edgellama.Llama(path, n_ctx=512, n_threads=threads, precision=precision) as llm:
        return llm.eval(tokens)


@pytest.fixture(scope="module")
def passages(smollm2_path):
    with edgellama.Llama(smollm2_path, vocab_only=True) as v:
        out = [v.tokenize(t, add_bos=False) for t in (TEXT, TEXT2)]
    assert all(len(ids) >= 180 for ids in out), [len(ids) for ids in out]
    return out


@pytest.fixture(scope="module")
def tokens(passages):
    return passages[0]


@pytest.fixture(scope="module")
def exact_logits(smollm2_path, passages):
    return [_logits(smollm2_path, ids, "exact") for ids in passages]


def _agreement(exact: np.ndarray, fast: np.ndarray):
    lp, lq = _log_softmax(exact), _log_softmax(fast)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    top1 = float((exact.argmax(-1) == fast.argmax(-1)).mean())
    return top1, float(kl.mean())


def test_fast_path_close_to_exact(smollm2_path, passages, exact_logits):
    fast = np.concatenate([_logits(smollm2_path, ids, "fast") for ids in passages])
    top1, kl = _agreement(np.concatenate(exact_logits), fast)
    print(f"fast vs exact over {len(fast)} positions ({edgellama._core.isa() if hasattr(edgellama._core, 'isa') else 'scalar'}): "
          f"top-1 {top1:.4f}, mean KL {kl:.2e}")
    assert top1 >= 0.96
    # issue 10: at most half of llama.cpp's 2.5e-3 (measured 1.18e-3 with the default residual
    # policy of matmul.cpp, the same on the scalar, avx2, avx_vnni and avx512 kernels)
    assert kl <= 1.25e-3


def test_exact_path_unaffected_by_precision_switch(smollm2_path, tokens, exact_logits):
    """Asking for 'exact' twice gives identical logits (the reference path is deterministic)."""
    again = _logits(smollm2_path, tokens[:32], "exact", threads=1)
    np.testing.assert_array_equal(again, exact_logits[0][:32])
