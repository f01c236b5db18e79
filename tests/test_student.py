"""Student copies: current (regenerating gives no diff), solutions stubbed, and they run up to the exercises."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from sevlm_lib.student import (
    NBVAL_MARKER,
    SOLUTION_TAG,
    STUDENT_HEADER_TAG,
    notebook_table,
    write_student_copies,
)

ROOT = Path(__file__).resolve().parents[1]
COURSE = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_student_copies_are_current(tmp_path):
    written = write_student_copies(ROOT, tmp_path)
    assert [p.name for p in written] == [p.name for p in COURSE]
    for fresh in written:
        committed = ROOT / "student" / fresh.name
        assert committed.is_file(), f"student/{fresh.name} is missing: run `make student`"
        assert committed.read_text() == fresh.read_text(), f"student/{fresh.name} is stale: run `make student`"


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_solutions_replaced_and_outputs_cleared(path):
    student = nbformat.read(ROOT / "student" / path.name, as_version=4)
    course = nbformat.read(path, as_version=4)
    solutions = [c.source for c in course.cells if SOLUTION_TAG in c.metadata.get("tags", [])]
    assert solutions
    stub_sources = {c.source for c in student.cells}
    for s in solutions:
        assert s not in stub_sources, "a solution leaked into the student copy"
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")
    assert "Student copy" in student.cells[0].source and "estimated time" in student.cells[0].source


def test_readme_table_lists_every_notebook():
    table = notebook_table(ROOT)
    for p in COURSE:
        assert p.name in table
    assert table in (ROOT / "README.md").read_text(), "README table is stale: run `make readme`"


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_student_copy_runs_what_nbval_runs(path):
    """Up to its Exercises heading a student copy is the course notebook, cell for cell, less its nbval markers
    and outputs. So nbval, which executes the course notebook, also executes the student copy's code: running
    the copy again (minutes of CI) would test nothing new. Any other difference fails here."""
    student = nbformat.read(ROOT / "student" / path.name, as_version=4)
    course = nbformat.read(path, as_version=4)
    assert student.cells[0].metadata.get("tags") == [STUDENT_HEADER_TAG]
    cells = student.cells[1:]
    cut = next(i for i, c in enumerate(course.cells) if c.cell_type == "markdown" and "Exercises" in c.source)
    assert len(cells) == len(course.cells)
    for i, (mine, theirs) in enumerate(zip(cells[:cut], course.cells[:cut], strict=True)):
        assert SOLUTION_TAG not in theirs.metadata.get("tags", []), f"cell {i}: a solution before the Exercises"
        assert "NBVAL_SKIP" not in theirs.source, f"cell {i}: nbval skips it, so only the student copy would run it"
        assert mine.cell_type == theirs.cell_type, f"cell {i}"
        expected = NBVAL_MARKER.sub("", theirs.source) if theirs.cell_type == "code" else theirs.source
        assert mine.source == expected, f"cell {i} differs from the course notebook's"


def test_a_new_course_run_rewrites_time_headers_and_student_estimates(tmp_path):
    """What ``make course`` does after a run: the headers and the student copies follow the new minutes."""
    import json
    import shutil

    from sevlm_lib.student import TIME_HEADER, TIMINGS, record_timings, time_header, update_time_headers

    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("*.cfg"))
    first = COURSE[0].stem
    record_timings(tmp_path, {first: 42.0}, "a test machine")
    assert json.loads((tmp_path / TIMINGS).read_text())["minutes"] == {first: 42.0}
    changed = update_time_headers(tmp_path)
    assert [p.stem for p in changed] == [first]
    nb = nbformat.read(tmp_path / "notebooks" / f"{first}.ipynb", as_version=4)
    assert TIME_HEADER.search(nb.cells[0].source).group(0) == time_header(42.0, "a test machine")
    assert update_time_headers(tmp_path) == []  # nothing left to change
    (copy,) = [p for p in write_student_copies(tmp_path, tmp_path / "student") if p.stem == first]
    assert "about 42 min" in nbformat.read(copy, as_version=4).cells[0].source


def test_a_partial_course_run_records_no_minutes(tmp_path, monkeypatch, capsys) -> None:
    """``course run --only`` executes a part of the course, often on runs already trained: its minutes would
    pass for a whole run's in the headers and tables, so nothing is recorded."""
    from sevlm_lib import course

    recorded = []
    monkeypatch.setattr(course, "record_timings", lambda *a, **k: recorded.append(a))
    settings = course.get_settings(runs_dir=tmp_path)
    assert course.run_course(settings, only=("99",)) == {}
    assert recorded == [] and "not recorded" in capsys.readouterr().out
