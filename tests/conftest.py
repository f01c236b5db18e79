"""Shared test setup: offline hub access and small real-format ArtEmis CSVs written to ``tmp_path``."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

# Tests never reach the Hugging Face hub; without these a failed hub call can hang for ~30 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")



@pytest.fixture(scope="session", autouse=True)
def quick_course_tower() -> Iterator[None]:
    """Unit tests pre-train the tiny tower for a few steps only (``pipeline.COURSE_TOWER``): they need *a*
    pre-trained tower, not a good one. The real pre-training is tested in test_tower.py and run by the
    notebooks; the cache is keyed by the hyper-parameters, so the two never mix."""
    from sevlm_lib import pipeline
    from sevlm_lib.tower import TowerPretraining

    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "COURSE_TOWER", TowerPretraining(steps=8, batch_size=16, warmup_steps=2))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def tok():
    """The micro tokenizer of ``tests/model_fixtures.py`` (a module may define its own ``tok``)."""
    from tests.model_fixtures import tokenizer

    return tokenizer()


@pytest.fixture(scope="module")
def builder(tok):
    """A ``SequenceBuilder`` over ``tok`` with room for 30 tokens (a module may define its own)."""
    from sevlm_lib.text import SequenceBuilder

    return SequenceBuilder(tok, max_len=30)


ARTEMIS_HEADER: tuple[str, ...] = ("art_style", "painting", "emotion", "utterance", "repetition")
CONTRASTIVE_HEADER: tuple[str, ...] = (*ARTEMIS_HEADER, "anchor_painting")

# Rows in the exact ArtEmis v1.0 format. Painting names "nan" and "1" must survive loading as strings.
ARTEMIS_ROWS: tuple[tuple[str, ...], ...] = (
    (
        "Impressionism",
        "claude-monet_water-lilies-1919",
        "contentment",
        "the calm water makes me feel at peace",
        "5",
    ),
    ("Impressionism", "claude-monet_water-lilies-1919", "contentment", "soft colours and quiet light", "5"),
    ("Impressionism", "claude-monet_water-lilies-1919", "awe", "the pond seems endless", "5"),
    ("Impressionism", "claude-monet_water-lilies-1919", "something else", "it reminds me of my garden", "5"),
    ("Impressionism", "claude-monet_water-lilies-1919", "contentment", "a lovely, peaceful scene", "5"),
    (
        "Romanticism",
        "francisco-goya_saturn-devouring-his-son-1823",
        "fear",
        "the wild eyes are terrifying",
        "5",
    ),
    ("Romanticism", "francisco-goya_saturn-devouring-his-son-1823", "disgust", "he is eating a body", "5"),
    ("Romanticism", "francisco-goya_saturn-devouring-his-son-1823", "fear", "dark and violent", "5"),
    ("Romanticism", "francisco-goya_saturn-devouring-his-son-1823", "fear", "a monster in the dark", "5"),
    ("Romanticism", "francisco-goya_saturn-devouring-his-son-1823", "sadness", "such a cruel fate", "5"),
    ("Baroque", "nan", "sadness", 'the grey tones feel "heavy", like loss', "5"),
    ("Baroque", "nan", "sadness", "everyone looks tired", "5"),
    ("Baroque", "nan", "sadness", "mourning people", "5"),
    ("Baroque", "nan", "sadness", "a sad farewell", "5"),
    ("Baroque", "nan", "sadness", "the light is fading", "5"),
    ("Cubism", "1", "amusement", "the funny shapes make me smile", "5"),
    ("Cubism", "1", "excitement", "bright, jumping colours", "5"),
    ("Cubism", "1", "anger", "a mess of lines that annoys me", "5"),
    ("Cubism", "1", "amusement", "a face made of boxes", "5"),
    ("Cubism", "1", "excitement", "so much energy", "5"),
)


def write_rows(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    """Write a CSV the way ArtEmis ships it (comma separated, minimal quoting, ``\\n`` line ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """``write_csv(name, rows, header=ARTEMIS_HEADER) -> Path`` under ``tmp_path``."""

    def _write(name: str, rows: Sequence[Sequence[str]], header: Sequence[str] = ARTEMIS_HEADER) -> Path:
        return write_rows(tmp_path / name, header, rows)

    return _write


@pytest.fixture
def artemis_rows() -> tuple[tuple[str, ...], ...]:
    """The rows of :func:`artemis_csv` (art_style, painting, emotion, utterance, repetition), all strings."""
    return ARTEMIS_ROWS


@pytest.fixture
def artemis_csv(tmp_path: Path) -> Path:
    """A 20-annotation, 4-artwork ``artemis_dataset_release_v0.csv`` in the real v1.0 format."""
    return write_rows(tmp_path / "artemis_dataset_release_v0.csv", ARTEMIS_HEADER, ARTEMIS_ROWS)


@pytest.fixture
def contrastive_csv(tmp_path: Path) -> Path:
    """A small ``Contrastive.csv`` in the v2.0 format (the v1 columns plus ``anchor_painting``)."""
    rows = [
        (
            "Impressionism",
            f"pierre-auguste-renoir_picnic-{i}",
            emotion,
            f"people enjoying the day {i}",
            "5",
            "claude-monet_water-lilies-1919",
        )
        for i, emotion in enumerate(["fear", "anger", "disgust", "sadness", "fear", "anger"])
    ]
    return write_rows(tmp_path / "Contrastive.csv", CONTRASTIVE_HEADER, rows)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread while a test runs (tiny models on a shared 2-core machine), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class NotebookTimings:
    """Adds up each notebook's cell times under nbval and leaves them in ``{runs_dir}/course_timings.json``.

    Registered as a plugin (not as conftest hooks): a conftest's per-test hooks only see the tests below its
    own folder, and the notebooks live in ``notebooks/``. ``python -m sevlm_lib.student timings --from`` copies
    the file into docs/timings.json, from which the README table is written.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path = report.nodeid.split("::", 1)[0]  # nbval items: ``notebooks/NN_x.ipynb::Cell N``
        if path.endswith(".ipynb"):
            stem = Path(path).stem
            self.seconds[stem] = self.seconds.get(stem, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.seconds or not os.environ.get("SEVLM_RUNS_DIR"):
            return
        import json

        out = Path(os.environ["SEVLM_RUNS_DIR"]) / "course_timings.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        minutes = {k: round(v / 60, 2) for k, v in sorted(self.seconds.items())}
        out.write_text(json.dumps({"minutes": minutes, "exit_status": int(exitstatus)}, indent=1))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "run_last: run after every other test (e.g. after the notebooks ran)")
    if not config.pluginmanager.has_plugin("sevlm-notebook-timings"):
        config.pluginmanager.register(NotebookTimings(), "sevlm-notebook-timings")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move ``run_last`` tests to the end, after nbval has executed the notebooks (and left checkpoints)."""
    items.sort(key=lambda item: item.get_closest_marker("run_last") is not None)
