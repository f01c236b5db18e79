"""``python -m sevlm_lib.features build|verify``: build the CLIP feature cache of a profile, or re-hash one."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sevlm_lib.data import artemis
from sevlm_lib.data.datasets import LazyImages
from sevlm_lib.data.mini import ensure_artemis_mini, mini_image_root
from sevlm_lib.features import (
    FeatureCache,
    FeatureCacheError,
    build_feature_cache,
    default_cache_dir,
    discard_cache,
    pooled_tokens,
    weights_sha256,
)
from sevlm_lib.models.sevlm import full_config, tiny_config
from sevlm_lib.models.vision import build_vision_encoder, image_transform
from sevlm_lib.pipeline import build_model, load_course_data
from sevlm_lib.settings import get_settings, seed_everything


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sevlm_lib.features build|verify``."""
    parser = argparse.ArgumentParser(
        prog="python -m sevlm_lib.features", description="The CLIP feature cache"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compute the features of every artwork of a profile (resumes)")
    b.add_argument("--profile", choices=("tiny", "full"), default=None, help="default: SEVLM_PROFILE")
    b.add_argument("--pool", action="store_true", help="store 2x2-pooled features (49 tokens, 4x less disk)")
    b.add_argument("--out", type=Path, default=None, help="default: {cache_dir}/features/<encoder>")
    b.add_argument(
        "--rebuild",
        action="store_true",
        help="discard the cache already in the output folder (e.g. built from other images) and build it anew",
    )
    b.add_argument("--shard-size", type=int, default=4096)
    b.add_argument("--batch-size", type=int, default=128)
    b.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1))
    b.add_argument(
        "--seed", type=int, default=None, help="a random tower's seed (default: SEVLM_SEED)"
    )
    v = sub.add_parser("verify", help="re-hash every shard of a cache")
    v.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "verify":
        try:
            problems = FeatureCache(args.folder, verify_rows=False).verify()
        except FeatureCacheError as err:
            print(err, file=sys.stderr)
            return 1
        for line in problems:
            print(line, file=sys.stderr)
        print("intact" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0

    settings = get_settings(**({"profile": args.profile} if args.profile else {}))
    cfg = full_config() if settings.profile == "full" else tiny_config()
    seed = settings.seed if args.seed is None else args.seed
    if settings.profile == "tiny":
        csv, root = ensure_artemis_mini(settings), mini_image_root(settings)
    else:
        csv, root = settings.artemis_csv, settings.wikiart_dir
    df = artemis.load_artemis(csv)
    keys = sorted(set(zip(df["art_style"], df["painting"], strict=True)))
    if cfg.vision.weights == "tiny-clip":  # the tiny profile's tower is pre-trained on the course data
        data = load_course_data(settings, progress=not settings.quiet)
        vision = build_model(data, cfg, seed).vision.to(settings.resolved_device())
    else:
        seed_everything(seed)  # a random tower is fixed by the seed; a hub tower by its revision
        vision = build_vision_encoder(cfg.vision).to(settings.resolved_device())
    images = LazyImages(artemis.ImageResolver(root), image_transform(cfg.vision.image_size))
    out = args.out or default_cache_dir(settings, cfg.vision, args.pool, weights_sha256(vision))
    size = len(keys) * pooled_tokens(cfg.vision.num_patches, args.pool) * cfg.vision.hidden_size * 2
    if args.rebuild:
        removed = discard_cache(out)
        if removed:
            print(f"[sevlm] --rebuild: removed {removed} file(s) of the old cache in {out}")
    print(f"[sevlm] {len(keys):,} artworks -> {out} (about {size / 1024**2:,.0f} MiB of fp16 features)")
    cache = build_feature_cache(
        vision,
        keys,
        images,
        out,
        shard_size=args.shard_size,
        pool=args.pool,
        batch_size=args.batch_size,
        progress=not settings.quiet,
        num_workers=args.num_workers,
        hub_id=cfg.vision.hub_id,
        revision=cfg.vision.revision,
        image_root=root,
    )
    print(cache)
    return 0
