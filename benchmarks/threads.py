"""Where a tiny training step's time goes with 1 or 2 torch threads, in a plain process and in a Jupyter kernel.

Each measurement is a fresh subprocess that loads the course data, builds the tiny baseline and times
``--steps`` training steps (forward, backward, clip, AdamW) on real pair batches with the frozen-tower
features, after 5 warm-up steps. Variants: torch threads 1 and 2 (``torch.set_num_threads``), run as a plain
``python`` process and inside an ipykernel driven by nbclient (the way ``make course`` and nbval run the
notebooks). Repeats alternate the variants so a change of machine load hits all of them alike. The result is
the median seconds per step of each variant and their ratios.

    python benchmarks/threads.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import base_parser, log, setup_run, write_result  # noqa: E402

TIMED = textwrap.dedent(
    """
    import json, time, torch
    torch.set_num_threads({threads})
    from sevlm_lib import pipeline
    from sevlm_lib.data.datasets import PairBatches
    from sevlm_lib.recipes import model_config_for
    data = pipeline.load_course_data(progress=False)
    model = pipeline.build_model(data, model_config_for("tiny"), seed=0)
    source = pipeline.image_source_for(model, data)
    batches = PairBatches(data.pair_items("train"), data.builder, source, batch_size=32, seed=0).batches(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    def step():
        out = model(next(batches))
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range({steps}):
        step()
    print("RESULT", json.dumps({{"seconds_per_step": (time.perf_counter() - t0) / {steps}}}))
    """
)


def run_plain(code: str) -> float:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return float(json.loads(line[7:])["seconds_per_step"])


def run_kernel(code: str) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, timeout=3600, kernel_name="python3").execute()
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    line = next(x for x in text.splitlines() if x.startswith("RESULT "))
    return float(json.loads(line[7:])["seconds_per_step"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    run = setup_run(args)
    steps, repeats = (5, 1) if args.quick else (args.steps, args.repeats)
    variants = {f"{where}_threads{t}": (where, t) for where in ("plain", "kernel") for t in (1, 2)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):
        for name, (where, threads) in variants.items():
            code = TIMED.format(threads=threads, steps=steps)
            seconds = run_plain(code) if where == "plain" else run_kernel(code)
            times[name].append(seconds)
            log(f"repeat {r + 1}: {name}: {seconds * 1000:.1f} ms/step")
    median = {name: statistics.median(v) for name, v in times.items()}
    ratios = {
        "plain_2_over_1": median["plain_threads2"] / median["plain_threads1"],
        "kernel_2_over_1": median["kernel_threads2"] / median["kernel_threads1"],
        "kernel_over_plain_threads2": median["kernel_threads2"] / median["plain_threads2"],
        "kernel_over_plain_threads1": median["kernel_threads1"] / median["plain_threads1"],
    }
    for k, v in ratios.items():
        log(f"{k}: {v:.2f}")
    write_result(
        "threads",
        {"steps": steps, "repeats": repeats, "seconds_per_step": times, "median": median, "ratios": ratios},
        run,
        Path(args.out_dir),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
