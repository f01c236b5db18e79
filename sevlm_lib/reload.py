"""Rebuild a trained SEVLM from its checkpoint folder: what ``evaluate``, ``predict`` and notebook 07 load.

* ``load_from_checkpoint(path)`` -> ``(model, builder)``, from a checkpoint folder or a run folder (its
  ``best/`` when selected on validation, else its latest intact step);
* ``checkpoint_info(path)`` and ``profile_of(path)``: what a checkpoint says about itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sevlm_lib.engine.checkpoint import (
    BEST_DIR,
    MODEL_FILE,
    checkpoint_problems,
    load_checkpoint,
    resolve_checkpoint,
)
from sevlm_lib.io import read_json
from sevlm_lib.models.sevlm import SEVLM, SEVLMConfig, builder_options, random_weights
from sevlm_lib.text import SequenceBuilder, load_tokenizer

MODEL_CONFIG = "model_config.json"


RUN_INFO = "run.json"
SEVLM_CHECKPOINT_FILES = (MODEL_FILE, MODEL_CONFIG)  # what a checkpoint needs to rebuild a SEVLM


def resolve_sevlm_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder a SEVLM is rebuilt from: ``path`` itself if it is one; for a run folder its
    ``best/`` (the checkpoint selected on validation) when there is an intact one, else its latest step."""
    path = Path(path)
    best = path / BEST_DIR
    has_best = all((best / f).is_file() for f in SEVLM_CHECKPOINT_FILES)
    if not (path / MODEL_FILE).is_file() and has_best and not checkpoint_problems(best):
        return best
    return resolve_checkpoint(path, needs=SEVLM_CHECKPOINT_FILES)


def checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What is known about a checkpoint: its folder, ``state.json``, the recipe and ``run.json`` if any."""
    folder = resolve_sevlm_checkpoint(path)
    state = read_json(folder / "state.json") if (folder / "state.json").is_file() else {}
    extra = state.get("fingerprint_payload", {}).get("extra", {})
    run_file = folder.parent / RUN_INFO
    return {
        "path": str(folder),
        "run_dir": str(folder.parent),
        "step": state.get("step"),
        "finished": state.get("finished"),
        "recipe": extra.get("recipe", {}),
        "data_fingerprint": extra.get("data"),
        "run": read_json(run_file) if run_file.is_file() else {},
    }


def load_from_checkpoint(
    checkpoint_path: str | os.PathLike[str], *, device: str = "cpu"
) -> tuple[SEVLM, SequenceBuilder]:
    """``(model, builder)`` from a checkpoint folder (or the latest checkpoint of a run folder), in eval mode.

    ``model.config`` is the saved config (hub ids included, so a matching feature cache is found); the
    builder uses the saved tokenizer and the recipe's ``max_len``.
    """

    folder = resolve_sevlm_checkpoint(checkpoint_path)
    try:
        cfg = SEVLMConfig.from_dict(read_json(folder / MODEL_CONFIG))
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
    return model, SequenceBuilder(tokenizer, max_len=max_len, **builder_options(cfg))


def profile_of(checkpoint_path: str | os.PathLike[str]) -> str:
    """The profile a checkpoint was trained on: from ``run.json``, else from its encoder (hub weights = full)."""
    info = checkpoint_info(checkpoint_path)
    if info["run"].get("profile"):
        return str(info["run"]["profile"])
    cfg = read_json(Path(info["path"]) / MODEL_CONFIG)
    return "full" if cfg.get("vision", {}).get("hub_id") else "tiny"
