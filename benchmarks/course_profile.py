"""Where the course's minutes go: each notebook's measured minutes split into training loops and the rest.

Reads a runs folder that one complete ``make course`` (``python -m sevlm_lib.course run``) filled from empty,
and the minutes that run recorded (``docs/timings.json``). Every training run logs its own wall time
(``history.json``: ``train_seconds``, which includes the validation scoring every ``eval_every`` steps and the
checkpoint writes); each run is attributed to the notebook that trains it first in course order. The rest of a
notebook's minutes is everything else: data loading, the tiny tower's pre-training (02), test evaluations,
the by-hand cells, figures and the kernel's start.

    python benchmarks/course_profile.py --runs-dir RUNS [--timings docs/timings.json]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import base_parser, log, setup_run, write_result  # noqa: E402

# The first notebook (in course order) that trains each run; names not listed are the notebooks' exercise or
# demo runs, found by their prefix (ex04-..., 06_cli_demo).
FIRST_TRAINED_IN: dict[str, str] = {
    "baseline": "02_baseline_captioner",
    "baseline-random-tower": "02_baseline_captioner",
    "+fusion": "03_vad_fusion",
    "+fusion-noncausal": "03_vad_fusion",
    "rare-baseline": "03_vad_fusion",
    "rare-+fusion": "03_vad_fusion",
    "+head-clip-groups": "04_vad_head",
    "rare-+head-clip-groups": "04_vad_head",
    "+contrastive": "05_contrastive_head",
    "+contrastive-cw0.3-closed-clip-groups": "05_contrastive_head",
    "full": "06_full_training",
    "full-cw0.3-closed-clip-groups": "06_full_training",
    "sat": "07_evaluation_and_comparison",
}
PREFIXES = {"ex02": "02_baseline_captioner", "ex03": "03_vad_fusion", "ex04": "04_vad_head",
            "ex05": "05_contrastive_head", "06_": "06_full_training", "ex06": "06_full_training",
            "ex07": "07_evaluation_and_comparison"}  # fmt: skip


def notebook_of(run: str) -> str | None:
    """The notebook that trains ``run`` first (``None`` for a run this table does not know)."""
    if run in FIRST_TRAINED_IN:
        return FIRST_TRAINED_IN[run]
    return next((nb for prefix, nb in PREFIXES.items() if run.startswith(prefix)), None)


def breakdown(runs_dir: Path, minutes: dict[str, float]) -> dict[str, Any]:
    """Per notebook: measured minutes, training-loop minutes (and the runs), the rest."""
    per: dict[str, dict[str, Any]] = {nb: {"minutes": m, "train_minutes": 0.0, "runs": 0} for nb, m in minutes.items()}
    unknown: list[str] = []
    for history in sorted((runs_dir / "train").glob("*/seed-*/history.json")):
        run = history.parent.parent.name
        nb = notebook_of(run)
        if nb is None or nb not in per:
            unknown.append(run)
            continue
        values = json.loads(history.read_text())
        per[nb]["train_minutes"] += float(values.get("train_seconds") or 0.0) / 60
        per[nb]["runs"] += 1
    for row in per.values():
        row["train_minutes"] = round(row["train_minutes"], 2)
        row["other_minutes"] = round(row["minutes"] - row["train_minutes"], 2)
    total = round(sum(minutes.values()), 2)
    train = round(sum(r["train_minutes"] for r in per.values()), 2)
    return {"notebooks": per, "total_minutes": total, "train_minutes": train, "unattributed_runs": sorted(set(unknown))}


def markdown(result: dict[str, Any]) -> str:
    """The breakdown as a markdown table."""
    lines = ["| notebook | minutes | training loops (runs) | everything else |", "| --- | --- | --- | --- |"]
    for nb, r in result["notebooks"].items():
        lines.append(f"| {nb[:2]} | {r['minutes']:.1f} | {r['train_minutes']:.1f} ({r['runs']}) | {r['other_minutes']:.1f} |")
    lines.append(f"| all | {result['total_minutes']:.1f} | {result['train_minutes']:.1f} | "
                 f"{result['total_minutes'] - result['train_minutes']:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True, help="a runs folder one complete course run filled")
    parser.add_argument("--timings", type=Path, default=ROOT / "docs" / "timings.json")
    args = parser.parse_args(argv)
    run = setup_run(args)
    timings = json.loads(args.timings.read_text())
    result = breakdown(args.runs_dir, timings["minutes"])
    result["machine_of_timings"] = timings.get("machine")
    log("\n" + markdown(result))
    write_result("course_profile", result, run, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
