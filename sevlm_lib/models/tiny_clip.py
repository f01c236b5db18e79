"""A tiny CLIP for the tiny profile: the small vision tower paired with a small text encoder, and CLIP's
symmetric contrastive loss.

CLIP (Radford et al., 2021) trains an image encoder and a text encoder so that an image and its caption land
close together and away from the other captions of the batch. Here the pair is:

* **image side**: the course's tiny tower (:class:`~sevlm_lib.models.vision.VisionEncoder`), its patch
  features averaged over the patches (the same mean-patch vector the contrastive head uses as the image
  embedding), then a linear projection to the shared space. Averaging rather than CLIP's CLS token: SEVLM
  never reads the CLS token (the tower returns patch tokens only), so the pre-training shapes exactly the
  features the captioner reads;
* **text side**: a bag of words over the course tokenizer: token embeddings averaged over the real tokens
  (padding ignored), a layer norm and a linear projection (:class:`TinyTextEncoder`).

Pure torch: nothing here reads or writes files (``sevlm_lib.tower`` trains and caches it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sevlm_lib.models.checks import check_sizes
from sevlm_lib.models.vision import VisionEncoder

# CLIP starts the temperature at 0.07 and clamps the logit scale at 100 (Radford et al., 2021, section 2.5).
INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100.0)


def clip_logits(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` similarity logits: ``exp(s) * cos(image_i, text_j)`` with ``s = clamp(logit_scale, 0,
    ln 100)``, the learnable log inverse temperature of CLIP."""
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(
            f"clip_logits: expected image and text embeddings of the same shape [B, D], got "
            f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    scale = logit_scale.clamp(0.0, MAX_LOGIT_SCALE).exp()
    return scale * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss over a batch of matching pairs (row ``i`` of each side is a pair).

    ``L = (CE(logits, I) + CE(logits^T, I)) / 2`` with ``logits = exp(s) * cos(image_i, text_j)``
    (:func:`clip_logits`): image ``i`` must pick text ``i`` among the batch's texts and text ``i`` image ``i``.
    """
    logits = clip_logits(image_emb, text_emb, logit_scale)
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@dataclass(frozen=True)
class TinyCLIPConfig:
    """Sizes of the text encoder and the shared embedding space (the tower has its own ``VisionConfig``)."""

    vocab_size: int
    pad_token_id: int
    text_width: int = 128
    embed_dim: int = 64

    def __post_init__(self) -> None:
        check_sizes(self, ("vocab_size", "text_width", "embed_dim"))
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"TinyCLIPConfig.pad_token_id={self.pad_token_id}: expected a token id in 0..{self.vocab_size - 1}"
            )


class TinyTextEncoder(nn.Module):
    """Bag of words: ``forward(input_ids [B, T], attention_mask [B, T]) -> [B, embed_dim]``."""

    def __init__(self, config: TinyCLIPConfig):
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.text_width, padding_idx=config.pad_token_id)
        self.norm = nn.LayerNorm(config.text_width)
        self.proj = nn.Linear(config.text_width, config.embed_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(self.embed.weight.dtype).unsqueeze(-1)
        count = mask.sum(dim=1)
        if (count == 0).any():
            raise ValueError("TinyTextEncoder: a text has no real token (attention_mask all zero)")
        mean = (self.embed(input_ids) * mask).sum(dim=1) / count
        return self.proj(self.norm(mean))


class TinyCLIP(nn.Module):
    """The tiny tower and the text encoder with CLIP's learnable temperature.

    ``forward(pixel_values, input_ids, attention_mask) -> loss``; :meth:`encode_image` and
    :meth:`encode_text` give the (unnormalised) embeddings. The tower must be trainable (``frozen=False``).
    """

    def __init__(self, vision: VisionEncoder, config: TinyCLIPConfig):
        super().__init__()
        self.config = config
        self.vision = vision
        self.image_proj = nn.Linear(vision.hidden_size, config.embed_dim)
        self.text = TinyTextEncoder(config)
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    def pooled_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The tower's mean patch feature ``[B, hidden]`` (what the contrastive head calls the image)."""
        return self.vision(pixel_values).mean(dim=1)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_proj(self.pooled_image_features(pixel_values))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids, attention_mask)

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return clip_loss(
            self.encode_image(pixel_values), self.encode_text(input_ids, attention_mask), self.logit_scale
        )
