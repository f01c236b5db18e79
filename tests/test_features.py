"""The CLIP feature cache: identical training with and without it, resume after a crash, loud failures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from sevlm_lib.data.artemis import ArtworkAnnotations
from sevlm_lib.data.datasets import PairBatches, TensorBank, feature_bank
from sevlm_lib.engine import TrainConfig, Trainer
from sevlm_lib.features import (
    MANIFEST,
    FeatureCache,
    FeatureCacheError,
    build_feature_cache,
    default_cache_dir,
    find_feature_cache,
    pool_2x2,
    weights_sha256,
)
from sevlm_lib.settings import Settings
from sevlm_lib.text import SequenceBuilder
from tests.model_fixtures import TEXTS, micro_model, tokenizer

N_ART = 7
EMOTIONS = ("awe", "sadness", "anger", "contentment", "fear")


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


@pytest.fixture(scope="module")
def pixels() -> TensorBank:
    g = torch.Generator().manual_seed(1)
    keys = [("Style A" if i % 2 else "Style_B", f"painting-{i}") for i in range(N_ART)]
    return TensorBank(keys, torch.randn(N_ART, 3, 32, 32, generator=g), "pixel_values")


def items(keys: list[tuple[str, str]]) -> list[ArtworkAnnotations]:
    out = []
    for i, (style, painting) in enumerate(keys):
        emotions = (EMOTIONS[i % 5], EMOTIONS[(i + 1) % 5], EMOTIONS[(i + 2) % 5])
        out.append(ArtworkAnnotations(style, painting, emotions, tuple(TEXTS[(i + j) % 5] for j in range(3))))
    return out


def train_losses(tok, source, keys, steps: int = 3) -> list[float]:
    """Losses of a few Trainer steps of a fresh micro SEVLM (all additions on) reading images from ``source``."""
    model = micro_model(tok, seed=0, vad_fusion=True, vad_head=True, contrastive=True)
    batches = PairBatches(items(keys), SequenceBuilder(tok, max_len=30), source, batch_size=3, seed=0)
    cfg = TrainConfig(seed=0, max_steps=steps, lr=1e-3, device="cpu", mixed_precision="no")
    history = Trainer(model, cfg, batches.batches, len(batches), quiet=True).fit()
    return [row["loss"] for row in history.steps]


def test_training_with_the_cache_matches_training_without(tok, pixels: TensorBank, tmp_path: Path) -> None:
    vision = micro_model(tok, seed=0).vision
    cache = build_feature_cache(vision, pixels.keys, pixels, tmp_path / "cache", shard_size=3, batch_size=2)
    assert len(cache) == N_ART and len(cache.shards) == 3 and cache.tokens == 4 and cache.dim == 32
    live = feature_bank(vision, pixels)  # the live encoder, fp32
    rounded = TensorBank(live.keys, live.tensor.half().float(), "image_features")  # what the cache stores
    with_cache = train_losses(tok, cache, pixels.keys)
    assert with_cache == train_losses(tok, rounded, pixels.keys)  # identical, step for step
    from_pixels = train_losses(tok, pixels, pixels.keys)  # the tower run inside the model, every step
    np.testing.assert_allclose(with_cache, from_pixels, rtol=2e-3)
    # rows come back in the order asked, whatever shard they live in
    order = [pixels.keys[i] for i in (6, 0, 3, 3)]
    torch.testing.assert_close(cache.batch(order)["image_features"], rounded.rows(order))


def test_resume_after_an_interruption_keeps_finished_shards(tok, pixels: TensorBank, tmp_path: Path) -> None:
    vision = micro_model(tok, seed=0).vision
    out = tmp_path / "cache"
    calls = {"n": 0}

    def crashing_loader(key):
        calls["n"] += 1
        if calls["n"] > 4:  # dies inside the second shard
            raise RuntimeError("simulated crash")
        return pixels.rows([key])[0]

    with pytest.raises(RuntimeError, match="simulated crash"):
        build_feature_cache(vision, pixels.keys, crashing_loader, out, shard_size=3, batch_size=2)
    manifest = json.loads((out / MANIFEST).read_text())
    assert [s["file"] for s in manifest["shards"]] == ["shard-00000.npy"] and not manifest["complete"]
    assert (out / ".tmp-shard-00001.npy").exists()  # the half-written shard, never listed
    with pytest.raises(FeatureCacheError, match="incomplete"):
        FeatureCache(out)
    first = (out / "shard-00000.npy").stat()

    resumed = build_feature_cache(vision, pixels.keys, pixels, out, shard_size=3, batch_size=2)
    again = (out / "shard-00000.npy").stat()
    assert (first.st_ino, first.st_mtime_ns) == (again.st_ino, again.st_mtime_ns)  # kept, not recomputed
    assert not list(out.glob(".tmp-*"))
    fresh = build_feature_cache(vision, pixels.keys, pixels, tmp_path / "fresh", shard_size=3, batch_size=2)
    assert np.array_equal(resumed.rows(pixels.keys), fresh.rows(pixels.keys))
    assert resumed.verify() == []


def test_truncated_or_corrupt_shards_fail_loudly(tok, pixels: TensorBank, tmp_path: Path) -> None:
    vision = micro_model(tok, seed=0).vision
    out = tmp_path / "cache"
    cache = build_feature_cache(vision, pixels.keys, pixels, out, shard_size=3)
    shard = out / "shard-00001.npy"
    data = shard.read_bytes()

    shard.write_bytes(data[:-10])  # truncated after the cache was opened
    with pytest.raises(FeatureCacheError, match=r"shard-00001\.npy: shard truncated"):
        cache.batch([pixels.keys[4]])
    with pytest.raises(FeatureCacheError, match=r"shard-00001\.npy: shard truncated"):
        FeatureCache(out)
    assert cache.batch([pixels.keys[0]])["image_features"].shape == (1, 4, 32)  # other shards still read

    corrupt = bytearray(data)
    corrupt[-5] ^= 0xFF  # same size, one byte of the last row changed
    shard.write_bytes(bytes(corrupt))
    reopened = FeatureCache(out)
    reopened.batch([pixels.keys[3]])  # an intact row of the same shard
    with pytest.raises(FeatureCacheError, match=r"shard-00001\.npy: row 3 .* checksum"):
        reopened.batch([pixels.keys[5]])
    assert any("sha256 differs" in p for p in reopened.verify())
    (out / "shard-00002.npy").unlink()
    with pytest.raises(FeatureCacheError, match="shard-00002.npy: shard missing"):
        FeatureCache(out)


def test_a_folder_made_with_other_settings_is_never_overwritten(
    tok, pixels: TensorBank, tmp_path: Path
) -> None:
    vision = micro_model(tok, seed=0).vision
    build_feature_cache(vision, pixels.keys, pixels, tmp_path, shard_size=4)
    with pytest.raises(FeatureCacheError, match="other settings.*pool"):
        build_feature_cache(vision, pixels.keys, pixels, tmp_path, shard_size=4, pool=True)
    other = micro_model(tok, seed=5).vision
    with pytest.raises(FeatureCacheError, match="encoder"):
        build_feature_cache(other, pixels.keys, pixels, tmp_path, shard_size=4)
    with pytest.raises(ValueError, match="listed twice"):
        build_feature_cache(vision, [*pixels.keys, pixels.keys[0]], pixels, tmp_path / "x")


def test_an_encoder_description_is_a_note_not_an_identity(tok, pixels: TensorBank, tmp_path: Path) -> None:
    """A cache written before a description was reworded is still resumed (the weights decide, not the words)."""
    vision = micro_model(tok, seed=0).vision
    build_feature_cache(vision, pixels.keys, pixels, tmp_path, shard_size=4)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["encoder"]["description"] = "random-init CLIP tower (an older wording)"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    again = build_feature_cache(vision, pixels.keys, pixels, tmp_path, shard_size=4)
    assert len(again) == len(pixels.keys)


def test_the_tiny_profiles_cli_cache_holds_the_course_towers_features(tmp_path: Path, monkeypatch) -> None:
    """``python -m sevlm_lib.features build --profile tiny`` encodes with the tower the tiny model trains with
    (pre-trained on the course data), not a random one: same weights, same features up to fp16."""
    from sevlm_lib import pipeline
    from sevlm_lib.cli import features as features_cli
    from sevlm_lib.models.sevlm import tiny_config

    monkeypatch.setenv("SEVLM_QUIET", "1")
    out = tmp_path / "features"
    assert features_cli.main(["build", "--profile", "tiny", "--out", str(out), "--num-workers", "0"]) == 0
    settings = Settings.from_env({**os.environ, "SEVLM_PROFILE": "tiny"})
    data = pipeline.load_course_data(settings, progress=False)
    model = pipeline.build_model(data, tiny_config(), settings.seed)
    cache = FeatureCache(out)
    assert cache.encoder["weights_sha256"] == weights_sha256(model.vision)
    keys = data.artwork_keys("test")[:8]
    ours = pipeline.image_source_for(model, data).batch(keys)["image_features"]
    torch.testing.assert_close(cache.batch(keys)["image_features"].float(), ours, atol=2e-2, rtol=1e-2)


def test_pooling_averages_2x2_blocks_and_the_model_reads_any_token_count(
    tok, pixels: TensorBank, tmp_path: Path
) -> None:
    grid = torch.arange(16.0).reshape(1, 16, 1)  # a 4x4 grid, row-major
    assert pool_2x2(grid).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    with pytest.raises(ValueError, match="square"):
        pool_2x2(torch.zeros(1, 12, 3))
    model = micro_model(tok, seed=0, contrastive=True)
    full = build_feature_cache(model.vision, pixels.keys, pixels, tmp_path / "full")
    pooled = build_feature_cache(model.vision, pixels.keys, pixels, tmp_path / "pooled", pool=True)
    assert pooled.tokens == full.tokens // 4 == 1 and pooled.pooled and not full.pooled
    a, b = full.batch(pixels.keys)["image_features"], pooled.batch(pixels.keys)["image_features"]
    torch.testing.assert_close(b[:, 0], a.mean(1), atol=2e-3, rtol=0)  # the contrastive image embedding
    batch = next(iter(PairBatches(items(pixels.keys), SequenceBuilder(tok), pooled, batch_size=3).batches(0)))
    assert torch.isfinite(model(batch).loss)


def test_training_picks_a_matching_disk_cache_and_falls_back_otherwise(
    tok, pixels: TensorBank, tmp_path: Path
) -> None:
    from sevlm_lib.pipeline import image_source_for

    class Lazy:  # a lazily read image source (the full profile's LazyImages)
        def batch(self, keys):
            return pixels.batch(keys)

    settings = Settings(cache_dir=tmp_path / "cache")
    artworks = pd.DataFrame(pixels.keys, columns=["art_style", "painting"])
    data = SimpleNamespace(images=Lazy(), settings=settings, artworks=artworks, image_style="clip")
    model = micro_model(tok, seed=0)
    assert image_source_for(model, data) is data.images  # no cache: the live encoder
    out = default_cache_dir(settings, model.config.vision, weights=weights_sha256(model.vision))
    build_feature_cache(model.vision, pixels.keys, pixels, out)
    found = image_source_for(model, data)
    assert isinstance(found, FeatureCache) and found.root == out
    assert image_source_for(model, data, use_features=False) is data.images
    assert image_source_for(micro_model(tok, seed=3), data) is data.images  # another tower: not its features
    bigger = SimpleNamespace(
        **{**vars(data), "artworks": pd.concat([artworks, artworks.assign(painting="new")])}
    )
    assert image_source_for(model, bigger) is bigger.images  # artworks missing from the cache
    assert find_feature_cache(settings, model.config) is None  # a random tower is matched by its weights only
    assert find_feature_cache(settings, model.config, vision=model.vision, pool=True) is None
    os.utime(out / MANIFEST)  # (still readable after a touch)
    assert find_feature_cache(settings, model.config, vision=model.vision) is not None
