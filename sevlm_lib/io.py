"""Files written so that a crash never leaves half of one: the one atomic writer, JSON read/write, fsync.

Every file the library writes that another run may read (checkpoints, ``latest``, manifests, metrics) goes
through :func:`atomic_write_text` or :func:`write_json`: the text goes to a temporary file next to the target,
is flushed to disk and then renamed over the target, so a reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def fsync_file(path: Path) -> None:
    """Flush one file's content to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder below ``root``."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fsync_file(Path(folder) / name)
        fsync_dir(Path(folder))


def temp_path(path: Path) -> Path:
    """A fresh temporary name next to ``path`` (``.tmp-{name}-{random}``), ignored by every reader."""
    return path.parent / f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to a temporary file next to ``path``, fsync it and ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_json(
    path: str | os.PathLike[str],
    values: Mapping[str, Any],
    *,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """Write ``values`` as indented JSON, atomically (see :func:`atomic_write_text`)."""
    return atomic_write_text(path, json.dumps(values, indent=1, sort_keys=sort_keys, default=default))


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON file; a missing or malformed file is an error that names it (and the line)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder to ``final`` (moving any old ``final`` aside first)."""
    trash = None
    if final.exists():
        trash = final.parent / f"{TMP_PREFIX}trash-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, trash)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
