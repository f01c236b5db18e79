"""The full profile rehearsed end to end, offline, through its command lines (issue 16).

A Hugging Face cache in the hub's layout at the pinned ids and revisions holds small random-weight CLIP and
GPT-2 models and GPT-2-format BPE files (``tests/fake_hub.py``); ArtEmis is written as
``artemis_dataset_release_v0.csv`` + ``wikiart/{art_style}/{painting}.jpg``. Every command runs as a new
process (``python -m tests.fake_hub MODULE ...``: the real module, with ``full_config``'s sizes shrunk to
the fake models'), with its environment given explicitly: ``check``, ``features build``, ``train`` without
and with the feature cache, an interrupted run and its resume, ``evaluate`` and ``predict``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sevlm_lib.settings import Settings
from tests import fake_hub

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4
INTERRUPT_AT = 3  # the 4th batch never arrives: the run stops after step 3
RUN_CONFIG = """\
profile: full
model:
  vad_fusion: true
  vad_head: true
  contrastive: true
recipe:
  batch_size: 4
  checkpoint_every: 2
"""
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT")


class World:
    """The fake hub, the ArtEmis v1 layout, the run config and the environment of every command."""

    def __init__(self, base: Path) -> None:
        self.base = base
        rows = fake_hub.artemis_rows()
        texts = [f"the emotion is {r[2]} because {r[3]}" for r in rows] * 2
        self.hub = base / "hf" / "hub"
        fake_hub.build_fake_hub(self.hub, texts, base / "work")
        self.csv, self.wikiart = fake_hub.write_artemis_v1(base / "data", rows)
        from sevlm_lib.emotions import EMOTIONS

        self.nrc = fake_hub.write_nrc_vad(
            base / "data" / "lexicons" / "NRC-VAD-Lexicon.txt", [*fake_hub.WORDS, *EMOTIONS[:-1]]
        )
        self.config = base / "sevlm_full_small.yaml"
        self.config.write_text(RUN_CONFIG)
        self.cache_dir = base / "cache"
        self.env = {
            **{k: os.environ[k] for k in _KEEP if k in os.environ},
            "PYTHONPATH": str(ROOT),
            "HF_HOME": str(base / "hf"),
            "HF_HUB_CACHE": str(self.hub),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "SEVLM_PROFILE": "full",
            "SEVLM_DATA_DIR": str(base / "data"),
            "SEVLM_CACHE_DIR": str(self.cache_dir),
            "SEVLM_RUNS_DIR": str(base / "runs"),
            "SEVLM_CHECKPOINT_DIR": str(base / "checkpoints"),
            "SEVLM_ARTEMIS_CSV": str(self.csv),
            "SEVLM_WIKIART_DIR": str(self.wikiart),
            "SEVLM_NRC_VAD": str(self.nrc),
            "SEVLM_QUIET": "1",
            "SEVLM_DEVICE": "cpu",
            "SEVLM_SEED": "0",
        }

    def run(self, module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``python -m MODULE ARGS`` (through the size-shrinking launcher) in a fresh process."""
        return subprocess.run(
            [sys.executable, "-m", "tests.fake_hub", module, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )

    def train(self, name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "sevlm_lib.train", "--config", str(self.config), "--name", name, "--max-steps", str(STEPS), *args, **env
        )

    def log(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.base / "runs" / "train" / name / "seed-0" / "log.csv")

    def checkpoints(self, name: str) -> Path:
        return self.base / "checkpoints" / name / "seed-0"

    def feature_caches(self) -> list[Path]:
        return sorted(p.parent for p in (self.cache_dir / "features").glob("*/manifest.json"))


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def _sha256_line(proc: subprocess.CompletedProcess[str]) -> str:
    return next(line for line in proc.stdout.splitlines() if "parameters sha256" in line)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("full_profile"))


@pytest.fixture(scope="module")
def runs(world: World) -> dict[str, Any]:
    """The path a new user takes, once: check, train (no cache yet), build the cache, train with it, a run
    interrupted after step 3 and resumed by the same command, evaluate, predict."""
    out: dict[str, Any] = {"check": world.run("sevlm_lib.check", "--profile", "full")}
    out["live"] = world.train("live")
    out["build"] = world.run("sevlm_lib.features", "build", "--profile", "full", "--num-workers", "0")
    out["cached"] = world.train("cached")
    out["crash"] = world.train("crash", FAKE_HUB_INTERRUPT_AT=str(INTERRUPT_AT))
    latest = world.checkpoints("crash") / "latest"
    out["latest_after_crash"] = latest.read_text().strip() if latest.is_file() else None
    out["log_after_crash"] = world.log("crash") if out["crash"].returncode == 130 else None
    out["resume"] = world.train("crash")
    out["evaluate"] = world.run(
        "sevlm_lib.evaluate", "--checkpoint", str(world.checkpoints("cached")), "--split", "test"
    )
    out["image"] = next(world.wikiart.glob("*/*.png"))
    out["predict"] = world.run(
        "sevlm_lib.predict", str(out["image"]), "--checkpoint", str(world.checkpoints("cached")), "--json"
    )
    return out


