"""Training curves and metric bars: loss per step (smoothed), per seed, per variant; metric bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

if TYPE_CHECKING:
    from matplotlib.axes import Axes


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

    ``history_or_frame``: a :class:`sevlm_lib.engine.History` or its ``to_frame()``. ``components``: the
    columns to draw (default: ``loss`` and every component the model logged, no ``lr``/``grad_norm`` columns).
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
        components = [
            c for c in steps.columns if c not in _NOT_LOSSES and not str(c).startswith(("lr_", "grad_norm_"))
        ]
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


def plot_seed_losses(
    histories: Mapping[Any, Any],
    column: str = "loss",
    smooth: float = 0.9,
    ax: Axes | None = None,
    *,
    logy: bool = False,
) -> Axes:
    """One smoothed curve per run (e.g. ``{seed: History}``) of one logged ``column`` against the step.

    Values are ``History`` objects or their ``to_frame()``; the raw values are drawn faintly behind the
    exponential moving average (``smooth`` as in :func:`smooth_series`). Returns the Axes.
    """
    if not histories:
        raise ValueError("plot_seed_losses: no runs to draw")
    if ax is None:
        _fig, ax = plt.subplots(figsize=(6, 3.2))
    palette = sns.color_palette("colorblind", len(histories))
    for color, (label, history) in zip(palette, histories.items(), strict=False):
        steps, _ = _frames(history)
        if column not in steps.columns or "step" not in steps.columns:
            raise KeyError(
                f"plot_seed_losses: run {label!r} logged no {column!r} (has {list(steps.columns)})"
            )
        values = steps[column].astype(float)
        ax.plot(steps["step"], values, color=color, alpha=0.2, linewidth=0.8)
        ax.plot(steps["step"], smooth_series(values, smooth), color=color, linewidth=1.6, label=str(label))
    ax.set_xlabel("step")
    ax.set_ylabel(column)
    if logy:
        ax.set_yscale("log")
    ax.legend(frameon=False, fontsize=8)
    return ax


def plot_variant_curves(
    logs: Mapping[tuple[str, int], pd.DataFrame],
    columns: Sequence[str],
    axes: Sequence[Axes] | None = None,
    *,
    smooth: float = 0.95,
    hlines: Mapping[str, float] | None = None,
) -> list[Axes]:
    """Training curves of several variants and seeds: one panel per column, one colour per variant.

    ``logs``: ``{(variant, seed): step log}`` (``History.to_frame()``, with a ``step`` column); every run is
    one EMA-smoothed line (``smooth`` as in :func:`smooth_series`). ``hlines``: a dotted reference line per
    column (e.g. the gradient-clipping threshold). Returns the Axes.
    """
    if not logs:
        raise ValueError("plot_variant_curves: no runs to draw")
    for key, frame in logs.items():
        missing = [c for c in ("step", *columns) if c not in frame.columns]
        if missing:
            raise KeyError(f"plot_variant_curves: run {key} has no column(s) {missing}")
    if axes is None:
        _fig, new_axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3), squeeze=False)
        axes = list(new_axes[0])
    axes = list(axes)
    if len(axes) != len(columns):
        raise ValueError(f"plot_variant_curves: {len(columns)} columns but {len(axes)} axes")
    variants = list(dict.fromkeys(variant for variant, _ in logs))
    colours = dict(zip(variants, sns.color_palette(n_colors=len(variants)), strict=True))
    labelled: set[str] = set()
    for (variant, _seed), frame in logs.items():
        label = None if variant in labelled else variant
        labelled.add(variant)
        for ax, column in zip(axes, columns, strict=True):
            values = smooth_series(frame[column].astype(float), smooth)
            ax.plot(frame["step"], values, color=colours[variant], alpha=0.8, linewidth=1, label=label)
    for ax, column in zip(axes, columns, strict=True):
        if hlines and column in hlines:
            ax.axhline(hlines[column], color="0.4", linestyle=":", linewidth=1)
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("step")
    axes[0].legend(frameon=False, fontsize=8)
    return axes


def plot_metric_bars(
    summary: pd.DataFrame,
    metrics: Sequence[str],
    ax: Axes | None = None,
    *,
    models: Sequence[str] | None = None,
    palette: Sequence[str] | None = None,
) -> Axes:
    """Grouped bars of mean values with ± std error bars, one group per metric and one bar per model.

    ``summary``: :func:`sevlm_lib.metrics.summarize_seeds`'s table (index = models, columns
    ``(metric, "mean"|"std")``). ``models`` picks and orders the rows (default: all). Missing values draw no
    bar. Returns the Axes; each model's bars are a ``BarContainer`` in ``ax.containers`` (``.errorbar``: its
    error bars).
    """

    missing = [m for m in metrics if (m, "mean") not in summary.columns]
    if missing:
        raise ValueError(f"plot_metric_bars: no column {missing} in the summary")
    rows = list(summary.index) if models is None else list(models)
    unknown = [r for r in rows if r not in summary.index]
    if unknown:
        raise ValueError(f"plot_metric_bars: model(s) {unknown} not in the summary ({list(summary.index)})")
    if ax is None:
        _fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(metrics) + 2), 3.2))
    colors = list(palette) if palette is not None else sns.color_palette("colorblind", len(rows))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(metrics))
    for i, model in enumerate(rows):
        mean = np.array([summary.loc[model, (m, "mean")] for m in metrics], dtype=float)
        std = np.array([summary.loc[model, (m, "std")] for m in metrics], dtype=float)
        ax.bar(
            x + (i - (len(rows) - 1) / 2) * width,
            mean,
            width,
            yerr=np.nan_to_num(std),
            label=str(model),
            color=colors[i % len(colors)],
            capsize=2,
            error_kw={"elinewidth": 0.8},
        )
    ax.set_xticks(x)
    ax.set_xticklabels(metrics)
    ax.legend(fontsize=7, ncols=min(4, len(rows)), frameon=False, loc="upper left", bbox_to_anchor=(0, 1.18))
    return ax
