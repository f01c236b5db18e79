"""The fingerprint of a set of image files: where they are and what they hold (relative path, size,
modification time, sha256), so a cache built from them can tell when they changed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sevlm_lib.data.artemis import ImageResolver
from sevlm_lib.data.datasets import ArtworkKey
from sevlm_lib.registry import file_sha256


def image_fingerprint(
    keys: Sequence[ArtworkKey], image_root: str | os.PathLike[str], *, hashes: bool = True
) -> dict[str, Any]:
    """Where the images of ``keys`` came from and what they held: the root, and per artwork (in ``keys``'
    order) ``[relative path, size, mtime_ns, sha256]`` (``sha256`` is ``None`` with ``hashes=False``).

    A missing image raises ``FileNotFoundError`` naming the first few."""
    root = Path(image_root)
    resolver = ImageResolver(root)
    files: list[list[Any]] = []
    missing: list[str] = []
    for style, painting in keys:
        path = resolver.resolve(style, painting)
        if path is None:
            missing.append(f"{style}/{painting}")
            continue
        stat = path.stat()
        digest = file_sha256(path) if hashes else None
        files.append([path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns, digest])
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(keys)} artworks have no image under {root} (expected "
            f"{{art_style}}/{{painting}}.jpg or .png), e.g. {', '.join(missing[:5])}"
        )
    return {"root": str(root.resolve()), "files": files}


def image_mismatches(
    manifest: dict[str, Any],
    image_root: str | os.PathLike[str] | None = None,
    keys: Sequence[ArtworkKey] | None = None,
) -> list[str]:
    """How the images under ``image_root`` (default: the recorded root) differ from the ones a cache was built
    from, for ``keys`` (default: all of its artworks); empty when they match. A file whose modification time
    changed but whose size did not is re-hashed and counts as changed only if its content did."""
    images = manifest["images"]
    root = Path(image_root) if image_root is not None else Path(images["root"])
    resolver = ImageResolver(root)
    record = {tuple(k): f for k, f in zip(manifest["keys"], images["files"], strict=True)}
    wanted = [(str(a), str(p)) for a, p in keys] if keys is not None else list(record)
    problems = []
    for key in wanted:
        rel, size, mtime_ns, digest = record[key]
        path = resolver.resolve(*key)
        name = f"{key[0]}/{key[1]}"
        if path is None:
            problems.append(f"{name}: no image under {root} (the cache was built from {rel})")
            continue
        now = path.relative_to(root).as_posix()
        if now != rel:
            problems.append(f"{name}: the image is now {now}, the cache was built from {rel}")
            continue
        stat = path.stat()
        if stat.st_size != size:
            problems.append(f"{name}: {rel} is {stat.st_size:,} bytes, the cache was built from {size:,} bytes")
        elif stat.st_mtime_ns != mtime_ns and (digest is None or file_sha256(path) != digest):
            problems.append(f"{name}: {rel} changed after the cache was built (modification time and content)")
    return problems
