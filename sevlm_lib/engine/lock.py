"""One run, one owner: a lock file in a run's checkpoint folder so two processes never train (or clear) the
same run at once.

``{checkpoint_dir}/.lock`` holds the owner's pid, host and start time. A second process that finds it refuses
with a message naming the owner; a lock left by a process that no longer runs (same host, dead pid) is taken
over with a warning. The owning process may take its own lock again (the command line locks the run, then
the trainer inside it does too).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another live process owns this run's checkpoint folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class RunLock:
    """``with RunLock(checkpoint_dir): ...`` owns the folder for the block (re-entrant in one process)."""

    _held: dict[Path, int] = {}  # per-process count of nested holds, by folder

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).resolve()
        self.path = self.folder / LOCK_FILE

    def owner(self) -> dict[str, object] | None:
        """Who holds the lock (``pid``, ``host``, ``started``), or None when nobody does."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"pid": -1, "host": "?", "started": "?"}  # unreadable: treat as held by an unknown owner

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunLockedError` naming its live owner."""
        if self._held.get(self.folder, 0) > 0:
            self._held[self.folder] += 1
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _attempt in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.owner() or {}
                pid, host = owner.get("pid"), owner.get("host")
                if isinstance(pid, int) and host == me["host"] and pid > 0 and not _alive(pid):
                    logger.warning("%s: taking over the lock of process %s, which no longer runs", self.path, pid)
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunLockedError(
                    f"{self.folder} is in use by process {pid} on {host} (since {owner.get('started')}): another "
                    "run of the same name is training or was interrupted there. Wait for it to finish, or give "
                    f"this run another name (--name); if that process is gone, delete {self.path}."
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(me, handle)
            self._held[self.folder] = 1
            return
        raise RunLockedError(f"{self.path}: could not take the lock")

    def release(self) -> None:
        """Give the lock back (the file goes when the outermost hold ends)."""
        count = self._held.get(self.folder, 0)
        if count > 1:
            self._held[self.folder] = count - 1
            return
        self._held.pop(self.folder, None)
        owner = self.owner()
        if owner is not None and owner.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
