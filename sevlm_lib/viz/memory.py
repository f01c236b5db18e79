"""The GPU memory estimate as a stacked bar, against the card's capacity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def plot_memory_breakdown(
    estimates: Mapping[str, Any],
    capacity_gib: float | None = None,
    *,
    capacity_label: str | None = None,
    measured: Mapping[str, tuple[float, str]] | None = None,
    min_share: float = 0.03,
    ax: Axes | None = None,
    title: str = "Estimated peak GPU memory of one training step",
) -> Axes:
    """Stacked horizontal bars, one per memory estimate, in GiB, against a card's capacity.

    ``estimates``: row label -> an object with ``breakdown`` (component -> bytes), ``total_bytes`` and
    ``device_bytes`` (e.g. :class:`sevlm_lib.memory.MemoryEstimate`). Each component is one segment (those
    under ``min_share`` of the largest total are merged into "other"), then a hatched segment for what the
    card needs on top of the tensors (``device_bytes - total_bytes``: CUDA context, allocator slack). The
    components must add up to ``total_bytes`` (the peak is the backward pass), else ``ValueError``.
    ``capacity_gib`` draws a dashed vertical line labelled ``capacity_label``. ``measured``: row label ->
    ``(GiB, hardware)``, drawn as a black diamond labelled with the hardware it was measured on.
    Returns the Axes.
    """

    if not estimates:
        raise ValueError("plot_memory_breakdown: no estimates to draw")
    if not 0 <= min_share < 1:
        raise ValueError(f"plot_memory_breakdown: min_share={min_share}, expected 0 <= min_share < 1")
    gib = 1024.0**3
    for label, est in estimates.items():
        parts = sum(int(v) for v in est.breakdown.values())
        if parts != int(est.total_bytes):
            raise ValueError(
                f"plot_memory_breakdown: row {label!r}: the components add up to {parts / gib:.3f} GiB but the "
                f"peak is {est.total_bytes / gib:.3f} GiB (its peak is not the backward pass); draw another row"
            )
    unknown = sorted(set(measured or {}) - set(estimates))
    if unknown:
        raise KeyError(f"plot_memory_breakdown: measured rows {unknown} are not among {list(estimates)}")
    largest = max(int(e.total_bytes) for e in estimates.values())
    order: list[str] = []
    for est in estimates.values():
        for name, value in sorted(est.breakdown.items(), key=lambda kv: -kv[1]):
            if value >= min_share * largest and name not in order:
                order.append(name)
    names = [*order, "other"]
    palette = dict(zip(names, sns.color_palette("tab20", len(names)), strict=True))
    if ax is None:
        _fig, ax = plt.subplots(figsize=(8, 0.55 * len(estimates) + 2.2))
    labels = list(estimates)
    y = np.arange(len(labels))[::-1]
    drawn: set[str] = set()
    for row, label in zip(y, labels, strict=True):
        est = estimates[label]
        left = 0.0
        other = sum(v for k, v in est.breakdown.items() if k not in order)
        for name in names:
            value = other if name == "other" else est.breakdown.get(name, 0)
            if value <= 0:
                continue
            ax.barh(
                row,
                value / gib,
                left=left,
                color=palette[name],
                edgecolor="white",
                linewidth=0.5,
                label=name if name not in drawn else None,
            )
            drawn.add(name)
            left += value / gib
        extra = (int(est.device_bytes) - int(est.total_bytes)) / gib
        if extra > 0:
            ax.barh(
                row,
                extra,
                left=left,
                color="none",
                edgecolor="grey",
                hatch="///",
                linewidth=0.5,
                label="CUDA context + allocator slack" if "slack" not in drawn else None,
            )
            drawn.add("slack")
        ax.text(
            left + extra + 0.08,
            row,
            f"{est.total_bytes / gib:.2f} GiB (+{extra:.2f})",
            va="center",
            fontsize=8,
        )
    for label, (value, hardware) in (measured or {}).items():
        row = y[labels.index(label)]
        ax.plot(
            [value],
            [row],
            marker="D",
            color="black",
            markersize=7,
            linestyle="none",
            label=f"measured peak ({hardware})",
        )
    if capacity_gib is not None:
        ax.axvline(
            capacity_gib,
            color="crimson",
            linestyle="--",
            linewidth=1.5,
            label=capacity_label or f"{capacity_gib:.1f} GiB card",
        )
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    right = max([(int(e.device_bytes)) / gib for e in estimates.values()] + [capacity_gib or 0.0])
    ax.set_xlim(0, right * 1.22)
    ax.set_xlabel("GiB")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return ax
