"""Student copies of the notebooks (``make student``) and the README's notebook table.

* Solutions live in the course notebooks, in code cells tagged ``solution``. A student copy clears every
  output, replaces each solution by a stub that says what to write, and opens with a header naming the
  estimated time (measured in a full course run, kept in ``docs/timings.json``).
* ``python -m sevlm_lib.student readme`` writes the notebook table of ``README.md`` from the same timings, so
  the minutes there are measured, never typed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sevlm_lib.settings import find_course_root

SOLUTION_TAG = "solution"
STUDENT_HEADER_TAG = "student-header"
TIMINGS = Path("docs") / "timings.json"

# What each notebook builds, produces and consumes (the README table's fixed columns).
NOTEBOOKS: dict[str, dict[str, str]] = {
    "01_data_and_vad_lexicon": {
        "builds": "ArtEmis loader, ArtEmis-mini, VAD lexicon; learnability checks",
        "gpu": "no",
        "consumes": "nothing (generates the data; fetches Warriner once)",
        "produces": "`data/artemis_mini/`, lexicon cache, `01_*/metrics.json`",
    },
    "02_baseline_captioner": {
        "builds": "CLIP + GPT-2 cross-attention captioner (NLX-GPT-style baseline), a pre-trained tiny tower, selection on validation, decoding; the one rule for a clear difference",
        "gpu": "no",
        "consumes": "ArtEmis-mini, lexicon",
        "produces": "`baseline` checkpoints (3 seeds), `02_*/metrics.json`",
    },
    "03_vad_fusion": {
        "builds": "causal VAD encoder + fusion; the non-causal leak measured; the 3-wide collapse; a rare-words positive control",
        "gpu": "no",
        "consumes": "baseline checkpoints (trains them if missing)",
        "produces": "`+fusion`, `+fusion-noncausal`, `rare-baseline`, `rare-+fusion` checkpoints, `03_*/metrics.json`",
    },
    "04_vad_head": {
        "builds": "VAD head with masked MSE, its own gradient clip; the rare-words control",
        "gpu": "no",
        "consumes": "baseline checkpoints",
        "produces": "`+head-clip-groups`, `rare-+head-clip-groups` checkpoints, `04_*/metrics.json`",
    },
    "05_contrastive_head": {
        "builds": "contrastive head, two negatives, InfoNCE; each loss's gradient by hand, the loss weight chosen on validation, the prompt shortcut closed",
        "gpu": "no",
        "consumes": "baseline checkpoints",
        "produces": "`+contrastive` (paper) and `+contrastive-cw0.3-closed-clip-groups` (course) checkpoints, `05_*/metrics.json`",
    },
    "06_full_training": {
        "builds": "full SEVLM with the course recipe and with the paper's settings; optional: feature cache, AMP, memory estimate, the 2080 Ti commands",
        "gpu": "no (tiny); yes for the full profile",
        "consumes": "ArtEmis-mini (tiny) or ArtEmis + WikiArt (full)",
        "produces": "`full` (paper) and `full-cw0.3-closed-clip-groups` (course) checkpoints, `06_*/metrics.json`",
    },
    "07_evaluation_and_comparison": {
        "builds": "metric suite, Emo-Align classifier, Show-Attend-Tell baseline, ablation table",
        "gpu": "no",
        "consumes": "checkpoints and metrics of 02-06 (trains any that are missing)",
        "produces": "`07_*/metrics.json` (the full table)",
    },
}


def course_root() -> Path:
    root = find_course_root()
    if root is None:
        raise RuntimeError("run this from inside the course folder (where pyproject.toml and sevlm_lib/ are)")
    return root


def read_timings(root: Path) -> dict[str, float]:
    """Measured minutes per notebook from ``docs/timings.json`` (empty when never measured)."""
    path = root / TIMINGS
    return json.loads(path.read_text()).get("minutes", {}) if path.is_file() else {}


NBVAL_MARKER = re.compile(r"^# NBVAL_[A-Z_]+[ \t]*\n?", re.MULTILINE)
# An exercise's label in the markdown above its solution: "**1. Scoring the prompt, or not.**" or
# "**Exercise 3 (gradient checkpointing in the estimate).**" (bold, at the start of a line).
EXERCISE_LABEL = re.compile(r"^\*\*((?:Exercise )?\d[^*]*?)\*\*", re.MULTILINE)


def _exercise_title(cells: list[Any], index: int) -> str:
    """The label of the exercise a solution cell solves: the *last* bold exercise label in the markdown
    cell just before it (a cell that holds the Summary and the first exercise is labelled by the exercise),
    else that cell's first line."""
    for j in range(index - 1, -1, -1):
        if cells[j].cell_type == "markdown":
            labels = EXERCISE_LABEL.findall(cells[j].source)
            if labels:
                return re.sub(r"[#*`]", "", labels[-1]).strip().rstrip(".")[:160]
            text = " ".join(cells[j].source.strip().splitlines()[:2])
            return re.sub(r"[#*`]", "", text).strip()[:160]
    return "the exercise above"


