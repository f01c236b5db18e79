"""The command line: YAML run configs, ``python -m sevlm_lib.train`` (crash + resume), evaluate and predict.

Runs and checkpoints go to a temporary folder; the ArtEmis-mini data and caches are the course's own (made
once if missing). The crash is simulated in-process (a ``KeyboardInterrupt`` raised from the batch stream:
the trainer checkpoints the last finished step); the resume is a real ``python -m sevlm_lib.train``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sevlm_lib.cli import evaluate, predict, train
from sevlm_lib.cli.run_config import ConfigError, load_run_config, parse_run_config
from sevlm_lib.data.datasets import PairBatches
from sevlm_lib.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
STEPS = 6


# ------------------------------------------------------------------------------------------ configs


def test_every_shipped_config_loads_and_names_its_variant() -> None:
    expected = {
        "tiny_baseline": "baseline",
        "tiny_fusion": "+fusion",
        "tiny_head": "+head",
        "tiny_contrastive": "+contrastive",
        "tiny_sevlm": "full",
        "sevlm_full": "full",
        "full_baseline": "baseline",
    }
    found = {p.stem: load_run_config(p) for p in sorted((ROOT / "configs").glob("*.yaml"))}
    assert set(expected) <= set(found)
    for stem, variant in expected.items():
        cfg = found[stem]
        assert cfg.name == stem and cfg.profile == stem.split("_")[0].replace("sevlm", "full")
        assert cfg.model_config().variant == variant
    full = found["sevlm_full"]
    assert full.model_config().vision.hub_id and full.recipe().lr == 2e-5 and full.recipe().batch_size == 32
    assert found["tiny_sevlm_reference_vad"].model_config().vad_encoder.causal is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profile: tiny\nmodle:\n  vad_head: true\n", r"bad\.yaml, line 2: unknown key 'modle'"),
        ("recipe:\n  lr: 0.1\n  batchsize: 8\n", r"line 3: unknown key 'batchsize' in recipe"),
        (
            "model:\n  vad_head: yes please\n",
            r"line 2: model\.vad_head: 'yes please', expected true or false",
        ),
        ("model:\n  vad_encoder:\n    layers: 2\n", r"line 3: unknown key 'layers' in model\.vad_encoder"),
        ("recipe:\n  max_steps: 1.5\n", r"recipe\.max_steps: 1\.5, expected an integer"),
        ("recipe:\n  mixed_precision: fp8\n", "mixed_precision: 'fp8'"),
        ("profile: medium\n", "profile: 'medium'"),
        ("recipe: [1, 2]\n", "recipe: expected a mapping"),
        ("model: {vad_head: true\n", r"bad\.yaml, line \d+: not valid YAML"),
        ("model:\n  negative_prompt: partner\n", r"line 2: model\.negative_prompt: 'partner', expected one of own"),
    ],
)
def test_bad_configs_name_the_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_run_config(path)


def test_config_values_reach_the_model_and_recipe() -> None:
    cfg = parse_run_config(
        {
            "profile": "tiny",
            "model": {
                "vad_fusion": True,
                "vad_loss_weight": 0.5,
                "vad_encoder": {"causal": False, "n_layers": 2},
            },
            "recipe": {"lr": "2e-3", "eval_every": None, "max_steps": 9},
        }
    )
    model = cfg.model_config()
    assert model.vad_fusion and not model.vad_head and model.vad_loss_weight == 0.5
    assert model.vad_encoder.causal is False and model.vad_encoder.n_layers == 2
    recipe = cfg.recipe(max_steps=4)
    assert recipe.lr == 2e-3 and recipe.max_steps == 4 and recipe.eval_every is None  # YAML 1.1's "2e-3"


def test_config_switches_for_loss_balance_reach_the_model_and_recipe() -> None:
    cfg = parse_run_config(
        {
            "profile": "tiny",
            "model": {"contrastive": True, "negative_prompt": "positive", "vad_encoder": {"d_model": 6}},
            "recipe": {"clip_groups": True},
        }
    )
    model = cfg.model_config()
    assert model.negative_prompt == "positive" and model.vad_encoder.d_model == 6
    assert cfg.recipe().clip_groups is True and cfg.recipe().train_config(seed=0, device="cpu").clip_groups


# ------------------------------------------------------------------------------------------ train / resume


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    """SEVLM_* variables for this module: the course's data and caches, runs and checkpoints in a temporary
    folder. In this process the course data is loaded once (``load_course_data`` memoised per arguments)."""
    from sevlm_lib import pipeline
    from sevlm_lib.data.mini import ensure_artemis_mini
    from sevlm_lib.tower import TowerPretraining

    base = Settings.from_env(profile="tiny")
    ensure_artemis_mini(base)
    runs = tmp_path_factory.mktemp("cli") / "runs"
    values = {
        "SEVLM_PROFILE": "tiny",
        "SEVLM_DATA_DIR": str(base.data_dir),
        "SEVLM_CACHE_DIR": str(base.cache_dir),
        "SEVLM_RUNS_DIR": str(runs),
        "SEVLM_CHECKPOINT_DIR": str(runs / "checkpoints"),
        "SEVLM_QUIET": "1",
        "SEVLM_DEVICE": "cpu",
        "SEVLM_SEED": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    mp = pytest.MonkeyPatch()
    for key, value in values.items():
        mp.setenv(key, value)
    original, loaded = pipeline.load_course_data, {}

    def once(settings=None, **kwargs):
        key = json.dumps(kwargs, sort_keys=True, default=str)
        if key not in loaded:
            loaded[key] = original(settings, **kwargs)
        return loaded[key]

    from sevlm_lib.cli import evaluate as cli_evaluate
    from sevlm_lib.cli import train as cli_train

    # the resumed run is a subprocess, which pre-trains the course's real tower: so must this process
    mp.setattr(pipeline, "COURSE_TOWER", TowerPretraining())
    for module in (pipeline, cli_train, cli_evaluate):  # the commands bind the name at import
        if hasattr(module, "load_course_data"):
            mp.setattr(module, "load_course_data", once)
    yield values
    mp.undo()


def log_rows(env: dict[str, str], name: str) -> pd.DataFrame:
    return pd.read_csv(Path(env["SEVLM_RUNS_DIR"]) / "train" / name / "seed-0" / "log.csv")


def checkpoint_dir(env: dict[str, str], name: str) -> Path:
    return Path(env["SEVLM_CHECKPOINT_DIR"]) / name / "seed-0"


@pytest.fixture(scope="module")
def crashed_and_resumed(env: dict[str, str]) -> dict[str, object]:
    """Crash a run after 3 of 6 steps (in-process), then resume it with the real command."""
    mp = pytest.MonkeyPatch()
    try:
        original = PairBatches.batches

        def crashing(self, epoch=0):
            for i, batch in enumerate(original(self, epoch)):
                if i == 3:  # the 4th batch is never delivered: "power cut" during step 4
                    raise KeyboardInterrupt
                yield batch

        mp.setattr(PairBatches, "batches", crashing)
        rc = train.main(["--profile", "tiny", "--name", "crash", "--max-steps", str(STEPS)])
    finally:
        mp.undo()
    ckpt = checkpoint_dir(env, "crash")
    before = (ckpt / "latest").read_text().strip()
    logged = log_rows(env, "crash")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sevlm_lib.train",
            "--profile",
            "tiny",
            "--name",
            "crash",
            "--max-steps",
            str(STEPS),
            "--resume",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    return {"crash_rc": rc, "latest_after_crash": before, "log_after_crash": logged, "resume": proc}


def test_interrupted_run_checkpoints_its_last_step(crashed_and_resumed: dict) -> None:
    assert crashed_and_resumed["crash_rc"] == 130
    assert crashed_and_resumed["latest_after_crash"] == "step-000003"
    assert list(crashed_and_resumed["log_after_crash"]["step"]) == [1, 2, 3]


def test_the_same_command_resumes_and_matches_an_uninterrupted_run(
    crashed_and_resumed: dict, env, capsys
) -> None:
    proc = crashed_and_resumed["resume"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {checkpoint_dir(env, 'crash') / 'step-000003'} (step 3 of {STEPS})" in proc.stdout
    assert f"checkpoint: {checkpoint_dir(env, 'crash') / f'step-{STEPS:06d}'}" in proc.stdout
    resumed = log_rows(env, "crash")
    assert list(resumed["step"]) == list(range(1, STEPS + 1))
    before = crashed_and_resumed["log_after_crash"]
    np.testing.assert_array_equal(resumed["loss"][:3], before["loss"])  # the first steps are kept, not redone
    assert train.main(["--profile", "tiny", "--name", "straight", "--max-steps", str(STEPS)]) == 0
    straight = log_rows(env, "straight")
    for column in ("loss", "xe", "vad", "contrastive"):
        np.testing.assert_allclose(resumed[column], straight[column], rtol=1e-4)
    assert "parameters sha256" in capsys.readouterr().out
    run = json.loads((checkpoint_dir(env, "crash") / "run.json").read_text())
    assert run["profile"] == "tiny" and run["variant"] == "full" and run["recipe"]["max_steps"] == STEPS


def test_a_finished_run_is_loaded_and_other_settings_are_refused(crashed_and_resumed, env, capsys) -> None:
    assert train.main(["--profile", "tiny", "--name", "crash", "--max-steps", str(STEPS)]) == 0
    assert "already trained" in capsys.readouterr().out
    assert train.main(["--profile", "tiny", "--name", "crash", "--max-steps", str(STEPS + 1)]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and f"max_steps {STEPS} -> {STEPS + 1}" in err and "--restart" in err
    assert (checkpoint_dir(env, "crash") / f"step-{STEPS:06d}").is_dir()  # nothing was deleted
    assert train.main(["--profile", "tiny", "--name", "never-ran", "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert train.main(["--config", str(ROOT / "configs" / "sevlm_full.yaml"), "--profile", "tiny"]) == 2
    assert "says profile: full" in capsys.readouterr().err


def test_restart_starts_over(crashed_and_resumed, env) -> None:
    assert train.main(["--profile", "tiny", "--name", "crash", "--max-steps", "2", "--restart"]) == 0
    ckpt = checkpoint_dir(env, "crash")
    assert (ckpt / "latest").read_text().strip() == "step-000002"
    assert not (ckpt / f"step-{STEPS:06d}").exists()
    assert list(log_rows(env, "crash")["step"]) == [1, 2]


# ------------------------------------------------------------------------------------------ evaluate / predict


def test_evaluate_and_predict_from_the_checkpoint(crashed_and_resumed, env, capsys, tmp_path: Path) -> None:
    ckpt = checkpoint_dir(env, "straight")
    out = tmp_path / "metrics.json"
    assert evaluate.main(["--checkpoint", str(ckpt), "--split", "val", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    from sevlm_lib.pipeline import load_course_data

    data = load_course_data(Settings.from_env(), max_len=30)
    assert printed["n_artworks"] == len(data.artwork_keys("val")) and printed["step"] == STEPS
    assert {"emo_acc", "bleu4", "vad_err", "cider"} <= set(printed)
    preds = pd.read_csv(out.with_suffix(".csv"))
    assert len(preds) == printed["n_artworks"]

    style, painting = data.artwork_keys("test")[0]
    image = Path(env["SEVLM_DATA_DIR"]) / "artemis_mini" / "images" / style / f"{painting}.png"
    assert predict.main([str(image), "--checkpoint", str(ckpt), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["distribution"]) == [
        "amusement",
        "awe",
        "contentment",
        "excitement",
        "anger",
        "disgust",
        "fear",
        "sadness",
        "something else",
    ]
    # the tiny recipe selects on validation, so predict reads the run's best/ checkpoint
    assert abs(sum(result["distribution"].values()) - 1) < 1e-4 and result["checkpoint"].endswith("best")
    assert predict.main([str(image), "--checkpoint", str(ckpt)]) == 0
    table = capsys.readouterr().out
    assert "generated:" in table and "%" in table
    assert predict.main([str(tmp_path / "nope.png"), "--checkpoint", str(ckpt)]) == 1
    assert evaluate.main(["--checkpoint", str(tmp_path / "none")]) == 1


def test_the_tower_command_finds_the_cached_tower(env, capsys) -> None:
    """``make data``'s last step: the tiny tower is built (or found) and its cache folder printed."""
    from sevlm_lib.cli import tower

    assert tower.main([]) == 0
    out = capsys.readouterr().out
    folder = Path(out.split(": ", 1)[1].rsplit(" (", 1)[0])
    assert folder.parent.name == "towers" and (folder / "model.safetensors").is_file()
