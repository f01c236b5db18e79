"""Notebook 07's comparison: the image-only classifier, the Show-Attend-Tell speaker's predictions, cached
comparison rows over variants and seeds, and cross-attention maps."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sevlm_lib.baselines import color_histogram_features, fit_logistic_regression, predict_proba
from sevlm_lib.data.datasets import ArtworkKey
from sevlm_lib.emotions import EMOTIONS
from sevlm_lib.generation import generate
from sevlm_lib.metrics import CaptionScorer
from sevlm_lib.models.sat import SATSpeaker
from sevlm_lib.models.sevlm import SEVLM
from sevlm_lib.pipeline import (
    CourseData,
    TrainedModel,
    artwork_images,
    evaluate_model,
    generate_for_split,
    image_source_for,
    jsonable,
    saved_predictions,
)
from sevlm_lib.text import SequenceBuilder


def seeds_table(rows: Sequence[dict[str, Any]], metrics_: Sequence[str]) -> pd.DataFrame:
    """Mean and std over seeds per variant: rows of ``{"variant":..., "seed":..., metric: value}``."""
    df = pd.DataFrame(rows)
    agg = df.groupby("variant", sort=False)[list(metrics_)].agg(["mean", "std"])
    return agg


@dataclass
class ImageOnlyClassifier:
    """Colour histograms + logistic regression (``sevlm_lib.baselines``): an image-to-emotion classifier.

    Trained like ``baselines.image_only_accuracy(train_on="annotations")``: one row per training artwork with
    its annotators' emotion distribution as the soft target, weighted by its number of votes.
    """

    model: Any
    bins: int = 8

    def predict_proba(self, images: Sequence[Any]) -> np.ndarray:
        """``[len(images), 9]`` emotion probabilities (``EMOTIONS`` order) for PIL images or RGB arrays."""

        return predict_proba(self.model, color_histogram_features(images, bins=self.bins))

    def predict(self, images: Sequence[Any]) -> list[str]:
        return [EMOTIONS[i] for i in self.predict_proba(images).argmax(axis=1)]


def image_histograms(data: CourseData, split: str, *, bins: int = 8) -> tuple[list[ArtworkKey], np.ndarray]:
    """The artworks of a split and their colour-histogram features (``baselines.color_histogram_features``)."""

    keys = data.artwork_keys(split)
    return keys, color_histogram_features(artwork_images(data, keys), bins=bins)


def train_image_only_classifier(
    data: CourseData,
    seed: int = 0,
    *,
    bins: int = 8,
    l2: float = 1e-2,
    epochs: int = 500,
    train_features: tuple[list[ArtworkKey], np.ndarray] | None = None,
) -> ImageOnlyClassifier:
    """Fit the image-only classifier on the training artworks of ``data`` (``train_features``: the result of
    ``image_histograms(data, "train", bins=bins)``, to reuse across seeds)."""

    keys, features = (
        train_features if train_features is not None else image_histograms(data, "train", bins=bins)
    )
    rows = data.artworks.set_index(["art_style", "painting"]).loc[keys]
    if (rows["split"] != "train").any() or len(features) != len(keys):
        raise ValueError(
            "train_features must be image_histograms(data, 'train'): one row per training artwork"
        )
    counts = rows[list(EMOTIONS)].to_numpy(dtype=np.float64)
    votes = counts.sum(axis=1)
    model = fit_logistic_regression(
        features, counts / votes[:, None], len(EMOTIONS), l2=l2, seed=seed, epochs=epochs, sample_weight=votes
    )
    return ImageOnlyClassifier(model, bins)


def sat_predictions(
    model: Any,
    data: CourseData,
    split: str = "test",
    *,
    grounding: ImageOnlyClassifier,
    max_new_tokens: int = 25,
    batch_size: int = 128,
) -> pd.DataFrame:
    """Greedy SAT explanations for every artwork of a split, each grounded on the emotion ``grounding``
    predicts from the image (as ArtEmis does at test time). Same columns as :func:`generate_for_split`."""
    keys = data.artwork_keys(split)
    probs = grounding.predict_proba(artwork_images(data, keys))
    source = image_source_for(model, data)
    device = next(model.parameters()).device
    rows: list[dict[str, Any]] = []
    for i in range(0, len(keys), batch_size):
        chunk = keys[i : i + batch_size]
        batch = {k: v.to(device) for k, v in source.batch(chunk).items()}
        emotions = torch.as_tensor(probs[i : i + len(chunk)].argmax(axis=1), device=device)
        gen = model.generate(batch, emotions, max_new_tokens=max_new_tokens)
        for k, ids, e, pr in zip(
            chunk, gen.token_ids, emotions.tolist(), probs[i : i + len(chunk)], strict=True
        ):
            emotion = EMOTIONS[e]
            explanation = data.builder.decode(ids)
            rows.append(
                {
                    "art_style": k[0],
                    "painting": k[1],
                    "text": f"{emotion} because {explanation}",
                    "emotion": emotion,
                    "explanation": explanation,
                    "has_because": True,
                    "p_max_emotion": emotion,
                    **{f"p_{x}": float(p) for x, p in zip(EMOTIONS, pr, strict=True)},
                }
            )
    return pd.DataFrame(rows)


class MemoCaptionScorer(CaptionScorer):
    """A :class:`sevlm_lib.metrics.CaptionScorer` that remembers each text's tokenization.

    With the PTB tokenizer every :meth:`score` call starts Java to tokenize the predictions *and* all the
    references; when many models are scored against the same references, :meth:`tokenize` them all once
    (one Java start) and later calls only look them up. PTB tokenizes each caption on its own, so the result
    is the same as tokenizing every call afresh.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._memo: dict[str, str] = {}

    def tokenize(self, texts: Sequence[str]) -> list[str]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            self._memo.update(zip(todo, super().tokenize(todo), strict=True))
        return [self._memo[t] for t in texts]


