"""Plots of the course: static matplotlib/seaborn figures that return their Axes and never call ``show()``.

Every function takes an optional ``ax`` to draw into and returns the Axes it drew on, so notebooks can
compose figures and tests can inspect them without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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


# ---------------------------------------------------------------------------------------------------------
# Artworks, emotions and VAD (notebook 01)
# ---------------------------------------------------------------------------------------------------------

VADTriple = tuple[float, float, float]


def plot_artwork_gallery(
    images: Sequence[Any],
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 4,
    panel_size: float = 2.0,
    title_colors: Sequence[str] | None = None,
) -> Figure:
    """A grid of images (PIL images or ``[H, W, 3]`` arrays), one per panel, axes hidden; returns the Figure.

    ``titles`` (one per image) are drawn small above each panel, in ``title_colors`` when given (e.g. the
    colour of each artwork's dominant emotion). Unused panels of the last row are switched off.
    """
    import numpy as np

    n = len(images)
    if n == 0:
        raise ValueError("plot_artwork_gallery: no images to show")
    if ncols < 1:
        raise ValueError(f"plot_artwork_gallery: ncols must be at least 1, got {ncols}")
    for name, values in (("titles", titles), ("title_colors", title_colors)):
        if values is not None and len(values) != n:
            raise ValueError(f"plot_artwork_gallery: {n} images but {len(values)} {name}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows * 1.1), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(np.asarray(images[k]))
        if titles is not None:
            color = title_colors[k] if title_colors is not None else "black"
            ax.set_title(titles[k], fontsize=8, color=color)
    fig.tight_layout()
    return fig


def plot_emotion_counts(
    emotions: Sequence[str] | pd.Series, ax: Axes | None = None, *, normalize: bool = False
) -> Axes:
    """One bar per ArtEmis emotion (``EMOTIONS`` order, the course colours): how often each label occurs.

    ``normalize=True`` draws shares instead of counts. Labels outside the nine raise ``ValueError``.
    """
    from sevlm_lib.emotions import EMOTIONS, emotion_palette

    labels = pd.Series(list(emotions), dtype=object)
    unknown = sorted(set(labels) - set(EMOTIONS))
    if unknown:
        raise ValueError(
            f"plot_emotion_counts: unknown emotion(s) {unknown}; expected among {list(EMOTIONS)}"
        )
    counts = labels.value_counts().reindex(list(EMOTIONS), fill_value=0)
    values = counts / max(1, len(labels)) if normalize else counts
    if ax is None:
        _fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(EMOTIONS)), values.to_numpy(), color=emotion_palette())
    ax.set_xticks(range(len(EMOTIONS)))
    ax.set_xticklabels(EMOTIONS, rotation=35, ha="right")
    ax.set_ylabel("share" if normalize else "count")
    return ax


def plot_emotion_vad(
    emotion_vad: Mapping[str, VADTriple | None],
    ax: Axes | None = None,
    *,
    background: Sequence[VADTriple] | None = None,
) -> Axes:
    """The emotion words in the valence-arousal plane; dominance sets the marker size and is printed.

    ``emotion_vad`` maps each emotion to its lexicon VAD (``sevlm_lib.vad.emotion_vad``); emotions mapped to
    ``None`` ("something else") are named in a note instead. ``background``: optional VAD triples (e.g. every
    lexicon word) drawn as a faint cloud behind. Axes span -1..1; returns the Axes.
    """
    import numpy as np

    from sevlm_lib.emotions import EMOTION_COLORS

    if ax is None:
        _fig, ax = plt.subplots(figsize=(5, 5))
    if background is not None and len(background):
        cloud = np.asarray(background, dtype=float)
        ax.scatter(cloud[:, 0], cloud[:, 1], s=2, color="0.8", alpha=0.4, linewidths=0, zorder=1)
    placed = [(e, v) for e, v in emotion_vad.items() if v is not None]
    missing = [e for e, v in emotion_vad.items() if v is None]
    if placed:
        vad = np.asarray([v for _, v in placed], dtype=float)
        sizes = 60 + 340 * (vad[:, 2] + 1) / 2  # dominance -1..1 -> 60..400 points^2
        colors = [EMOTION_COLORS.get(e, "black") for e, _ in placed]
        ax.scatter(vad[:, 0], vad[:, 1], s=sizes, c=colors, edgecolors="black", linewidths=0.6, zorder=3)
        for emotion, (v, a, d) in placed:
            ax.annotate(
                f"{emotion}\nD={d:+.2f}", (v, a), xytext=(6, 6), textcoords="offset points", fontsize=8
            )
    ax.axhline(0, color="0.6", linewidth=0.6, zorder=2)
    ax.axvline(0, color="0.6", linewidth=0.6, zorder=2)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("valence (unpleasant -> pleasant)")
    ax.set_ylabel("arousal (calm -> excited)")
    if missing:
        ax.text(-0.97, -0.95, "no VAD: " + ", ".join(missing), fontsize=8, color="0.35")
    ax.set_title("emotion words in VAD space (size = dominance)")
    return ax


def valence_color(valence: float | None, cmap: str = "RdYlGn") -> str:
    """A hex colour for a valence in -1..1 (red = unpleasant, green = pleasant); light grey for ``None``."""
    from matplotlib import colormaps, colors

    if valence is None:
        return "#e6e6e6"
    return colors.to_hex(colormaps[cmap]((max(-1.0, min(1.0, float(valence))) + 1) / 2))


def vad_words_html(pairs: Sequence[tuple[str, VADTriple | None]], cmap: str = "RdYlGn") -> str:
    """HTML for words with their VAD: each word a ``<span>`` shaded by valence, with V, A, D as a tooltip.

    ``pairs`` is what ``Lexicon.sentence_vad`` returns. Words the lexicon does not know are plain and grey.
    Text is HTML-escaped.
    """
    import html

    spans = []
    for word, vad in pairs:
        text = html.escape(word)
        if vad is None:
            spans.append(f'<span style="color:#888" title="not in the lexicon">{text}</span>')
        else:
            v, a, d = vad
            spans.append(
                f'<span style="background:{valence_color(v, cmap)};padding:0 2px;border-radius:3px" '
                f'title="V {v:+.2f}, A {a:+.2f}, D {d:+.2f}">{text}</span>'
            )
    return " ".join(spans)
