"""The ControlNet conditioner's per-row arithmetic: which steps a unit steers, and its residuals' factors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import SOFT_INJECTION_BASE
from services.core.control_checks import ControlSpec
from services.core.engine.controlnet import RowUnit


def unit(weight=1.0, start=0.0, end=1.0, mode=pb.CONTROL_MODE_BALANCED) -> RowUnit:
    return RowUnit(None, ControlSpec("params.control[0]", "net", "sd1", None, weight, start, end, mode, ""), None)


def diffusers_keep(i: int, n: int, start: float, end: float) -> float:
    """diffusers' ControlNet pipelines' controlnet_keep entry."""
    return 1.0 - float(i / n < start or (i + 1) / n > end)


@pytest.mark.parametrize("start, end", [(0.0, 1.0), (0.25, 0.75), (0.5, 1.0), (0.0, 0.3), (0.1, 0.2)])
@pytest.mark.parametrize("n", [1, 4, 7, 20])
def test_a_unit_steers_the_steps_diffusers_keeps(start, end, n):
    one = unit(start=start, end=end)
    for i in range(n):
        row = SimpleNamespace(index=i, timesteps=[0] * n)
        assert one.steers(row) == bool(diffusers_keep(i, n, start, end))


def test_balanced_scales_every_residual_by_the_weight_and_soft_injection_follows_a1111_s_curve():
    assert [unit(weight=0.7).scale(j, 13) for j in range(13)] == [0.7] * 13
    for mode in (pb.CONTROL_MODE_PROMPT, pb.CONTROL_MODE_CONTROLNET):
        soft = [unit(weight=0.5, mode=mode).scale(j, 13) for j in range(13)]
        assert soft == [0.5 * SOFT_INJECTION_BASE ** (12 - j) for j in range(13)]
        assert soft[-1] == 0.5 and soft[0] == pytest.approx(0.5 * 0.825 ** 12)  # the mid block's at full weight


def test_only_controlnet_is_more_important_leaves_the_unconditional_half_alone():
    assert [unit(mode=m).spec.conditional_only for m in
            (pb.CONTROL_MODE_BALANCED, pb.CONTROL_MODE_PROMPT, pb.CONTROL_MODE_CONTROLNET)] == [False, False, True]
