"""The CLIP feature cache: patch features of the frozen image encoder, computed once and read from disk.

SEVLM never trains its image encoder, so the 196 patch tokens (768 wide) of every artwork are the same in
every epoch. Computing them once turns each training step's image work into a disk read.

Layout of a cache folder::

    manifest.json          model identity, image size, pooling, the ordered image list, shards + checksums
    shard-00000.npy        float16 [rows, P, D], read as a numpy memory map
    shard-00001.npy        ...

* fp16, ``P x D = 196 x 768`` for ViT-B/16 at 224 px: 196 * 768 * 2 bytes = 0.29 MiB per image
  (80,031 ArtEmis artworks: about 22 GiB). ``pool=True`` averages 2x2 neighbouring patches (a 14x14 grid
  becomes 7x7 = 49 tokens): 4x less disk.
* **How the model reads pooled features.** The decoder cross-attends to however many memory tokens it is
  given, so 49 tokens need no change to the model; the contrastive head's image embedding (the mean over
  tokens) is even exactly the same. But a model trained on pooled features has learned from coarser
  memory: evaluate it with the same pooled cache. For that reason the automatic look-up
  (:func:`find_feature_cache`, used by training) only picks full-resolution caches unless asked for pooled
  ones.
* The manifest records the encoder (hub id + revision, or "random-init tower" for the tiny profile) and a
  sha256 of its weights, so a cache is never used with another encoder.
* **Image fingerprint.** The manifest also records where the images came from (the image root) and, for
  every artwork, its image file (relative path), size, modification time and sha256. Before a cache is used
  (:func:`find_feature_cache`, or ``FeatureCache(folder, image_root=...)``) every image is looked up again
  (one ``stat`` each; a file whose time changed but whose size did not is re-hashed): a missing, added
  (``.jpg`` -> ``.png``) or changed image raises :class:`FeatureCacheError` naming the cache, the first
  mismatching artworks and the command that rebuilds it. Caches written before the fingerprint existed are
  refused the same way (rebuilding is one pass of CLIP; silently wrong features are worse). A cache built
  from an in-memory image source (no files: notebooks, tests) records ``"images": null`` and is not checked.
* **Resume.** Each shard is written under a ``.tmp-`` name, checked, then renamed, and the manifest is
  rewritten after every shard. Building again into the same folder keeps the finished shards and redoes a
  partially written one.
* **Verification on read.** Opening checks every shard's size; every row read is checked against its CRC32
  in the manifest. A truncated shard or a changed row raises :class:`FeatureCacheError` naming the file;
  nothing is ever read as zeros. :meth:`FeatureCache.verify` re-hashes whole shards (sha256).

Command line: ``python -m sevlm_lib.features build --profile full [--pool] [--rebuild]`` and
``python -m sevlm_lib.features verify DIR``. :func:`describe_image_source` says in one line whether a run
reads cached features (print it where training and evaluation start).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sevlm_lib.data.datasets import ArtworkKey
from sevlm_lib.data.fingerprint import image_fingerprint, image_mismatches
from sevlm_lib.data.mini import mini_image_root
from sevlm_lib.io import write_json
from sevlm_lib.registry import file_sha256
from sevlm_lib.settings import Settings

MANIFEST = "manifest.json"
FORMAT = "sevlm-feature-cache/1"
SHARD_PATTERN = "shard-{:05d}.npy"
_TMP = ".tmp-"
_IDENTITY_FIELDS = (
    "hub_id",
    "revision",
    "image_size",
    "patch_size",
    "hidden_size",
    "num_layers",
    "num_heads",
    "intermediate_size",
)


class FeatureCacheError(RuntimeError):
    """A cache folder that is missing, incomplete, truncated, corrupt, made for another encoder or other images."""


def rebuild_command(profile: str | None = None, pool: bool = False) -> str:
    """The command that rebuilds a feature cache in place."""
    return (
        f"python -m sevlm_lib.features build --profile {profile or 'full'}{' --pool' if pool else ''} --rebuild"
    )


# ---------------------------------------------------------------------------------------------- image fingerprint


def _image_root_of(images: Any) -> Path | None:
    """The image root of a LazyImages-like source (``.resolver.image_root``), else ``None`` (no files)."""
    root = getattr(getattr(images, "resolver", None), "image_root", None)
    return Path(root) if root is not None else None


def check_cache_images(
    folder: Path,
    manifest: dict[str, Any],
    image_root: str | os.PathLike[str] | None = None,
    keys: Sequence[ArtworkKey] | None = None,
    *,
    profile: str | None = None,
    max_listed: int = 3,
) -> None:
    """Raise :class:`FeatureCacheError` when a cache's images are not the ones under ``image_root``.

    A cache with no image fingerprint (built before it existed) is refused too; one built from an in-memory
    source (``"images": null``) is accepted."""
    pool = manifest.get("pool") is not None
    if "images" not in manifest:
        raise FeatureCacheError(
            f"{folder}: this feature cache was built before caches recorded their images, so it cannot be "
            f"checked against the images under {image_root or 'the image root'}; rebuild it: "
            f"{rebuild_command(profile, pool)}"
        )
    if manifest["images"] is None:
        return
    problems = image_mismatches(manifest, image_root, keys)
    if problems:
        listed = "\n  ".join(problems[:max_listed])
        more = f"\n  ... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        raise FeatureCacheError(
            f"{folder}: the feature cache was built from other images than those under "
            f"{image_root or manifest['images']['root']} (it was built from {manifest['images']['root']}); "
            f"{len(problems)} artwork(s) differ:\n  {listed}{more}\n"
            f"Rebuild it: {rebuild_command(profile, pool)}"
        )


# ---------------------------------------------------------------------------------------------- identity


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes): identifies its weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _vision_config_of(vision: torch.nn.Module) -> dict[str, Any]:
    tower = getattr(vision, "tower", None)
    cfg = getattr(tower, "config", None)
    if cfg is None:
        raise TypeError(
            f"build_feature_cache: expected a sevlm_lib VisionEncoder (with .tower.config), got {type(vision).__name__}"
        )
    return {
        "image_size": int(cfg.image_size),
        "patch_size": int(cfg.patch_size),
        "hidden_size": int(cfg.hidden_size),
        "num_layers": int(cfg.num_hidden_layers),
        "num_heads": int(cfg.num_attention_heads),
        "intermediate_size": int(cfg.intermediate_size),
    }


def _matchable(value: Any) -> Any:
    """A manifest field as compared: an encoder's ``description`` is a note for people, not an identity."""
    return {k: v for k, v in value.items() if k != "description"} if isinstance(value, dict) else value


