"""One settings object for the whole course, read from ``SEVLM_*`` environment variables.

Nothing here runs at import time: call :func:`get_settings` (or ``Settings.from_env()``) when you need it.

| variable | meaning | default |
| --- | --- | --- |
| ``SEVLM_PROFILE`` | ``tiny`` (offline, CPU, synthetic data) or ``full`` (ArtEmis + hub models) | ``tiny`` |
| ``SEVLM_DATA_DIR`` | where datasets live | ``<course root>/data`` |
| ``SEVLM_CACHE_DIR`` | downloaded and derived files (lexicon, tokenizers, feature caches) | ``<data dir>/cache`` |
| ``SEVLM_RUNS_DIR`` | metrics, logs and figures of each notebook or run | ``<course root>/runs`` |
| ``SEVLM_CHECKPOINT_DIR`` | model checkpoints | ``<runs dir>/checkpoints`` |
| ``SEVLM_DEVICE`` | ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ... | ``auto`` |
| ``SEVLM_SEED`` | the seed everything starts from | ``0`` |
| ``SEVLM_QUIET`` | ``1`` silences progress bars | ``1`` when ``CI`` is set, else ``0`` |
| ``SEVLM_THREADS`` | torch's CPU threads per process; ``auto``: torch's own choice | ``2`` (see below) |
| ``SEVLM_WORKERS`` | training runs at once, each in its own process (CPU only) | ``auto``: cores // threads |
| ``SEVLM_ARTEMIS_CSV`` | ArtEmis v1.0 ``artemis_dataset_release_v0.csv`` | ``<data dir>/artemis/artemis_dataset_release_v0.csv`` |
| ``SEVLM_CONTRASTIVE_CSV`` | ArtEmis v2.0 ``Contrastive.csv`` (optional) | ``<data dir>/artemis/Contrastive.csv`` |
| ``SEVLM_WIKIART_DIR`` | WikiArt image root, ``{art_style}/{painting}.jpg`` | ``<data dir>/wikiart`` |
| ``SEVLM_NRC_VAD`` | an NRC-VAD lexicon file (optional; Warriner otherwise) | ``<data dir>/lexicons/NRC-VAD-Lexicon.txt`` |

A run's numbers depend on how many threads computed it (floating-point sums split differently), not on the
machine's cores: 2 threads on one core give the same bits as 2 threads on two. So the course fixes its
threads at :data:`COURSE_THREADS`, the count its recorded outputs were made with, and uses a larger machine
by training several runs (the seeds of a variant) side by side in worker processes instead.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

PROFILES = ("tiny", "full")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
COURSE_THREADS = 2  # the threads per process the committed notebook outputs were computed with


def find_course_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: cwd) that holds ``sevlm_lib/`` and ``pyproject.toml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "sevlm_lib").is_dir():
            return folder
    pkg_root = Path(__file__).resolve().parents[1]
    if (pkg_root / "pyproject.toml").is_file():
        return pkg_root
    return None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


@dataclass(frozen=True)
class Settings:
    """Where things live and how the course runs. Build it with :meth:`from_env`."""

    profile: str = "tiny"
    data_dir: Path = field(default_factory=lambda: Path("data"))
    cache_dir: Path = field(default_factory=lambda: Path("data/cache"))
    runs_dir: Path = field(default_factory=lambda: Path("runs"))
    checkpoint_dir: Path = field(default_factory=lambda: Path("runs/checkpoints"))
    device: str = "auto"
    seed: int = 0
    quiet: bool = False
    threads: int | None = COURSE_THREADS  # None: torch's own choice
    workers: int | None = None  # None: as many as the cores allow (:func:`run_workers`)
    artemis_csv: Path = field(default_factory=lambda: Path("data/artemis/artemis_dataset_release_v0.csv"))
    contrastive_csv: Path = field(default_factory=lambda: Path("data/artemis/Contrastive.csv"))
    wikiart_dir: Path = field(default_factory=lambda: Path("data/wikiart"))
    nrc_vad: Path = field(default_factory=lambda: Path("data/lexicons/NRC-VAD-Lexicon.txt"))

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"SEVLM_PROFILE={self.profile!r}: expected one of {', '.join(PROFILES)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"SEVLM_THREADS={self.threads}: expected a positive integer or auto")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"SEVLM_WORKERS={self.workers}: expected a positive integer or auto")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``SEVLM_*`` variables from ``env`` (default: ``os.environ``); keyword overrides win."""
        env = os.environ if env is None else env
        root = find_course_root() or Path.cwd()

        def path(name: str, default: Path) -> Path:
            raw = env.get(name)
            return Path(raw).expanduser().resolve() if raw else default

        data_dir = path("SEVLM_DATA_DIR", root / "data")
        runs_dir = path("SEVLM_RUNS_DIR", root / "runs")
        seed_raw = env.get("SEVLM_SEED", "0")
        try:
            seed = int(seed_raw)
        except ValueError:
            raise ValueError(f"SEVLM_SEED={seed_raw!r}: expected an integer") from None
        threads = _count(env, "SEVLM_THREADS", COURSE_THREADS)
        workers = _count(env, "SEVLM_WORKERS", None)
        values: dict[str, object] = dict(
            profile=env.get("SEVLM_PROFILE", "tiny").strip().lower() or "tiny",
            data_dir=data_dir,
            cache_dir=path("SEVLM_CACHE_DIR", data_dir / "cache"),
            runs_dir=runs_dir,
            checkpoint_dir=path("SEVLM_CHECKPOINT_DIR", runs_dir / "checkpoints"),
            device=env.get("SEVLM_DEVICE", "auto").strip() or "auto",
            seed=seed,
            quiet=_flag(env, "SEVLM_QUIET", default=bool(env.get("CI"))),
            threads=threads,
            workers=workers,
            artemis_csv=path("SEVLM_ARTEMIS_CSV", data_dir / "artemis" / "artemis_dataset_release_v0.csv"),
            contrastive_csv=path("SEVLM_CONTRASTIVE_CSV", data_dir / "artemis" / "Contrastive.csv"),
            wikiart_dir=path("SEVLM_WIKIART_DIR", data_dir / "wikiart"),
            nrc_vad=path("SEVLM_NRC_VAD", data_dir / "lexicons" / "NRC-VAD-Lexicon.txt"),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def mini_dir(self) -> Path:
        """Where the generated ArtEmis-mini lives."""
        return self.data_dir / "artemis_mini"

    def run_dir(self, name: str) -> Path:
        """``{runs_dir}/{name}``, created on demand."""
        out = self.runs_dir / name
        out.mkdir(parents=True, exist_ok=True)
        return out

    def resolved_device(self) -> str:
        """The torch device string: ``auto`` picks CUDA when available, else CPU. Asking for CUDA on a machine
        without it is an error that names the setting."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(
                f"SEVLM_DEVICE={self.device}: this machine has no CUDA GPU that torch can use; "
                "set SEVLM_DEVICE=auto or cpu"
            )
        return self.device


def get_settings(**overrides: object) -> Settings:
    """The settings for this process, from the environment (a fresh read on every call)."""
    return Settings.from_env(**overrides)


def _count(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    """A positive count from ``env[name]``; ``auto`` gives None, unset gives ``default``."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw == "auto":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a positive integer or auto") from None


def apply_threads(settings: Settings) -> int:
    """Give torch ``settings.threads`` CPU threads (unless ``auto``); return the number it now uses.

    On a machine that other jobs load, two processes that each take every core slow each other down many times
    over (``benchmarks/results/threads.json``); ``SEVLM_THREADS=1`` keeps each at its own speed (and changes
    the numbers in their last digits)."""
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    return torch.get_num_threads()


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        return os.cpu_count() or 1


def run_workers(settings: Settings) -> int:
    """How many training runs go side by side: ``SEVLM_WORKERS``, else ``cores // threads`` (at least 1).

    A GPU trains one run at a time (its memory, not the cores, is what runs share)."""
    if settings.workers is not None:
        return settings.workers
    if settings.resolved_device() != "cpu":
        return 1
    return max(1, usable_cores() // (settings.threads or torch.get_num_threads()))


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy and torch (CPU and CUDA) so runs repeat exactly on a CPU."""

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
