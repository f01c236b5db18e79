"""Prepare the course's data: ``python -m sevlm_lib.data.prepare`` (what ``make data`` runs).

Fetches and caches the Warriner VAD norms (the course's only download, see :mod:`sevlm_lib.vad`) and
generates the synthetic ArtEmis-mini under ``Settings.mini_dir`` (reused when already there), then prints
where each lives. Paths come from the ``SEVLM_*`` environment variables (:mod:`sevlm_lib.settings`).
``--rare-words`` also generates the rare-words condition (``{data_dir}/artemis_mini_rare``, see
:mod:`sevlm_lib.data.mini.rare`), a positive control whose validation and test explanations use feeling
words the training explanations do not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sevlm_lib.data.mini import ensure_artemis_mini, mini_image_root
from sevlm_lib.data.mini.build import MINI_ARTWORKS
from sevlm_lib.settings import get_settings
from sevlm_lib.vad import load_lexicon, warriner_csv_path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sevlm_lib.data.prepare",
        description="Fetch the Warriner VAD lexicon and generate the synthetic ArtEmis-mini dataset.",
    )
    parser.add_argument(
        "--n-artworks",
        type=int,
        default=MINI_ARTWORKS,
        help=f"artworks in ArtEmis-mini (default {MINI_ARTWORKS})",
    )
    parser.add_argument(
        "--seed", type=int, default=2024, help="generator seed of ArtEmis-mini (default 2024)"
    )
    parser.add_argument(
        "--rare-words",
        action="store_true",
        help="also generate the rare-words condition (held-out feeling words in validation and test) "
        "in artemis_mini_rare",
    )
    parser.add_argument(
        "--rare-train-rate",
        type=float,
        default=0.0,
        help="with --rare-words: the share of training explanations that use held-out words too "
        "(default 0: they are absent from training)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="fail with instructions instead of downloading the lexicon when it is not cached",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the preparation; returns the process exit code (0 on success, 1 when a file is missing)."""
    args = _parser().parse_args(argv)
    if args.n_artworks < 1:
        print(f"--n-artworks must be at least 1, got {args.n_artworks}", file=sys.stderr)
        return 2
    if not 0.0 <= args.rare_train_rate < 1.0 or (args.rare_train_rate > 0 and not args.rare_words):
        print(
            f"--rare-train-rate must be in [0, 1) and needs --rare-words, got {args.rare_train_rate}",
            file=sys.stderr,
        )
        return 2

    settings = get_settings()
    try:
        lexicon = load_lexicon("warriner", settings=settings, allow_download=not args.no_download)
    except FileNotFoundError as err:  # MissingFileError says what to fetch and where
        print(str(err), file=sys.stderr)
        return 1
    print(
        f"[sevlm] VAD lexicon: {lexicon.name}, {len(lexicon.entries)} words, at {warriner_csv_path(settings=settings)}"
    )
    csv_path = ensure_artemis_mini(settings, n_artworks=args.n_artworks, seed=args.seed, lexicon=lexicon)
    print(f"[sevlm] ArtEmis-mini (synthetic): {csv_path}")
    print(f"[sevlm] ArtEmis-mini images: {mini_image_root(settings)}")
    if args.rare_words:
        rare_csv = ensure_artemis_mini(
            settings,
            n_artworks=args.n_artworks,
            seed=args.seed,
            lexicon=lexicon,
            rare_words=True,
            rare_train_rate=args.rare_train_rate,
        )
        print(f"[sevlm] ArtEmis-mini, rare-words condition (synthetic): {rare_csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
