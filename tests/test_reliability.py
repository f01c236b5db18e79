"""Runs are never lost and bad settings fail early and clearly: run locks, checkpoint checksums and the fall
back to the newest intact step, SIGTERM saving like Ctrl-C, pruning that leaves no half step, and run-config
and command-line errors that name the file, key or argument (issue: reliability)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from sevlm_lib.cli import predict as predict_cli
from sevlm_lib.cli.run_config import ConfigError, load_run_config
from sevlm_lib.engine import TrainConfig, Trainer, latest_checkpoint
from sevlm_lib.engine.checkpoint import CHECKSUMS_KEY, checkpoint_problems, load_checkpoint, step_folders
from sevlm_lib.engine.lock import LOCK_FILE, RunLock, RunLockedError
from sevlm_lib.settings import Settings
from tests.test_training import STEPS_PER_EPOCH, ToyLM, make_batches


def toy_trainer(max_steps: int = 6, checkpoint_every: int | None = 2, keep_last: int = 3) -> Trainer:
    config = TrainConfig(
        max_steps=max_steps, lr=1e-2, seed=0, checkpoint_every=checkpoint_every, keep_last=keep_last
    )
    return Trainer(ToyLM(), config, make_batches, STEPS_PER_EPOCH, quiet=True)


def write_lock(folder: Path, pid: int, host: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": "2026-01-01 00:00:00"}
    path.write_text(json.dumps(owner))
    return path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ------------------------------------------------------------------------------------------------ run locks


def test_a_live_owner_keeps_the_run(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    lock = write_lock(ckpt, os.getppid())  # another live process: our parent
    with pytest.raises(RunLockedError, match=rf"{ckpt}.*in use by process {os.getppid()}.*--name"):
        toy_trainer().fit(checkpoint_dir=ckpt)
    assert lock.is_file() and not step_folders(ckpt)  # nothing written, the owner's lock untouched


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpt = tmp_path / "ckpt"
    pid = dead_pid()
    write_lock(ckpt, pid)
    with caplog.at_level(logging.WARNING, logger="sevlm_lib"):
        history = toy_trainer().fit(checkpoint_dir=ckpt)
    assert history.finished
    assert f"taking over the lock of process {pid}" in caplog.text
    assert not (ckpt / LOCK_FILE).exists()  # released at the end


def test_the_lock_is_reentrant_in_one_process_and_released_once(tmp_path: Path) -> None:
    with RunLock(tmp_path), RunLock(tmp_path):
        assert (tmp_path / LOCK_FILE).is_file()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_second_command_of_the_same_name_refuses_and_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sevlm_lib.cli import train as train_cli

    runs = tmp_path / "runs"
    for key, value in {"SEVLM_RUNS_DIR": runs, "SEVLM_CHECKPOINT_DIR": runs / "ckpt", "SEVLM_QUIET": "1"}.items():
        monkeypatch.setenv(key, str(value))
    ckpt = runs / "ckpt" / "mine" / "seed-0"
    (ckpt / "step-000010").mkdir(parents=True)
    (ckpt / "step-000010" / "model.safetensors").write_bytes(b"the other run's weights")
    write_lock(ckpt, os.getppid())
    code = train_cli.main(["--profile", "tiny", "--name", "mine", "--restart", "--max-steps", "2"])
    assert code == 1
    assert "in use by process" in capsys.readouterr().err
    assert (ckpt / "step-000010" / "model.safetensors").read_bytes() == b"the other run's weights"


# ------------------------------------------------------------------------------------- checksums and fallback


def test_a_damaged_latest_step_falls_back_to_the_intact_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    toy_trainer(max_steps=4).fit(checkpoint_dir=tmp_path)
    steps = [folder for _step, folder in step_folders(tmp_path)]
    assert [f.name for f in steps] == ["step-000002", "step-000004"]
    state = json.loads((steps[-1] / "state.json").read_text())
    assert "model.safetensors" in state[CHECKSUMS_KEY] and "optimizer.pt" in state[CHECKSUMS_KEY]
    weights = steps[-1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    assert any("damaged" in p and "model.safetensors" in p for p in checkpoint_problems(steps[-1]))
    with caplog.at_level(logging.WARNING, logger="sevlm_lib"):
        assert latest_checkpoint(tmp_path) == steps[0]
    assert str(steps[-1]) in caplog.text and "damaged" in caplog.text
    # resuming continues from the intact step and reaches the end again
    history = toy_trainer(max_steps=4).fit(checkpoint_dir=tmp_path)
    assert history.finished and history.steps[-1]["step"] == 4


def test_a_flipped_bit_is_caught(tmp_path: Path) -> None:
    toy_trainer(max_steps=2, checkpoint_every=None).fit(checkpoint_dir=tmp_path)
    folder = latest_checkpoint(tmp_path)
    assert folder is not None
    data = bytearray((folder / "optimizer.pt").read_bytes())
    data[len(data) // 2] ^= 1
    (folder / "optimizer.pt").write_bytes(bytes(data))
    assert checkpoint_problems(folder) == [
        f"{folder / 'optimizer.pt'}: damaged (its sha256 differs from the one recorded when it was saved)"
    ]
    assert latest_checkpoint(tmp_path) is None


def test_loading_a_truncated_model_file_names_it(tmp_path: Path) -> None:
    toy_trainer(max_steps=2, checkpoint_every=None).fit(checkpoint_dir=tmp_path)
    folder = latest_checkpoint(tmp_path)
    assert folder is not None
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{weights}: cannot be read .*damaged or incomplete"):
        load_checkpoint(folder, ToyLM())


def test_pruning_renames_before_deleting(tmp_path: Path) -> None:
    toy_trainer(max_steps=6, keep_last=1).fit(checkpoint_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("step-")] == ["step-000006"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# --------------------------------------------------------------------------------------------------- SIGTERM


def test_sigterm_saves_the_last_finished_step(tmp_path: Path) -> None:
    def batches_then_sigterm(epoch: int) -> Any:
        for i, batch in enumerate(make_batches(epoch)):
            if epoch == 0 and i == 3:  # the 4th batch is being fetched: steps 1-3 are done
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    config = TrainConfig(max_steps=8, lr=1e-2, seed=0)
    trainer = Trainer(ToyLM(), config, batches_then_sigterm, STEPS_PER_EPOCH, quiet=True)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(checkpoint_dir=tmp_path)
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is put back
    saved = latest_checkpoint(tmp_path)
    assert saved is not None and saved.name == "step-000003"


def test_the_tiny_recipe_checkpoints_during_training() -> None:
    from sevlm_lib.recipes import recipe_for

    recipe = recipe_for("tiny")
    assert recipe.checkpoint_every is not None and recipe.checkpoint_every < recipe.max_steps


# ------------------------------------------------------------------------------- run configs and arguments


def test_duplicate_yaml_keys_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("profile: tiny\nrecipe:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=rf"{path}, line 4: .*key 'lr' appears twice \(lines 3 and 4\)"):
        load_run_config(path)


def test_a_folder_or_non_utf8_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"{tmp_path}: is a folder"):
        load_run_config(tmp_path)
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{path}: not UTF-8"):
        load_run_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("recipe:\n  batch_size: 0\n", "batch_size"),
        ("recipe:\n  max_steps: 10\n  epochs: 2\n", "exactly one of max_steps and epochs"),
        ("recipe:\n  warmup_steps: -1\n", "warmup_steps"),
        ("recipe:\n  patience: 3\n  monitor: null\n  tiebreak: null\n", "patience needs TrainConfig.monitor"),
        ("recipe:\n  mode: up\n", "mode"),
    ],
)
def test_recipe_values_are_checked_when_the_file_is_read(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("profile: tiny\n" + text)
    with pytest.raises(ConfigError, match=message):
        load_run_config(path)


def test_a_full_profile_file_may_set_max_steps(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("profile: full\nrecipe:\n  max_steps: 4\n")
    recipe = load_run_config(path).recipe("full")
    assert (recipe.max_steps, recipe.epochs) == (4, None)
    path.write_text("profile: tiny\nrecipe:\n  epochs: 2\n")
    recipe = load_run_config(path).recipe("tiny")
    assert (recipe.max_steps, recipe.epochs) == (None, 2)


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_predict_refuses_a_non_positive_token_budget(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        predict_cli.build_parser().parse_args(["image.png", "--max-new-tokens", value])
    assert exit_info.value.code == 2
    assert "--max-new-tokens" in capsys.readouterr().err


def test_cuda_without_a_gpu_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = Settings.from_env(device="cuda")
    with pytest.raises(RuntimeError, match="SEVLM_DEVICE=cuda: this machine has no CUDA GPU"):
        settings.resolved_device()


def test_an_uncreatable_runs_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from sevlm_lib.cli import train as train_cli

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SEVLM_RUNS_DIR", str(blocker / "runs"))
    monkeypatch.setenv("SEVLM_CHECKPOINT_DIR", str(blocker / "runs" / "ckpt"))
    assert train_cli.main(["--profile", "tiny", "--max-steps", "1"]) == 1
    err = capsys.readouterr().err
    assert str(blocker / "runs") in err and "cannot create the run folder" in err


def test_a_short_crc_list_in_a_cache_manifest_is_named(tmp_path: Path) -> None:
    from sevlm_lib.features import MANIFEST, FeatureCacheError, _read_manifest, build_feature_cache
    from sevlm_lib.models.vision import VisionConfig, build_vision_encoder

    torch.manual_seed(0)
    vision = build_vision_encoder(VisionConfig(image_size=32, patch_size=16, hidden_size=8, num_heads=2))
    keys = [("style", f"p{i}") for i in range(3)]
    build_feature_cache(vision, keys, lambda key: torch.zeros(3, 32, 32), tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["shards"][0]["row_crc32"] = manifest["shards"][0]["row_crc32"][:1]
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(FeatureCacheError, match=r"shards\[0\] .* lists 1 row checksums for 3 rows"):
        _read_manifest(tmp_path / MANIFEST)


def test_nonsense_model_settings_in_a_run_config_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("profile: tiny\nmodel:\n  vad_fusion: true\n  vad_encoder: {n_layers: -1, n_heads: 0, ffn: 0}\n")
    with pytest.raises(ConfigError, match=rf"{path}: VADEncoderConfig.n_layers=-1: expected a whole number >= 1"):
        load_run_config(path)
    path.write_text("profile: tiny\nmodel:\n  vad_encoder: {d_model: 4, n_heads: 3}\n")
    with pytest.raises(ConfigError, match="n_heads=3 must divide d_model=4"):
        load_run_config(path)


def test_a_diverging_logistic_regression_is_an_error_not_a_silent_class_zero() -> None:
    import numpy as np

    from sevlm_lib.baselines import fit_logistic_regression

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-2, 0.3, (20, 2)), rng.normal(2, 0.3, (20, 2))])
    y = np.array([0] * 20 + [1] * 20)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match=r"diverged .* lr=0.5, l2=10"):
        fit_logistic_regression(X, y, 2, l2=10, lr=0.5)  # (numpy's overflow warnings are the point here)
    fit_logistic_regression(X, y, 2, l2=10, lr=0.05)  # a safe step size fits
