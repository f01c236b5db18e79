"""Emotion metrics: Emo-A under both dominant-emotion rules, the majority baseline, Emo-Align, VAD error,
and the diversity of generated explanations."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from sevlm_lib.data.artemis import dominant_emotion
from sevlm_lib.emotions import EMOTION_TO_IDX, EMOTIONS

UNKNOWN = "unknown"  # the label of a prediction that is none of the nine emotions

# ---------------------------------------------------------------------------------------------------------
# Emotion metrics
# ---------------------------------------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    """``None``, ``NaN`` or ``pd.NA`` (how a missing label arrives from a DataFrame column)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _as_prediction(value: object, where: str) -> str:
    """A predicted label: one of the nine (after lowercasing and whitespace collapsing) or ``"unknown"``."""
    if _is_missing(value):
        return UNKNOWN
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected an emotion string or None, got {type(value).__name__} {value!r}")
    label = " ".join(value.lower().split())
    return label if label in EMOTION_TO_IDX else UNKNOWN


def _as_gold(value: object, where: str) -> str | None:
    """A gold label: one of the nine exactly, or ``None`` (no dominant emotion)."""
    if _is_missing(value):
        return None
    if value not in EMOTION_TO_IDX:
        raise ValueError(f"{where}: expected one of {', '.join(EMOTIONS)} or None, got {value!r}")
    return str(value)


def _paired(pred: Sequence[object], gold: Sequence[object]) -> list[tuple[str, str]]:
    """(prediction, gold) pairs of the items whose gold is not None, validated."""
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions but {len(gold)} gold labels: expected the same number")
    pairs = []
    for i, (p, g) in enumerate(zip(pred, gold, strict=True), start=1):
        gold_label = _as_gold(g, f"gold label of item {i}")
        prediction = _as_prediction(p, f"prediction of item {i}")
        if gold_label is not None:
            pairs.append((prediction, gold_label))
    return pairs


def emotion_accuracy(pred: Sequence[str | None], gold: Sequence[str | None]) -> float:
    """Share of items whose prediction equals the gold emotion, over items whose gold is not ``None``.

    Predictions are lowercased and whitespace-collapsed; ``None`` or a label outside the nine counts as
    wrong. ``nan`` when no item has a gold label.
    """
    pairs = _paired(pred, gold)
    if not pairs:
        return float("nan")
    return sum(p == g for p, g in pairs) / len(pairs)


def emotion_report(pred: Sequence[str | None], gold: Sequence[str | None]) -> dict[str, Any]:
    """Accuracy, per-emotion recall and a confusion matrix (items with ``None`` gold excluded).

    Returns ``accuracy``, ``n`` (items scored), ``n_excluded`` (gold ``None``), ``recall`` and ``support``
    (dicts over the nine emotions; recall is ``nan`` for an emotion with no gold item) and ``confusion``: a
    DataFrame, rows = gold emotions, columns = predicted emotions plus ``"unknown"``.
    """
    pairs = _paired(pred, gold)
    columns = [*EMOTIONS, UNKNOWN]
    matrix = np.zeros((len(EMOTIONS), len(columns)), dtype=np.int64)
    col_index = {c: j for j, c in enumerate(columns)}
    for p, g in pairs:
        matrix[EMOTION_TO_IDX[g], col_index[p]] += 1
    support = matrix.sum(axis=1)
    correct = np.diag(matrix[:, : len(EMOTIONS)])
    recall = {
        e: (float(correct[i] / support[i]) if support[i] else float("nan")) for i, e in enumerate(EMOTIONS)
    }
    confusion = pd.DataFrame(
        matrix, index=pd.Index(EMOTIONS, name="gold"), columns=pd.Index(columns, name="predicted")
    )
    return {
        "accuracy": float(correct.sum() / len(pairs)) if pairs else float("nan"),
        "n": len(pairs),
        "n_excluded": len(gold) - len(pairs),
        "recall": recall,
        "support": {e: int(support[i]) for i, e in enumerate(EMOTIONS)},
        "confusion": confusion,
    }