def student_notebook(nb: Any, name: str, minutes: float | None) -> Any:
    """A student copy of ``nb`` (an nbformat notebook): outputs cleared, solutions replaced by stubs."""

    import nbformat

    nb = copy.deepcopy(nb)
    cells = nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.source = NBVAL_MARKER.sub("", cell.source)  # test markers mean nothing to a student
        if SOLUTION_TAG in cell.metadata.get("tags", []):
            title = _exercise_title(cells, i)
            cell.source = (
                f"# Your solution: {title}\n"
                "# Write the code for the exercise above here, then run the cell.\n"
                "# (The worked solution is in the course notebook, in the cell tagged 'solution'.)\n"
            )
            cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != SOLUTION_TAG] + ["exercise"]
    if minutes is None:
        when = "not measured yet"
    else:
        amount = f"about {minutes:.0f} min" if minutes >= 1 else "under a minute"
        when = f"{amount} to run on a 2-core CPU (measured in a full course run), plus the exercises"
    header = nbformat.v4.new_markdown_cell(
        f"> **Student copy** of `{name}.ipynb` · estimated time: {when}. Outputs are cleared and the "
        "exercise solutions are replaced by stubs: run the cells top to bottom, then do the exercises at the end.",
    )
    header.metadata["tags"] = [STUDENT_HEADER_TAG]
    header["id"] = "student-header"
    nb.cells = [header, *cells]
    nb.metadata.pop("widgets", None)
    return nb


def write_student_copies(root: Path | None = None, out_dir: Path | None = None) -> list[Path]:
    """Write ``student/NN_*.ipynb`` for every course notebook; returns the paths written."""
    import nbformat

    root = root or course_root()
    out_dir = out_dir or root / "student"
    out_dir.mkdir(parents=True, exist_ok=True)
    minutes = read_timings(root)
    written = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        student = student_notebook(nb, path.stem, minutes.get(path.stem))
        out = out_dir / path.name
        out.write_text(nbformat.writes(student) + "\n")
        written.append(out)
    return written


def notebook_table(root: Path | None = None) -> str:
    """The README's markdown table of notebooks, with minutes from ``docs/timings.json``."""
    root = root or course_root()
    minutes = read_timings(root)
    rows = ["| notebook | what you build | minutes on a CPU* | GPU needed? | consumes | produces |",
            "| --- | --- | --- | --- | --- | --- |"]
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        info = NOTEBOOKS.get(path.stem, {})
        m = minutes.get(path.stem)
        rows.append(
            f"| [`{path.name}`](notebooks/{path.name}) | {info.get('builds', '')} | "
            f"{f'{m:.1f}' if m is not None else 'not measured'} | {info.get('gpu', '')} | "
            f"{info.get('consumes', '')} | {info.get('produces', '')} |"
        )
    timings = root / TIMINGS
    machine = json.loads(timings.read_text()).get("machine", "") if timings.is_file() else ""
    rows.append("")
    rows.append(
        f"\\* measured in one complete run of the course from an empty runs folder (`make course`, or `make test`, "
        f"which runs every notebook under nbval), one notebook after the other, on: {machine or 'n/a'}. Each "
        "notebook loads the checkpoints that earlier ones wrote instead of training them again; run alone on an "
        "empty runs folder, a notebook also trains what it needs."
    )
    return "\n".join(rows)


TABLE_FILES = ("README.md", "docs/workshop.md")


