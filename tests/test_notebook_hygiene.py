"""What a reader must never meet in a notebook or a student copy: control characters (a ``\\a`` left of a lost
``\\approx``), development left-overs, test markers in a student copy, and exercise stubs labelled with the
wrong heading."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from sevlm_lib.student import EXERCISE_LABEL, student_notebook

ROOT = Path(__file__).resolve().parents[1]
COURSE = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
LEFTOVER = re.compile(r"(?i)\b(TODO|FIXME|XXX)\b|\bthe issue\b|\bthis issue\b|\bissue #?\d+")


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def test_the_checks_catch_what_they_look_for() -> None:
    assert CONTROL.search("$\x07pprox$") and not CONTROL.search("a\tb\nc")
    assert LEFTOVER.search("The issue behind this notebook asks for") and LEFTOVER.search("TODO: fix")
    assert not LEFTOVER.search("a tissue of lies") and not LEFTOVER.search("issues a warning")


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_no_control_characters_or_leftovers(path: Path) -> None:
    nb = _read(path)
    for i, cell in enumerate(nb.cells):
        assert not CONTROL.search(cell.source), f"{path.name}, cell {i}: a control character in the source"
        if cell.cell_type == "markdown":
            found = LEFTOVER.search(cell.source)
            assert not found, f"{path.name}, cell {i}: development left-over {found.group(0)!r}"


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_student_copy_stubs_are_labelled_by_their_exercise(path: Path) -> None:
    student = student_notebook(_read(path), path.stem, 1.0)
    stubs = [(i, c) for i, c in enumerate(student.cells) if "exercise" in c.metadata.get("tags", [])]
    assert stubs, f"{path.name}: no exercise stubs"
    for i, cell in stubs:
        assert "NBVAL" not in cell.source
        label = cell.source.splitlines()[0].removeprefix("# Your solution: ")
        above = next(c for c in reversed(student.cells[:i]) if c.cell_type == "markdown")
        labels = [x.strip().rstrip(".") for x in EXERCISE_LABEL.findall(above.source)]
        assert labels and label == re.sub(r"[#*`]", "", labels[-1]), (path.name, i, label, labels)
    for i, cell in enumerate(student.cells):
        assert not CONTROL.search(cell.source), f"student {path.name}, cell {i}: control character"
        if cell.cell_type == "code":
            assert "# NBVAL_" not in cell.source, f"student {path.name}, cell {i}: an nbval marker"


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_time_header_states_the_recorded_minutes(path: Path) -> None:
    """A header's "Time on a CPU" is the last recorded course run's (``student headers`` writes it), never a
    number typed by hand that goes stale."""
    import json

    from sevlm_lib.student import TIME_HEADER, TIMINGS, time_header

    recorded = json.loads((ROOT / TIMINGS).read_text())
    minutes = recorded["minutes"].get(path.stem)
    if minutes is None:
        pytest.skip(f"{path.stem} has no recorded minutes")
    found = TIME_HEADER.search(_read(path).cells[0].source)
    assert found, f"{path.name}: no '**Time on a CPU**:' paragraph in the first cell"
    assert found.group(0) == time_header(minutes, recorded["machine"]), (
        f"{path.name}: the header's time differs from docs/timings.json; run `python -m sevlm_lib.student headers`"
    )


def test_update_time_headers_rewrites_only_that_paragraph(tmp_path: Path) -> None:
    import json

    from sevlm_lib.student import TIMINGS, time_header, update_time_headers

    (tmp_path / "notebooks").mkdir()
    (tmp_path / TIMINGS).parent.mkdir(parents=True)
    (tmp_path / TIMINGS).write_text(json.dumps({"minutes": {"01_x": 2.34}, "machine": "a test CPU"}))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 01\n\n**Time on a CPU**: 9 minutes,\nold words.\n\n## Next")]
    nbformat.write(nb, tmp_path / "notebooks" / "01_x.ipynb")
    assert update_time_headers(tmp_path) == [tmp_path / "notebooks" / "01_x.ipynb"]
    text = _read(tmp_path / "notebooks" / "01_x.ipynb").cells[0].source
    assert text == "# 01\n\n" + time_header(2.34, "a test CPU") + "\n\n## Next"
    assert update_time_headers(tmp_path) == []  # already up to date
