"""``python -m sevlm_lib.evaluate --checkpoint PATH [--split test]``: metrics of a trained checkpoint.

Rebuilds the model and tokenizer from the checkpoint (:func:`sevlm_lib.checkpoints.load_trained`), loads the
data of the profile it was trained on, generates an explanation for every artwork of the split and prints
the metrics as JSON (Emo-A under both dominant-emotion rules, BLEU-1..4, ROUGE-L, CIDEr, VAD error,
diversity). The JSON and the per-artwork predictions (CSV) are also written, by default to
``{runs_dir}/evaluate/{run name}/seed-{seed}/{checkpoint}-{split}.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sevlm_lib.pipeline import checkpoint_info, evaluate_model, load_course_data, profile_of
from sevlm_lib.pipeline import load_from_checkpoint as load_trained
from sevlm_lib.settings import PROFILES, get_settings

SPLITS = ("train", "val", "test", "rest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sevlm_lib.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="a checkpoint folder (step-*/best) or a run folder (its latest checkpoint)",
    )
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="the data to evaluate on (default: the profile the checkpoint was trained on)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the recipe's (25)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the metrics JSON")
    return parser


def evaluate_checkpoint(
    checkpoint: str | Path,
    split: str = "test",
    *,
    profile: str | None = None,
    max_new_tokens: int | None = None,
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """``(metrics, predictions DataFrame, checkpoint info)`` for one checkpoint on one split."""

    info = checkpoint_info(checkpoint)
    profile = profile or profile_of(checkpoint)
    settings = get_settings(profile=profile)
    model, builder = load_trained(info["path"], device=settings.resolved_device())
    data = load_course_data(  # with the checkpoint's tokenizer and image transform
        settings,
        max_len=builder.max_len,
        tokenizer=builder.tokenizer,
        image_style=model.config.image_transform,
    )
    if info["data_fingerprint"] and info["data_fingerprint"] != data.fingerprint:
        print(
            "[sevlm] warning: the checkpoint was trained on other data (its data fingerprint differs)",
            file=sys.stderr,
        )
    data = dataclasses.replace(data, tokenizer=builder.tokenizer, builder=builder)
    tokens = max_new_tokens or int(info["recipe"].get("max_new_tokens", 25))
    metrics, preds = evaluate_model(model, data, split, max_new_tokens=tokens)
    out = {
        "checkpoint": info["path"],
        "step": info["step"],
        "split": split,
        "profile": profile,
        **{k: _finite_or_none(v) for k, v in metrics.items()},
    }
    return out, preds, info


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN: an undefined metric (e.g. VAD error with no scorable word) is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(
        sys.stderr
    )  # the library's INFO lines (where the image features come from)
    handler.setFormatter(logging.Formatter("[sevlm] %(message)s"))
    library = logging.getLogger("sevlm_lib")
    old_level = library.level
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    try:
        metrics, preds, info = evaluate_checkpoint(
            args.checkpoint, args.split, profile=args.profile, max_new_tokens=args.max_new_tokens
        )
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        library.removeHandler(handler)
        library.setLevel(old_level)
    if args.out is not None:
        out = args.out
    else:
        run = info["run"]
        settings = get_settings(profile=metrics["profile"])
        folder = Path(info["run_dir"])
        name = run.get("name") or folder.parent.name
        out = (
            settings.runs_dir
            / "evaluate"
            / name
            / folder.name
            / f"{Path(info['path']).name}-{args.split}.json"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metrics, indent=1, sort_keys=True)
    out.write_text(text + "\n", encoding="utf-8")
    preds.to_csv(out.with_suffix(".csv"), index=False)
    print(text)
    print(f"[sevlm] metrics: {out}; predictions: {out.with_suffix('.csv')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
