"""What every captioner of the course shares: a frozen vision tower whose patch features may arrive cached in
the batch, and its parameter counts. SEVLM and the Show-Attend-Tell speaker both build on :class:`Captioner`;
decoding for both lives in :mod:`sevlm_lib.generation` (SEVLM) and ``SATSpeaker.generate``."""

from __future__ import annotations

import torch
from torch import nn


class Captioner(nn.Module):
    """A module with a frozen vision tower ``self.vision`` (``pixel_values [B, 3, H, W] -> [B, P, Dv]``)."""

    vision: nn.Module

    def image_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Patch features ``[B, P, Dv]``: cached ``image_features`` when the batch has them, else the tower."""
        key = "image_features" if "image_features" in batch else "pixel_values"
        if key not in batch:
            raise KeyError("the batch has neither 'pixel_values' nor 'image_features'")
        if len(batch[key]) == 0:
            raise ValueError(f"empty batch: '{key}' has no rows")
        return batch[key] if key == "image_features" else self.vision(batch[key])

    def count_parameters(self) -> dict[str, int]:
        """Trainable and frozen parameter counts (a tied weight counts once)."""
        out = {"trainable": 0, "frozen": 0}
        for p in self.parameters():  # parameters() yields a shared tensor once
            out["trainable" if p.requires_grad else "frozen"] += p.numel()
        return out
