"""Pre-training the tiny profile's vision tower as a tiny CLIP, caching it, and measuring what it learnt.

SEVLM freezes a *pretrained* CLIP image encoder. The tiny profile's tower is small and random, so before it
is frozen it can be pre-trained the way CLIP was: the symmetric contrastive loss between each training
artwork and one of its human explanations (:mod:`sevlm_lib.models.tiny_clip`). Only the **training split's**
explanations may be used: :func:`pretrain_tiny_tower` refuses any artwork outside ``train_keys``.

* :func:`training_texts` -> ``{artwork: [explanation, ...]}`` of the training split;
* :func:`pretrain_tiny_tower` -> the state dict of the trained :class:`~sevlm_lib.models.tiny_clip.TinyCLIP`
  (tower under ``vision.``), deterministic for a seed on a CPU;
* :func:`pretrained_tower` / :func:`pretrained_clip` -> the tower (or the whole pair) from the cache
  ``{cache_dir}/towers/<fingerprint>/``, built by a callback when missing; :func:`tower_build_info` -> how long
  that build took (``build.json`` beside the weights, outside the identity, so it never changes the fingerprint);
* :func:`linear_probe`, :func:`retrieval_accuracy`, :func:`tower_features` -> the measurements.

Nothing here runs at import time. ``pipeline.build_model`` installs the cached tower into every tiny-profile
model whose config says ``vision.weights == "tiny-clip"`` (the default of ``tiny_config``).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from sevlm_lib.baselines import fit_logistic_regression, predict
from sevlm_lib.data.datasets import ArtworkKey
from sevlm_lib.io import fsync_tree, read_json, replace_dir, temp_path, write_json
from sevlm_lib.models.checks import check_sizes
from sevlm_lib.models.tiny_clip import TinyCLIP, TinyCLIPConfig
from sevlm_lib.models.vision import VisionConfig, VisionEncoder, build_vision_encoder
from sevlm_lib.settings import Settings
from sevlm_lib.text import PAD

TOWERS_DIR = "towers"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "tower.json"
BUILD_FILE = "build.json"  # how the cached tower was built (timings): not part of its identity
VISION_PREFIX = "vision."
_FORMAT = "sevlm-tiny-clip-tower"


@dataclass(frozen=True)
class TowerPretraining:
    """Hyper-parameters of the tiny-CLIP pre-training (all of them enter the cache fingerprint).

    ``steps`` optimizer steps of ``batch_size`` distinct training artworks, each paired with one of its
    explanations drawn at random; AdamW (``lr``, ``weight_decay`` on matrices only), linear warm-up over
    ``warmup_steps`` then cosine decay to zero; explanations cut at ``max_tokens`` tokens; a random
    horizontal flip of each image when ``flip``.
    """

    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    text_width: int = 128
    embed_dim: int = 64
    max_tokens: int = 32
    flip: bool = False

    def __post_init__(self) -> None:
        check_sizes(self, ("steps", "text_width", "embed_dim", "max_tokens"))
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(
                f"TowerPretraining.batch_size={self.batch_size!r}: expected a whole number >= 2 (the other "
                "pairs of the batch are the negatives)"
            )
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"TowerPretraining.lr={self.lr!r}: expected a positive number")
        if not self.weight_decay >= 0:
            raise ValueError(f"TowerPretraining.weight_decay={self.weight_decay!r}: expected >= 0")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"TowerPretraining.warmup_steps={self.warmup_steps!r}: expected 0..steps-1")


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


def training_texts(annotations: pd.DataFrame) -> dict[ArtworkKey, list[str]]:
    """``{(art_style, painting): [utterance, ...]}`` of the rows whose ``split`` is ``train`` (sorted keys)."""
    missing = [c for c in ("art_style", "painting", "utterance", "split") if c not in annotations.columns]
    if missing:
        raise ValueError(f"training_texts: the annotations lack the columns {missing}")
    train = annotations[annotations["split"] == "train"]
    return {k: list(g["utterance"]) for k, g in train.groupby(["art_style", "painting"], sort=True)}


def encode_texts(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, ``[N, T]`` right-padded with the tokenizer's ``<pad>``; each text is
    encoded as the decoder sees an explanation (one leading space, no special tokens) and cut at
    ``max_tokens``. An empty text is an error naming its position."""
    pad_id = tokenizer.convert_tokens_to_ids(PAD)
    rows = []
    for i, text in enumerate(texts):
        clean = " ".join(str(text).split())
        ids = tokenizer(f" {clean}", add_special_tokens=False)["input_ids"][:max_tokens] if clean else []
        if not ids:
            raise ValueError(f"encode_texts: text {i} ({text!r}) has no token")
        rows.append(ids)
    if not rows:
        raise ValueError("encode_texts: no texts")
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
    return input_ids, mask