def encoder_identity(
    vision: torch.nn.Module, hub_id: str | None = None, revision: str | None = None
) -> dict[str, Any]:
    """What a cache records about its encoder: sizes, hub id + revision (or a small-tower note), weights sha256."""
    ident: dict[str, Any] = {"hub_id": hub_id, "revision": revision, **_vision_config_of(vision)}
    ident["weights_sha256"] = weights_sha256(vision)
    ident["description"] = (
        f"{hub_id} @ {revision}"
        if hub_id
        else f"small CLIP tower ({ident['num_layers']} layers, {ident['hidden_size']} wide; random-init or "
        "pre-trained on the course data: weights_sha256 says which weights)"
    )
    return ident


def _grid_side(n_patches: int) -> int:
    side = math.isqrt(n_patches)
    if side * side != n_patches:
        raise ValueError(f"cannot pool {n_patches} patch tokens: they do not form a square grid")
    return side


def pool_2x2(features: torch.Tensor) -> torch.Tensor:
    """Average each 2x2 block of the patch grid: ``[B, g*g, D] -> [B, (g/2)^2, D]`` (196 -> 49 for ViT-B/16)."""
    b, p, dim = features.shape
    g = _grid_side(p)
    if g % 2:
        raise ValueError(f"cannot 2x2-pool a {g}x{g} patch grid: the side must be even")
    grid = features.reshape(b, g, g, dim).permute(0, 3, 1, 2)
    pooled = torch.nn.functional.avg_pool2d(grid.float(), kernel_size=2).to(features.dtype)
    return pooled.permute(0, 2, 3, 1).reshape(b, (g // 2) ** 2, dim)


def pooled_tokens(n_patches: int, pool: bool) -> int:
    """How many memory tokens a cache holds per image."""
    if not pool:
        return n_patches
    g = _grid_side(n_patches)
    if g % 2:
        raise ValueError(f"cannot 2x2-pool a {g}x{g} patch grid: the side must be even")
    return (g // 2) ** 2


# ---------------------------------------------------------------------------------------------- files


def _npy_header_len(shape: tuple[int, ...], dtype: np.dtype) -> int:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.tell()


def expected_shard_bytes(rows: int, tokens: int, dim: int) -> int:
    """The size of a complete fp16 ``.npy`` shard of ``rows`` images."""
    shape = (rows, tokens, dim)
    return _npy_header_len(shape, np.dtype(np.float16)) + rows * tokens * dim * 2


def _row_crcs(array: np.ndarray) -> list[int]:
    return [zlib.crc32(np.ascontiguousarray(row).tobytes()) for row in array]


# ---------------------------------------------------------------------------------------------- building


def _image_batches(
    images: Any, keys: Sequence[ArtworkKey], batch_size: int, num_workers: int
) -> Iterator[torch.Tensor]:
    """Pixel batches for ``keys`` from an ImageSource (``.batch``), a loader ``key -> [3, S, S]`` or LazyImages."""
    loader = getattr(images, "load", None)
    if num_workers > 0 and callable(loader):
        data = torch.utils.data.DataLoader(
            _KeyDataset(list(keys), loader), batch_size=batch_size, num_workers=num_workers
        )
        yield from data
        return
    for start in range(0, len(keys), batch_size):
        chunk = list(keys[start : start + batch_size])
        if hasattr(images, "batch"):
            out = images.batch(chunk)
            if "pixel_values" not in out:
                raise ValueError(f"the image source gave {sorted(out)} for a batch, expected 'pixel_values'")
            yield out["pixel_values"]
        elif callable(images):
            yield torch.stack([images(k) for k in chunk])
        else:
            raise TypeError(
                f"build_feature_cache: images must be an ImageSource (.batch(keys)) or a loader key -> tensor, "
                f"got {type(images).__name__}"
            )


class _KeyDataset(torch.utils.data.Dataset):
    def __init__(self, keys: list[ArtworkKey], loader: Callable[[ArtworkKey], torch.Tensor]):
        self.keys, self.loader = keys, loader

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.loader(self.keys[i])


def _check_keys(keys: Sequence[ArtworkKey]) -> list[tuple[str, str]]:
    out = [(str(a), str(p)) for a, p in keys]
    if not out:
        raise ValueError("build_feature_cache: no artworks given")
    seen: set[tuple[str, str]] = set()
    dups = [k for k in out if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    if dups:
        raise ValueError(
            f"build_feature_cache: {len(dups)} artwork(s) listed twice, e.g. {dups[0][0]}/{dups[0][1]}"
        )
    return out


def _manifest_header(
    identity: dict[str, Any],
    keys: list[tuple[str, str]],
    pool: bool,
    tokens: int,
    dim: int,
    shard_size: int,
    n_patches: int,
    images: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "encoder": identity,
        "image_size": identity["image_size"],
        "pool": "2x2" if pool else None,
        "n_patches": n_patches,
        "tokens": tokens,
        "dim": dim,
        "dtype": "float16",
        "shard_size": shard_size,
        "n_images": len(keys),
        "keys_sha256": hashlib.sha256(json.dumps(keys).encode()).hexdigest(),
        "keys": [list(k) for k in keys],
        "images": images,
    }


_MATCH_FIELDS = (
    "format",
    "encoder",
    "pool",
    "n_patches",
    "tokens",
    "dim",
    "dtype",
    "shard_size",
    "n_images",
    "keys_sha256",
    "images",
)


@torch.no_grad()
def _write_shard(
    vision: torch.nn.Module,
    images: Any,
    chunk: Sequence[tuple[str, str]],
    out: Path,
    index: int,
    start: int,
    shape: tuple[int, int],
    *,
    pool: bool,
    batch_size: int,
    num_workers: int,
    bar: Any,
) -> dict[str, Any]:
    """Encode one shard's artworks into ``shard-XXXXX.npy`` (written aside, fsynced, renamed into place);
    returns its manifest entry (rows, sha256, a CRC per row)."""
    tokens, dim = shape
    device = next(vision.parameters()).device
    name = SHARD_PATTERN.format(index)
    tmp = out / f"{_TMP}{name}"
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(chunk), tokens, dim))
    row = 0
    for pixels in _image_batches(images, chunk, batch_size, num_workers):
        feats = vision(pixels.to(device))
        if pool:
            feats = pool_2x2(feats)
        if feats.shape[1:] != (tokens, dim):
            raise ValueError(
                f"the vision tower gave features of shape {tuple(feats.shape)}, expected [B, {tokens}, {dim}]"
            )
        array[row : row + len(feats)] = feats.to(torch.float16).cpu().numpy()
        row += len(feats)
        bar.update(len(feats))
    if row != len(chunk):
        raise ValueError(f"the image source gave {row} images for {len(chunk)} artworks of shard {name}")
    array.flush()
    crcs = _row_crcs(array)
    del array
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    entry = {"index": index, "file": name, "start": start, "rows": len(chunk), "sha256": file_sha256(tmp),
             "row_crc32": crcs}  # fmt: skip
    os.replace(tmp, out / name)
    return entry


def build_feature_cache(
    vision: torch.nn.Module,
    keys: Sequence[ArtworkKey],
    images: Any,
    out_dir: str | os.PathLike[str],
    *,
    shard_size: int = 4096,
    pool: bool = False,
    batch_size: int = 64,
    progress: bool = False,
    num_workers: int = 0,
    hub_id: str | None = None,
    revision: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
) -> FeatureCache:
    """Run the frozen ``vision`` tower over every artwork of ``keys`` and store fp16 features in ``out_dir``.

    ``images``: an ImageSource (``.batch(keys) -> {"pixel_values": ...}``), ``LazyImages`` (with
    ``num_workers > 0`` its ``.load`` runs in DataLoader workers) or a callable ``key -> [3, S, S]``.
    ``hub_id``/``revision`` name the pretrained weights (``None``: a random-init tower). Runs on the tower's
    device. Building into a folder that holds part of the same cache resumes it; a folder holding a cache
    made with anything else (encoder, image list, images, pooling, shard size) is an error, never overwritten.
    ``image_root`` (default: ``images.resolver.image_root`` for LazyImages) is where the image files are: their
    fingerprint goes into the manifest. Without files (an in-memory source) the manifest says ``"images": null``.
    """
    if getattr(vision, "frozen", True) is False:
        raise ValueError(
            "features can only be cached for a frozen vision tower (it would change while training)"
        )
    if shard_size < 1 or batch_size < 1:
        raise ValueError(
            f"build_feature_cache: shard_size={shard_size} and batch_size={batch_size} must be >= 1"
        )
    keys_ = _check_keys(keys)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    identity = encoder_identity(vision, hub_id, revision)
    n_patches = (identity["image_size"] // identity["patch_size"]) ** 2
    tokens, dim = pooled_tokens(n_patches, pool), identity["hidden_size"]
    root = Path(image_root) if image_root is not None else _image_root_of(images)
    fingerprint = image_fingerprint(keys_, root) if root is not None else None
    header = _manifest_header(identity, keys_, pool, tokens, dim, shard_size, n_patches, fingerprint)
    manifest_path = out / MANIFEST
    shards: list[dict[str, Any]] = []
    if manifest_path.is_file():
        old = _read_manifest(manifest_path)
        if "images" not in old and header["images"] is None:
            old["images"] = None  # made before the fingerprint from an in-memory source: nothing to compare
        diffs = [f for f in _MATCH_FIELDS if _matchable(old.get(f)) != _matchable(header[f])]
        if diffs:
            raise FeatureCacheError(
                f"{manifest_path}: this folder holds a feature cache made with other settings "
                f"(differs in: {', '.join(diffs)}); rebuild it (`python -m sevlm_lib.features build ... --rebuild`, "
                "or delete the folder) or build into another one"
            )
        for shard in old.get("shards", []):
            path = out / shard["file"]
            want = expected_shard_bytes(shard["rows"], tokens, dim)
            if path.is_file() and path.stat().st_size == want:
                shards.append(shard)
    for child in out.iterdir():
        if child.name.startswith(_TMP):
            child.unlink(missing_ok=True)
    done = {s["index"] for s in shards}
    n_shards = -(-len(keys_) // shard_size)
    write_json(
        manifest_path,
        {**header, "shards": sorted(shards, key=lambda s: s["index"]), "complete": len(done) == n_shards},
    )
    was_training = vision.training
    vision.eval()

    bar = tqdm(
        total=len(keys_), initial=sum(s["rows"] for s in shards), desc="features", disable=not progress
    )
    try:
        for index in range(n_shards):
            if index in done:
                continue
            start = index * shard_size
            entry = _write_shard(vision, images, keys_[start : start + shard_size], out, index, start,
                                 (tokens, dim), pool=pool, batch_size=batch_size, num_workers=num_workers,
                                 bar=bar)  # fmt: skip
            shards.append(entry)
            shards.sort(key=lambda s: s["index"])
            write_json(manifest_path, {**header, "shards": shards, "complete": len(shards) == n_shards})
    finally:
        bar.close()
        vision.train(was_training)
    return FeatureCache(out)


# ---------------------------------------------------------------------------------------------- reading


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeatureCacheError(f"{path}: missing; this folder holds no feature cache") from None
    except json.JSONDecodeError as err:
        raise FeatureCacheError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    if values.get("format") != FORMAT:
        raise FeatureCacheError(f"{path}: format {values.get('format')!r}, expected {FORMAT!r}")
    for i, shard in enumerate(values.get("shards", [])):
        missing = [k for k in ("index", "file", "start", "rows", "sha256", "row_crc32") if k not in shard]
        if missing:
            raise FeatureCacheError(f"{path}: shards[{i}] has no {', '.join(missing)}; rebuild the cache")
        if len(shard["row_crc32"]) != shard["rows"]:
            raise FeatureCacheError(
                f"{path}: shards[{i}] ({shard['file']}) lists {len(shard['row_crc32'])} row checksums for "
                f"{shard['rows']} rows; the manifest is damaged: rebuild the cache"
            )
    return values


class FeatureCache:
    """A finished feature cache on disk, read through memory maps; an ImageSource (``.batch(keys)``).

    ``batch(keys)`` returns ``{"image_features": [len(keys), tokens, dim]}`` in ``dtype`` (fp32 by default:
    what the model's fp32 layers expect; autocast casts it down on a GPU). ``verify_rows`` checks each row
    read against its CRC32. With ``image_root`` the images there must be the ones the cache was built from
    (see :func:`check_cache_images`), else :class:`FeatureCacheError`.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        dtype: torch.dtype = torch.float32,
        verify_rows: bool = True,
        image_root: str | os.PathLike[str] | None = None,
    ):
        self.root = Path(out_dir)
        self.manifest = _read_manifest(self.root / MANIFEST)
        if not self.manifest.get("complete"):
            have = len(self.manifest.get("shards", []))
            want = -(-self.manifest["n_images"] // self.manifest["shard_size"])
            raise FeatureCacheError(
                f"{self.root}: the feature cache is incomplete ({have} of {want} shards written); run "
                "build_feature_cache (or `python -m sevlm_lib.features build`) again to finish it: it resumes"
            )
        self.dtype, self.verify_rows = dtype, verify_rows
        self.tokens, self.dim = int(self.manifest["tokens"]), int(self.manifest["dim"])
        self.shards = sorted(self.manifest["shards"], key=lambda s: s["index"])
        self.keys: list[ArtworkKey] = [(a, p) for a, p in self.manifest["keys"]]
        self.index = {k: i for i, k in enumerate(self.keys)}
        self._where: list[tuple[int, int]] = []
        for s_i, shard in enumerate(self.shards):
            self._where.extend((s_i, r) for r in range(shard["rows"]))
        if len(self._where) != len(self.keys):
            raise FeatureCacheError(
                f"{self.root / MANIFEST}: the shards hold {len(self._where)} rows but the image list has {len(self.keys)}"
            )
        self._maps: dict[int, np.ndarray] = {}
        for s_i in range(len(self.shards)):
            self._check_size(s_i)
        if image_root is not None:
            check_cache_images(self.root, self.manifest, image_root)

    @property
    def image_root(self) -> Path | None:
        """The image root the cache was built from (``None``: built from an in-memory source or before the
        fingerprint existed)."""
        images = self.manifest.get("images")
        return Path(images["root"]) if images else None

    @property
    def pooled(self) -> bool:
        return self.manifest.get("pool") is not None

    @property
    def encoder(self) -> dict[str, Any]:
        return dict(self.manifest["encoder"])

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.index

    def __repr__(self) -> str:
        return (
            f"FeatureCache({str(self.root)!r}: {len(self)} images x {self.tokens} tokens x {self.dim}, "
            f"{'2x2-pooled' if self.pooled else 'full resolution'})"
        )

    def _check_size(self, s_i: int) -> None:
        shard = self.shards[s_i]
        path = self.root / shard["file"]
        want = expected_shard_bytes(shard["rows"], self.tokens, self.dim)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise FeatureCacheError(f"{path}: shard missing (listed in {self.root / MANIFEST})") from None
        if size != want:
            state = "truncated" if size < want else "longer than expected"
            raise FeatureCacheError(
                f"{path}: shard {state}: {size:,} bytes, expected {want:,} ({shard['rows']} rows of "
                f"{self.tokens}x{self.dim} fp16); rebuild it (delete the file and run build_feature_cache again)"
            )

    def _map(self, s_i: int) -> np.ndarray:
        if s_i not in self._maps:
            path = self.root / self.shards[s_i]["file"]
            try:
                array = np.load(path, mmap_mode="r")
            except (ValueError, OSError) as err:
                raise FeatureCacheError(f"{path}: cannot be read as a .npy shard ({err})") from None
            if array.shape != (self.shards[s_i]["rows"], self.tokens, self.dim) or array.dtype != np.float16:
                raise FeatureCacheError(
                    f"{path}: holds {array.dtype} {array.shape}, expected float16 "
                    f"{(self.shards[s_i]['rows'], self.tokens, self.dim)}"
                )
            self._maps[s_i] = array
        return self._maps[s_i]

    def rows(self, keys: Sequence[ArtworkKey]) -> np.ndarray:
        """The fp16 features of ``keys`` as a numpy array ``[len(keys), tokens, dim]``, every row verified."""
        if not keys:
            raise ValueError("cannot build an image batch from no artworks")
        out = np.empty((len(keys), self.tokens, self.dim), dtype=np.float16)
        touched: set[int] = set()
        for j, key in enumerate(keys):
            try:
                i = self.index[(key[0], key[1])]
            except KeyError:
                raise KeyError(
                    f"artwork {key[0]}/{key[1]} is not in the feature cache {self.root} "
                    f"({len(self.keys)} artworks)"
                ) from None
            s_i, r = self._where[i]
            if (
                s_i not in touched
            ):  # a file shortened after opening would otherwise crash the process (SIGBUS)
                self._check_size(s_i)
                touched.add(s_i)
            out[j] = self._map(s_i)[r]
            if self.verify_rows and zlib.crc32(out[j].tobytes()) != self.shards[s_i]["row_crc32"][r]:
                raise FeatureCacheError(
                    f"{self.root / self.shards[s_i]['file']}: row {r + 1} ({key[0]}/{key[1]}) does not match its "
                    "checksum in the manifest: the shard is corrupt; delete it and run build_feature_cache again"
                )
        return out

    def batch(self, keys: Sequence[ArtworkKey]) -> dict[str, torch.Tensor]:
        return {"image_features": torch.from_numpy(self.rows(keys)).to(self.dtype)}

    def verify(self) -> list[str]:
        """Re-hash every shard (sha256); returns the problems found (empty: intact)."""
        problems = []
        for s_i, shard in enumerate(self.shards):
            path = self.root / shard["file"]
            try:
                self._check_size(s_i)
            except FeatureCacheError as err:
                problems.append(str(err))
                continue
            if file_sha256(path) != shard["sha256"]:
                problems.append(
                    f"{path}: sha256 differs from the manifest (the shard changed after it was written)"
                )
        return problems


# ---------------------------------------------------------------------------------------------- finding


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def default_cache_dir(
    settings: Settings, vision_config: Any, pool: bool = False, weights: str | None = None
) -> Path:
    """``{cache_dir}/features/{encoder}-{size}px-{tokens}tok``: where ``build`` puts a cache by default."""
    v = asdict(vision_config) if not isinstance(vision_config, dict) else vision_config
    n = (v["image_size"] // v["patch_size"]) ** 2
    if v.get("hub_id"):
        name = f"{_slug(v['hub_id'])}@{str(v.get('revision') or 'main')[:10]}"
    else:
        name = f"random-tower-{(weights or 'unknown')[:12]}"
    return settings.cache_dir / "features" / f"{name}-{v['image_size']}px-{pooled_tokens(n, pool)}tok"


def default_image_root(settings: Settings) -> Path:
    """The image root of the settings' profile: WikiArt (full) or ArtEmis-mini's images (tiny)."""
    if settings.profile == "full":
        return settings.wikiart_dir

    return mini_image_root(settings)


def find_feature_cache(
    settings: Settings,
    model_config: Any,
    *,
    vision: torch.nn.Module | None = None,
    keys: Sequence[ArtworkKey] | None = None,
    pool: bool = False,
    image_root: str | os.PathLike[str] | None = None,
) -> FeatureCache | None:
    """A finished cache under ``{cache_dir}/features`` made by this model's encoder from these images, or ``None``.

    It must record the same encoder sizes and hub id + revision as ``model_config.vision``, the requested
    pooling and, when ``vision`` (the model's tower) is given, the same weights sha256. A random-init tower
    (tiny profile) is matched only by its weights, so ``vision`` is needed then. ``keys`` must all be in it.
    Its images must still be the ones under ``image_root`` (default: the profile's, see
    :func:`default_image_root`): a cache that matches in everything but its images raises
    :class:`FeatureCacheError` (naming the cache, the artworks that differ and the rebuild command) rather
    than being used, or silently skipped, when no other cache matches.
    """
    root = settings.cache_dir / "features"
    if not root.is_dir():
        return None
    want = asdict(model_config.vision)
    weights: str | None = None
    images_at = Path(image_root) if image_root is not None else default_image_root(settings)
    stale: FeatureCacheError | None = None
    for folder in sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()):
        try:
            manifest = _read_manifest(folder / MANIFEST)
        except FeatureCacheError:
            continue
        enc = manifest.get("encoder", {})
        if not manifest.get("complete") or (manifest.get("pool") is not None) != pool:
            continue
        if any(enc.get(f) != want.get(f) for f in _IDENTITY_FIELDS):
            continue
        if vision is None and enc.get("hub_id") is None:
            continue
        if vision is not None:
            weights = weights or weights_sha256(vision)
            if enc.get("weights_sha256") != weights:
                continue
        if keys is not None:
            have = {tuple(k) for k in manifest["keys"]}
            if any((a, p) not in have for a, p in keys):
                continue
        try:
            check_cache_images(folder, manifest, images_at, keys, profile=settings.profile)
        except FeatureCacheError as err:
            stale = stale or err
            continue
        return FeatureCache(folder)
    if stale is not None:
        raise stale
    return None


def uses_feature_cache(source: Any) -> bool:
    """Whether an image source (``experiments.image_source_for``'s result) reads an on-disk feature cache."""
    return isinstance(source, FeatureCache)


def describe_image_source(source: Any, settings: Settings | None = None) -> str:
    """One line saying where a run's image features come from (print it when training or evaluation starts)."""
    if isinstance(source, FeatureCache):
        return (
            f"image features: read from the feature cache {source.root} ({len(source):,} artworks, "
            f"{source.tokens} tokens x {source.dim}{', 2x2-pooled' if source.pooled else ''})"
        )
    image_root = _image_root_of(source)
    if image_root is not None:
        where = f" under {settings.cache_dir / 'features'}" if settings is not None else ""
        return (
            f"image features: no matching feature cache{where}; the frozen image encoder runs on the images "
            f"under {image_root} at every step (build a cache once with `python -m sevlm_lib.features build`)"
        )
    return "image features: computed by the frozen image encoder from images held in memory"


def discard_cache(folder: str | os.PathLike[str]) -> int:
    """Delete a cache's own files in ``folder`` (manifest, shards, temp files); returns how many. Other files stay."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    pattern = re.compile(r"^(manifest\.json|shard-\d{5}\.npy|\.tmp-.*)$")
    removed = 0
    for child in folder.iterdir():
        if child.is_file() and pattern.match(child.name):
            child.unlink()
            removed += 1
    return removed


# ---------------------------------------------------------------------------------------------- command line


if __name__ == "__main__":
    from sevlm_lib.cli.features import main

    raise SystemExit(main())
