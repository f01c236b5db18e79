"""Simple baselines that show what is learnable from the data before any deep model is trained.

- an **image-only emotion classifier**: colour-histogram features (:func:`color_histogram_features`) and a
  seeded multinomial logistic regression (:func:`fit_logistic_regression`), scored on the dominant emotion
  of test artworks against the majority class (:func:`image_only_accuracy`);
- the **valence of explanation words** for positive versus negative emotions
  (:func:`explanation_valence_by_group`).

On ArtEmis-mini the first shows that pictures carry emotional signal without making the task trivial; the
second that the words of an explanation follow its emotion's valence, the thread SEVLM's VAD path uses.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from sevlm_lib.data.artemis import (
    ImageResolver,
    dominant_emotions,
    emotion_histograms,
    open_image,
    split_artemis,
    to_rgb,
)
from sevlm_lib.emotions import EMOTION_TO_IDX, EMOTIONS, NEGATIVE_EMOTIONS, POSITIVE_EMOTIONS

if TYPE_CHECKING:
    import pandas as pd

    from sevlm_lib.vad import Lexicon


# ---------------------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------------------


def _as_rgb_array(image: Any, index: int) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(to_rgb(image, f"image {index}"))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"image {index}: expected a PIL image or a uint8 array of shape [H, W, 3], "
            f"got dtype {array.dtype} and shape {array.shape}"
        )
    return array


def color_histogram_features(images: Iterable[Image.Image | np.ndarray], bins: int = 8) -> np.ndarray:
    """Colour features of each image, ``[N, 6 * bins + 4]`` float64.

    Per image: normalised per-channel histograms (``bins`` bins each, summing to 1 per channel) of HSV hue,
    saturation and value, then of R, G and B; then the mean value (brightness), the mean saturation, the
    standard deviation of the value and the mean hue-weighted saturation "colourfulness" (mean of
    saturation * value). HSV comes from PIL (``Image.convert("HSV")``, all channels 0..255).
    Images are PIL images (any mode; converted to RGB) or ``uint8`` arrays ``[H, W, 3]`` in RGB.
    """

    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    rows = []
    for i, image in enumerate(images):
        rgb = _as_rgb_array(image, i)
        hsv = np.asarray(Image.fromarray(rgb, "RGB").convert("HSV")).reshape(-1, 3)
        flat = rgb.reshape(-1, 3)
        n = flat.shape[0]
        # bin k of ``bins`` equal-width bins over 0..255: value * bins // 256
        parts = [
            np.bincount(ch.astype(np.int64) * bins // 256, minlength=bins) / n for ch in (*hsv.T, *flat.T)
        ]
        s, v = hsv[:, 1] / 255.0, hsv[:, 2] / 255.0
        parts.append(np.array([v.mean(), s.mean(), v.std(), (s * v).mean()]))
        rows.append(np.concatenate(parts))
    if not rows:
        return np.zeros((0, 6 * bins + 4))
    return np.stack(rows)


# ---------------------------------------------------------------------------------------------------------
# Logistic regression
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogisticModel:
    """A fitted multinomial logistic regression on standardised features."""

    mean: np.ndarray  # [D]
    scale: np.ndarray  # [D]
    weights: np.ndarray  # [D, C]
    bias: np.ndarray  # [C]

    @property
    def n_classes(self) -> int:
        return int(self.bias.shape[0])

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Class scores ``[N, C]``."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected features of shape [N, {self.mean.shape[0]}], got {X.shape}")
        return ((X - self.mean) / self.scale) @ self.weights + self.bias


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_logistic_regression(
    X: np.ndarray,
    y: Sequence[int] | np.ndarray,
    n_classes: int,
    *,
    l2: float = 1e-2,
    seed: int = 0,
    epochs: int = 500,
    lr: float = 0.5,
    sample_weight: Sequence[float] | np.ndarray | None = None,
) -> LogisticModel:
    """Fit softmax regression by full-batch gradient descent with Nesterov momentum (numpy, float64).

    ``y`` holds ``N`` integer labels in ``0..n_classes-1``, or an ``[N, n_classes]`` matrix of soft labels
    (rows summing to 1, e.g. an artwork's annotator label distribution). Features are standardised with the
    training mean and standard deviation (constant features keep scale 1). Loss: ``sample_weight``-weighted
    mean cross-entropy + ``l2 / 2 * ||W||^2`` (bias not penalised). Weights start at small
    ``default_rng(seed)`` normal values; the result is deterministic for a given input, seed and number of
    BLAS threads (the products are BLAS matrix products: about 4x faster than ``np.einsum``'s loops on the
    1,024-wide probe features; a different thread count can move the weights in the 14th digit).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"expected a non-empty [N, D] feature matrix, got shape {X.shape}")
    if y.ndim == 2:
        if y.shape != (X.shape[0], n_classes) or (y < 0).any() or not np.allclose(y.sum(axis=1), 1.0):
            raise ValueError(
                f"soft labels must be an [{X.shape[0]}, {n_classes}] matrix of rows summing to 1, got {y.shape}"
            )
        targets = y.astype(np.float64)
    else:
        if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"expected {X.shape[0]} integer labels, got shape {y.shape} and dtype {y.dtype}")
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"labels must be in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
        targets = np.eye(n_classes)[y]
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (len(X),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("sample_weight must be non-negative, one per row, not all zero")
    w = w / w.sum()
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-12] = 1.0
    Z = (X - mean) / scale
    Zt = np.ascontiguousarray(Z.T)
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, 0.01, (X.shape[1], n_classes))
    b = np.zeros(n_classes)
    vW, vb = np.zeros_like(W), np.zeros_like(b)
    momentum = 0.9
    for _ in range(epochs):
        lookW, lookb = W + momentum * vW, b + momentum * vb
        grad_logits = (_softmax(Z @ lookW + lookb) - targets) * w[:, None]
        gW = Zt @ grad_logits + l2 * lookW
        gb = grad_logits.sum(axis=0)
        vW = momentum * vW - lr * gW
        vb = momentum * vb - lr * gb
        W, b = W + vW, b + vb
    if not (np.isfinite(W).all() and np.isfinite(b).all()):  # diverged: the predictions would mean nothing
        raise FloatingPointError(
            f"fit_logistic_regression diverged (weights not finite) with lr={lr}, l2={l2}: "
            f"lower lr (about 1 / (1 + l2) is safe on standardised features)"
        )
    return LogisticModel(mean=mean, scale=scale, weights=W, bias=b)