def _check_training_only(
    texts_by_artwork: Mapping[ArtworkKey, Sequence[str]], train_keys: Collection
) -> None:
    allowed = set(train_keys)
    outside = [k for k in texts_by_artwork if k not in allowed]
    if outside:
        raise ValueError(
            f"pretrain_tiny_tower: {len(outside)} artwork(s) of texts_by_artwork are not training artworks, "
            f"e.g. {outside[0]}; only the training split's explanations may be used (training_texts)"
        )
    empty = [k for k, texts in texts_by_artwork.items() if len(texts) == 0]
    if empty:
        raise ValueError(
            f"pretrain_tiny_tower: artwork {empty[0]} has no explanation ({len(empty)} such artworks)"
        )


def _learning_rate(step: int, p: TowerPretraining) -> float:
    if step < p.warmup_steps:
        return p.lr * (step + 1) / p.warmup_steps
    progress = (step - p.warmup_steps) / max(1, p.steps - p.warmup_steps)
    return p.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(model: TinyCLIP, p: TowerPretraining) -> torch.optim.AdamW:
    decay = [w for w in model.parameters() if w.ndim >= 2]
    rest = [w for w in model.parameters() if w.ndim < 2]
    groups = [{"params": decay, "weight_decay": p.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=p.lr, betas=(0.9, 0.98), eps=1e-6, foreach=True)


def build_tiny_clip(vision_config: VisionConfig, tokenizer: Any, pretraining: TowerPretraining) -> TinyCLIP:
    """A fresh (random) trainable tiny CLIP for ``vision_config`` (a tiny tower: ``hub_id`` must be None)."""
    if vision_config.hub_id is not None:
        raise ValueError(
            f"pretrain_tiny_tower: vision_config.hub_id={vision_config.hub_id!r}; only a random tiny tower "
            "(hub_id=None) is pre-trained here, a hub CLIP is pretrained already"
        )
    vision = build_vision_encoder(replace(vision_config, frozen=False))
    config = TinyCLIPConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
        text_width=pretraining.text_width,
        embed_dim=pretraining.embed_dim,
    )
    return TinyCLIP(vision, config)


