"""Plots of the course: static matplotlib/seaborn figures that return their Axes and never call ``show()``.

Every function takes an optional ``ax`` to draw into and returns the Axes it drew on, so notebooks can
compose figures and tests can inspect them without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from sevlm_lib.models.sevlm import SEVLMConfig

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
            # a close neighbour with higher valence pushes the label to the left of the point
            crowded = any(
                0 < abs(v2 - v) + abs(a2 - a) < 0.2 and v2 > v for e2, (v2, a2, _) in placed if e2 != emotion
            )
            ax.annotate(
                f"{emotion}\nD={d:+.2f}",
                (v, a),
                xytext=(-8 if crowded else 8, 2),
                textcoords="offset points",
                ha="right" if crowded else "left",
                va="center",
                fontsize=8,
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


def display_image(picture: Any, fmt: str = "png", *, dpi: int = 72, quality: int = 80) -> Any:
    """A matplotlib Figure or a PIL image as an ``IPython.display.Image`` (PNG or JPEG); a Figure is closed.

    Displaying this, rather than relying on the matplotlib backend, gives a notebook the same outputs under
    the inline backend and under ``MPLBACKEND=Agg`` (as nbval runs in CI); ``fmt="jpeg"`` keeps notebooks
    that show pictures small.
    """
    import io

    from IPython.display import Image as DisplayImage
    from matplotlib.figure import Figure as MplFigure

    fmt = fmt.lower()
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"display_image: fmt must be 'png' or 'jpeg', got {fmt!r}")
    buffer = io.BytesIO()
    if isinstance(picture, MplFigure):
        extra = {"pil_kwargs": {"quality": quality}} if fmt == "jpeg" else {}
        picture.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight", **extra)
        plt.close(picture)
    elif hasattr(picture, "save") and hasattr(picture, "mode"):  # a PIL image
        image = picture.convert("RGB") if fmt == "jpeg" else picture
        image.save(
            buffer,
            format="JPEG" if fmt == "jpeg" else "PNG",
            **({"quality": quality} if fmt == "jpeg" else {}),
        )
    else:
        raise TypeError(
            f"display_image: expected a matplotlib Figure or a PIL image, got {type(picture).__name__}"
        )
    return DisplayImage(data=buffer.getvalue(), format=fmt)


# ---------------------------------------------------------------------------------------------------------
# VAD head: predicted vs true VAD along an explanation (notebook 04)
# ---------------------------------------------------------------------------------------------------------

VAD_DIMENSIONS = ("valence", "arousal", "dominance")


def plot_vad_trajectory(
    tokens: Sequence[str],
    predicted: Any,
    target: Any,
    known: Any,
    axes: Sequence[Axes] | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> list[Axes]:
    """Predicted vs true VAD along one explanation, in three panels: valence, arousal, dominance.

    Position ``i`` holds the prediction made *for* token ``tokens[i]`` (from the hidden state of the token
    before it). ``predicted``, ``target``: ``[T, 3]``; ``known``: ``[T]`` bool, true where the target VAD is
    known (only those positions count in the loss). The prediction is a solid line over every position, the
    true VAD a red dot at each known position; the tokens label the bottom panel, unknown ones in grey. ``extra``:
    more ``[T, 3]`` predictions drawn as dashed lines, keyed by their legend label. ``axes``: three Axes
    to draw into (default: a new figure with three rows). Returns the three Axes.
    """
    import numpy as np

    n = len(tokens)
    if n == 0:
        raise ValueError("plot_vad_trajectory: no tokens to draw")
    pred = np.asarray(predicted, dtype=float)
    true = np.asarray(target, dtype=float)
    mask = np.asarray(known, dtype=bool)
    others = {label: np.asarray(values, dtype=float) for label, values in (extra or {}).items()}
    checks = [("predicted", pred, (n, 3)), ("target", true, (n, 3)), ("known", mask, (n,))]
    checks += [(f"extra[{label!r}]", values, (n, 3)) for label, values in others.items()]
    for name, arr, shape in checks:
        if arr.shape != shape:
            raise ValueError(
                f"plot_vad_trajectory: {name} has shape {arr.shape}, expected {shape} for {n} tokens"
            )
    if axes is None:
        _fig, new_axes = plt.subplots(3, 1, figsize=(max(4.0, 0.35 * n + 1.5), 4.8))
        axes = list(new_axes)
    axes = list(axes)
    if len(axes) != 3:
        raise ValueError(f"plot_vad_trajectory: expected 3 axes (V, A, D), got {len(axes)}")
    x = np.arange(n)
    extra_colors = sns.color_palette("Greys_r", n_colors=len(others) + 2)
    for k, (ax, dim) in enumerate(zip(axes, VAD_DIMENSIONS, strict=True)):
        ax.axhline(0, color="0.85", linewidth=0.6, zorder=1)
        for color, (label, values) in zip(extra_colors, others.items(), strict=False):
            ax.plot(x, values[:, k], color=color, linestyle="--", linewidth=1.0, label=label, zorder=2)
        ax.plot(x, pred[:, k], color="tab:blue", marker=".", linewidth=1.3, label="VAD head", zorder=3)
        ax.scatter(x[mask], true[mask, k], color="tab:red", s=22, zorder=4, label="lexicon (known words)")
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(dim[0].upper(), rotation=0, labelpad=8)
        ax.set_xticks(x)
        ax.tick_params(labelbottom=False)
    bottom = axes[-1]
    bottom.tick_params(labelbottom=True)
    bottom.set_xticklabels([str(t) for t in tokens], rotation=60, ha="right", fontsize=7)
    for label, is_known in zip(bottom.get_xticklabels(), mask, strict=True):
        label.set_color("black" if is_known else "0.6")
    axes[0].legend(loc="lower left", fontsize=7, frameon=False, ncol=len(others) + 2)
    if title:
        axes[0].set_title(title, fontsize=9)
    return axes


# ---------------------------------------------------------------------------------------------------------
# Embeddings in 2D, coloured by emotion; training curves per variant (notebook 05)
# ---------------------------------------------------------------------------------------------------------


def pca_project(x: Any, k: int = 2) -> tuple[Any, Any]:
    """Project the rows of ``x [N, d]`` on their first ``k`` principal components (centred SVD).

    Returns ``(coords [N, k], explained [k])``: numpy arrays, ``explained`` the share of the total variance
    each component carries. Signs are fixed (each component's largest loading is positive), so the same
    input always gives the same picture.
    """
    import numpy as np

    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or len(arr) < 2 or not 1 <= k <= min(arr.shape):
        raise ValueError(
            f"pca_project: need [N, d] with N >= 2 and 1 <= k <= min(N, d), got {arr.shape}, k={k}"
        )
    centred = arr - arr.mean(0)
    _u, s, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:k] * np.sign(vt[:k][np.arange(k), np.abs(vt[:k]).argmax(1)])[:, None]
    total = float((s**2).sum())
    explained = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
    return centred @ vt.T, explained


def plot_emotion_scatter(
    coords: Any,
    emotions: Sequence[str],
    ax: Axes | None = None,
    *,
    title: str | None = None,
    size: float = 12.0,
    legend: bool = False,
) -> Axes:
    """A 2D scatter of ``coords [N, 2]``, one colour per emotion (the course's ``EMOTION_COLORS``)."""
    import numpy as np

    from sevlm_lib.emotions import EMOTION_COLORS, EMOTIONS

    xy = np.asarray(coords, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(emotions):
        raise ValueError(
            f"plot_emotion_scatter: coords of shape {xy.shape} for {len(emotions)} emotions; expected [N, 2]"
        )
    unknown = sorted({e for e in emotions if e not in EMOTION_COLORS})
    if unknown:
        raise ValueError(
            f"plot_emotion_scatter: unknown emotion(s) {unknown}: expected one of {', '.join(EMOTIONS)}"
        )
    if ax is None:
        _fig, ax = plt.subplots(figsize=(4, 4))
    labels = np.asarray(emotions, dtype=object)
    for emotion in EMOTIONS:
        sel = labels == emotion
        if sel.any():
            ax.scatter(
                xy[sel, 0],
                xy[sel, 1],
                s=size,
                color=EMOTION_COLORS[emotion],
                label=emotion,
                alpha=0.8,
                linewidths=0,
            )
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=7, frameon=False, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return ax


# ---------------------------------------------------------------------------------------------------------
# Evaluation and comparison (notebook 07): confusion heat map, metric bars, attention overlay, text gallery
# ---------------------------------------------------------------------------------------------------------


def plot_confusion_heatmap(
    confusion: pd.DataFrame,
    ax: Axes | None = None,
    *,
    normalize: bool = True,
    title: str | None = None,
    cmap: str = "Blues",
) -> Axes:
    """A confusion matrix (rows = gold, columns = predicted, e.g. ``metrics.emotion_report(...)["confusion"]``)
    as a heat map. ``normalize=True`` shows each gold row as shares (rows with no item stay 0) and prints the
    counts in the cells; otherwise the counts are the colours. Returns the Axes."""
    import numpy as np

    if confusion.ndim != 2 or confusion.empty:
        raise ValueError("plot_confusion_heatmap: expected a non-empty 2-d table of counts")
    counts = confusion.to_numpy(dtype=float)
    if (counts < 0).any():
        raise ValueError("plot_confusion_heatmap: counts must be non-negative")
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    else:
        values = counts
    shown = pd.DataFrame(values, index=confusion.index, columns=confusion.columns)
    if ax is None:
        _fig, ax = plt.subplots(figsize=(6, 5))
    sns.heatmap(
        shown,
        ax=ax,
        cmap=cmap,
        vmin=0,
        vmax=1 if normalize else None,
        annot=confusion.to_numpy(),
        fmt="d" if np.issubdtype(confusion.to_numpy().dtype, np.integer) else ".0f",
        annot_kws={"fontsize": 7},
        cbar_kws={"label": "share of the gold row" if normalize else "count"},
        linewidths=0.3,
        linecolor="white",
    )
    ax.set_xlabel(confusion.columns.name or "predicted")
    ax.set_ylabel(confusion.index.name or "gold")
    if title:
        ax.set_title(title)
    return ax


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
    import numpy as np

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


def plot_attention_overlay(
    image: Any,
    attention: Any,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    alpha: float = 0.55,
    cmap: str = "magma",
) -> Axes:
    """An image with an attention map over its patches drawn on top (bilinear upsampling).

    ``image``: a PIL image, an ``[H, W, 3]`` array, or a ``[3, H, W]`` tensor (scaled to 0..1 for display).
    ``attention``: ``P`` weights (a square number: the patch grid, row by row) or a ``[g, g]`` grid.
    """
    import numpy as np
    from PIL import Image

    arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=float)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[2] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"plot_attention_overlay: expected an RGB image, got shape {arr.shape}")
    lo, hi = arr.min(), arr.max()
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    att = np.asarray(attention.detach().cpu() if hasattr(attention, "detach") else attention, dtype=float)
    if att.ndim == 1:
        side = int(round(len(att) ** 0.5))
        if side * side != len(att):
            raise ValueError(f"plot_attention_overlay: {len(att)} weights do not form a square patch grid")
        att = att.reshape(side, side)
    if att.ndim != 2:
        raise ValueError(
            f"plot_attention_overlay: expected P weights or a [g, g] grid, got shape {att.shape}"
        )
    h, w = arr.shape[:2]
    span = att.max() - att.min()
    scaled = (att - att.min()) / span if span > 0 else np.zeros_like(att)
    up = np.asarray(Image.fromarray((scaled * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)) / 255.0
    if ax is None:
        _fig, ax = plt.subplots(figsize=(2.2, 2.2))
    ax.imshow(arr)
    ax.imshow(up, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def image_html(image: Any, size: int = 96, fmt: str = "png", quality: int = 80) -> str:
    """An ``<img>`` tag holding a small thumbnail (longest side ``size`` px) of a PIL image or RGB array,
    embedded as PNG or (``fmt="jpeg"``, smaller for pictures) JPEG."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    fmt = fmt.lower()
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"image_html: fmt must be 'png' or 'jpeg', got {fmt!r}")
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    pil = pil.convert("RGB")
    pil.thumbnail((size, size))
    buf = io.BytesIO()
    if fmt == "png":
        pil.save(buf, format="PNG", optimize=True)
    else:
        pil.save(buf, format="JPEG", quality=quality)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/{fmt};base64,{data}" width="{pil.width}" height="{pil.height}"/>'


def text_gallery_html(
    images: Sequence[Any],
    rows: Sequence[Mapping[str, str]],
    *,
    size: int = 96,
    title: str | None = None,
    fmt: str = "png",
) -> str:
    """An HTML table: each artwork's thumbnail beside labelled lines of (already formatted) HTML text, e.g.
    explanations coloured by :func:`vad_words_html`. ``rows[i]`` maps a label to its HTML for image ``i``;
    ``fmt``: the thumbnails' format (see :func:`image_html`)."""
    import html

    if len(images) != len(rows):
        raise ValueError(f"text_gallery_html: {len(images)} images but {len(rows)} rows of text")
    if not images:
        raise ValueError("text_gallery_html: nothing to show")
    parts = ['<table style="border-collapse:collapse;font-size:12px">']
    if title:
        parts.append(f'<caption style="text-align:left;font-weight:bold">{html.escape(title)}</caption>')
    for image, row in zip(images, rows, strict=True):
        lines = "".join(
            f'<div style="margin:2px 0"><b>{html.escape(label)}:</b> {text}</div>'
            for label, text in row.items()
        )
        parts.append(
            '<tr style="border-top:1px solid #ddd">'
            f'<td style="padding:4px;vertical-align:top">{image_html(image, size, fmt)}</td>'
            f'<td style="padding:4px;text-align:left;vertical-align:top">{lines}</td></tr>'
        )
    parts.append("</table>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------------
# The baseline captioner (notebook 02): model-input pictures, loss curves over seeds, emotion distributions
# ---------------------------------------------------------------------------------------------------------


def unnormalize_images(
    pixel_values: Any,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Any:
    """Undo the CLIP normalisation of ``pixel_values`` (``[N, 3, H, W]`` or ``[3, H, W]``, a tensor or array):
    ``x * std + mean``, clipped to 0..1, as ``uint8`` RGB arrays ``[N, H, W, 3]`` (or ``[H, W, 3]``).

    ``mean``/``std`` default to CLIP's own statistics (``sevlm_lib.models.vision.CLIP_MEAN``/``CLIP_STD``).
    """
    import numpy as np

    from sevlm_lib.models.vision import CLIP_MEAN, CLIP_STD

    arr = np.asarray(
        pixel_values.detach().cpu() if hasattr(pixel_values, "detach") else pixel_values, dtype=np.float64
    )
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise ValueError(
            f"unnormalize_images: expected pixel values of shape [N, 3, H, W] or [3, H, W], got {arr.shape}"
        )
    m = np.asarray(CLIP_MEAN if mean is None else mean, dtype=np.float64).reshape(1, 3, 1, 1)
    s = np.asarray(CLIP_STD if std is None else std, dtype=np.float64).reshape(1, 3, 1, 1)
    rgb = np.clip(arr * s + m, 0.0, 1.0).transpose(0, 2, 3, 1)
    out = np.rint(rgb * 255).astype(np.uint8)
    return out[0] if single else out


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


def plot_emotion_distribution(
    probs: Sequence[float] | Any,
    ax: Axes | None = None,
    *,
    gold: str | None = None,
    title: str | None = None,
) -> Axes:
    """Nine bars (``EMOTIONS`` order, the course colours) of a probability distribution over the emotions,
    e.g. one row of ``sevlm_lib.generation.emotion_distribution``. The ``gold`` emotion's bar is outlined in
    black. Returns the Axes."""
    import numpy as np

    from sevlm_lib.emotions import EMOTIONS, emotion_palette

    p = np.asarray(probs.detach().cpu() if hasattr(probs, "detach") else probs, dtype=float).reshape(-1)
    if p.shape != (len(EMOTIONS),):
        raise ValueError(
            f"plot_emotion_distribution: expected {len(EMOTIONS)} probabilities, got shape {p.shape}"
        )
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("plot_emotion_distribution: probabilities must be finite and non-negative")
    if gold is not None and gold not in EMOTIONS:
        raise ValueError(
            f"plot_emotion_distribution: unknown gold emotion {gold!r}: expected one of {', '.join(EMOTIONS)}"
        )
    if ax is None:
        _fig, ax = plt.subplots(figsize=(5, 2.6))
    bars = ax.bar(range(len(EMOTIONS)), p, color=emotion_palette())
    if gold is not None:
        bar = bars[EMOTIONS.index(gold)]
        bar.set_edgecolor("black")
        bar.set_linewidth(1.8)
    ax.set_xticks(range(len(EMOTIONS)))
    ax.set_xticklabels(EMOTIONS, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("probability")
    ax.set_ylim(0, max(1e-9, float(p.max())) * 1.15)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


# ---------------------------------------------------------------------------------------------------------
# GPU memory of a training step (notebook 06)
# ---------------------------------------------------------------------------------------------------------


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
    import numpy as np

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


# ---------------------------------------------------------------------------------------------------------
# The architecture diagram (README, docs/architecture.md): drawn from a SEVLMConfig, never by hand
# ---------------------------------------------------------------------------------------------------------

# Fill colours of the diagram, one per part of the model; switched-off parts are grey and dashed.
_ARCH_COLORS = {"image": "#dbe9f6", "text": "#fdf1cf", "vad": "#dcefd9", "head": "#fbe0cc", "off": "#f2f2f2"}


def _arch_box(
    ax: Axes,
    xy: tuple[float, float],
    size: tuple[float, float],
    title: str,
    body: str = "",
    *,
    kind: str,
    on: bool = True,
    gid: str | None = None,
    fontsize: float = 7.5,
) -> None:
    """One rounded box: a bold ``title`` line over smaller ``body`` lines, grey and dashed when ``on`` is false."""
    from matplotlib.patches import FancyBboxPatch

    (x, y), (w, h) = xy, size
    box = FancyBboxPatch(
        (x, y),
        w,
        h,
        boxstyle="round,pad=0,rounding_size=1.2",
        facecolor=_ARCH_COLORS[kind if on else "off"],
        edgecolor="0.25" if on else "0.6",
        linewidth=1.0,
        linestyle="-" if on else (0, (4, 3)),
        zorder=2,
    )
    if gid:
        box.set_gid(gid)
    ax.add_patch(box)
    color = "black" if on else "0.5"
    cx = x + w / 2
    if body:
        ax.text(
            cx,
            y + h - 1.3,
            title,
            ha="center",
            va="top",
            fontsize=fontsize,
            weight="bold",
            color=color,
            zorder=3,
        )
        ax.text(
            cx,
            y + h - 4.0,
            body,
            ha="center",
            va="top",
            fontsize=fontsize - 1,
            color=color,
            zorder=3,
            linespacing=1.25,
        )
    else:
        ax.text(
            cx,
            y + h / 2,
            title,
            ha="center",
            va="center",
            fontsize=fontsize,
            weight="bold",
            color=color,
            zorder=3,
        )


def _arch_arrow(
    ax: Axes,
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    on: bool = True,
    label: str | None = None,
    label_xy: tuple[float, float] | None = None,
    connection: str = "arc3",
) -> None:
    """An arrow from ``start`` to ``end`` (data coordinates), grey and dashed when ``on`` is false."""
    from matplotlib.patches import FancyArrowPatch

    arrow = FancyArrowPatch(
        start,
        end,
        arrowstyle="-|>",
        mutation_scale=9,
        color="0.2" if on else "0.65",
        linewidth=1.0,
        linestyle="-" if on else (0, (4, 3)),
        connectionstyle=connection,
        shrinkA=0,
        shrinkB=0,
        zorder=1,
    )
    ax.add_patch(arrow)
    if label:
        lx, ly = (
            label_xy if label_xy is not None else ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.8)
        )
        ax.text(
            lx,
            ly,
            label,
            ha="center",
            va="bottom",
            fontsize=6.5,
            style="italic",
            color="0.25" if on else "0.55",
            zorder=3,
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _on_off(name: str, on: bool) -> str:
    return f"{name} ({'on' if on else 'off'})"


def plot_architecture(config: SEVLMConfig | None = None, ax: Axes | None = None) -> Figure:
    """A block diagram of SEVLM, with the sizes of ``config`` (default: the full profile, all additions on).

    Image path: artwork -> CLIP vision tower -> patch tokens -> projection -> the decoder's cross-attention.
    Text path: tokens -> token + segment embeddings -> VAD fusion -> GPT-2 decoder. Heads on the decoder's last
    hidden states: LM head (cross-entropy), VAD head (masked MSE), contrastive head (InfoNCE against two kinds
    of negatives). Additions switched off in ``config`` (``vad_fusion``, ``vad_head``, ``contrastive``) are
    grey, dashed and labelled "(off)". Widths and layer counts are read from the config; nothing is built
    or downloaded. ``ax``: an Axes to draw into (its figure should be about 10 x 5.5 inches); returns the Figure.
    """
    from matplotlib.patches import FancyBboxPatch

    from sevlm_lib.models.sevlm import full_config
    from sevlm_lib.models.vision import CLIP_HUB_ID

    cfg = config if config is not None else full_config(vad_fusion=True, vad_head=True, contrastive=True)
    vis, dec, venc = cfg.vision, cfg.decoder, cfg.vad_encoder
    d, dv = dec.n_embd, vis.hidden_size
    if ax is None:
        fig = plt.figure(figsize=(10, 5.5))
        ax = fig.add_axes((0, 0, 1, 1))
    fig = ax.figure
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 55)
    ax.set_axis_off()

    if vis.hub_id == CLIP_HUB_ID:
        vision_name = "CLIP ViT-B/16"
    elif vis.hub_id:
        vision_name = f"CLIP ViT ({vis.hub_id})"
    else:
        vision_name = "tiny CLIP ViT (random init)"
    decoder_name = f"GPT-2: {dec.hub_id}" if dec.hub_id else "tiny GPT-2 (random init)"
    title = f"SEVLM ({cfg.variant}): {vision_name} + {decoder_name.removeprefix('GPT-2: ')}"
    ax.text(50, 53.5, title, ha="center", va="top", fontsize=10, weight="bold")

    # image path (top row)
    _arch_box(
        ax,
        (1, 40),
        (13, 9),
        "artwork",
        f"{vis.image_size} x {vis.image_size} px\nRGB",
        kind="image",
        gid="image",
    )
    _arch_box(
        ax,
        (17, 39),
        (21, 11),
        "vision tower",
        f"{vision_name}\n{_plural(vis.num_layers, 'layer')}, width {dv}, patch {vis.patch_size}\n"
        + ("frozen (no gradients)" if vis.frozen else "trainable"),
        kind="image",
        gid="vision",
    )
    _arch_box(
        ax,
        (41, 40),
        (13, 9),
        "patch tokens",
        f"{vis.num_patches} x {dv}\n(CLS dropped)",
        kind="image",
        gid="patches",
    )
    projection = f"Linear({dv} -> {d})" if dv != d else f"identity ({dv} = d)"
    _arch_box(
        ax, (57, 40), (14, 9), "projection", f"{projection}\nthe image memory", kind="image", gid="projection"
    )
    _arch_arrow(ax, (14, 44.5), (17, 44.5))
    _arch_arrow(ax, (38, 44.5), (41, 44.5))
    _arch_arrow(ax, (54, 44.5), (57, 44.5))
    _arch_arrow(ax, (64, 40), (64, 34), label="cross-attention", label_xy=(68.5, 36.2))

    # text path (middle row) and the decoder
    _arch_box(
        ax,
        (1, 22),
        (13, 12),
        "tokens",
        "<bos> the emotion\nis X because ...\n<eos>",
        kind="text",
        gid="tokens",
    )
    _arch_box(
        ax,
        (17, 22),
        (17, 12),
        "embeddings",
        f"token + segment\n(<emotion>, <explanation>)\nd = {d}",
        kind="text",
        gid="embeddings",
    )
    _arch_box(
        ax,
        (57, 14),
        (14, 20),
        "decoder",
        f"{decoder_name}\n{_plural(dec.n_layer, 'layer')}, d = {d}\n{_plural(dec.n_head, 'head')}\n\n"
        "masked self-attention\n+ cross-attention\nto the patches\n\nout: last hidden states",
        kind="text",
        gid="decoder",
    )
    _arch_arrow(ax, (14, 28), (17, 28))
    words = "fused word" if cfg.vad_fusion else "word"
    _arch_arrow(ax, (34, 28), (57, 28), label=f"{words} + segment embeddings", label_xy=(45.5, 28.6))

    # VAD fusion (bottom left)
    fusion = cfg.vad_fusion
    frame_color = "0.35" if fusion else "0.6"
    frame = FancyBboxPatch(
        (1, 1),
        (54 - 1),
        17.5,
        boxstyle="round,pad=0,rounding_size=1.5",
        facecolor="none",
        edgecolor=frame_color,
        linewidth=1.0,
        linestyle=(0, (4, 3)) if not fusion else "-",
        zorder=1,
    )
    frame.set_gid("vad_fusion")
    ax.add_patch(frame)
    ax.text(
        2.2,
        17.3,
        _on_off("VAD fusion", fusion),
        ha="left",
        va="top",
        fontsize=8,
        weight="bold",
        color="black" if fusion else "0.5",
    )
    ax.text(
        53,
        17.3,
        "explanation positions only",
        ha="right",
        va="top",
        fontsize=6.5,
        style="italic",
        color="0.25" if fusion else "0.55",
    )
    _arch_box(
        ax,
        (3, 2.5),
        (14, 10.5),
        "token VAD lookup",
        "[vocab, 3] table\nfrom the lexicon",
        kind="vad",
        on=fusion,
        fontsize=7,
    )
    causal = "causal" if venc.causal else "NON-causal (sees the future)"
    _arch_box(
        ax,
        (20.5, 2.5),
        (15, 10.5),
        "VAD encoder",
        f"{causal}\nd = {venc.d_model}, {_plural(venc.n_layers, 'layer')}\n{_plural(venc.n_heads, 'head')}, FFN {venc.ffn}",
        kind="vad",
        on=fusion,
        fontsize=7,
    )
    _arch_box(
        ax,
        (39, 2.5),
        (14, 10.5),
        "fuse",
        f"concat word emb.\n+ Linear({d}+3 -> {d})",
        kind="vad",
        on=fusion,
        fontsize=7,
    )
    _arch_arrow(ax, (7.5, 22), (7.5, 13), on=fusion)
    _arch_arrow(ax, (17, 7.75), (20.5, 7.75), on=fusion)
    _arch_arrow(ax, (35.5, 7.75), (39, 7.75), on=fusion)
    _arch_arrow(ax, (46, 13), (46, 28), on=fusion)

    # heads (right column)
    _arch_arrow(ax, (71, 31), (75, 45.5))
    _arch_box(
        ax,
        (75, 41),
        (24, 9),
        "LM head",
        "next-token logits\nloss: cross-entropy (xe)",
        kind="head",
        gid="lm_head",
    )
    _arch_arrow(ax, (71, 27), (75, 32.5), on=cfg.vad_head)
    _arch_box(
        ax,
        (75, 28),
        (24, 10),
        _on_off("VAD head", cfg.vad_head),
        f"Linear({d} -> 3)\nloss: masked MSE on the\nnext token's VAD (vad)",
        kind="head",
        on=cfg.vad_head,
        gid="vad_head",
    )
    _arch_arrow(ax, (71, 20), (75, 18), on=cfg.contrastive)
    _arch_box(
        ax,
        (75, 8),
        (24, 18),
        _on_off("contrastive head", cfg.contrastive),
        "means of image / emotion /\nexplanation embeddings\n-> 4-layer MLP scorer\n"
        "loss: InfoNCE (contrastive) vs\n"
        "neg 1: same artwork, the other\nemotion's explanation\n"
        "neg 2: another artwork's\nexplanation (derangement)",
        kind="head",
        on=cfg.contrastive,
        gid="contrastive",
    )
    total = "loss = xe"
    if cfg.vad_head:
        total += f" + {cfg.vad_loss_weight:g}·vad"
    if cfg.contrastive:
        total += f" + {cfg.contrastive_loss_weight:g}·contrastive"
    ax.text(87, 5.5, total, ha="center", va="center", fontsize=7.5, weight="bold", gid="total_loss")
    ax.text(
        87,
        2.2,
        "grey, dashed = switched off in this config",
        ha="center",
        va="center",
        fontsize=6.5,
        color="0.45",
    )
    return fig


def save_architecture_figure(path: Path, config: SEVLMConfig | None = None) -> Path:
    """Write :func:`plot_architecture` of ``config`` (default: full profile, all on) as an SVG to ``path``.

    Byte-for-byte repeatable on the same matplotlib: fixed SVG ids (``svg.hashsalt``) and no date. The
    figure is built without pyplot, so no window opens and nothing stays registered. Returns ``path``.
    """
    from matplotlib.figure import Figure as MplFigure

    path = Path(path)
    if path.suffix.lower() != ".svg":
        raise ValueError(f"save_architecture_figure: {path} should end in .svg")
    with plt.rc_context({"svg.hashsalt": "sevlm", "svg.fonttype": "path"}):
        fig = MplFigure(figsize=(10, 5.5))
        plot_architecture(config, ax=fig.add_axes((0, 0, 1, 1)))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="svg", metadata={"Date": None})
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sevlm_lib.viz architecture PATH``: write the architecture diagram (SVG) to ``PATH``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sevlm_lib.viz", description="Write the course's figures."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    arch = sub.add_parser(
        "architecture", help="the SEVLM block diagram of the full profile, all additions on"
    )
    arch.add_argument("path", type=Path, help="the .svg file to write, e.g. docs/architecture.svg")
    args = parser.parse_args(argv)
    if args.path.suffix.lower() != ".svg":
        parser.error(f"{args.path}: expected a path ending in .svg")
    print(save_architecture_figure(args.path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