# ------------------------------------------------------------------------------------------ the path works


def test_check_passes_on_the_full_layout(runs: dict[str, Any]) -> None:
    text = _ok(runs["check"]).stdout
    assert "Everything required is present" in text
    for line in ("[      ok] CLIP ViT-B/16", "[      ok] distilgpt2", "[      ok] WikiArt images"):
        assert line in text


def test_training_reads_the_same_features_with_and_without_the_cache(world: World, runs: dict[str, Any]) -> None:
    _ok(runs["live"])
    _ok(runs["build"])
    (cache,) = world.feature_caches()
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_images"] == 40
    assert manifest["encoder"]["revision"] and manifest["encoder"]["hub_id"] == "openai/clip-vit-base-patch16"
    assert manifest["images"]["root"] == str(world.wikiart.resolve()) and len(manifest["images"]["files"]) == 40
    _ok(runs["cached"])
    live, cached = world.log("live"), world.log("cached")
    assert list(live["step"]) == list(cached["step"]) == list(range(1, STEPS + 1))
    for column in ("loss", "xe", "vad", "contrastive"):  # fp16 features vs the fp32 tower: equal to 1e-5
        np.testing.assert_allclose(cached[column], live[column], rtol=0, atol=1e-5)


def test_an_interrupted_run_resumes_exactly(world: World, runs: dict[str, Any]) -> None:
    assert runs["crash"].returncode == 130, _output(runs["crash"])[-3000:]
    assert "Run the same command again to resume" in runs["crash"].stdout
    assert runs["latest_after_crash"] == f"step-{INTERRUPT_AT:06d}"
    assert list(runs["log_after_crash"]["step"]) == list(range(1, INTERRUPT_AT + 1))
    resume = _ok(runs["resume"])
    assert f"resuming from {world.checkpoints('crash') / f'step-{INTERRUPT_AT:06d}'}" in _output(resume)
    resumed, straight = world.log("crash"), world.log("cached")
    pd.testing.assert_frame_equal(resumed, straight)  # same losses, learning rates and gradient norms
    assert _sha256_line(resume) == _sha256_line(runs["cached"])  # the same final weights, bit for bit


def test_evaluate_and_predict_read_the_checkpoint(world: World, runs: dict[str, Any]) -> None:
    metrics = json.loads(_ok(runs["evaluate"]).stdout)
    assert metrics["profile"] == "full" and metrics["split"] == "test" and metrics["step"] == STEPS
    assert metrics["n_artworks"] == 4 and {"emo_acc", "bleu4", "cider"} <= set(metrics)
    result = json.loads(_ok(runs["predict"]).stdout)
    assert result["image"].endswith(".png")
    from sevlm_lib.emotions import EMOTIONS

    assert list(result["distribution"]) == list(EMOTIONS)
    assert abs(sum(result["distribution"].values()) - 1) < 1e-4


def test_expected_load_reports_are_explained_in_one_line(runs: dict[str, Any]) -> None:
    """Item 7: no table of UNEXPECTED (CLIP's text tower) or MISSING (new cross-attention) rows."""
    text = _output(_ok(runs["cached"]))
    for noise in ("LOAD REPORT", "UNEXPECTED", "MISSING", "Loading weights"):
        assert noise not in text
    explained = [line for line in text.splitlines() if line.endswith("as expected")]
    assert len(explained) == 2  # one line for CLIP, one for distilgpt2
    assert "CLIP's text tower" in explained[0] and "cross-attention" in explained[1]