def pretrain_tiny_tower(
    images: Any,
    texts_by_artwork: Mapping[ArtworkKey, Sequence[str]],
    tokenizer: Any,
    vision_config: VisionConfig,
    *,
    train_keys: Collection[ArtworkKey],
    seed: int,
    progress: bool = False,
    **hyper: Any,
) -> dict[str, torch.Tensor]:
    """Train the tiny tower and a text encoder with CLIP's loss; return the :class:`TinyCLIP` state dict.

    ``images``: anything with ``batch(keys) -> {"pixel_values": [B, 3, S, S]}`` (the course's
    ``CourseData.images``). ``texts_by_artwork``: the training split's explanations per artwork
    (:func:`training_texts`); every key must be in ``train_keys`` (the training split's artworks), otherwise
    this is an error: validation and test text never reach the tower. ``hyper``: fields of
    :class:`TowerPretraining` (``steps``, ``batch_size``, ``lr``, ...). The global random state is left as it
    was; the run draws from its own generator seeded with ``seed`` and gives the same weights for the same
    inputs and seed on a CPU. The tower's weights are the keys starting with ``vision.``.
    """
    unknown = sorted(set(hyper) - {f.name for f in fields(TowerPretraining)})
    if unknown:
        raise TypeError(
            f"pretrain_tiny_tower: unknown hyper-parameter(s) {unknown}; expected fields of TowerPretraining"
        )
    p = TowerPretraining(**hyper)
    _check_training_only(texts_by_artwork, train_keys)
    keys = sorted(texts_by_artwork)
    if len(keys) < p.batch_size:
        raise ValueError(
            f"pretrain_tiny_tower: batch_size={p.batch_size} but only {len(keys)} training artworks have "
            "explanations; lower batch_size"
        )
    pixels = images.batch(keys).get("pixel_values")
    if pixels is None:
        raise ValueError("pretrain_tiny_tower: images must give pixel_values (not cached features)")
    texts = [t for k in keys for t in texts_by_artwork[k]]
    input_ids, mask = encode_texts(tokenizer, texts, p.max_tokens)
    counts = torch.tensor([len(texts_by_artwork[k]) for k in keys])
    offsets = torch.cumsum(counts, 0) - counts
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_tiny_clip(vision_config, tokenizer, p)
        model.train()
        optimizer = _optimizer(model, p)
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(keys), generator=gen)
        cursor = 0
        bar = tqdm(range(p.steps), desc="tiny-CLIP tower", disable=not progress, leave=False)
        for step in bar:
            if cursor + p.batch_size > len(order):  # a new epoch: every artwork once before any repeats
                order, cursor = torch.randperm(len(keys), generator=gen), 0
            rows = order[cursor : cursor + p.batch_size]
            cursor += p.batch_size
            pick = offsets[rows] + (torch.rand(len(rows), generator=gen) * counts[rows]).long()
            batch_pixels = pixels[rows]
            if p.flip:
                flip = torch.rand(len(rows), generator=gen) < 0.5
                batch_pixels = torch.where(flip[:, None, None, None], batch_pixels.flip(-1), batch_pixels)
            ids, m = input_ids[pick], mask[pick]
            width = int(m.sum(dim=1).max())
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, p)
            loss = model(batch_pixels, ids[:, :width], m[:, :width])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------------------


def tower_identity(
    data_fingerprint: str, vision_config: VisionConfig, seed: int, pretraining: TowerPretraining
) -> dict[str, Any]:
    """What the cached tower depends on: the data, the tower's sizes, the seed and every hyper-parameter."""
    vision = {
        k: v for k, v in asdict(vision_config).items() if k not in ("frozen", "weights")
    }  # neither frozen-ness nor where the weights come from is in the weights
    return {
        "format": _FORMAT,
        "data_fingerprint": data_fingerprint,
        "vision": vision,
        "seed": int(seed),
        "pretraining": asdict(pretraining),
    }


def tower_fingerprint(
    data_fingerprint: str, vision_config: VisionConfig, seed: int, pretraining: TowerPretraining
) -> str:
    """A 16-hex-digit hash of :func:`tower_identity` (the cache folder's name)."""
    identity = tower_identity(data_fingerprint, vision_config, seed, pretraining)
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def tower_folder(
    settings: Settings,
    data_fingerprint: str,
    vision_config: VisionConfig,
    seed: int,
    pretraining: TowerPretraining | None = None,
) -> Path:
    """``{cache_dir}/towers/<fingerprint>/``."""
    p = pretraining or TowerPretraining()
    return Path(settings.cache_dir) / TOWERS_DIR / tower_fingerprint(data_fingerprint, vision_config, seed, p)


def _write_tower(
    folder: Path,
    state: Mapping[str, torch.Tensor],
    identity: dict[str, Any],
    build_info: Mapping[str, Any] | None = None,
) -> None:
    if not any(k.startswith(VISION_PREFIX) for k in state):
        raise ValueError(
            f"the state dict to cache in {folder} has no '{VISION_PREFIX}*' keys (no tower weights)"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(folder)
    try:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS_FILE))
        write_json(tmp / MANIFEST_FILE, identity, sort_keys=True)
        if build_info is not None:
            write_json(tmp / BUILD_FILE, dict(build_info), sort_keys=True)
        fsync_tree(tmp)
        replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read_tower(folder: Path, identity: dict[str, Any]) -> dict[str, torch.Tensor]:
    manifest = read_json(folder / MANIFEST_FILE)
    if manifest != identity:
        raise ValueError(
            f"{folder / MANIFEST_FILE}: describes another tower than the one asked for (a hash collision or an "
            f"edited file); delete {folder} to rebuild it"
        )
    try:
        return load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{folder / WEIGHTS_FILE}: cannot be read ({type(err).__name__}: {err}); delete {folder} to rebuild it"
        ) from err