def _grounding_id(grounding: ImageOnlyClassifier) -> str:
    """A short hash of an image-only classifier's weights (SAT predictions depend on them)."""
    m = grounding.model
    h = hashlib.sha256()
    for array in (m.mean, m.scale, m.weights, m.bias):
        h.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return f"colour-histogram-lr-{grounding.bins}-{h.hexdigest()[:12]}"


def _scorer_tag(scorer: Any) -> str:
    meteor = getattr(scorer, "meteor_unavailable", "off") is None
    return f"{scorer.tokenizer}{'-meteor' if meteor else ''}"


def evaluate_runs(
    data: CourseData,
    runs: Sequence[TrainedModel],
    *,
    scorer: Any,
    classifier: Any,
    split: str = "test",
    grounding: dict[int, ImageOnlyClassifier] | None = None,
    max_new_tokens: int = 25,
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Rows of the comparison table (metrics of :func:`evaluate_model`, plus ``model``, ``seed``,
    ``train_seconds``, ``n_params``) and predictions of trained SEVLM variants and SAT speakers, all scored
    by one ``scorer`` (so one METEOR JVM; texts are tokenized together first when the scorer remembers
    tokenizations, see :class:`MemoCaptionScorer`). SAT runs need ``grounding[seed]``: the image-to-emotion
    classifier whose emotion the speaker explains.

    Each result is cached in ``{runs_dir}/eval/{name}/seed-{seed}-{tokenizer}[-meteor].json`` with its
    predictions, keyed by the run's training fingerprint, the data, the split and the scorer.
    """

    tag = _scorer_tag(scorer)
    results: list[tuple[dict[str, Any], pd.DataFrame] | None] = []
    pending: list[tuple[int, Path, dict[str, Any], pd.DataFrame]] = []
    for i, trained in enumerate(runs):
        is_sat = isinstance(trained.model, SATSpeaker)
        if is_sat and (grounding is None or trained.seed not in grounding):
            raise ValueError(
                f"evaluate_runs: SAT run {trained.name} seed {trained.seed} needs grounding[{trained.seed}]"
            )
        cache = data.settings.runs_dir / "eval" / trained.name / f"seed-{trained.seed}-{tag}.json"
        key = {
            "data": data.fingerprint,
            "run": getattr(trained.history, "fingerprint", None),
            "split": split,
            "scorer": tag,
            "classifier": type(classifier).__name__ if classifier is not None else None,
            "grounding": _grounding_id(grounding[trained.seed]) if is_sat else None,  # type: ignore[index]
            "max_new_tokens": max_new_tokens,
        }
        if cache.is_file():
            saved = json.loads(cache.read_text())
            if saved.get("key") == key:
                results.append((saved["row"], pd.DataFrame(saved["predictions"])))
                continue
        if is_sat:
            preds = sat_predictions(
                trained.model,
                data,
                split,
                grounding=grounding[trained.seed],  # type: ignore[index]
                max_new_tokens=max_new_tokens,
            )
        else:  # decoded once: train_and_evaluate's saved predictions of this very run, when there are any
            preds = saved_predictions(data, trained, split, max_new_tokens)
            if preds is None:
                preds = generate_for_split(trained.model, data, split, max_new_tokens=max_new_tokens)
        results.append(None)
        pending.append((i, cache, key, preds))
    if pending and isinstance(scorer, MemoCaptionScorer):
        refs = [r for rs in data.references(split).values() for r in rs]
        scorer.tokenize([*refs, *(e or "" for *_, p in pending for e in p["explanation"])])
    for i, cache, key, preds in pending:
        trained = runs[i]
        metrics, _ = evaluate_model(
            trained.model, data, split, scorer=scorer, classifier=classifier, predictions=preds
        )
        row = {
            "model": trained.name,
            "seed": trained.seed,
            "train_seconds": trained.train_seconds,
            "n_params": trained.model.count_parameters()["trainable"],
            **metrics,
        }
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".json.tmp")
        tmp.write_text(
            json.dumps(
                {"key": key, "row": row, "predictions": preds.to_dict(orient="records")}, default=jsonable
            )
        )
        tmp.replace(cache)
        results[i] = (row, preds)
    return [r for r in results if r is not None]


@torch.no_grad()
def cross_attention_maps(
    model: SEVLM,
    builder: SequenceBuilder,
    batch: dict[str, torch.Tensor],
    max_new_tokens: int = 25,
    *,
    average: bool = True,
) -> tuple[list[str], torch.Tensor]:
    """Greedy-decode one image and return each generated token (as text) with the cross-attention over the
    image patches that produced it: ``[n_tokens, P]``, averaged over layers and heads (``average=False``:
    ``[layers, heads, n_tokens, P]``).

    The generated sequence is run again in one teacher-forced pass with ``output_attentions=True``
    (eager attention, which returns the weights); the map of token ``k`` is the attention of the position
    before it, the one whose output predicted it.
    """

    if next(iter(batch.values())).shape[0] != 1:
        raise ValueError("cross_attention_maps: pass a batch with exactly one image")
    gen = generate(model, builder, batch, max_new_tokens=max_new_tokens)
    new = gen.token_ids[0]
    ids = [*builder.prompt_ids, *new]
    because = builder.because_ids[-1]
    switch = len(builder.prompt_ids) + new.index(because) if because in new else len(ids)
    device = next(model.decoder.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    expl = torch.zeros_like(input_ids, dtype=torch.bool)
    expl[:, switch:] = True
    seg = torch.where(expl, builder.explanation_segment_id, builder.emotion_segment_id)
    was_training = model.training
    impl = model.decoder.config._attn_implementation
    model.eval()
    try:
        if impl != "eager":
            model.decoder.set_attn_implementation("eager")
        memory = model.encode_images({k: v.to(device) for k, v in batch.items()})
        out = model.decode(model.embed(input_ids, seg, expl), memory, output_attentions=True)
    finally:
        if impl != "eager":
            model.decoder.set_attn_implementation(impl)
        model.train(was_training)
    if out.cross_attentions is None:
        raise RuntimeError("the decoder returned no cross-attention weights")
    maps = torch.stack(list(out.cross_attentions))[:, 0]  # [layers, heads, T, P]
    start = len(builder.prompt_ids) - 1
    maps = maps[:, :, start : start + len(new)].cpu()
    words = [builder.tokenizer.decode([t]).strip() for t in new]
    return words, maps.mean(dim=(0, 1)) if average else maps
