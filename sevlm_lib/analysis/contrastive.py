"""Notebook 05's analysis: the embeddings the contrastive head scores, for pairs of annotations and single
sequences, and how often the head rejects three control negatives (:func:`control_rejection`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from sevlm_lib.data.artemis import ArtworkAnnotations, sample_pair
from sevlm_lib.data.datasets import ArtworkKey, ImageSource
from sevlm_lib.models.heads import derangement, masked_mean
from sevlm_lib.models.negatives import splice_sequences
from sevlm_lib.models.sevlm import SEVLM
from sevlm_lib.pipeline import CourseData, image_source_for


@dataclass
class PairEmbeddings:
    """The contrastive head's three embeddings for every sequence of a split's two-annotation items.

    ``image``, ``emotion``, ``explanation``: ``[N, d]`` (the image embedding repeated for both sequences of an
    artwork); ``table``: one row per sequence (``art_style, painting, slot, emotion, utterance, dominant,
    batch``); ``scores``: the head's ``pos``, ``neg_emotion`` and ``neg_visual`` scores ``[N]`` when the model
    has a contrastive head, else ``None``.
    """

    image: torch.Tensor
    emotion: torch.Tensor
    explanation: torch.Tensor
    table: pd.DataFrame
    scores: dict[str, torch.Tensor] | None = None


def _split_pair_batches(
    model: SEVLM,
    data: CourseData,
    split: str,
    batch_size: int,
    seed: int,
    images: ImageSource | None,
    caller: str,
) -> Iterator[tuple[int, list[ArtworkAnnotations], list[Any], dict[str, torch.Tensor]]]:
    """``(b, artworks, their two annotations, batch on the model's device)`` for every pair batch of ``split``:
    pairs drawn with ``np.random.default_rng(seed)``, a last batch of one artwork joined to the one before.
    Puts the model in eval mode."""
    items = data.pair_items(split)
    if len(items) < 2:
        raise ValueError(f"{caller}: split {split!r} has {len(items)} artworks with two distinct emotions; need 2+")
    if batch_size < 2:
        raise ValueError(f"{caller}: batch_size={batch_size}, need at least 2 artworks per batch")
    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if len(chunks[-1]) == 1:
        lone = chunks.pop()
        chunks[-1] = chunks[-1] + lone
    model.eval()
    device = next(model.decoder.parameters()).device
    source = images if images is not None else image_source_for(model, data)
    rng = np.random.default_rng(seed)
    for b, chunk in enumerate(chunks):
        pairs = [sample_pair(it, rng) for it in chunk]
        batch = data.builder.collate([data.builder.encode(e, u) for pair in pairs for e, u in pair])
        batch.update(source.batch([(it.art_style, it.painting) for it in chunk]))
        batch["image_index"] = torch.arange(len(chunk)).repeat_interleave(2)
        batch["pair_index"] = torch.arange(2 * len(chunk)) ^ 1
        yield b, list(chunk), pairs, {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def pair_embeddings(
    model: SEVLM,
    data: CourseData,
    split: str = "test",
    *,
    batch_size: int = 32,
    seed: int = 0,
    images: ImageSource | None = None,
) -> PairEmbeddings:
    """Teacher-force every two-annotation item of ``split`` and collect the contrastive head's embeddings.

    Items come in ``pair_items`` order; each artwork's two annotations are drawn with
    ``np.random.default_rng(seed)`` (as in training, two different emotions) and batched like
    :class:`PairBatches` (``[a0, a0', a1, a1', ...]``); a last batch of one artwork joins the one before, so
    every item is used. The negative-2 derangement of batch ``b`` is drawn with torch seed
    ``seed * 1_000_003 + b`` without touching the global random state. ``images``: the model's image source
    (``image_source_for(model, data)``, computed when not given; pass it to reuse a feature bank across
    calls). The model is put in eval mode.
    """

    dominant = dict(
        zip(
            zip(data.artworks["art_style"], data.artworks["painting"], strict=True),
            data.artworks["dominant"],
            strict=True,
        )
    )
    parts: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("image", "emotion", "explanation", "pos", "neg_emotion", "neg_visual")
    }
    rows: list[dict[str, Any]] = []
    for b, chunk, pairs, batch in _split_pair_batches(model, data, split, batch_size, seed, images, "pair_embeddings"):
        for it, pair in zip(chunk, pairs, strict=True):
            for slot, (emotion, utterance) in enumerate(pair):
                rows.append(
                    {
                        "art_style": it.art_style,
                        "painting": it.painting,
                        "slot": slot,
                        "emotion": emotion,
                        "utterance": utterance,
                        "dominant": dominant[(it.art_style, it.painting)],
                        "batch": b,
                    }
                )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + b)
            out = model(batch)
        parts["image"].append(model.encode_images(batch).mean(1)[batch["image_index"]].float().cpu())
        parts["emotion"].append(masked_mean(out.hidden_states.float(), batch["emotion_mask"]).cpu())
        parts["explanation"].append(masked_mean(out.hidden_states.float(), batch["explanation_mask"]).cpu())
        for k, v in (out.scores or {}).items():
            parts[k].append(v.float().cpu())
    scores = {k: torch.cat(parts[k]) for k in ("pos", "neg_emotion", "neg_visual") if parts[k]} or None
    return PairEmbeddings(
        torch.cat(parts["image"]),
        torch.cat(parts["emotion"]),
        torch.cat(parts["explanation"]),
        pd.DataFrame(rows),
        scores,
    )


@torch.no_grad()
def sequence_embeddings(
    model: SEVLM,
    data: CourseData,
    rows: Sequence[tuple[str, str, ArtworkKey]],
    *,
    images: ImageSource | None = None,
    batch_size: int = 64,
) -> dict[str, torch.Tensor]:
    """Teacher-force ``(emotion, utterance, artwork key)`` rows, each with its artwork's image, and return the
    contrastive head's text embeddings: ``{"emotion": [M, d], "explanation": [M, d]}`` (masked means of the
    last hidden states over the emotion words and over the explanation words).

    Any combination works, e.g. one annotation's words after another annotation's emotion, which is how
    notebook 05 tests what the head reads. ``images``: as in :func:`pair_embeddings`. Eval mode.
    """

    if not rows:
        raise ValueError("sequence_embeddings: no rows")
    model.eval()
    device = next(model.decoder.parameters()).device
    source = images if images is not None else image_source_for(model, data)
    parts: dict[str, list[torch.Tensor]] = {"emotion": [], "explanation": []}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        keys = list(dict.fromkeys(key for _, _, key in chunk))
        where = {key: i for i, key in enumerate(keys)}
        batch = data.builder.collate([data.builder.encode(e, u) for e, u, _ in chunk])
        batch.update(source.batch(keys))
        batch = {k: v.to(device) for k, v in batch.items()}
        index = torch.tensor([where[key] for _, _, key in chunk], device=device)
        memory = model.encode_images(batch)[index]
        ids, attn = batch["input_ids"], batch["attention_mask"]
        embeds = model.embed(ids, batch["segment_ids"], batch["explanation_segment"], attn)
        hidden = model.decode(embeds, memory, attn).last_hidden_state.float()
        parts["emotion"].append(masked_mean(hidden, batch["emotion_mask"]).cpu())
        parts["explanation"].append(masked_mean(hidden, batch["explanation_mask"]).cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


# ---------------------------------------------------------------------------------------------------------
# Does the head read the explanation words or the prompt? Three control negatives
# ---------------------------------------------------------------------------------------------------------


CONTROLS = ("words_swapped", "other_words", "prompt_swapped")


@torch.no_grad()
def control_scores(model: SEVLM, batch: dict[str, torch.Tensor], *, seed: int = 0) -> dict[str, torch.Tensor]:
    """The head's scores ``[N]`` for each positive triple and three control negatives of a pair batch.

    * ``words_swapped``: negative 1's words under the positive's prompt: the partner's explanation segment
      (the same artwork's other annotation, whose emotion differs) after the positive's own prompt. Only the
      words are wrong, and only in their emotion;
    * ``other_words``: the explanation segment of the same slot of another artwork (a derangement of the
      artworks drawn with ``torch.Generator().manual_seed(seed)``; ``words_from`` holds the donor rows) after
      the positive's prompt: the words are wrong in their content too, so the image can give them away;
    * ``prompt_swapped``: the positive's explanation segment under its partner's prompt: only the prompt is
      wrong.

    Each is scored as ``scorer(image, emotion embedding of the positive, explanation embedding of the control
    row)``, the row re-encoded by the decoder. A head that reads the words rejects ``words_swapped`` and is
    indifferent to ``prompt_swapped``; one that reads the prompt does the opposite.
    """
    if not getattr(model.config, "contrastive", False):
        raise ValueError("control_scores: the model has no contrastive head")
    cfg = model.config
    image_memory = model.encode_images(batch)
    index = batch["image_index"]
    memory = image_memory[index]
    n = len(index)
    image = image_memory.mean(1)[index]
    emotion, explanation = model.span_embeddings(model.text_hidden(batch, memory), batch)
    other = derangement(len(image_memory), torch.Generator().manual_seed(seed)).to(index.device)
    words_from = 2 * other[index] + torch.arange(n, device=index.device) % 2
    own = torch.arange(n, device=index.device)
    ids = {"pad_id": cfg.pad_id, "explanation_segment_id": cfg.explanation_segment_id}
    scores = {"pos": model.scorer(image, emotion, explanation), "words_from": words_from}
    for name, (prompt_rows, word_rows) in {
        "words_swapped": (own, batch["pair_index"]),
        "other_words": (own, words_from),
        "prompt_swapped": (batch["pair_index"], own),
    }.items():
        rows = splice_sequences(batch, prompt_rows, word_rows, **ids)
        control = model.span_embeddings(model.text_hidden(rows, memory), rows)[1]
        scores[name] = model.scorer(image, emotion, control)
    return scores


def control_rejection(model: SEVLM, batch: dict[str, torch.Tensor], *, seed: int = 0) -> dict[str, float]:
    """The share of a pair batch's items whose positive outscores each control negative (ties fail):
    ``{"words_swapped": .., "other_words": .., "prompt_swapped": .., "n": N}`` (see :func:`control_scores`).
    Eval mode."""
    model.eval()
    s = control_scores(model, batch, seed=seed)
    return {**{k: float((s["pos"] > s[k]).float().mean()) for k in CONTROLS}, "n": len(s["pos"])}


def split_control_rejection(
    model: SEVLM,
    data: CourseData,
    split: str = "val",
    *,
    batch_size: int = 32,
    seed: int = 0,
    images: ImageSource | None = None,
) -> dict[str, float]:
    """:func:`control_rejection` over every two-annotation item of ``split`` (batched as in
    :func:`pair_embeddings`; batch ``b``'s derangement seeded ``seed * 1_000_003 + b``), item-weighted."""
    hits = dict.fromkeys(CONTROLS, 0.0)
    total = 0
    for b, _, _, batch in _split_pair_batches(model, data, split, batch_size, seed, images, "split_control_rejection"):
        r = control_rejection(model, batch, seed=seed * 1_000_003 + b)
        for k in hits:
            hits[k] += r[k] * r["n"]
        total += int(r["n"])
    return {**{k: v / total for k, v in hits.items()}, "n": total}
