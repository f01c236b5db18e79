"""Helpers added for notebook 06 (full training): the memory-breakdown chart."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from sevlm_lib.memory import estimate_memory  # noqa: E402
from sevlm_lib.models.sevlm import tiny_config  # noqa: E402
from sevlm_lib.viz import plot_memory_breakdown  # noqa: E402

GIB = 1024**3


@dataclass
class FakeEstimate:
    breakdown: dict[str, int]
    total_bytes: int
    device_bytes: int


def segment_widths(ax) -> list[float]:
    return [p.get_width() for p in ax.patches]


def test_segments_add_up_to_the_estimate_and_the_slack_comes_on_top() -> None:
    est = estimate_memory(tiny_config(vad_fusion=True, vad_head=True, contrastive=True), 64, 30, n_patches=16)
    ax = plot_memory_breakdown({"tiny": est}, capacity_gib=1.0, capacity_label="a 1 GiB card", min_share=0.0)
    widths = segment_widths(ax)
    assert len(widths) == len([v for v in est.breakdown.values() if v > 0]) + 1  # + the hatched slack
    assert sum(widths[:-1]) == pytest.approx(est.total_bytes / GIB)
    assert widths[-1] == pytest.approx((est.device_bytes - est.total_bytes) / GIB)
    labels = ax.get_legend_handles_labels()[1]
    assert "a 1 GiB card" in labels and "CUDA context + allocator slack" in labels
    plt.close("all")


def test_small_components_merge_into_other_and_measured_points_name_their_hardware() -> None:
    a = FakeEstimate({"big": 8 * GIB, "mid": 2 * GIB, "tiny": GIB // 1000}, 10 * GIB + GIB // 1000, 11 * GIB)
    b = FakeEstimate({"big": 4 * GIB, "tiny": GIB // 500}, 4 * GIB + GIB // 500, 4 * GIB + GIB // 500)
    ax = plot_memory_breakdown({"a": a, "b": b}, capacity_gib=10.24, measured={"b": (3.9, "Some GPU")})
    labels = ax.get_legend_handles_labels()[1]
    assert "other" in labels and "tiny" not in labels
    assert "measured peak (Some GPU)" in labels
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    widths = segment_widths(ax)
    assert sum(widths) == pytest.approx((a.device_bytes + b.total_bytes) / GIB)  # b has no slack segment
    plt.close("all")


def test_bad_input_is_reported() -> None:
    bad = FakeEstimate({"x": GIB}, 2 * GIB, 2 * GIB)
    with pytest.raises(ValueError, match="row 'bad'"):
        plot_memory_breakdown({"bad": bad})
    with pytest.raises(ValueError, match="no estimates"):
        plot_memory_breakdown({})
    good = FakeEstimate({"x": GIB}, GIB, GIB)
    with pytest.raises(KeyError, match="measured rows"):
        plot_memory_breakdown({"good": good}, measured={"other": (1.0, "GPU")})
    plt.close("all")
