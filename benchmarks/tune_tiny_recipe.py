"""How the tiny recipe's length and learning rate were chosen: on the validation split only.

The baseline captioner (seed 0) is trained with each candidate recipe, evaluated on the validation split every
100 steps, and its best validation Emo-A (ArtEmis rule; ties by BLEU-4) is kept, as the course's recipe does.
The rule: among the candidates, the **cheapest** (fewest steps, then the default learning rate) whose best
validation Emo-A is within one binomial standard error of the best candidate's. The test split is never read.

    python benchmarks/tune_tiny_recipe.py [--threads 1]

Runs go to ``{checkpoint_dir}/tune-*`` ("load if finished, else train"), so a second call only reads them.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import base_parser, log, setup_run, write_result  # noqa: E402
from sevlm_lib import pipeline  # noqa: E402
from sevlm_lib.recipes import model_config_for, recipe_for  # noqa: E402
from sevlm_lib.settings import get_settings  # noqa: E402

# (max_steps, lr): the default learning rate at three lengths, and two other rates at the middle length
CANDIDATES: tuple[tuple[int, float], ...] = ((600, 3e-3), (1000, 3e-3), (1500, 3e-3), (1000, 1.5e-3), (1000, 5e-3))


def run_name(steps: int, lr: float) -> str:
    """The checkpoint name of one candidate."""
    return f"tune-steps{steps}-lr{lr:g}"


def choose(rows: Sequence[dict[str, Any]], n_val: int) -> dict[str, Any]:
    """The cheapest row within one standard error of the best ``best_val_emo_acc`` (see the module doc)."""
    best = max(r["best_val_emo_acc"] for r in rows)
    se = math.sqrt(best * (1 - best) / n_val)
    close = [r for r in rows if r["best_val_emo_acc"] >= best - se]
    return {
        **min(close, key=lambda r: (r["max_steps"], abs(math.log(r["lr"] / 3e-3)))),
        "rule_se": se,
        "best_of_all": best,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    run = setup_run(args)
    settings = get_settings()
    data = pipeline.load_course_data(settings, progress=False)
    n_val = int(data.artworks.loc[data.artworks["split"] == "val", "dominant"].notna().sum())
    candidates = CANDIDATES[:1] if args.quick else CANDIDATES
    rows = []
    for steps, lr in candidates:
        recipe = recipe_for(
            "tiny", max_steps=20 if args.quick else steps, lr=lr, eval_every=10 if args.quick else 100
        )
        t0 = time.perf_counter()
        trained = pipeline.train_model(data, model_config_for("tiny"), recipe, seed=args.seed, name=run_name(steps, lr))
        evals = trained.history.to_frame("evals")
        best = evals.sort_values(["emo_acc", "bleu4"], ascending=False).iloc[0]
        rows.append(
            {
                "max_steps": steps,
                "lr": lr,
                "best_val_emo_acc": float(best["emo_acc"]),
                "best_step": int(best["step"]),
                "final_val_emo_acc": float(evals["emo_acc"].iloc[-1]),
                "val_curve": [[int(s), round(float(a), 4)] for s, a in zip(evals["step"], evals["emo_acc"], strict=True)],
                "train_seconds": trained.train_seconds,
                "wall_seconds_this_call": time.perf_counter() - t0,
            }
        )
        log(f"steps {steps}, lr {lr:g}: best val Emo-A {best['emo_acc']:.3f} at step {int(best['step'])}")
    chosen = choose(rows, n_val)
    log(f"chosen: {chosen['max_steps']} steps, lr {chosen['lr']:g} (within {chosen['rule_se']:.3f} of {chosen['best_of_all']:.3f})")
    write_result(
        "tiny_recipe_tuning",
        {"seed": args.seed, "n_val_scored": n_val, "candidates": rows, "chosen": chosen, "quick": args.quick},
        run,
        args.out_dir,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
