"""Notebook 04's positive control: the VAD head on words that are rare in training.

:func:`sevlm_lib.analysis.vad_head.teacher_forced_vad` returns one row per scored position; the helpers here
say which word each row predicts (:func:`next_token_ids`), score the head and the LM-implied VAD on groups of
next words (:func:`error_by_next_word`), count generated texts that use a set of words
(:func:`share_with_words`), and compare per-seed numbers with the course's one rule
(:func:`compare_values`, a thin wrapper of :func:`sevlm_lib.metrics.comparison.compare_variants`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from sevlm_lib.metrics.comparison import compare_variants
from sevlm_lib.text import SequenceBuilder

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def word_token_ids(tokenizer: Any, words: Iterable[str]) -> dict[str, int]:
    """``{word: token id}`` for the ``words`` that ``tokenizer`` encodes as one token after a space (as inside
    an explanation); words split into pieces are left out."""
    out: dict[str, int] = {}
    for word in words:
        ids = tokenizer.encode(" " + word, add_special_tokens=False)
        if len(ids) == 1:
            out[word] = int(ids[0])
    return out


def next_token_ids(
    builder: SequenceBuilder, items: Sequence[Mapping[str, str]], item: np.ndarray, offset: np.ndarray
) -> np.ndarray:
    """The id of the token each row of ``teacher_forced_vad(..., items)`` predicts.

    ``item`` and ``offset`` are that function's arrays of the same name: the row reads position
    ``because_pos + offset`` of annotation ``items[item]`` and predicts the token after it."""
    item, offset = np.asarray(item), np.asarray(offset)
    if item.shape != offset.shape:
        raise ValueError(f"next_token_ids: item has shape {item.shape}, offset {offset.shape}")
    encoded = [builder.encode(x["emotion"], x["utterance"]) for x in items]
    out = np.empty(len(item), dtype=np.int64)
    for k, (i, o) in enumerate(zip(item.tolist(), offset.tolist(), strict=True)):
        enc = encoded[i]
        pos = enc.because_pos + o + 1
        if not 0 < pos < len(enc.input_ids):
            raise ValueError(f"next_token_ids: row {k} points past annotation {i} (offset {o})")
        out[k] = enc.input_ids[pos]
    return out


def error_by_next_word(
    tf: Mapping[str, np.ndarray],
    next_ids: np.ndarray,
    groups: Mapping[str, Collection[int]],
    *,
    constant: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Mean squared VAD error (over rows and the 3 dimensions) of each predictor in ``tf`` (``head`` when
    present, ``lm``) at the rows whose next token is in each group of ``groups`` (token ids).

    ``constant`` (a ``[3]`` VAD) adds the error of always answering it. Each group gets ``n`` (rows) too; a
    group with no rows gets ``nan`` errors."""
    next_ids = np.asarray(next_ids)
    target = np.asarray(tf["target"])
    if len(next_ids) != len(target):
        raise ValueError(f"error_by_next_word: {len(next_ids)} next ids for {len(target)} rows")
    preds = {k: np.asarray(tf[k]) for k in ("head", "lm") if k in tf}
    if constant is not None:
        preds["constant"] = np.broadcast_to(np.asarray(constant, dtype=float), target.shape)
    out: dict[str, dict[str, float]] = {}
    for name, ids in groups.items():
        rows = np.isin(next_ids, np.fromiter(ids, dtype=np.int64, count=len(ids)))
        n = int(rows.sum())
        out[name] = {"n": n}
        for key, pred in preds.items():
            out[name][key] = float(((pred[rows] - target[rows]) ** 2).mean()) if n else float("nan")
    return out


def share_with_words(texts: Iterable[str | None], words: Collection[str]) -> float:
    """The share of ``texts`` that use at least one of ``words`` (whole words, case-insensitive; a missing
    text counts as one without them). ``nan`` for no texts."""
    vocab = {w.lower() for w in words}
    flags = [bool(vocab.intersection(_WORD.findall((t or "").lower()))) for t in texts]
    return float(np.mean(flags)) if flags else float("nan")


def compare_values(
    values: Mapping[str, Sequence[float]], a: str, b: str, metric: str, *, higher_is_better: bool = True
) -> dict[str, Any]:
    """:func:`~sevlm_lib.metrics.comparison.compare_variants` on per-seed numbers: ``values[name]`` lists one
    number per seed (e.g. ``{"baseline": [...], "+head": [...]}``)."""
    rows = [{"variant": name, metric: float(v)} for name in (a, b) for v in values[name]]
    return compare_variants(rows, a, b, metric, higher_is_better=higher_is_better)
