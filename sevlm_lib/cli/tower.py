"""``python -m sevlm_lib.cli.tower``: pre-train (or find) the tiny profile's vision tower, as ``make data`` does.

The tiny profile's frozen tower is pre-trained as a tiny CLIP on the training split's (image, explanation)
pairs (:mod:`sevlm_lib.tower`) and cached under ``{cache_dir}/towers/``; every notebook and command would build
it on first use anyway, so this command only moves that minute to setup time (for a room without spare time).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from sevlm_lib.models.sevlm import tiny_config
from sevlm_lib.pipeline import COURSE_TOWER, TOWER_SEED, course_tower_state, load_course_data
from sevlm_lib.settings import get_settings
from sevlm_lib.tower import tower_folder


def main(argv: Sequence[str] | None = None) -> int:
    """Build the cached tower of the tiny profile; prints where it lives. Returns the exit code."""
    argparse.ArgumentParser(prog="python -m sevlm_lib.cli.tower", description=__doc__.splitlines()[0]).parse_args(
        argv
    )
    settings = get_settings()
    if settings.profile != "tiny":
        print("the full profile uses the pretrained CLIP from the hub: there is no tower to pre-train", file=sys.stderr)
        return 2
    data = load_course_data(settings)
    vision = replace(tiny_config().vision, image_size=data.image_size)
    t0 = time.perf_counter()
    course_tower_state(data, vision)
    folder = tower_folder(settings, data.fingerprint, vision, TOWER_SEED, COURSE_TOWER)
    print(f"[sevlm] tiny vision tower (pre-trained as a tiny CLIP): {folder} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
