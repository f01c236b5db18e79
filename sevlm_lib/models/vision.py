"""The image encoder: CLIP's vision tower, returning patch tokens (CLS excluded) after ``post_layernorm``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from sevlm_lib.models.checks import check_divides, check_sizes
from sevlm_lib.models.hub import load_from_hub

# CLIP's own normalisation statistics. (The SEVLM reference code normalises with ImageNet's
# mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225) instead: a small mismatch with how CLIP was trained.)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ImageNet's statistics, which the reference normalises with (``image_transform(style="reference")``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_HUB_ID = "openai/clip-vit-base-patch16"
# Pinned hub revision of openai/clip-vit-base-patch16.
CLIP_REVISION = "57c216476eefef5ab752ec549e440a49ae4ae5f3"
# Where a small tower's weights come from (VisionConfig.weights).
VISION_WEIGHTS = ("random", "tiny-clip")


@dataclass
class VisionConfig:
    """A small CLIP tower (``hub_id=None``) or a pretrained one from the hub.

    ``weights`` says where a small tower's weights come from: ``"random"`` (its random initialisation) or
    ``"tiny-clip"`` (pre-trained on the course data as a tiny CLIP, :mod:`sevlm_lib.tower`; installed by
    ``pipeline.build_model``). A hub tower always has the hub's weights (``weights`` must be ``"random"``,
    meaning "nothing course-made").
    """

    hub_id: str | None = None
    revision: str | None = None
    image_size: int = 64
    patch_size: int = 16
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 128
    frozen: bool = True
    weights: str = "random"

    def __post_init__(self) -> None:
        if self.weights not in VISION_WEIGHTS:
            raise ValueError(f"VisionConfig.weights={self.weights!r}: expected one of {VISION_WEIGHTS}")
        if self.hub_id is not None and self.weights != "random":
            raise ValueError(
                f"VisionConfig.weights={self.weights!r} with hub_id={self.hub_id!r}: a hub tower has the hub's "
                "weights; pre-training ('tiny-clip') is for the small course tower (hub_id=None)"
            )
        check_sizes(self, ("image_size", "patch_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"))
        check_divides(self, "num_heads", "hidden_size")
        check_divides(self, "patch_size", "image_size")

    def clip_config(self) -> CLIPVisionConfig:
        """The transformers config for a randomly initialised tower of these sizes."""
        return CLIPVisionConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
        )

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class VisionEncoder(nn.Module):
    """Wraps ``CLIPVisionModel``; ``forward(pixel_values) -> [B, num_patches, hidden]``.

    When ``frozen`` the tower never trains: its parameters need no gradient and it stays in eval mode even
    when the surrounding model is put in train mode (so its features can be cached once).
    """

    def __init__(self, tower: CLIPVisionModel, frozen: bool = True):
        super().__init__()
        self.tower = tower
        self.frozen = frozen
        if frozen:
            self.tower.requires_grad_(False)
            self.tower.eval()

    @property
    def hidden_size(self) -> int:
        return self.tower.config.hidden_size

    def train(self, mode: bool = True) -> VisionEncoder:
        super().train(mode)
        if self.frozen:
            self.tower.eval()
        return self

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.tower(pixel_values=pixel_values)
            patches = out.last_hidden_state[:, 1:, :]
            return self.tower.post_layernorm(patches)


def build_vision_encoder(cfg: VisionConfig) -> VisionEncoder:
    """A random tower for the tiny profile; the pinned hub weights when ``cfg.hub_id`` is set."""
    if cfg.hub_id is None:
        tower = CLIPVisionModel(cfg.clip_config())
    else:

        tower = load_from_hub(CLIPVisionModel, cfg.hub_id, cfg.revision)
    return VisionEncoder(tower, frozen=cfg.frozen)


def image_transform(image_size: int, train: bool = False, style: str = "clip"):
    """PIL image -> normalised tensor ``[3, S, S]``.

    ``style="clip"`` (the course): resize the shorter side (bicubic), centre crop, CLIP's statistics.
    ``style="reference"`` (the reference implementation): squash to ``S x S`` (bilinear, aspect ratio lost)
    and ImageNet's statistics (``SEVLMConfig.image_transform``).
    """
    from torchvision import transforms as T

    if style == "clip":
        steps = [
            T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    elif style == "reference":
        steps = [
            T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BILINEAR),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    else:
        raise ValueError(f"image_transform: style={style!r}, expected 'clip' or 'reference'")
    return T.Compose(steps)
