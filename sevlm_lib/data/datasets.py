"""From annotations to model batches: image sources, caption batches and two-annotation pair batches.

Batches are produced by deterministic per-epoch iterators (``batches(epoch)``), which is what the training
engine needs for exact resume: the same seed and epoch always give the same batches in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sevlm_lib.data.artemis import ArtworkAnnotations, ImageResolver, open_image, sample_pair
from sevlm_lib.text import EncodedSequence, SequenceBuilder

ArtworkKey = tuple[str, str]


class ImageSource(Protocol):
    """Anything that turns artwork keys into the image part of a batch."""

    def batch(self, keys: Sequence[ArtworkKey]) -> dict[str, torch.Tensor]: ...


@dataclass
class TensorBank:
    """Images (``pixel_values``) or frozen-tower features (``image_features``) of a set of artworks, in memory."""

    keys: list[ArtworkKey]
    tensor: torch.Tensor
    kind: str = "pixel_values"

    def __post_init__(self) -> None:
        if self.kind not in ("pixel_values", "image_features"):
            raise ValueError(f"kind must be 'pixel_values' or 'image_features', not {self.kind!r}")
        if len(self.keys) != len(self.tensor):
            raise ValueError(f"{len(self.keys)} keys but {len(self.tensor)} rows")
        self.index = {k: i for i, k in enumerate(self.keys)}

    def rows(self, keys: Sequence[ArtworkKey]) -> torch.Tensor:
        try:
            idx = [self.index[k] for k in keys]
        except KeyError as err:
            raise KeyError(f"artwork {err.args[0]} is not in this image bank ({len(self.keys)} artworks)") from None
        return self.tensor[idx]

    def batch(self, keys: Sequence[ArtworkKey]) -> dict[str, torch.Tensor]:
        return {self.kind: self.rows(keys)}


class LazyImages:
    """Reads and transforms images on demand (for datasets too large to hold in memory)."""

    def __init__(self, resolver: ImageResolver, transform: Callable):
        self.resolver = resolver
        self.transform = transform

    def load(self, key: ArtworkKey) -> torch.Tensor:
        path = self.resolver.resolve(*key)
        if path is None:
            raise FileNotFoundError(
                f"no image for artwork {key[0]}/{key[1]} under {self.resolver.image_root} "
                f"(expected {key[0]}/{key[1]}.jpg or .png)"
            )
        return self.transform(open_image(path))

    def batch(self, keys: Sequence[ArtworkKey]) -> dict[str, torch.Tensor]:
        if not keys:
            raise ValueError("cannot build an image batch from no artworks")
        return {"pixel_values": torch.stack([self.load(k) for k in keys])}


def load_pixel_bank(
    keys: Sequence[ArtworkKey], resolver: ImageResolver, transform: Callable, progress: bool = False
) -> TensorBank:
    """Load every image of ``keys`` once (tiny profile). Missing images fail together, with one clear message."""

    keys = list(dict.fromkeys(keys))
    resolver.check(pd.DataFrame(keys, columns=["art_style", "painting"]))
    lazy = LazyImages(resolver, transform)
    rows = [lazy.load(k) for k in tqdm(keys, desc="images", disable=not progress)]
    return TensorBank(keys, torch.stack(rows), "pixel_values")


@torch.no_grad()
def feature_bank(vision: torch.nn.Module, pixels: TensorBank, batch_size: int = 256) -> TensorBank:
    """Run a frozen vision tower once over every image: later epochs read features instead of pixels."""
    if getattr(vision, "frozen", True) is False:
        raise ValueError("features can only be cached for a frozen vision tower (it would change while training)")
    was = vision.training
    vision.eval()
    out = [vision(pixels.tensor[i : i + batch_size]) for i in range(0, len(pixels.keys), batch_size)]
    vision.train(was)
    return TensorBank(list(pixels.keys), torch.cat(out), "image_features")


def _chunks(order: np.ndarray, size: int, drop_last: bool) -> Iterator[np.ndarray]:
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        if drop_last and len(chunk) < size:
            return
        yield chunk


class CaptionBatches:
    """One annotation per sequence (the baseline captioner's data). ``batches(epoch)`` yields model batches."""

    def __init__(
        self,
        items: Sequence[dict[str, str]],
        builder: SequenceBuilder,
        images: ImageSource,
        batch_size: int = 32,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ):
        if not items:
            raise ValueError("no training items: is the split empty?")
        self.keys = [(it["art_style"], it["painting"]) for it in items]
        self.encoded = [builder.encode(it["emotion"], it["utterance"]) for it in items]
        self.builder, self.images = builder, images
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last

    def __len__(self) -> int:
        n = len(self.encoded)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    steps_per_epoch = property(__len__)

    def batches(self, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        n = len(self.encoded)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for chunk in _chunks(order, self.batch_size, self.drop_last):
            yield self._collate([self.keys[i] for i in chunk], [self.encoded[i] for i in chunk])

    __call__ = batches

    def _collate(self, keys: list[ArtworkKey], seqs: list[EncodedSequence]) -> dict[str, torch.Tensor]:
        unique = list(dict.fromkeys(keys))
        where = {k: i for i, k in enumerate(unique)}
        batch = self.builder.collate(seqs)
        batch.update(self.images.batch(unique))
        batch["image_index"] = torch.tensor([where[k] for k in keys], dtype=torch.long)
        return batch


class PairBatches:
    """Two annotations with different emotions per artwork (the contrastive head's data).

    A batch of ``B`` artworks holds ``2B`` sequences ordered ``[a0, a0', a1, a1', ...]``; ``pair_index``
    points each sequence at its partner. The pair of each artwork is re-drawn every epoch from a generator
    seeded with ``(seed, epoch)``. A final batch with a single artwork is dropped (it has no visual negative).
    """

    def __init__(
        self,
        items: Sequence[ArtworkAnnotations],
        builder: SequenceBuilder,
        images: ImageSource,
        batch_size: int = 32,
        seed: int = 0,
    ):
        if len(items) < 2:
            raise ValueError(f"pair batches need at least 2 artworks with two distinct emotions, got {len(items)}")
        if batch_size < 2:
            raise ValueError("pair batches need batch_size >= 2 artworks (negative 2 comes from another artwork)")
        self.items, self.builder, self.images = list(items), builder, images
        self.batch_size, self.seed = batch_size, seed
        self._memo: dict[tuple[str, str], EncodedSequence] = {}

    def __len__(self) -> int:
        n, b = len(self.items), self.batch_size
        return n // b + (1 if n % b >= 2 else 0)

    steps_per_epoch = property(__len__)

    def _encode(self, emotion: str, utterance: str) -> EncodedSequence:
        key = (emotion, utterance)
        if key not in self._memo:
            self._memo[key] = self.builder.encode(emotion, utterance)
        return self._memo[key]

    def batches(self, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.items))
        for chunk in _chunks(order, self.batch_size, drop_last=False):
            if len(chunk) < 2:
                return
            items = [self.items[i] for i in chunk]
            seqs: list[EncodedSequence] = []
            for it in items:
                (e1, u1), (e2, u2) = sample_pair(it, rng)
                seqs += [self._encode(e1, u1), self._encode(e2, u2)]
            batch = self.builder.collate(seqs)
            batch.update(self.images.batch([(it.art_style, it.painting) for it in items]))
            b = len(items)
            batch["image_index"] = torch.arange(b).repeat_interleave(2)
            batch["pair_index"] = torch.arange(2 * b) ^ 1
            yield batch

    __call__ = batches
