"""Every course notebook reads like a chapter and stays portable: a lint over the committed notebooks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_BYTES = 500_000


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_header_summary_exercises(path):
    nb = _load(path)
    md = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    first = _source(nb["cells"][0])
    assert first.lstrip().startswith("# "), "the first cell must be the title"
    for part in ("What you'll learn", "What you'll need", "Time on a CPU"):
        assert part.lower() in md.lower(), f"missing the header part {part!r}"
    assert re.search(r"^#+ .*Summary", md, re.M), "no Summary section"
    assert re.search(r"^#+ .*Exercises", md, re.M), "no Exercises section"
    solutions = [c for c in nb["cells"] if "solution" in c.get("metadata", {}).get("tags", [])]
    assert 3 <= len(solutions) <= 8, f"{len(solutions)} solution cells: expected one per exercise (3-5)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_portable_code(path):
    nb = _load(path)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = _source(cell)
        assert not re.search(r"^\s*[!%]\s*pip\s+install", src, re.M), (
            f"cell {i}: no pip installs in notebooks"
        )
        assert "sys.path" not in src, f"cell {i}: no sys.path edits"
        assert not re.search(r"['\"](/home/|/work/|/tmp/|/root/|/Users/|[A-Z]:\\\\)", src), (
            f"cell {i}: absolute path"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_small_and_no_widget_state(path):
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes (limit {MAX_BYTES})"
    nb = _load(path)
    assert "widgets" not in nb.get("metadata", {}), "widget state must not be committed"
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert outputs, "commit the notebook with its outputs so it reads on GitHub"
    text = json.dumps(outputs)
    assert not re.search(r"(/home/|/work/|/root/)", text), "outputs leak a machine path"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_prose_at_least_code(path):
    nb = _load(path)
    prose = sum(len(_source(c)) for c in nb["cells"] if c["cell_type"] == "markdown")
    code = sum(len(_source(c)) for c in nb["cells"] if c["cell_type"] == "code")
    assert prose >= code, f"prose {prose} chars < code {code} chars"


def test_ruff_clean():
    """The library, tests, benchmarks and notebooks pass ``ruff check`` (what ``make lint`` runs)."""
    import subprocess
    import sys

    targets = ["sevlm_lib", "tests", "benchmarks", "notebooks"]
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (
        f"ruff check {' '.join(targets)} failed:\n{done.stdout[-3000:]}{done.stderr[-1000:]}"
    )
