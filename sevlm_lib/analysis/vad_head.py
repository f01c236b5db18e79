"""Notebook 04's analysis: what the VAD head predicts under teacher forcing, next to the LM's implied VAD."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sevlm_lib.data.datasets import CaptionBatches, ImageSource
from sevlm_lib.models.heads import implied_vad
from sevlm_lib.models.sevlm import SEVLM
from sevlm_lib.text import SequenceBuilder


@torch.no_grad()
def teacher_forced_vad(
    model: SEVLM,
    builder: SequenceBuilder,
    images: ImageSource,
    items: Sequence[dict[str, str]],
    *,
    batch_size: int = 128,
    hidden: bool = False,
) -> dict[str, np.ndarray]:
    """Teacher-force ``items`` (dicts with ``art_style, painting, emotion, utterance``) through ``model`` and
    collect, at every position the VAD loss scores (next token known, in the explanation segment, real):

    ``target`` ``[M, 3]`` the next token's VAD; ``lm`` ``[M, 3]`` the VAD implied by the model's next-word
    distribution (:func:`sevlm_lib.models.heads.implied_vad`); ``head`` ``[M, 3]`` the VAD head's prediction
    (only when the model has one); ``item`` ``[M]`` the index into ``items``; ``offset`` ``[M]`` the position
    minus that of `` because`` (0: reading `` because``, predicting the explanation's first token); and
    with ``hidden=True`` the decoder's last hidden states ``hidden`` ``[M, d]``. ``images`` must match the
    model (``image_source_for(model, data)``). The model is put in eval mode.
    """

    if not items:
        raise ValueError("teacher_forced_vad: no items")
    model.eval()
    device = next(model.parameters()).device
    batches = CaptionBatches(list(items), builder, images, batch_size=batch_size, shuffle=False)
    keys = ("target", "lm", "head", "item", "offset", "hidden")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    first = 0
    for batch in batches.batches():
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(batch)
        nxt = batch["input_ids"][:, 1:]
        seg = batch["explanation_segment"]
        mask = model.token_vad_known[nxt] & seg[:, 1:] & batch["attention_mask"][:, 1:].bool()
        n, t = nxt.shape
        rows = torch.arange(first, first + n, device=device)[:, None].expand(n, t)
        offset = torch.arange(t, device=device)[None] - seg.long().argmax(1, keepdim=True)
        parts["target"].append(model.token_vad[nxt][mask])
        parts["lm"].append(implied_vad(out.logits[:, :-1], model.token_vad, model.token_vad_known)[mask])
        parts["item"].append(rows[mask])
        parts["offset"].append(offset[mask])
        if out.vad_pred is not None:
            parts["head"].append(out.vad_pred[:, :-1].float()[mask])
        if hidden:
            parts["hidden"].append(out.hidden_states[:, :-1].float()[mask])
        first += n
    return {k: torch.cat(v).cpu().numpy() for k, v in parts.items() if v}
