"""Spliced sequences for the contrastive head: one row's prompt followed by another row's explanation.

A sequence is ``<bos> the emotion is {emotion}`` (the *prompt*, up to the first ``<explanation>``-segment
position) followed by `` because {explanation} <eos>`` (the *explanation segment*). A causal decoder's hidden
states over the explanation words depend on both parts, so a negative encoded under its own prompt can be told
from the positive by its prompt alone. :func:`splice_sequences` builds rows that take the prompt of one
sequence and the explanation segment of another, so that only the words differ (``negative_prompt=
"positive"``), or only the prompt (the "prompt swapped" control of ``analysis.contrastive``).
"""

from __future__ import annotations

import torch

NEGATIVE_PROMPTS = ("own", "positive")

# Batch keys that hold one value per token (``vad_values`` [N, T, 3] is handled on its own).
_TOKEN_KEYS = (
    "input_ids",
    "segment_ids",
    "labels",
    "attention_mask",
    "emotion_mask",
    "explanation_mask",
    "explanation_segment",
)


def explanation_starts(explanation_segment: torch.Tensor) -> torch.Tensor:
    """The first ``<explanation>``-segment position (`` because``) of each row of ``[N, T]`` bool, ``[N]``."""
    seg = explanation_segment.bool()
    if not bool(seg.any(1).all()):
        raise ValueError("splice_sequences: a row has no explanation segment (no ' because' token)")
    return seg.int().argmax(1)


def splice_sequences(
    batch: dict[str, torch.Tensor],
    prompt_rows: torch.Tensor,
    word_rows: torch.Tensor,
    *,
    pad_id: int,
    explanation_segment_id: int,
) -> dict[str, torch.Tensor]:
    """Rows ``k``: the prompt of row ``prompt_rows[k]`` then the explanation segment of row ``word_rows[k]``.

    Every per-token key of ``batch`` (``input_ids``, ``segment_ids``, ``labels``, ``attention_mask``, the
    span masks, ``explanation_segment`` and ``vad_values`` when present) is spliced; padding is filled as
    ``SequenceBuilder.collate`` fills it. The result has ``max(T, longest spliced row)`` positions (a row
    whose prompt is longer than its donor's, e.g. ``something else``, can outgrow ``T``). Other keys are left
    out: the caller adds the images. ``splice_sequences(b, r, r, ...)`` is ``b``'s rows ``r`` (re-padded).
    """
    ids = batch["input_ids"]
    device = ids.device
    prompt_rows, word_rows = prompt_rows.to(device), word_rows.to(device)
    starts = explanation_starts(batch["explanation_segment"])
    lengths = batch["attention_mask"].bool().sum(1)
    head = starts[prompt_rows]  # prompt length of each new row
    tail_start = starts[word_rows]
    new_len = head + lengths[word_rows] - tail_start
    t = max(int(new_len.max()), ids.shape[1])
    pos = torch.arange(t, device=device)[None]  # [1, t]
    from_prompt = pos < head[:, None]
    src_row = torch.where(from_prompt, prompt_rows[:, None], word_rows[:, None])
    src_pos = torch.where(from_prompt, pos, pos - head[:, None] + tail_start[:, None])
    valid = pos < new_len[:, None]
    src_pos = src_pos.clamp(0, ids.shape[1] - 1)
    fills = {
        "input_ids": pad_id,
        "segment_ids": explanation_segment_id,
        "labels": -100,
        "attention_mask": 0,
        "emotion_mask": False,
        "explanation_mask": False,
        "explanation_segment": False,
    }
    out: dict[str, torch.Tensor] = {}
    for key in _TOKEN_KEYS:
        src = batch[key][src_row, src_pos]
        out[key] = torch.where(valid, src, torch.full_like(src, fills[key]))
    if "vad_values" in batch:
        vad = batch["vad_values"][src_row, src_pos]
        out["vad_values"] = vad * valid[..., None].to(vad.dtype)
    return out


def negative_one_rows(
    batch: dict[str, torch.Tensor], negative_prompt: str, *, pad_id: int, explanation_segment_id: int
) -> dict[str, torch.Tensor]:
    """The token rows that encode negative 1 (the same artwork's other explanation) for every sequence.

    ``"own"`` (the paper's): the partner sequence itself, under its own prompt (its own emotion).
    ``"positive"``: the partner's explanation segment under the positive's prompt, so only the words differ.
    """
    if negative_prompt not in NEGATIVE_PROMPTS:
        raise ValueError(f"negative_prompt={negative_prompt!r}: expected one of {', '.join(NEGATIVE_PROMPTS)}")
    partner = batch["pair_index"]
    own = torch.arange(len(partner), device=partner.device)
    prompt_rows = partner if negative_prompt == "own" else own
    return splice_sequences(
        batch, prompt_rows, partner, pad_id=pad_id, explanation_segment_id=explanation_segment_id
    )