def cached_tower_state(
    settings: Settings,
    data_fingerprint: str,
    vision_config: VisionConfig,
    seed: int,
    build: Callable[[], Mapping[str, torch.Tensor]],
    *,
    pretraining: TowerPretraining | None = None,
) -> dict[str, torch.Tensor]:
    """The cached :class:`TinyCLIP` state dict, or ``build()``'s (written atomically to the cache first).

    ``build`` must train with the same ``pretraining`` and ``seed`` (e.g. a ``functools.partial`` of
    :func:`pretrain_tiny_tower` with ``**asdict(pretraining)``); it is called only when the cache folder has
    no weights. Its wall and CPU seconds go to ``build.json`` beside the weights (:func:`tower_build_info`)."""
    p = pretraining or TowerPretraining()
    identity = tower_identity(data_fingerprint, vision_config, seed, p)
    folder = tower_folder(settings, data_fingerprint, vision_config, seed, p)
    if not (folder / WEIGHTS_FILE).is_file():
        wall, cpu = time.perf_counter(), time.process_time()
        state = build()
        build_info = {
            "train_seconds": round(time.perf_counter() - wall, 3),
            "cpu_seconds": round(time.process_time() - cpu, 3),
            "torch_threads": torch.get_num_threads(),
        }
        _write_tower(folder, state, identity, build_info)
    return _read_tower(folder, identity)


def tower_build_info(
    settings: Settings,
    data_fingerprint: str,
    vision_config: VisionConfig,
    seed: int,
    pretraining: TowerPretraining | None = None,
) -> dict[str, Any] | None:
    """How the cached tower was built: ``{"train_seconds": wall, "cpu_seconds": this process's CPU time,
    "torch_threads": n}`` of the ``build()`` call that filled the cache, or None when the tower is not cached or
    was cached without this record (by an older version of the course)."""
    folder = tower_folder(settings, data_fingerprint, vision_config, seed, pretraining)
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / BUILD_FILE).is_file():
        return None
    return read_json(folder / BUILD_FILE)


def tower_from_state(state: Mapping[str, torch.Tensor], vision_config: VisionConfig) -> VisionEncoder:
    """A :class:`VisionEncoder` of ``vision_config`` (frozen as it says) holding the ``vision.*`` weights."""
    tower = build_vision_encoder(vision_config)
    own = {k[len(VISION_PREFIX) :]: v for k, v in state.items() if k.startswith(VISION_PREFIX)}
    try:
        tower.load_state_dict(own, strict=True)
    except RuntimeError as err:
        raise ValueError(f"the cached tower does not fit vision_config {vision_config}: {err}") from err
    return tower