def predict_proba(model: LogisticModel, X: np.ndarray) -> np.ndarray:
    """Class probabilities ``[N, C]``."""
    return _softmax(model.logits(X))


def predict(model: LogisticModel, X: np.ndarray) -> np.ndarray:
    """The most probable class per row, ``[N]`` int64 (ties go to the lower index)."""
    return np.argmax(model.logits(X), axis=1).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Image-only accuracy on the dominant emotion
# ---------------------------------------------------------------------------------------------------------


def image_only_accuracy(
    df: pd.DataFrame,
    image_root: str | os.PathLike[str],
    *,
    split_seed: int = 2021,
    fractions: tuple[float, float, float] = (0.85, 0.05, 0.10),
    rule: str = "artemis",
    train_on: str = "annotations",
    bins: int = 8,
    l2: float = 1e-2,
    seed: int = 0,
    epochs: int = 500,
) -> dict[str, Any]:
    """Train a colour-histogram classifier on train artworks and score it on test artworks' dominant emotion.

    ``df`` is an ArtEmis-format frame (``load_artemis``); it is split by artwork with ``split_artemis`` (the
    ``rest`` split is not used). ``train_on="annotations"`` fits one example per annotation (the image's
    features with that annotator's emotion, i.e. the artwork's label distribution);
    ``train_on="dominant"`` only train artworks with a dominant emotion, labelled with it. The test set is
    the test artworks that have a dominant emotion under ``rule``. ``majority_acc`` is the accuracy of
    always answering the most common dominant emotion of the train artworks.
    Returns ``{image_only_acc, majority_acc, majority_emotion, n_train, n_test}`` (``n_*`` count artworks).
    """

    if train_on not in ("annotations", "dominant"):
        raise ValueError(f"train_on must be 'annotations' or 'dominant', got {train_on!r}")
    split = split_artemis(df, seed=split_seed, fractions=fractions)
    hist = emotion_histograms(split)
    splits = split.groupby(["art_style", "painting"], sort=True)["split"].first().reset_index(drop=True)
    dominant = dominant_emotions(hist, rule=rule)
    train = (splits == "train").to_numpy()
    test = (splits == "test").to_numpy() & dominant.notna().to_numpy()
    train_dominant = train & dominant.notna().to_numpy()
    if not train_dominant.any() or not test.any():
        raise ValueError(
            f"image_only_accuracy: need train and test artworks with a dominant emotion; got "
            f"{int(train_dominant.sum())} train and {int(test.sum())} test"
        )
    resolver = ImageResolver(image_root)
    paths = resolver.check(hist.loc[train | test, ["art_style", "painting"]])
    needed = np.flatnonzero(train | test)
    features = {}
    keys = [(hist.at[i, "art_style"], hist.at[i, "painting"]) for i in needed]
    feats = color_histogram_features((open_image(paths[k]) for k in keys), bins=bins)
    for i, row in zip(needed, feats, strict=True):
        features[int(i)] = row
    counts = hist[list(EMOTIONS)].to_numpy()
    if train_on == "annotations":
        # one row per artwork with its label distribution as soft target, weighted by its number of votes:
        # the same loss as one row per annotation, with fewer rows
        idx = np.flatnonzero(train)
        X_train = np.stack([features[int(i)] for i in idx])
        votes = counts[idx].sum(axis=1)
        y_train: np.ndarray = counts[idx] / votes[:, None]
        weight = votes.astype(np.float64)
    else:
        idx = np.flatnonzero(train_dominant)
        X_train = np.stack([features[int(i)] for i in idx])
        y_train = np.asarray([EMOTION_TO_IDX[e] for e in dominant.iloc[idx]], dtype=np.int64)
        weight = None
    model = fit_logistic_regression(
        X_train, y_train, len(EMOTIONS), l2=l2, seed=seed, epochs=epochs, sample_weight=weight
    )
    test_idx = np.flatnonzero(test)
    X_test = np.stack([features[int(i)] for i in test_idx])
    y_test = np.asarray([EMOTION_TO_IDX[e] for e in dominant.iloc[test_idx]], dtype=np.int64)
    train_labels = np.asarray([EMOTION_TO_IDX[e] for e in dominant[train_dominant]], dtype=np.int64)
    majority = int(np.bincount(train_labels, minlength=len(EMOTIONS)).argmax())
    return {
        "image_only_acc": float(np.mean(predict(model, X_test) == y_test)),
        "majority_acc": float(np.mean(y_test == majority)),
        "majority_emotion": EMOTIONS[majority],
        "n_train": int(train.sum()),
        "n_test": int(test.sum()),
    }