def update_readme(root: Path | None = None) -> Path:
    """Replace the block between the notebook-table markers in README.md (and docs/workshop.md)."""
    root = root or course_root()
    start, end = "<!-- notebook-table:start -->", "<!-- notebook-table:end -->"
    table = notebook_table(root)
    for name in TABLE_FILES:
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text()
        if start not in text or end not in text:
            raise ValueError(f"{path}: the markers {start} / {end} are missing")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        path.write_text(f"{head}{start}\n{table}\n{end}{tail}")
    return root / "README.md"


def record_timings(root: Path, minutes: dict[str, float], machine: str) -> Path:
    """Keep the measured minutes of a course run in ``docs/timings.json`` (committed, read by the table)."""
    path = root / TIMINGS
    old = json.loads(path.read_text()) if path.is_file() else {}
    merged = {"minutes": {**old.get("minutes", {}), **minutes}, "machine": machine}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    return path


# A notebook header's "**Time on a CPU**: ..." paragraph (up to the next blank line), rewritten from the
# measured minutes by ``update_time_headers`` (never typed by hand).
TIME_HEADER = re.compile(r"\*\*Time on a CPU\*\*:.*?(?=\n\s*\n|\Z)", re.DOTALL)


def time_header(minutes: float, machine: str) -> str:
    """The header paragraph for a notebook that took ``minutes`` in the last recorded course run."""
    text = (
        f"**Time on a CPU**: {minutes:.1f} minutes in the last recorded run of the whole course (`make course` "
        "from an empty runs folder, one notebook after the other, so the runs of earlier notebooks were loaded, "
        f"not trained again), on {machine}. Run alone on an empty runs folder, a notebook also trains what it "
        "needs from earlier ones. On a machine busy with other jobs, set `SEVLM_THREADS=1` (one torch thread "
        "per process, instead of the course's 2) before starting Jupyter: processes whose threads share cores "
        "slow each other down. The last digits of the numbers then change."
    )
    return textwrap.fill(text, width=110, break_on_hyphens=False, break_long_words=False)


def update_time_headers(root: Path | None = None) -> list[Path]:
    """Rewrite the "Time on a CPU" paragraph of each notebook's first cell from ``docs/timings.json``."""
    import nbformat

    root = root or course_root()
    path = root / TIMINGS
    if not path.is_file():
        return []
    recorded = json.loads(path.read_text())
    changed = []
    for nb_path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        minutes = recorded.get("minutes", {}).get(nb_path.stem)
        if minutes is None:
            continue
        nb = nbformat.read(nb_path, as_version=4)
        first = nb.cells[0]
        header = time_header(minutes, recorded.get("machine", "a CPU"))
        text = TIME_HEADER.sub(lambda _, h=header: h, first.source, count=1)
        if text != first.source:
            first.source = text
            nbformat.write(nb, nb_path)
            changed.append(nb_path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sevlm_lib.student", description=__doc__)
    parser.add_argument("what", choices=["copies", "readme", "timings", "headers"],
                        help="write student/ copies, the README table, record a run's timings, or rewrite the "
                        "notebooks' 'Time on a CPU' headers from docs/timings.json")
    parser.add_argument("--from", dest="source", type=Path, default=None,
                        help="timings: a course_timings.json written by `make course` or `make test`")
    parser.add_argument("--machine", default=None,
                        help="timings: how to describe the machine (default: architecture, cores, python)")
    args = parser.parse_args(argv)
    if args.what == "timings":

        if args.source is None or not args.source.is_file():
            parser.error("timings needs --from PATH/course_timings.json")
        data = json.loads(args.source.read_text())
        if data.get("exit_status", 0) != 0:
            parser.error(f"{args.source}: that run failed (exit status {data['exit_status']}); not recording it")

        machine = args.machine or f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
        print(f"recorded {record_timings(course_root(), data['minutes'], machine)}")
        print(f"updated {update_readme()}")
    elif args.what == "headers":
        for p in update_time_headers():
            print(f"updated {p.relative_to(course_root())}")
    elif args.what == "copies":
        for p in write_student_copies():
            print(f"wrote {p.relative_to(course_root())}")
    else:
        print(f"updated {update_readme()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