def weights_key(module: torch.nn.Module) -> str:
    """A 16-hex-digit hash of a module's weights (names and values): the key of a tower's feature bank."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def install_tower(vision: VisionEncoder, state: Mapping[str, torch.Tensor]) -> None:
    """Copy the ``vision.*`` weights of a :class:`TinyCLIP` state dict into ``vision`` (in place, strict)."""
    own = {k[len(VISION_PREFIX) :]: v for k, v in state.items() if k.startswith(VISION_PREFIX)}
    try:
        vision.load_state_dict(own, strict=True)
    except RuntimeError as err:
        raise ValueError(f"the pre-trained tower does not fit this model's vision tower: {err}") from err


def pretrained_tower(
    settings: Settings,
    data_fingerprint: str,
    vision_config: VisionConfig,
    seed: int,
    build: Callable[[], Mapping[str, torch.Tensor]],
    *,
    pretraining: TowerPretraining | None = None,
) -> VisionEncoder:
    """The pre-trained tiny tower from ``{cache_dir}/towers/<fingerprint>/``, trained by ``build()`` only when
    missing; frozen when ``vision_config.frozen`` (the course's default)."""
    state = cached_tower_state(
        settings, data_fingerprint, vision_config, seed, build, pretraining=pretraining
    )
    return tower_from_state(state, vision_config)


def clip_from_state(
    state: Mapping[str, torch.Tensor], vision_config: VisionConfig, tokenizer: Any
) -> TinyCLIP:
    """The whole :class:`TinyCLIP` (tower, projections, text encoder) from a state dict, in eval mode."""
    embed = state["text.embed.weight"]
    config = TinyCLIPConfig(
        vocab_size=int(embed.shape[0]),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
        text_width=int(embed.shape[1]),
        embed_dim=int(state["image_proj.weight"].shape[0]),
    )
    model = TinyCLIP(build_vision_encoder(replace(vision_config, frozen=False)), config)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as err:
        raise ValueError(f"the tiny-CLIP weights do not fit vision_config {vision_config}: {err}") from err
    return model.eval()


# ---------------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def tower_features(
    vision: VisionEncoder, images: Any, keys: Sequence[ArtworkKey], batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """``(pooled [N, D], flat [N, P * D])`` float64 features of ``keys`` (tower in eval mode): the mean patch
    feature and all patch features flattened."""
    keys = list(keys)
    if not keys:
        raise ValueError("tower_features: no artworks")
    pixels = images.batch(keys)["pixel_values"]
    was = vision.training
    vision.eval()
    try:
        feats = torch.cat(
            [vision(pixels[i : i + batch_size]) for i in range(0, len(keys), batch_size)]
        ).double()
    finally:
        vision.train(was)
    return feats.mean(dim=1).numpy(), feats.flatten(1).numpy()


def linear_probe(
    features_train: np.ndarray,
    labels_train: Sequence[int] | np.ndarray,
    features_test: np.ndarray,
    labels_test: Sequence[int] | np.ndarray,
    seed: int,
    *,
    n_classes: int | None = None,
    l2: float = 1e-2,
    epochs: int = 500,
) -> float:
    """Test accuracy of a multinomial logistic regression fitted on the training features
    (:func:`sevlm_lib.baselines.fit_logistic_regression`: standardised features, L2 penalty ``l2``, seeded)."""
    y_train = np.asarray(labels_train)
    y_test = np.asarray(labels_test)
    x_test = np.asarray(features_test, dtype=np.float64)
    if y_test.shape != (len(x_test),) or len(x_test) == 0:
        raise ValueError(
            f"linear_probe: expected {len(x_test)} test labels for {len(x_test)} test rows (at least one), "
            f"got shape {y_test.shape}"
        )
    classes = n_classes if n_classes is not None else int(max(y_train.max(), y_test.max())) + 1
    model = fit_logistic_regression(features_train, y_train, classes, l2=l2, seed=seed, epochs=epochs)
    if not (np.isfinite(model.weights).all() and np.isfinite(model.bias).all()):
        raise ValueError(
            f"linear_probe: the logistic regression diverged with l2={l2} (non-finite weights); use a smaller l2"
        )
    return float(np.mean(predict(model, x_test) == y_test))


def retrieval_accuracy(image_emb: torch.Tensor, text_emb: torch.Tensor) -> float:
    """Top-1 image-to-text retrieval over a batch: the share of images ``i`` whose most cosine-similar text
    is text ``i`` (ties go to the lower index). Chance is ``1 / B``."""
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape or len(image_emb) == 0:
        raise ValueError(
            f"retrieval_accuracy: expected image and text embeddings of the same shape [B, D], B >= 1, got "
            f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    sims = (
        torch.nn.functional.normalize(image_emb.double(), dim=-1)
        @ torch.nn.functional.normalize(text_emb.double(), dim=-1).T
    )
    return float((sims.argmax(dim=1) == torch.arange(len(sims))).double().mean())