def _histogram_rows(hist: pd.DataFrame | Mapping[Any, Any]) -> dict[Any, Any]:
    """key -> counts, from an ``emotion_histograms`` DataFrame or a mapping."""
    if isinstance(hist, pd.DataFrame):
        missing = [e for e in EMOTIONS if e not in hist.columns]
        if missing:
            raise ValueError(
                f"emotion histogram DataFrame: missing count column(s) {missing}; found {list(hist.columns)}"
            )
        counts = hist[list(EMOTIONS)].to_numpy()
        if {"art_style", "painting"} <= set(hist.columns):
            keys = list(zip(hist["art_style"], hist["painting"], strict=True))
        else:
            keys = list(hist.index)
        if len(set(keys)) != len(keys):
            raise ValueError("emotion histogram DataFrame: the same artwork appears in more than one row")
        return dict(zip(keys, counts, strict=True))
    return dict(hist)


def emo_a(
    pred_by_artwork: Mapping[Any, str | None],
    hist_df_or_counts: pd.DataFrame | Mapping[Any, Any],
    rule: str = "artemis",
) -> dict[str, Any]:
    """Emo-A: accuracy of one predicted emotion per artwork against its dominant emotion under ``rule``.

    ``hist_df_or_counts``: the DataFrame of :func:`sevlm_lib.data.artemis.emotion_histograms` (keys are
    ``(art_style, painting)`` when it has those columns, else its index) or a mapping key -> nine counts
    (sequence in ``EMOTIONS`` order, or a dict emotion -> count). Every predicted artwork must be in it.
    Artworks with no dominant emotion under ``rule`` are excluded. Returns ``accuracy`` (``nan`` if none
    is left), ``n`` (artworks scored), ``n_no_dominant``, ``n_total`` and ``rule``.
    """

    rows = _histogram_rows(hist_df_or_counts)
    missing = [k for k in pred_by_artwork if k not in rows]
    if missing:
        raise ValueError(
            f"{len(missing)} predicted artwork(s) have no emotion histogram (first: {missing[:3]}); "
            "expected every key of pred_by_artwork among the histogram keys"
        )
    keys = list(pred_by_artwork)
    gold = [dominant_emotion(rows[k], rule=rule) for k in keys]
    pred = [pred_by_artwork[k] for k in keys]
    n = sum(g is not None for g in gold)
    return {
        "accuracy": emotion_accuracy(pred, gold),
        "n": n,
        "n_no_dominant": len(keys) - n,
        "n_total": len(keys),
        "rule": rule,
    }


def majority_label(train_labels: Iterable[str]) -> str:
    """The most frequent training label (ties broken by ``EMOTIONS`` order)."""
    counts = Counter(_as_gold(label, f"training label {i}") for i, label in enumerate(train_labels, start=1))
    counts.pop(None, None)
    if not counts:
        raise ValueError("majority_label: no training labels")
    return max(EMOTIONS, key=lambda e: (counts.get(e, 0), -EMOTION_TO_IDX[e]))


def majority_baseline(train_labels: Iterable[str], gold: Sequence[str | None]) -> float:
    """Accuracy of always predicting the most frequent training label (:func:`majority_label`)."""
    label = majority_label(train_labels)
    return emotion_accuracy([label] * len(gold), gold)


class _Predictor(Protocol):
    def predict(self, texts: Sequence[str]) -> list[str]: ...


def emo_align(
    classifier: _Predictor, explanations: Sequence[str], dominant_emotions: Sequence[str | None]
) -> float:
    """Emo-Align: share of generated explanations whose classifier label equals the artwork's dominant
    emotion (artworks without one excluded; ``nan`` if none is left)."""
    if len(explanations) != len(dominant_emotions):
        raise ValueError(
            f"{len(explanations)} explanations but {len(dominant_emotions)} dominant emotions: expected the same number"
        )
    return emotion_accuracy(classifier.predict(list(explanations)), dominant_emotions)