def test_a_cache_built_from_other_images_is_refused_until_rebuilt(world: World, runs: dict[str, Any]) -> None:
    """Item 2: the same artworks with one image replaced (in a copy of the WikiArt folder and the cache)."""
    _ok(runs["build"])
    other, cache_dir = world.base / "wikiart-other", world.base / "cache-other"
    shutil.copytree(world.wikiart, other)
    shutil.copytree(world.cache_dir, cache_dir)
    changed = sorted(other.glob("*/*.jpg"))[0]
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 30, 30)).save(changed)
    env = {"SEVLM_WIKIART_DIR": str(other), "SEVLM_CACHE_DIR": str(cache_dir)}
    refused = world.train("stale", **env)
    assert refused.returncode == 1, _output(refused)[-3000:]
    (cache,) = sorted(p.parent for p in (cache_dir / "features").glob("*/manifest.json"))
    artwork = f"{changed.parent.name}/{changed.stem}"
    assert str(cache) in refused.stderr and artwork in refused.stderr
    assert "python -m sevlm_lib.features build --profile full --rebuild" in refused.stderr
    _ok(world.run("sevlm_lib.features", "build", "--profile", "full", "--rebuild", "--num-workers", "0", **env))
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["images"]["root"] == str(other.resolve())
    _ok(world.train("stale", **env))


# ------------------------------------------------------------------------------------------ known bugs (issue 16)


def test_max_steps_in_a_full_profile_config_file(world: World, runs: dict[str, Any]) -> None:
    config = world.base / "max_steps.yaml"
    config.write_text(RUN_CONFIG + "  max_steps: 2\n")
    proc = world.run("sevlm_lib.train", "--config", str(config), "--name", "from_yaml")
    _ok(proc)
    assert list(world.log("from_yaml")["step"]) == [1, 2]


def test_evaluate_needs_nothing_from_the_hub(world: World, runs: dict[str, Any]) -> None:
    empty = world.base / "empty-hub"
    empty.mkdir(exist_ok=True)
    proc = world.run(
        "sevlm_lib.evaluate", "--checkpoint", str(world.checkpoints("cached")), "--split", "val",
        HF_HUB_CACHE=str(empty), HF_HOME=str(world.base / "empty-home"),
    )
    _ok(proc)
    assert json.loads(proc.stdout)["split"] == "val"


def test_check_loads_the_tokenizer_it_checks(world: World, runs: dict[str, Any]) -> None:
    broken = world.base / "hub-no-merges"
    if not broken.exists():
        shutil.copytree(world.hub, broken, symlinks=True)
        from sevlm_lib.text import GPT2_HUB_ID, GPT2_REVISION

        snapshot = fake_hub.repo_folder(broken, GPT2_HUB_ID) / "snapshots" / GPT2_REVISION
        for name in ("merges.txt", "tokenizer.json"):  # vocab.json alone cannot make a BPE
            (snapshot / name).unlink()
    proc = world.run("sevlm_lib.check", "--profile", "full", HF_HUB_CACHE=str(broken))
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "tokenizer" in proc.stdout.lower() and "merges.txt" in proc.stdout


def test_runs_say_whether_they_read_cached_features(world: World, runs: dict[str, Any]) -> None:
    (cache,) = world.feature_caches()
    assert "no matching feature cache" in _output(runs["live"])
    assert f"feature cache {cache}" in _output(runs["cached"])
    assert f"feature cache {cache}" in _output(runs["evaluate"])


def test_resuming_is_announced_once(runs: dict[str, Any]) -> None:
    assert _output(_ok(runs["resume"])).count("resuming from") == 1


def test_a_normal_run_prints_no_transformers_notes(runs: dict[str, Any]) -> None:
    assert "[transformers]" not in _output(_ok(runs["cached"]))


def test_check_says_png_images_are_accepted(runs: dict[str, Any]) -> None:
    wikiart = [line for line in _ok(runs["check"]).stdout.splitlines() if "layout" in line and "wikiart" in line]
    assert wikiart and all(".png" in line for line in wikiart)


# ------------------------------------------------------------------------------------------ the image fingerprint, in-process


