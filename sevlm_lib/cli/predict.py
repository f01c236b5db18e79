"""``python -m sevlm_lib.predict IMAGE [--checkpoint PATH]``: the emotion an artwork evokes, and why.

Prints the nine-emotion distribution (the probability of each emotion's phrase at the emotion slot,
renormalised over the nine) and the greedy generation: "the emotion is X because ...". Without
``--checkpoint`` the most recently written run under ``{checkpoint_dir}`` is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sevlm_lib.cli.run_config import positive_int
from sevlm_lib.data.artemis import open_image
from sevlm_lib.emotions import EMOTIONS
from sevlm_lib.generation import emotion_distribution, generate
from sevlm_lib.models.vision import image_transform
from sevlm_lib.pipeline import load_from_checkpoint as load_trained
from sevlm_lib.pipeline import resolve_sevlm_checkpoint
from sevlm_lib.settings import Settings, get_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sevlm_lib.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("image", type=Path, help="an image file (jpg, png, ...)")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a checkpoint folder, or a run folder (its best/ checkpoint when it has one, else its latest; default: the newest run in the checkpoint dir)",
    )
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=25, help="at most this many generated tokens (>= 1)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def newest_run(settings: Settings) -> Path:
    """The run folder (holding ``latest``) written most recently under ``settings.checkpoint_dir``."""
    runs = sorted(settings.checkpoint_dir.glob("*/*/latest"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(
            f"no trained run under {settings.checkpoint_dir}: train one (`python -m sevlm_lib.train --profile tiny`) "
            "or pass --checkpoint"
        )
    return runs[-1].parent


def predict_image(
    model: Any, builder: Any, image_path: str | Path, max_new_tokens: int = 25
) -> dict[str, Any]:
    """``{"distribution": {emotion: p}, "emotion", "explanation", "text"}`` for one image file."""

    image = open_image(image_path)
    pixels = image_transform(model.config.vision.image_size, style=model.config.image_transform)(image)[None]
    device = next(model.parameters()).device
    batch = {"pixel_values": pixels.to(device)}
    with torch.no_grad():
        probs = emotion_distribution(model, builder, batch)[0].cpu().tolist()
        gen = generate(model, builder, batch, max_new_tokens=max_new_tokens)
    parsed = gen.parsed[0]
    return {
        "image": str(image_path),
        "distribution": dict(zip(EMOTIONS, probs, strict=True)),
        "emotion": parsed.emotion,
        "explanation": parsed.explanation,
        "text": parsed.text,
    }


def format_prediction(result: dict[str, Any], width: int = 30) -> str:
    """The distribution as bars (most likely first) and the generated sentence."""
    dist = result["distribution"]
    lines = [f"{result['image']}", ""]
    for emotion, p in sorted(dist.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {emotion:<15} {p:6.1%}  {'#' * round(p * width)}")
    lines += [
        "",
        f"  generated: {result['text']}",
        f"  emotion:   {result['emotion'] or '(not one of the nine)'}",
        f"  because:   {result['explanation'] or '(no explanation)'}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    try:
        settings = get_settings()
        checkpoint = resolve_sevlm_checkpoint(args.checkpoint or newest_run(settings))
        model, builder = load_trained(checkpoint, device=settings.resolved_device())
        result = predict_image(model, builder, args.image, args.max_new_tokens)
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    result["checkpoint"] = str(checkpoint)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"[sevlm] checkpoint: {checkpoint}", file=sys.stderr)
        print(format_prediction(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