# ---------------------------------------------------------------------------------------------------------
# VAD error
# ---------------------------------------------------------------------------------------------------------


class _VADLexicon(Protocol):
    def vad(self, word: str) -> tuple[float, float, float] | None: ...
    def words(self, text: str) -> list[str]: ...
    def mean_vad(self, text: str) -> tuple[float, float, float] | None: ...


@dataclass(frozen=True)
class VADErrorReport:
    """:func:`vad_error_report`'s result. ``per_item``: the distance of each item, ``None`` where skipped."""

    error: float
    n_scored: int
    n_skipped: int
    per_item: tuple[float | None, ...] = field(repr=False)


def _pooled_vad(lexicon: _VADLexicon, texts: Sequence[str]) -> np.ndarray | None:
    """Mean VAD over all known words of all ``texts`` (each word counts once per occurrence)."""
    known = [v for t in texts for w in lexicon.words(t) if (v := lexicon.vad(w)) is not None]
    return np.asarray(known, dtype=np.float64).mean(axis=0) if known else None


def vad_error_report(
    generated: Sequence[str], references: Sequence[Sequence[str]], lexicon: _VADLexicon
) -> VADErrorReport:
    """Mean over items of ``mean(|VAD(generated) - VAD(references)|)`` over the three dimensions.

    VAD(generated) is ``lexicon.mean_vad`` of the explanation; VAD(references) is the mean over all known
    words of all the artwork's references pooled. The distance is the L1 distance divided by 3 (mean
    absolute difference per dimension, on the lexicon's scale, -1..1 for the course's lexicons). Items
    where either side has no known word are skipped and counted in ``n_skipped``.
    """
    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated texts but {len(references)} reference lists")
    per_item: list[float | None] = []
    for i, (text, refs) in enumerate(zip(generated, references, strict=True), start=1):
        if isinstance(refs, str):
            raise ValueError(f"references of item {i}: expected a list of strings, got a single string")
        gen = lexicon.mean_vad(text)
        ref = _pooled_vad(lexicon, refs)
        if gen is None or ref is None:
            per_item.append(None)
        else:
            per_item.append(float(np.abs(np.asarray(gen, dtype=np.float64) - ref).mean()))
    scored = [d for d in per_item if d is not None]
    return VADErrorReport(
        error=float(np.mean(scored)) if scored else float("nan"),
        n_scored=len(scored),
        n_skipped=len(per_item) - len(scored),
        per_item=tuple(per_item),
    )


def vad_error(generated: Sequence[str], references: Sequence[Sequence[str]], lexicon: _VADLexicon) -> float:
    """The ``error`` of :func:`vad_error_report` (``nan`` when every item is skipped)."""
    return vad_error_report(generated, references, lexicon).error


# ---------------------------------------------------------------------------------------------------------
# Diversity and seed summaries
# ---------------------------------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Lowercase with whitespace collapsed: how :func:`diversity` compares texts."""
    return " ".join(text.lower().split())


def diversity(generated: Sequence[str], training_utterances: Iterable[str]) -> dict[str, float]:
    """``distinct`` (distinct explanations / all), ``novelty`` (share of explanations not found verbatim
    among the training utterances), ``mean_length`` (whitespace words) and ``n``. Texts are compared after
    :func:`normalize_text`."""
    if len(generated) == 0:
        raise ValueError("diversity: no generated texts")
    for i, t in enumerate(generated, start=1):
        if not isinstance(t, str):
            raise ValueError(f"generated text {i}: expected a string, got {type(t).__name__}")
    normed = [normalize_text(t) for t in generated]
    train = {normalize_text(t) for t in training_utterances}
    return {
        "distinct": len(set(normed)) / len(normed),
        "novelty": sum(t not in train for t in normed) / len(normed),
        "mean_length": float(np.mean([len(t.split()) for t in normed])),
        "n": len(normed),
    }
