"""The tiny-CLIP tower pre-training (issue 13): the loss by hand, determinism, training-split-only text, the
cache, and the probe and retrieval measurements. Synthetic images and the test tokenizer keep it to seconds."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sevlm_lib.data.datasets import TensorBank
from sevlm_lib.models.tiny_clip import MAX_LOGIT_SCALE, TinyCLIP, TinyCLIPConfig, clip_loss
from sevlm_lib.models.vision import VisionConfig, build_vision_encoder
from sevlm_lib.settings import Settings
from sevlm_lib.tower import (
    TowerPretraining,
    build_tiny_clip,
    clip_from_state,
    encode_texts,
    linear_probe,
    pretrain_tiny_tower,
    pretrained_tower,
    retrieval_accuracy,
    tower_build_info,
    tower_features,
    tower_folder,
    tower_identity,
    training_texts,
)
from tests.model_fixtures import TEXTS, tokenizer

VISION = VisionConfig(
    image_size=32, patch_size=16, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64
)
FAST = {"steps": 4, "batch_size": 8, "warmup_steps": 1, "text_width": 16, "embed_dim": 8}


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


@pytest.fixture(scope="module")
def toy():
    """20 artworks, 16 for training and 4 held out; images random, two explanations each."""
    g = torch.Generator().manual_seed(0)
    keys = [("style", f"p{i:02d}") for i in range(20)]
    images = TensorBank(keys, torch.randn(20, 3, 32, 32, generator=g))
    texts = {k: [TEXTS[i % 5], TEXTS[(i + 2) % 5]] for i, k in enumerate(keys)}
    train = keys[:16]
    return images, {k: texts[k] for k in train}, train, keys[16:]


def _pretrain(toy, tok, seed: int = 0, **hyper):
    images, texts, train, _ = toy
    return pretrain_tiny_tower(images, texts, tok, VISION, train_keys=train, seed=seed, **{**FAST, **hyper})


# ----------------------------------------------------------------------------------------------- the loss


def test_clip_loss_matches_the_formula_by_hand() -> None:
    img = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    txt = [[2.0, 0.0], [1.0, 1.0], [0.0, -1.0]]
    scale = 2.5

    def cos(a: list[float], b: list[float]) -> float:
        return (a[0] * b[0] + a[1] * b[1]) / (math.hypot(*a) * math.hypot(*b))

    logits = [[scale * cos(a, b) for b in txt] for a in img]

    def ce(row: list[float], target: int) -> float:
        return -row[target] + math.log(sum(math.exp(v) for v in row))

    by_rows = sum(ce(logits[i], i) for i in range(3)) / 3
    by_cols = sum(ce([logits[j][i] for j in range(3)], i) for i in range(3)) / 3
    expected = (by_rows + by_cols) / 2
    got = clip_loss(
        torch.tensor(img, dtype=torch.float64),
        torch.tensor(txt, dtype=torch.float64),
        torch.tensor(math.log(scale), dtype=torch.float64),
    )
    assert abs(float(got) - expected) < 1e-6


def test_clip_loss_clamps_the_temperature_at_100() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    at_max = clip_loss(a, b, torch.tensor(MAX_LOGIT_SCALE))
    assert torch.allclose(clip_loss(a, b, torch.tensor(MAX_LOGIT_SCALE + 3.0)), at_max)
    assert not torch.allclose(clip_loss(a, b, torch.tensor(MAX_LOGIT_SCALE - 1.0)), at_max)


def test_clip_loss_refuses_mismatched_batches() -> None:
    with pytest.raises(ValueError, match=r"same shape \[B, D\].*\(3, 2\) and \(4, 2\)"):
        clip_loss(torch.zeros(3, 2), torch.zeros(4, 2), torch.tensor(0.0))


# ------------------------------------------------------------------------------------------ pre-training


def test_pretraining_is_deterministic_for_a_seed_and_leaves_the_global_rng(toy, tok) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = _pretrain(toy, tok, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    again = _pretrain(toy, tok, seed=0)
    other = _pretrain(toy, tok, seed=1)
    assert first.keys() == again.keys() and any(k.startswith("vision.") for k in first)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_pretraining_trains_the_tower_and_lowers_the_loss(toy, tok) -> None:
    images, texts, train, _ = toy
    p = TowerPretraining(**{**FAST, "steps": 30, "lr": 3e-3})
    torch.manual_seed(0)
    start = build_tiny_clip(VISION, tok, p)  # the weights pretrain_tiny_tower starts from for seed 0
    state = _pretrain(toy, tok, seed=0, steps=30, lr=3e-3)
    trained = clip_from_state(state, VISION, tok)
    assert not torch.equal(
        state["vision.tower.embeddings.patch_embedding.weight"],
        start.state_dict()["vision.tower.embeddings.patch_embedding.weight"],
    )
    keys = sorted(texts)
    ids, mask = encode_texts(tok, [texts[k][0] for k in keys], 32)
    pixels = images.batch(keys)["pixel_values"]
    with torch.no_grad():
        assert float(trained(pixels, ids, mask)) < float(start.eval()(pixels, ids, mask)) - 0.1


def test_validation_or_test_text_is_refused(toy, tok) -> None:
    images, texts, train, held_out = toy
    leaked = {**texts, held_out[0]: ["a calm blue sea under a soft sky"]}
    with pytest.raises(ValueError, match=r"not training artworks, e\.g\. \('style', 'p16'\)"):
        pretrain_tiny_tower(images, leaked, tok, VISION, train_keys=train, seed=0, **FAST)


def test_training_texts_keeps_only_the_training_split() -> None:
    df = pd.DataFrame(
        {
            "art_style": ["a", "a", "b", "c"],
            "painting": ["x", "x", "y", "z"],
            "utterance": ["one", "two", "three", "four"],
            "split": ["train", "train", "val", "test"],
        }
    )
    assert training_texts(df) == {("a", "x"): ["one", "two"]}
    with pytest.raises(ValueError, match=r"lack the columns \['split'\]"):
        training_texts(df.drop(columns="split"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 32}, r"batch_size=32 but only 16 training artworks"),
        ({"batch_size": 1}, r"TowerPretraining\.batch_size=1: expected a whole number >= 2"),
        ({"lr": -1.0}, r"TowerPretraining\.lr=-1\.0"),
        ({"epochs": 3}, r"unknown hyper-parameter\(s\) \['epochs'\]"),
    ],
)
def test_bad_hyper_parameters_are_named(toy, tok, change, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        _pretrain(toy, tok, **change)


def test_a_hub_tower_is_not_pretrained_here(toy, tok) -> None:
    images, texts, train, _ = toy
    with pytest.raises(ValueError, match=r"hub_id='openai/clip"):
        pretrain_tiny_tower(
            images,
            texts,
            tok,
            replace(VISION, hub_id="openai/clip-vit-base-patch16"),
            train_keys=train,
            seed=0,
            **FAST,
        )


def test_empty_texts_are_named(tok) -> None:
    with pytest.raises(ValueError, match=r"text 1 \(' '\) has no token"):
        encode_texts(tok, ["fine", " "], 8)


# ------------------------------------------------------------------------------------------------- cache


def _random_state(tok, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_tiny_clip(VISION, tok, TowerPretraining()).state_dict()


def test_the_cache_loads_a_built_tower_without_building_again(tmp_path: Path, tok) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    calls: list[int] = []

    def build(seed: int = 0) -> dict[str, torch.Tensor]:
        calls.append(seed)
        return _random_state(tok, seed)

    first = pretrained_tower(settings, "data0", VISION, 0, build)
    second = pretrained_tower(settings, "data0", VISION, 0, lambda: pytest.fail("built twice"))
    assert calls == [0]
    expected = _random_state(tok, 0)
    for name, value in second.state_dict().items():
        assert torch.equal(value, expected[f"vision.{name}"])
        assert torch.equal(value, first.state_dict()[name])
    assert second.frozen and not any(p.requires_grad for p in second.parameters())
    folder = tower_folder(settings, "data0", VISION, 0)
    assert folder.parent == tmp_path / "cache" / "towers" and (folder / "model.safetensors").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind

    others = {
        tower_folder(settings, "data0", VISION, 1),
        tower_folder(settings, "data1", VISION, 0),
        tower_folder(settings, "data0", replace(VISION, num_layers=2), 0),
        tower_folder(settings, "data0", VISION, 0, TowerPretraining(steps=401)),
    }
    assert folder not in others and len(others) == 4
    pretrained_tower(settings, "data0", VISION, 1, lambda: build(1))
    assert calls == [0, 1] and tower_folder(settings, "data0", VISION, 1).is_dir()
    # frozen-ness is not part of the weights: the same folder serves a trainable copy
    assert tower_folder(settings, "data0", replace(VISION, frozen=False), 0) == folder


def test_the_cache_records_how_long_the_build_took_outside_the_identity(tmp_path: Path, tok) -> None:
    settings = Settings(cache_dir=tmp_path)
    assert tower_build_info(settings, "d", VISION, 0) is None  # nothing cached yet
    before = tower_folder(settings, "d", VISION, 0)
    pretrained_tower(settings, "d", VISION, 0, lambda: _random_state(tok, 0))
    info = tower_build_info(settings, "d", VISION, 0)
    assert info is not None and set(info) == {"train_seconds", "cpu_seconds", "torch_threads"}
    assert info["train_seconds"] >= 0 and info["cpu_seconds"] >= 0 and info["torch_threads"] >= 1
    folder = tower_folder(settings, "d", VISION, 0)
    assert folder == before  # the record does not change the fingerprint ...
    manifest = json.loads((folder / "tower.json").read_text())
    assert manifest == tower_identity("d", VISION, 0, TowerPretraining())  # ... nor the identity
    assert "train_seconds" not in manifest
    # a cache hit neither rebuilds nor rewrites the record
    pretrained_tower(settings, "d", VISION, 0, lambda: pytest.fail("built twice"))
    assert tower_build_info(settings, "d", VISION, 0) == info
    # a tower cached without the record (an older course) still loads; its build time is unknown
    (folder / "build.json").unlink()
    pretrained_tower(settings, "d", VISION, 0, lambda: pytest.fail("must not rebuild"))
    assert tower_build_info(settings, "d", VISION, 0) is None


def test_a_damaged_cache_file_is_named(tmp_path: Path, tok) -> None:
    settings = Settings(cache_dir=tmp_path)
    pretrained_tower(settings, "d", VISION, 0, lambda: _random_state(tok, 0))
    weights = tower_folder(settings, "d", VISION, 0) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"model\.safetensors: cannot be read.*delete"):
        pretrained_tower(settings, "d", VISION, 0, lambda: pytest.fail("must not rebuild silently"))


def test_a_build_without_tower_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no 'vision\.\*' keys"):
        pretrained_tower(Settings(cache_dir=tmp_path), "d", VISION, 0, lambda: {"x": torch.zeros(1)})
    assert not list(tmp_path.rglob("*.safetensors"))


# ---------------------------------------------------------------------------------------------- measures


def test_linear_probe_separates_a_separable_toy() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    y_train, y_test = np.repeat(np.arange(3), 30), np.repeat(np.arange(3), 10)
    x_train = centres[y_train] + rng.normal(0, 0.5, (90, 2))
    x_test = centres[y_test] + rng.normal(0, 0.5, (30, 2))
    assert linear_probe(x_train, y_train, x_test, y_test, seed=0) == 1.0
    assert linear_probe(x_train, y_train, x_test, (y_test + 1) % 3, seed=0) == 0.0
    with pytest.raises(ValueError, match=r"30 test labels for 30 test rows"):
        linear_probe(x_train, y_train, x_test, y_test[:5], seed=0)


def test_retrieval_accuracy_counts_the_matching_text() -> None:
    image = torch.eye(4)
    assert retrieval_accuracy(image, 3 * image + 0.1) == 1.0
    assert retrieval_accuracy(image, image.roll(1, dims=0)) == 0.0
    half = image.clone()
    half[2], half[3] = image[3], image[2]  # two texts swapped
    assert retrieval_accuracy(image, half) == 0.5
    with pytest.raises(ValueError, match=r"same shape"):
        retrieval_accuracy(image, image[:3])


def test_tower_features_are_the_mean_and_the_flattened_patches(toy) -> None:
    images, _, train, _ = toy
    torch.manual_seed(0)
    vision = build_vision_encoder(VISION)
    pooled, flat = tower_features(vision, images, train[:5])
    patches = vision(images.batch(train[:5])["pixel_values"]).detach().double()
    assert pooled.shape == (5, 32) and flat.shape == (5, VISION.num_patches * 32)
    assert np.allclose(pooled, patches.mean(dim=1).numpy()) and np.allclose(flat, patches.flatten(1).numpy())


def test_tiny_clip_refuses_a_text_without_tokens() -> None:
    torch.manual_seed(0)
    clip = TinyCLIP(
        build_vision_encoder(replace(VISION, frozen=False)), TinyCLIPConfig(vocab_size=10, pad_token_id=0)
    )
    with pytest.raises(ValueError, match="no real token"):
        clip.encode_text(torch.zeros(2, 3, dtype=torch.long), torch.tensor([[1, 1, 0], [0, 0, 0]]))
