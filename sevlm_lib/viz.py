"""Plots of the course: static matplotlib/seaborn figures that return their Axes and never call ``show()``.

Every function takes an optional ``ax`` to draw into and returns the Axes it drew on, so notebooks can
compose figures and tests can inspect them without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# Columns of a training log that are not loss components.
_NOT_LOSSES = frozenset({"step", "epoch", "lr", "grad_norm"})


def smooth_series(values: pd.Series, smooth: float) -> pd.Series:
    """Exponential moving average with weight ``smooth`` on the past (0 = unchanged, like TensorBoard's
    smoothing slider); gaps (NaN) stay gaps."""
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth={smooth!r}: expected a number in [0, 1)")
    if smooth == 0.0:
        return values
    return values.ewm(alpha=1.0 - smooth, adjust=True, ignore_na=True).mean().where(values.notna())


def _frames(history_or_frame: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    if isinstance(history_or_frame, pd.DataFrame):
        return history_or_frame, None
    if hasattr(history_or_frame, "to_frame") and hasattr(history_or_frame, "evals"):
        return history_or_frame.to_frame("steps"), history_or_frame.to_frame("evals")
    raise TypeError(
        f"plot_loss_curves: expected a training History or a DataFrame of its steps, "
        f"got {type(history_or_frame).__name__}"
    )


def plot_loss_curves(
    history_or_frame: Any,
    components: Sequence[str] | None = None,
    smooth: float = 0.6,
    ax: Axes | None = None,
    *,
    metrics: Sequence[str] | None = None,
    logy: bool = False,
) -> Axes:
    """One line per loss component against the training step.

    ``history_or_frame``: a :class:`sevlm_lib.training.History` or its ``to_frame()``. ``components``: the
    columns to draw (default: ``loss`` and every component the model logged, no ``lr``/``grad_norm``).
    ``smooth`` in [0, 1): EMA weight; the raw curves are drawn faintly behind the smoothed ones.
    ``metrics``: evaluation metrics (from a History) drawn with markers on a second y axis.
    Returns the Axes (the metrics axis is ``ax.right_ax`` when drawn).
    """
    steps, evals = _frames(history_or_frame)
    if "step" not in steps.columns:
        raise ValueError(
            f"plot_loss_curves: the step log has no 'step' column (columns: {list(steps.columns)})"
        )
    if components is None:
        components = [c for c in steps.columns if c not in _NOT_LOSSES and not str(c).startswith("lr_")]
    missing = [c for c in components if c not in steps.columns]
    if missing:
        raise KeyError(
            f"plot_loss_curves: no column(s) {missing} in the step log (has {list(steps.columns)})"
        )
    if ax is None:
        _fig, ax = plt.subplots(figsize=(7, 4))
    palette = sns.color_palette(n_colors=max(1, len(components) + len(metrics or ())))
    for color, name in zip(palette, components, strict=False):
        values = steps[name].astype(float)
        if smooth > 0:
            ax.plot(steps["step"], values, color=color, alpha=0.25, linewidth=1)
        ax.plot(steps["step"], smooth_series(values, smooth), color=color, linewidth=1.8, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if logy:
        ax.set_yscale("log")
    handles, labels = ax.get_legend_handles_labels()
    if metrics:
        if evals is None:
            raise ValueError("plot_loss_curves: metrics need a History (a DataFrame holds only the steps)")
        absent = [m for m in metrics if m not in evals.columns]
        if absent:
            raise KeyError(f"plot_loss_curves: no eval metric(s) {absent} (has {list(evals.columns)})")
        right = ax.twinx()
        for color, name in zip(palette[len(components) :], metrics, strict=False):
            right.plot(evals["step"], evals[name], color=color, marker="o", linestyle="--", label=name)
        right.set_ylabel("metric")
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
        ax.right_ax = right  # type: ignore[attr-defined]
    if handles:
        ax.legend(handles, labels, loc="best", frameon=False)
    ax.set_title("training loss")
    return ax
