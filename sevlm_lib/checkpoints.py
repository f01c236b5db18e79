"""Rebuild a trained SEVLM and its tokenizer from a checkpoint folder (safetensors + JSON, no pickle).

A checkpoint folder written by ``experiments.train_model`` holds ``model.safetensors`` (every weight, the
frozen vision tower included), ``model_config.json``, ``tokenizer/`` and ``state.json``; the run folder
above it (``{checkpoint_dir}/{name}/seed-{seed}``) holds ``latest`` and, for runs started from the command
line, ``run.json`` (profile, config file, recipe).

The architecture is built with random weights (no hub download) and then every weight is loaded from the
checkpoint, strictly: a missing or extra tensor is an error naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sevlm_lib.models.sevlm import SEVLM, SEVLMConfig, random_weights
from sevlm_lib.text import SequenceBuilder, load_tokenizer

MODEL_CONFIG = "model_config.json"
RUN_INFO = "run.json"


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint folder: ``path`` itself (``step-*`` or ``best``), or the latest one of a run folder."""
    from sevlm_lib.training import MODEL_FILE, latest_checkpoint

    path = Path(path)
    if (path / MODEL_FILE).is_file() and (path / MODEL_CONFIG).is_file():
        return path
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is not None and (found / MODEL_CONFIG).is_file():
            return found
        nested = sorted(p.parent for p in path.glob("*/latest"))  # e.g. {name}/ holding seed-0/latest
        if len(nested) == 1:
            return resolve_checkpoint(nested[0])
    state = "does not exist" if not path.exists() else "holds no checkpoint"
    raise FileNotFoundError(
        f"{path}: {state}. Expected a checkpoint folder with {MODEL_FILE} and {MODEL_CONFIG} (e.g. "
        "{checkpoint_dir}/{name}/seed-0/step-000600) or a run folder with a 'latest' file; train one with "
        "`python -m sevlm_lib.train`"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None


def checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What is known about a checkpoint: its folder, ``state.json``, the recipe and ``run.json`` if any."""
    folder = resolve_checkpoint(path)
    state = _read_json(folder / "state.json") if (folder / "state.json").is_file() else {}
    extra = state.get("fingerprint_payload", {}).get("extra", {})
    run_file = folder.parent / RUN_INFO
    return {
        "path": str(folder),
        "run_dir": str(folder.parent),
        "step": state.get("step"),
        "finished": state.get("finished"),
        "recipe": extra.get("recipe", {}),
        "data_fingerprint": extra.get("data"),
        "run": _read_json(run_file) if run_file.is_file() else {},
    }


def load_trained(
    checkpoint_path: str | os.PathLike[str], *, device: str = "cpu"
) -> tuple[SEVLM, SequenceBuilder]:
    """``(model, builder)`` from a checkpoint folder (or the latest checkpoint of a run folder), in eval mode.

    ``model.config`` is the saved config (hub ids included, so a matching feature cache is found); the
    builder uses the saved tokenizer and the recipe's ``max_len``.
    """
    from sevlm_lib.training import load_checkpoint

    folder = resolve_checkpoint(checkpoint_path)
    try:
        cfg = SEVLMConfig.from_dict(_read_json(folder / MODEL_CONFIG))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{folder / MODEL_CONFIG}: not a SEVLM config ({err})") from None
    tokenizer = load_tokenizer(folder / "tokenizer")
    if len(tokenizer) != cfg.vocab_size:
        raise ValueError(
            f"{folder}: the tokenizer has {len(tokenizer)} tokens but {MODEL_CONFIG} says vocab_size={cfg.vocab_size}"
        )
    model = SEVLM(random_weights(cfg))
    model.config = cfg
    load_checkpoint(folder, model)
    model.to(device).eval()
    info = checkpoint_info(folder)
    max_len = int(info["recipe"].get("max_len", 30))
    return model, SequenceBuilder(tokenizer, max_len=max_len)


def profile_of(checkpoint_path: str | os.PathLike[str]) -> str:
    """The profile a checkpoint was trained on: from ``run.json``, else from its encoder (hub weights = full)."""
    info = checkpoint_info(checkpoint_path)
    if info["run"].get("profile"):
        return str(info["run"]["profile"])
    cfg = _read_json(Path(info["path"]) / MODEL_CONFIG)
    return "full" if cfg.get("vision", {}).get("hub_id") else "tiny"