# ---------------------------------------------------------------------------------------------------------
# Words: valence of explanations by emotion group
# ---------------------------------------------------------------------------------------------------------


def _utterance_valence(texts: Iterable[str], lexicon: Lexicon) -> np.ndarray:

    word_re = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
    memo: dict[str, float | None] = {}
    out = []
    for text in texts:
        values = []
        for word in word_re.findall(str(text).lower()):
            if word not in memo:
                vad = lexicon.vad(word)
                memo[word] = None if vad is None else float(vad[0])
            if memo[word] is not None:
                values.append(memo[word])
        out.append(np.mean(values) if values else np.nan)
    return np.asarray(out, dtype=np.float64)


def explanation_valence_by_group(df: pd.DataFrame, lexicon: Lexicon) -> dict[str, float | int]:
    """Mean valence of explanation words for positive vs negative emotions, with Cohen's d and Welch's t.

    Each utterance scores the mean lexicon valence of its words that the lexicon knows (lemma-aware
    ``lexicon.vad``); utterances with no known word are left out (counted in ``n_unscored``). Groups follow
    ``sevlm_lib.emotions`` ("something else" is in neither). Cohen's d uses the pooled standard deviation.
    """
    for column in ("emotion", "utterance"):
        if column not in df.columns:
            raise ValueError(
                f"explanation_valence_by_group: missing column {column!r}; got {list(df.columns)}"
            )
    valence = _utterance_valence(df["utterance"], lexicon)
    emotion = df["emotion"].to_numpy()
    pos_mask = np.isin(emotion, POSITIVE_EMOTIONS)
    neg_mask = np.isin(emotion, NEGATIVE_EMOTIONS)
    pos = valence[pos_mask & ~np.isnan(valence)]
    neg = valence[neg_mask & ~np.isnan(valence)]
    if len(pos) < 2 or len(neg) < 2:
        raise ValueError(
            f"need at least 2 scored utterances per group, got {len(pos)} positive and {len(neg)} negative"
        )
    m1, m2 = float(pos.mean()), float(neg.mean())
    v1, v2 = float(pos.var(ddof=1)), float(neg.var(ddof=1))
    n1, n2 = len(pos), len(neg)
    pooled = math.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2))
    se = math.sqrt(v1 / n1 + v2 / n2)
    return {
        "positive_mean": m1,
        "negative_mean": m2,
        "difference": m1 - m2,
        "cohens_d": (m1 - m2) / pooled if pooled > 0 else math.inf,
        "t_statistic": (m1 - m2) / se if se > 0 else math.inf,
        "n_positive": n1,
        "n_negative": n2,
        "n_unscored": int(np.isnan(valence[pos_mask | neg_mask]).sum()),
    }
