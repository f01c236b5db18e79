"""Emotions and VAD: label counts and distributions, the VAD space, per-word VAD, embeddings, confusion."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps, colors

from sevlm_lib.emotions import EMOTION_COLORS, EMOTIONS, emotion_palette

if TYPE_CHECKING:
    from matplotlib.axes import Axes


VADTriple = tuple[float, float, float]

VAD_DIMENSIONS = ("valence", "arousal", "dominance")


def plot_emotion_counts(
    emotions: Sequence[str] | pd.Series, ax: Axes | None = None, *, normalize: bool = False
) -> Axes:
    """One bar per ArtEmis emotion (``EMOTIONS`` order, the course colours): how often each label occurs.

    ``normalize=True`` draws shares instead of counts. Labels outside the nine raise ``ValueError``.
    """

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

    if valence is None:
        return "#e6e6e6"
    return colors.to_hex(colormaps[cmap]((max(-1.0, min(1.0, float(valence))) + 1) / 2))


def vad_words_html(pairs: Sequence[tuple[str, VADTriple | None]], cmap: str = "RdYlGn") -> str:
    """HTML for words with their VAD: each word a ``<span>`` shaded by valence, with V, A, D as a tooltip.

    ``pairs`` is what ``Lexicon.sentence_vad`` returns. Words the lexicon does not know are plain and grey.
    Text is HTML-escaped.
    """

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


def pca_project(x: Any, k: int = 2) -> tuple[Any, Any]:
    """Project the rows of ``x [N, d]`` on their first ``k`` principal components (centred SVD).

    Returns ``(coords [N, k], explained [k])``: numpy arrays, ``explained`` the share of the total variance
    each component carries. Signs are fixed (each component's largest loading is positive), so the same
    input always gives the same picture.
    """

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
