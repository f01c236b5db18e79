"""``python -m sevlm_lib.train``: train one SEVLM variant from the command line (the notebooks' code path).

    python -m sevlm_lib.train --profile tiny       # tiny SEVLM, all additions on (= configs/tiny_sevlm.yaml)
    python -m sevlm_lib.train --config configs/sevlm_full.yaml                # the paper's run
    python -m sevlm_lib.train --config configs/tiny_baseline.yaml --seed 1 --max-steps 200
    accelerate launch --multi_gpu --num_processes 2 -m sevlm_lib.train --config configs/sevlm_full.yaml  # 2 GPUs
    torchrun --nproc_per_node 2 -m sevlm_lib.train --profile tiny --max-steps 20   # 2 CPU processes (gloo)

Everything goes through ``experiments.load_course_data`` and ``experiments.train_model``, exactly as in the
notebooks. Checkpoints go to ``{checkpoint_dir}/{name}/seed-{seed}/step-*``; the step log (``log.csv``),
``history.json`` and ``train.log`` to ``{runs_dir}/train/{name}/seed-{seed}``.

**Resuming.** By default a run continues where it stopped (a finished run is loaded, not retrained): run
the same command again after an interruption, nothing is lost. ``--resume`` insists on continuing (an error
if there is nothing to resume); ``--restart`` deletes that run's checkpoints and starts over. A run folder
holding a run made with other settings (model, recipe, data or seed) is never silently replaced: the
command stops and lists the differences; use ``--restart`` or another ``--name``.

**Several GPUs.** Under ``accelerate launch`` (or ``torchrun``; accelerate's own launcher needs MPI for
several CPU processes) every process runs this same command; the training engine
(``sevlm_lib.engine``, built on ``accelerate``) gives process ``r`` every ``r``-th batch of the one
deterministic batch stream and averages gradients (DDP). ``batch_size`` stays per process, so N processes
take N times fewer steps per epoch. Resuming needs the same number of processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sevlm_lib.cli.run_config import ConfigError, RunConfig, load_run_config, positive_int
from sevlm_lib.engine.checkpoint import clear_checkpoints, latest_checkpoint
from sevlm_lib.engine.lock import RunLock, RunLockedError
from sevlm_lib.features import weights_sha256
from sevlm_lib.io import write_json
from sevlm_lib.models.sevlm import SEVLMConfig
from sevlm_lib.pipeline import load_course_data, train_model, validation_scorer
from sevlm_lib.settings import PROFILES, Settings, apply_threads, get_settings

logger = logging.getLogger("sevlm_lib.train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sevlm_lib.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="tiny or full (default: the config file's, else SEVLM_PROFILE)",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="a YAML run config, e.g. configs/tiny_sevlm.yaml"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run; an error if there is none")
    group.add_argument("--restart", action="store_true", help="delete this run's checkpoints and start over")
    parser.add_argument("--seed", type=int, default=None, help="default: the config's, else SEVLM_SEED")
    parser.add_argument(
        "--max-steps", type=positive_int, default=None, help="override the recipe's max_steps (>= 1)"
    )
    parser.add_argument("--name", default=None, help="run name (default: the config's name or file name)")
    parser.add_argument(
        "--eval",
        action="store_true",
        help="evaluate on the validation split every recipe.eval_every steps (logged to eval.csv); always on "
        "when the recipe selects its checkpoint on validation (recipe.monitor, the full profile's default)",
    )
    return parser


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _say(message: str) -> None:
    if _rank() == 0:
        print(f"[sevlm] {message}", flush=True)


def _setup_logging(run_dir: Path) -> list[logging.Handler]:
    """INFO lines of sevlm_lib (e.g. the trainer's "resuming from ...") to stdout and ``train.log``, for the
    duration of one command (the handlers are removed afterwards)."""
    if _rank() != 0:
        return []
    lib = logging.getLogger("sevlm_lib")
    lib.setLevel(logging.INFO)
    run_dir.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    to_stdout = logging.StreamHandler(sys.stdout)  # progress, as the command's own [sevlm] lines
    to_stdout.setFormatter(logging.Formatter("[sevlm] %(message)s"))
    for handler in (to_file, to_stdout):
        lib.addHandler(handler)
    return [to_file, to_stdout]


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def expected_model_config(data: Any, config: Any) -> dict[str, Any]:
    """The model config ``experiments.build_model`` will use for ``data`` (vocabulary, image size)."""

    cfg = config.with_tokenizer(data.tokenizer)
    d = cfg.to_dict()
    d["vision"]["image_size"] = data.image_size
    return SEVLMConfig.from_dict(d).to_dict()


def run_differences(checkpoint: Path, expected: dict[str, Any], seed: int) -> list[str]:
    """How the run saved in ``checkpoint`` differs from the one about to start (empty: the same run)."""
    state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
    saved = state.get("fingerprint_payload", {}).get("extra", {})
    diffs = []
    for key in ("model", "data", "recipe"):
        old, new = _normalise(saved.get(key)), _normalise(expected[key])
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            diffs.append(f"{key}: {', '.join(f'{k} {old.get(k)!r} -> {new.get(k)!r}' for k in changed)}")
        else:
            diffs.append(f"{key}: {old!r} -> {new!r}")
    saved_seed = state.get("config", {}).get("seed")
    if saved_seed is not None and saved_seed != seed:
        diffs.append(f"seed: {saved_seed} -> {seed}")
    return diffs


DEFAULT_NAMES = {"tiny": "tiny_sevlm", "full": "sevlm_full"}


def default_run_config() -> RunConfig:
    """Without ``--config``: SEVLM with all three additions (the same run as configs/{tiny_sevlm,sevlm_full}.yaml)."""
    return RunConfig(model={"vad_fusion": True, "vad_head": True, "contrastive": True})


def _resolve(args: argparse.Namespace) -> tuple[RunConfig, str, Settings, int, str]:
    run_cfg = load_run_config(args.config) if args.config else default_run_config()
    if args.profile and run_cfg.profile and args.profile != run_cfg.profile:
        raise ConfigError(
            f"{args.config}: says profile: {run_cfg.profile}, but --profile {args.profile} was given"
        )
    profile = args.profile or run_cfg.profile or get_settings().profile
    settings = get_settings(profile=profile)
    apply_threads(settings)
    seed = (
        args.seed if args.seed is not None else (run_cfg.seed if run_cfg.seed is not None else settings.seed)
    )
    name = args.name or run_cfg.name or (args.config.stem if args.config else DEFAULT_NAMES[profile])
    if "/" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r}: expected a folder name (no '/', not starting with '.')")
    return run_cfg, profile, settings, seed, name


def _write_run_info(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    run_cfg: RunConfig,
    recipe: Any,
    model_cfg: Any,
    profile: str,
    name: str,
    seed: int,
    folders: Sequence[Path],
) -> None:
    """``run.json`` in the checkpoint and log folders: what was run, with which settings and command."""
    info = {
        "profile": profile,
        "name": name,
        "seed": seed,
        "variant": model_cfg.variant,
        "config_file": str(args.config) if args.config else None,
        "config": run_cfg.to_dict(),
        "recipe": recipe.to_dict(),
        "num_processes": _world_size(),
        "command": [sys.executable, "-m", "sevlm_lib.train", *(argv if argv is not None else sys.argv[1:])],
    }
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "run.json", info, default=str)


def _report_done(trained: Any, ckpt: Path, run_dir: Path, name: str, seed: int) -> None:
    """Print the weights' hash (every rank) and, on rank 0, where the run went and what to run next."""
    digest = weights_sha256(trained.model)
    rank, world = _rank(), _world_size()
    print(f"[sevlm] rank {rank} of {world}: parameters sha256 {digest}", flush=True)
    if rank != 0:
        return
    final = latest_checkpoint(ckpt)
    steps = trained.history.steps
    last = steps[-1] if steps else {}
    parts = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k in ("loss", "xe", "vad", "contrastive"))
    _say(
        f"done: {name} seed {seed}, {last.get('step', 0):.0f} steps, {trained.train_seconds:.1f} s of training"
    )
    _say(f"last step: {parts}")
    _say(f"checkpoint: {final}")
    _say(f"logs:       {run_dir}")
    _say(f"evaluate:   python -m sevlm_lib.evaluate --checkpoint {final}")
    _say(f"predict:    python -m sevlm_lib.predict IMAGE --checkpoint {final}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (0 done, 1 failed, 2 bad arguments/config, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        run_cfg, profile, settings, seed, name = _resolve(args)
        overrides = {"max_steps": args.max_steps, "epochs": None} if args.max_steps is not None else {}
        recipe = run_cfg.recipe(profile, **overrides)
        model_cfg = run_cfg.model_config(profile)
    except (ConfigError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    ckpt = settings.checkpoint_dir / name / f"seed-{seed}"
    run_dir = settings.runs_dir / "train" / name / f"seed-{seed}"
    old_level = logging.getLogger("sevlm_lib").level
    try:
        handlers = _setup_logging(run_dir)
    except OSError as err:
        print(
            f"error: {run_dir}: cannot create the run folder ({err.strerror}); check SEVLM_RUNS_DIR",
            file=sys.stderr,
        )
        return 1
    lock = RunLock(ckpt) if _rank() == 0 else None
    state = None
    if _world_size() > 1:
        from accelerate import PartialState

        state = PartialState(cpu=settings.resolved_device() == "cpu")
    try:
        if lock is not None:  # before anything reads, clears or writes this run's checkpoints
            lock.acquire()
        if args.restart and _rank() == 0:
            clear_checkpoints(ckpt)
            _say(f"--restart: cleared {ckpt}")
        if state is not None:
            state.wait_for_everyone()
        existing = latest_checkpoint(ckpt)
        if args.resume and existing is None:
            print(f"error: --resume: no checkpoint of run {name!r} (seed {seed}) in {ckpt}", file=sys.stderr)
            return 2
        _say(
            f"{profile} profile, {model_cfg.variant} ({name}, seed {seed}): "
            f"{f'{recipe.max_steps} steps' if recipe.max_steps else f'{recipe.epochs} epochs'} of "
            f"{recipe.batch_size} artworks per process, {_world_size()} process(es)"
        )
        t0 = time.perf_counter()
        if state is not None:
            with state.main_process_first():  # the first process generates/caches data and tokenizer
                data = load_course_data(settings, max_len=recipe.max_len, image_style=model_cfg.image_transform)
        else:
            data = load_course_data(settings, max_len=recipe.max_len, image_style=model_cfg.image_transform)
        _say(
            f"data: {len(data.annotations):,} annotations, {len(data.artworks):,} artworks "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        expected = {
            "model": expected_model_config(data, model_cfg),
            "data": data.fingerprint,
            "recipe": recipe.to_dict(),
        }
        if existing is not None:
            diffs = run_differences(existing, expected, seed)
            if diffs:
                print(
                    f"error: {ckpt} holds run {name!r} made with other settings:\n  "
                    + "\n  ".join(diffs)
                    + "\nUse --restart to replace it or --name to train beside it.",
                    file=sys.stderr,
                )
                return 2
            saved = json.loads((existing / "state.json").read_text(encoding="utf-8"))
            if saved.get("finished"):  # (a resume is announced by the trainer itself)
                _say(f"already trained: loading {existing}")
        if _rank() == 0:
            _write_run_info(args, argv, run_cfg, recipe, model_cfg, profile, name, seed, (ckpt, run_dir))

        eval_fn = None
        if args.eval or recipe.monitor is not None:  # the recipe selects its checkpoint on validation
            eval_fn = validation_scorer(data, recipe)

        trained = train_model(data, model_cfg, recipe, seed=seed, name=name, eval_fn=eval_fn)
    except KeyboardInterrupt:
        found = latest_checkpoint(ckpt)
        _say(f"interrupted; the last checkpoint is {found}. Run the same command again to resume.")
        return 130
    except RunLockedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        if handlers:  # the full traceback goes to train.log
            handlers[0].handle(
                logger.makeRecord(
                    logger.name, logging.ERROR, __file__, 0, "training failed", (), sys.exc_info()
                )
            )
        return 1
    finally:
        if lock is not None:
            lock.release()
        for handler in handlers:
            logging.getLogger("sevlm_lib").removeHandler(handler)
            handler.close()
        logging.getLogger("sevlm_lib").setLevel(old_level)

    _report_done(trained, ckpt, run_dir, name, seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