@pytest.fixture
def small_cache(tmp_path: Path) -> tuple[Any, Any, Path, Path, Settings]:
    """A feature cache of 6 artworks built from image files (a random 1-layer tower, 32 px)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from sevlm_lib.data.artemis import ImageResolver
    from sevlm_lib.data.datasets import LazyImages
    from sevlm_lib.features import build_feature_cache, default_cache_dir, weights_sha256
    from sevlm_lib.models.sevlm import tiny_config
    from sevlm_lib.models.vision import VisionEncoder, image_transform

    _, wikiart = fake_hub.write_artemis_v1(tmp_path / "data", fake_hub.artemis_rows(6), png=0)
    torch.manual_seed(0)
    cfg = CLIPVisionConfig(image_size=32, patch_size=16, hidden_size=16, intermediate_size=32,
                           num_hidden_layers=1, num_attention_heads=2)
    vision = VisionEncoder(CLIPVisionModel(cfg))
    config = tiny_config()
    d = config.to_dict()
    d["vision"].update(image_size=32, patch_size=16, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    config = type(config).from_dict(d)
    settings = Settings(profile="full", cache_dir=tmp_path / "cache", wikiart_dir=wikiart)
    keys = sorted({(a, p) for a, p, *_ in fake_hub.artemis_rows(6)})
    out = default_cache_dir(settings, config.vision, weights=weights_sha256(vision))
    images = LazyImages(ImageResolver(wikiart), image_transform(32))
    build_feature_cache(vision, keys, images, out, shard_size=4)
    return vision, config, out, wikiart, settings


def test_touched_images_are_rehashed_and_changed_ones_refused(small_cache) -> None:
    from sevlm_lib.features import FeatureCache, FeatureCacheError, find_feature_cache

    vision, config, out, wikiart, settings = small_cache
    assert find_feature_cache(settings, config, vision=vision).root == out
    first, second = sorted(wikiart.glob("*/*.jpg"))[:2]
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes: still the cache
    assert find_feature_cache(settings, config, vision=vision).root == out
    data = bytearray(second.read_bytes())
    data[-3] ^= 0xFF  # same size, other content, new time
    second.write_bytes(bytes(data))
    os.utime(second, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    with pytest.raises(FeatureCacheError) as err:
        find_feature_cache(settings, config, vision=vision)
    message = str(err.value)
    assert str(out) in message and f"{second.parent.name}/{second.stem}" in message and "--rebuild" in message
    assert f"{first.parent.name}/{first.stem}" not in message
    with pytest.raises(FeatureCacheError, match="built from other images"):
        FeatureCache(out, image_root=wikiart)
    FeatureCache(out)  # without an image root: opened as before (e.g. `features verify`)


def test_a_moved_image_folder_with_the_same_files_is_accepted_and_a_png_swap_is_not(small_cache) -> None:
    from sevlm_lib.features import FeatureCacheError, find_feature_cache

    vision, config, out, wikiart, settings = small_cache
    moved = wikiart.parent / "moved"
    shutil.copytree(wikiart, moved)  # new root, same bytes, new modification times
    assert find_feature_cache(settings.with_(wikiart_dir=moved), config, vision=vision).root == out
    jpg = sorted(moved.glob("*/*.jpg"))[0]
    from PIL import Image

    Image.open(jpg).save(jpg.with_suffix(".png"))
    jpg.unlink()
    with pytest.raises(FeatureCacheError, match=r"the image is now .*\.png"):
        find_feature_cache(settings.with_(wikiart_dir=moved), config, vision=vision)


def test_a_cache_from_before_the_fingerprint_is_refused_with_the_rebuild_command(small_cache) -> None:
    from sevlm_lib.features import FeatureCacheError, find_feature_cache

    vision, config, out, _, settings = small_cache
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["images"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeatureCacheError, match=r"built before caches recorded their images.*--rebuild"):
        find_feature_cache(settings, config, vision=vision)


def test_describe_image_source_says_where_features_come_from(small_cache) -> None:
    from sevlm_lib.data.artemis import ImageResolver
    from sevlm_lib.data.datasets import LazyImages
    from sevlm_lib.features import FeatureCache, describe_image_source, uses_feature_cache

    _, _, out, wikiart, settings = small_cache
    cache = FeatureCache(out)
    assert uses_feature_cache(cache) and describe_image_source(cache).startswith(f"image features: read from the feature cache {out}")
    lazy = LazyImages(ImageResolver(wikiart), lambda image: image)
    assert not uses_feature_cache(lazy)
    text = describe_image_source(lazy, settings)
    assert "no matching feature cache" in text and str(settings.cache_dir / "features") in text


def test_an_in_memory_cache_from_before_the_fingerprint_is_still_resumed(tmp_path: Path) -> None:
    """Notebook 06 builds its demo cache from pixels in memory: no files, so nothing to fingerprint."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from sevlm_lib.features import build_feature_cache
    from sevlm_lib.models.vision import VisionEncoder

    torch.manual_seed(0)
    vision = VisionEncoder(CLIPVisionModel(CLIPVisionConfig(
        image_size=32, patch_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )))
    keys = [("style", f"p{i}") for i in range(3)]
    images = {k: torch.rand(3, 32, 32) for k in keys}
    cache = build_feature_cache(vision, keys, images.__getitem__, tmp_path / "c")
    assert cache.manifest["images"] is None and cache.image_root is None
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    del manifest["images"]
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(manifest))
    again = build_feature_cache(vision, keys, images.__getitem__, tmp_path / "c")
    np.testing.assert_array_equal(again.rows(keys), cache.rows(keys))
