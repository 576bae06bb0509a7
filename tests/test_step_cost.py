"""The server's step-cost model (edgellama.server.step_cost) and how speculation uses it while a
stream shares its steps with others (DraftController.shared_cost, SpecSession.propose): the fitted
line against known step times, the throughput cost of a draft row with n streams, and that a shared
step drafts (greedy and sampled requests) with the engine's cost instead of the stream's own timings."""

from __future__ import annotations

import numpy as np
import pytest

from edgellama.server.step_cost import MAX_FIT_ROWS, StepCostModel
from edgellama.speculative import DraftController, SpecSession


def _fed(points, warmup=True):
    m = StepCostModel()
    if warmup:  # the first steps fault the weights in: far off the line, and ignored
        m.observe(1, 5.0)
        m.observe(8, 5.0)
    for rows, seconds in points:
        m.observe(rows, seconds)
    return m


def test_line_recovers_fixed_and_per_row_cost():
    # 6 ms per step + 2 ms per row, with +-3% noise, at the row counts of a 4-stream server
    rng = np.random.default_rng(0)
    pts = [(r, (0.006 + 0.002 * r) * (1 + 0.03 * rng.standard_normal())) for r in rng.integers(1, 20, 300)]
    fixed, per_row = _fed(pts).line()
    assert fixed == pytest.approx(0.006, rel=0.15) and per_row == pytest.approx(0.002, rel=0.05)


def test_draft_cost_is_the_rows_share_of_the_shared_step():
    m = _fed([(1, 0.008), (4, 0.014), (10, 0.026)])  # exactly 6 ms + 2 ms per row
    fixed, per_row = m.line()
    assert fixed == pytest.approx(0.006) and per_row == pytest.approx(0.002)
    # n streams: a draft row adds per_row to a step that gives each stream one token
    for n in (2, 4, 8):
        assert m.draft_cost(n) == pytest.approx(n * 0.002 / (0.006 + n * 0.002))
    assert m.draft_cost(4) > m.draft_cost(2)  # more streams delayed by the same row


def test_no_estimate_without_two_row_counts():
    assert StepCostModel().line() is None and StepCostModel().draft_cost(4) is None
    # only 4-row steps (4 streams, no drafts): the slope is unknown
    assert _fed([(4, 0.014)] * 20).draft_cost(4) is None
    # the warm-up steps and prompt chunks past MAX_FIT_ROWS do not count as row counts
    assert _fed([(4, 0.014), (MAX_FIT_ROWS + 1, 0.2)], warmup=True).line() is None
    m = StepCostModel()
    m.observe(1, 0.008)
    m.observe(4, 0.014)  # both within the warm-up: ignored
    m.observe(4, 0.014)
    assert m.line() is None


def test_a_row_count_seen_long_ago_still_counts():
    """A long phase of 4-row steps must not erase the 1-row steps that make the slope."""
    m = _fed([(1, 0.008)] + [(4, 0.014)] * 500)
    assert m.line() == pytest.approx((0.006, 0.002))


def test_controller_weighs_drafts_with_the_shared_cost():
    c = DraftController(max_len=10, start=10, cost_per_token=0.05)
    for _ in range(30):
        c.update(10, 10)  # nearly every draft token accepted
    assert c.budget() == 10
    c.shared_cost = 5.0  # a row costs five plain steps: one draft token at most
    assert c.cost == 5.0 and c.budget() == 1
    c.shared_cost = None
    assert c.cost == 0.05 and c.budget() == 10


class _Sampler:
    def __init__(self, temperature):
        self.temperature = temperature

    def sample(self, logits, allowed=None):
        return int(np.argmax(logits))


class _SharedDrafter:
    """Proposes 0, 1, 2, ... ; says what a draft row costs (None: the stream is alone)."""

    max_draft_tokens = 6
    start_draft_tokens = 6

    def __init__(self, cost):
        self.cost = cost

    def shared_step_cost(self):
        return self.cost

    def draft(self, history, n):
        return list(range(n))


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_session_drafts_in_shared_steps_only_with_an_estimate(temperature):
    """Greedy and sampled alike (a sampled text does not depend on where drafts are made)."""
    drafter = _SharedDrafter(None)
    s = SpecSession(drafter, _Sampler(temperature), n_vocab=32)
    assert len(s.propose([1, 2, 3], room=100, produced=1)) >= 1  # alone: the controller's own say
    drafter.cost = float("inf")  # shared, no estimate yet: no draft
    assert s.propose([1, 2, 3], room=100, produced=1) == []
    drafter.cost = 0.01  # shared and cheap: drafts
    assert len(s.propose([1, 2, 3], room=100, produced=1)) >= 1


@pytest.mark.parametrize("shared", [0.5, float("inf")])  # drafting, and not drafting for want of an estimate
def test_shared_steps_do_not_teach_the_stream_its_own_cost(shared):
    s = SpecSession(_SharedDrafter(shared), _Sampler(0.0), n_vocab=32)
    s.propose([1, 2, 3], room=100, produced=1)
    beta = s.controller.beta
    for _ in range(20):  # a shared step's time is every stream's
        s.observe_time(1, 0.010)
        s.observe_time(7, 0.100)
    assert s.controller.beta == beta
    s.drafter.cost = None
    s.propose([1, 2, 3], room=100, produced=1)
    for _ in range(20):
        s.observe_time(1, 0.010)
        s.observe_time(7, 0.100)
    assert s.controller.beta != beta
