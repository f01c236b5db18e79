"""ArtEmis: load and check the annotations, count votes, split by artwork, find images, build training items.

ArtEmis v1.0 (Achlioptas et al., CVPR 2021) ships one CSV, ``artemis_dataset_release_v0.csv``, with one row per
annotation: ``art_style, painting, emotion, utterance, repetition``. An *artwork* is the pair
``(art_style, painting)``; its image lives at ``{wikiart_dir}/{art_style}/{painting}.jpg``. ``repetition`` is the
number of annotations collected for that artwork (at least 5; 701 artworks have 41 or more).
ArtEmis v2.0 (Mohamed et al., CVPR 2022) adds ``Contrastive.csv`` with the same columns plus ``anchor_painting``.

The pieces, in the order the course uses them:

- :func:`load_artemis` / :func:`load_contrastive` read a CSV as strings and validate every row;
- :func:`emotion_histograms`, :func:`dominant_emotion`, :func:`annotator_entropy` describe the votes;
- :func:`split_artemis` gives ArtEmis's 85/5/10 split by artwork (seed 2021) with a ``rest`` split;
- :func:`build_v2` mixes v1 and contrastive annotations like ArtEmis v2.0;
- :class:`ImageResolver` finds the WikiArt images; :func:`load_rgb` (:func:`open_image` for paths) reads any
  image as 8-bit RGB, refusing decompression bombs and extreme aspect ratios before decoding;
- :func:`single_items`, :func:`pair_items` and :func:`sample_pair` turn annotations into training items.
"""

from __future__ import annotations

import csv
import math
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sevlm_lib.data.images import (  # re-exported (see __all__): the image reader used to live here
    MAX_ASPECT_RATIO,
    MAX_IMAGE_PIXELS,
    ImageError,
    PathLike,
    check_image_size,
    load_rgb,
    open_image,
    to_rgb,
)
from sevlm_lib.emotions import EMOTIONS
from sevlm_lib.settings import Settings

REQUIRED_COLUMNS: tuple[str, ...] = ("art_style", "painting", "emotion", "utterance", "repetition")
ARTWORK_KEY: tuple[str, str] = ("art_style", "painting")
SPLITS: tuple[str, ...] = ("train", "val", "test", "rest")
DOMINANT_RULES: tuple[str, ...] = ("artemis", "strict")
ARTEMIS_URL = "https://www.artemisdataset.org/"
# ArtEmis's preprocessing sends artworks with this many annotations or more to the ``rest`` split.
REST_MIN_REPETITION = 41
# The seed of the course's split (``pipeline.load_course_data``); ArtEmis-mini's rare-words condition computes
# the same split of its artworks with it, so both must use this one constant.
COURSE_SPLIT_SEED = 2021
_MAX_PROBLEM_ROWS = 5


# --------------------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------------------


def _expected_path(setting: str) -> str:
    """The path ``Settings`` expects for ``setting`` (``artemis_csv`` ...), or a hint when settings fail."""
    try:
        return str(getattr(Settings.from_env(), setting))
    except ValueError as err:  # a malformed SEVLM_* variable must not hide the real error
        return f"<the path in Settings.{setting}; settings could not be read: {err}>"


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _data_row_lines(path: Path, rows: Iterable[int]) -> dict[int, int]:
    """Map 1-based data rows to the 1-based file line where each starts (only called when reporting errors).

    A quoted utterance may span several lines and pandas skips blank lines, so ``line = row + 1`` is not always
    right; re-reading the file with :mod:`csv` gives the true line.
    """
    wanted = set(rows)
    found: dict[int, int] = {}
    if not wanted:
        return found
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            previous_end = 0
            data_row = -1  # the header is row 0
            for record in reader:
                start = previous_end + 1
                previous_end = reader.line_num
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # pandas skips blank lines
                data_row += 1
                if data_row in wanted:
                    found[data_row] = start
                    if len(found) == len(wanted):
                        break
    except (OSError, csv.Error, UnicodeDecodeError):
        pass  # fall back to row + 1 below
    return found


def _where(row: int, lines: Mapping[int, int] | None) -> str:
    """``data row 3 (line 4)`` for a file, ``data row 3`` for an in-memory frame (``lines=None``)."""
    if lines is None:
        return f"data row {row}"
    return f"data row {row} (line {lines.get(row, row + 1)})"


def _parse_repetition(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Repetition as int64 plus a mask of bad rows.

    Accepted: a positive integer written as digits (``"5"``, ``" 5 "``) or as an integral decimal (``"5.0"``,
    which a round trip through a float column produces). Rejected: empty, text, fractions, zero, negatives.
    """
    numbers = pd.to_numeric(values.astype(str).str.strip(), errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(numbers) & (numbers == np.floor(numbers)) & (numbers >= 1) & (numbers < 2**62)
    ints = np.where(ok, numbers, 0).astype(np.int64)
    return ints, ~ok


def _blank(values: pd.Series) -> np.ndarray:
    """True where a value is missing, empty or only whitespace."""
    missing = values.isna().to_numpy()
    empty = values.fillna("").astype(str).str.strip().eq("").to_numpy()
    return missing | empty


def validate_annotations(df: pd.DataFrame, source: PathLike | None = None) -> pd.DataFrame:
    """Check ArtEmis annotations and return a copy with ``repetition`` as ``int64``; raise ``ValueError`` if bad.

    Rules: the five ArtEmis columns are present (extra columns are kept); ``art_style``, ``painting`` and
    ``utterance`` are not empty or whitespace; ``emotion`` is exactly one of the nine ``EMOTIONS``
    (lower case, ``"something else"`` with a space); ``repetition`` is a positive integer (``"5"``, or ``"5.0"``).
    The error names ``source`` (the file), the 1-based data row (row 1 = first row after the header), its file
    line, the column and the bad value, for the first few bad rows of each failing column.
    All checks are vectorised, so the 454k-row release validates in well under a second.
    """
    name = str(source) if source is not None else "<DataFrame>"
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {', '.join(map(repr, missing))}; found columns "
            f"{', '.join(map(repr, map(str, df.columns)))}; an ArtEmis CSV needs {', '.join(REQUIRED_COLUMNS)}"
        )
    out = df.copy()
    repetition, bad_repetition = _parse_repetition(out["repetition"])
    checks: list[tuple[str, np.ndarray, str]] = [
        ("art_style", _blank(out["art_style"]), "a non-empty art style (a WikiArt folder name)"),
        ("painting", _blank(out["painting"]), "a non-empty painting name (a WikiArt file name without .jpg)"),
        (
            "emotion",
            ~out["emotion"].isin(EMOTIONS).to_numpy(),
            f"one of the nine ArtEmis emotions ({', '.join(EMOTIONS)}), exactly, in lower case",
        ),
        ("utterance", _blank(out["utterance"]), "a non-empty utterance (not only whitespace)"),
        ("repetition", bad_repetition, "a positive integer, e.g. '5'"),
    ]
    failing = [(col, np.flatnonzero(mask), expected) for col, mask, expected in checks if mask.any()]
    if failing:
        first_rows = {int(i) + 1 for _, bad, _ in failing for i in bad[:_MAX_PROBLEM_ROWS]}
        lines = _data_row_lines(Path(source), first_rows) if source is not None else None
        parts = []
        for col, bad, expected in failing:
            shown = [
                f"{_where(int(i) + 1, lines)}: {_short(df[col].iloc[int(i)])}"
                for i in bad[:_MAX_PROBLEM_ROWS]
            ]
            more = f" (and {len(bad) - len(shown)} more)" if len(bad) > len(shown) else ""
            parts.append(
                f"column {col!r}: expected {expected}; {len(bad)} bad row(s): {'; '.join(shown)}{more}"
            )
        first_col, first_bad, _ = min(failing, key=lambda f: int(f[1][0]))
        row = int(first_bad[0]) + 1
        raise ValueError(
            f"{name}: invalid ArtEmis annotations; first problem at {_where(row, lines)}, column {first_col!r}.\n"
            + "\n".join(f"  - {p}" for p in parts)
        )
    out["repetition"] = repetition
    return out


def _read_annotations(csv_path: PathLike | None, what: str, setting: str, env_var: str) -> pd.DataFrame:
    if csv_path is None:
        csv_path = getattr(Settings.from_env(), setting)
    path = Path(csv_path)
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"{what} not found: {path} {state}. Download ArtEmis from {ARTEMIS_URL} and put the CSV at "
            f"{_expected_path(setting)} (or point {env_var} at it)."
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: the file is empty; expected a CSV with header {','.join(REQUIRED_COLUMNS)}"
        ) from None
    except pd.errors.ParserError as err:
        raise ValueError(f"{path}: not a well-formed CSV ({str(err).strip()})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    if not isinstance(df.index, pd.RangeIndex):  # pandas turns a surplus first field into an index
        raise ValueError(
            f"{path}: data row 1 (line 2) has more fields than the header ({len(df.columns)} columns: "
            f"{', '.join(map(str, df.columns))}); quote utterances that contain commas"
        )
    return validate_annotations(df, path).reset_index(drop=True)


def load_artemis(csv_path: PathLike | None = None) -> pd.DataFrame:
    """Read ArtEmis v1.0 ``artemis_dataset_release_v0.csv`` (default: ``Settings.artemis_csv``) and validate it.

    Every column is read as a string, so painting names such as ``"nan"`` or ``"1"`` survive; then
    ``repetition`` becomes ``int64``. Extra columns are kept; rows keep file order. Raises
    ``FileNotFoundError`` for a missing file (saying where to get ArtEmis) and ``ValueError`` for a bad row
    (naming the file, the data row and line, the column and the value; see :func:`validate_annotations`).
    """
    return _read_annotations(
        csv_path,
        "ArtEmis v1.0 annotations (artemis_dataset_release_v0.csv)",
        "artemis_csv",
        "SEVLM_ARTEMIS_CSV",
    )


def load_contrastive(csv_path: PathLike | None = None) -> pd.DataFrame:
    """Read ArtEmis v2.0 ``Contrastive.csv`` (default: ``Settings.contrastive_csv``) with :func:`load_artemis`'s checks.

    Its extra ``anchor_painting`` column is kept but not required.
    """
    return _read_annotations(
        csv_path,
        "ArtEmis v2.0 contrastive annotations (Contrastive.csv)",
        "contrastive_csv",
        "SEVLM_CONTRASTIVE_CSV",
    )


# --------------------------------------------------------------------------------------------------------
# Votes: histograms, dominant emotion, disagreement
# --------------------------------------------------------------------------------------------------------


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what}: missing column(s) {', '.join(map(repr, missing))}; found {list(df.columns)}"
        )


def _artwork_codes(df: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Per row, the index of its artwork among the sorted unique artworks; and those artworks as a frame."""
    _require(df, ARTWORK_KEY, "artworks")
    keys = df[list(ARTWORK_KEY)]
    if keys.isna().any().any():
        row = int(np.flatnonzero(keys.isna().any(axis=1).to_numpy())[0]) + 1
        raise ValueError(f"artworks: data row {row} has a missing art_style or painting")
    grouped = keys.groupby(list(ARTWORK_KEY), sort=True)
    codes = grouped.ngroup().to_numpy()
    artworks = grouped.size().reset_index()[list(ARTWORK_KEY)]
    return codes, artworks


def emotion_histograms(df: pd.DataFrame) -> pd.DataFrame:
    """One row per artwork: ``art_style``, ``painting``, the nine vote counts (``EMOTIONS`` order) and ``n_votes``.

    Rows are sorted by ``(art_style, painting)``; counts are ``int64``; the index is a plain ``RangeIndex``.
    """
    _require(df, (*ARTWORK_KEY, "emotion"), "emotion_histograms")
    codes, artworks = _artwork_codes(df)
    emotion_idx = pd.Categorical(df["emotion"], categories=list(EMOTIONS)).codes
    if (emotion_idx < 0).any():
        row = int(np.flatnonzero(emotion_idx < 0)[0]) + 1
        raise ValueError(
            f"emotion_histograms: data row {row} has emotion {_short(df['emotion'].iloc[row - 1])}, "
            f"expected one of {', '.join(EMOTIONS)}"
        )
    counts = np.zeros((len(artworks), len(EMOTIONS)), dtype=np.int64)
    np.add.at(counts, (codes, emotion_idx), 1)
    hist = artworks.copy()
    for j, emotion in enumerate(EMOTIONS):
        hist[emotion] = counts[:, j]
    hist["n_votes"] = counts.sum(axis=1)
    return hist.reset_index(drop=True)


def _counts_vector(counts: Sequence[float] | np.ndarray | pd.Series | Mapping[str, float]) -> np.ndarray:
    if isinstance(counts, Mapping):
        unknown = [k for k in counts if k not in EMOTIONS]
        if unknown:
            raise ValueError(f"unknown emotion(s) {unknown}; expected keys among {', '.join(EMOTIONS)}")
        vector = np.array([counts.get(e, 0) for e in EMOTIONS], dtype=float)
    elif isinstance(counts, pd.Series) and set(counts.index) <= set(EMOTIONS) and len(counts) > 0:
        vector = np.array([counts.get(e, 0) for e in EMOTIONS], dtype=float)
    else:
        vector = np.asarray(counts, dtype=float).reshape(-1)
        if vector.shape != (len(EMOTIONS),):
            raise ValueError(f"expected {len(EMOTIONS)} counts in EMOTIONS order, got {vector.shape[0]}")
    if not np.all(np.isfinite(vector)) or (vector < 0).any():
        raise ValueError(f"vote counts must be finite and non-negative, got {vector.tolist()}")
    return vector


def _dominant_index(counts: np.ndarray, rule: str) -> np.ndarray:
    """Row-wise index of the dominant emotion in an ``[N, 9]`` count matrix, ``-1`` where there is none."""
    if rule not in DOMINANT_RULES:
        raise ValueError(
            f"unknown dominant-emotion rule {rule!r}: expected one of {', '.join(DOMINANT_RULES)}"
        )
    total = counts.sum(axis=1)
    top = counts.max(axis=1)
    arg = counts.argmax(axis=1)
    if rule == "artemis":
        unique_top = (counts == top[:, None]).sum(axis=1) == 1
        ok = (top * 2 >= total) & unique_top
    else:
        ok = top * 2 > total
    ok &= total > 0
    return np.where(ok, arg, -1)


def dominant_emotion(
    counts: Sequence[float] | np.ndarray | pd.Series | Mapping[str, float], rule: str = "artemis"
) -> str | None:
    """The artwork's dominant emotion from its nine vote counts (``EMOTIONS`` order, or a dict emotion -> count).

    ``rule="artemis"`` (ArtEmis's paper): the emotion holds at least half of the votes and is the unique
    maximum; ``rule="strict"`` (SEVLM's reference code): strictly more than half. ``None`` when no emotion
    qualifies (or there are no votes). Example: 3 of 6 votes is dominant under ``artemis``, not ``strict``.
    """
    index = int(_dominant_index(_counts_vector(counts)[None, :], rule)[0])
    return None if index < 0 else EMOTIONS[index]


def _count_matrix(hist_df: pd.DataFrame | np.ndarray) -> np.ndarray:
    if isinstance(hist_df, pd.DataFrame):
        _require(hist_df, EMOTIONS, "emotion counts")
        matrix = hist_df[list(EMOTIONS)].to_numpy(dtype=float)
    else:
        matrix = np.asarray(hist_df, dtype=float)
        if matrix.ndim != 2 or matrix.shape[1] != len(EMOTIONS):
            raise ValueError(f"expected an [N, {len(EMOTIONS)}] count matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)) or (matrix < 0).any():
        raise ValueError("vote counts must be finite and non-negative")
    return matrix


def dominant_emotions(hist_df: pd.DataFrame, rule: str = "artemis") -> pd.Series:
    """Vectorised :func:`dominant_emotion` over :func:`emotion_histograms` rows (``None`` where none).

    Returns an object Series aligned with ``hist_df``'s index, named ``dominant_emotion``.
    """
    index = _dominant_index(_count_matrix(hist_df), rule)
    labels = np.array([*EMOTIONS, None], dtype=object)[index]  # -1 picks the trailing None
    series_index = hist_df.index if isinstance(hist_df, pd.DataFrame) else None
    return pd.Series(labels, index=series_index, dtype=object, name="dominant_emotion")


def annotator_entropy(hist_df: pd.DataFrame) -> pd.Series:
    """Shannon entropy (bits) of each artwork's emotion histogram: 0 = everyone agrees, log2(9) ~ 3.17 = maximal.

    Aligned with ``hist_df``'s index; ``NaN`` for an artwork without votes.
    """
    counts = _count_matrix(hist_df)
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = counts / total
        terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    entropy = terms.sum(axis=1)
    entropy[total[:, 0] == 0] = np.nan
    series_index = hist_df.index if isinstance(hist_df, pd.DataFrame) else None
    return pd.Series(entropy, index=series_index, name="entropy_bits")


# --------------------------------------------------------------------------------------------------------
# Splits and ArtEmis v2.0
# --------------------------------------------------------------------------------------------------------


def _artwork_repetition(df: pd.DataFrame, codes: np.ndarray, n_artworks: int) -> np.ndarray:
    """Per artwork: the largest ``repetition`` of its rows, or its number of rows if there is no such column."""
    if "repetition" not in df.columns:
        return np.bincount(codes, minlength=n_artworks)
    repetition = pd.to_numeric(df["repetition"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(repetition).any():
        row = int(np.flatnonzero(np.isnan(repetition))[0]) + 1
        raise ValueError(
            f"data row {row}: column 'repetition' is not a number: {_short(df['repetition'].iloc[row - 1])}"
        )
    out = np.zeros(n_artworks, dtype=float)
    np.maximum.at(out, codes, repetition)
    return out


def split_artemis(
    df: pd.DataFrame,
    seed: int = 2021,
    fractions: tuple[float, float, float] = (0.85, 0.05, 0.10),
    rest_min_repetition: int | None = REST_MIN_REPETITION,
) -> pd.DataFrame:
    """A copy of ``df`` with a ``split`` column: ``train``/``val``/``test`` by artwork, plus ``rest``.

    ArtEmis's recipe: artworks whose ``repetition`` is at least ``rest_min_repetition`` (41) go to ``rest``
    first (``None`` switches this off); the other unique artworks, sorted by ``(art_style, painting)``, are
    shuffled by ``numpy.random.default_rng(seed).permutation`` and cut 85/5/10 (boundaries rounded from the
    cumulative fractions). All annotations of one artwork share a split, and the result depends only on the
    set of artworks and the seed, not on the row order. Without a ``repetition`` column an artwork's number
    of rows stands in for it.
    """
    fr = np.asarray(fractions, dtype=float)
    if (
        fr.shape != (3,)
        or not np.all(np.isfinite(fr))
        or (fr < 0).any()
        or not math.isclose(fr.sum(), 1.0, abs_tol=1e-6)
    ):
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test) summing to 1, got {fractions}"
        )
    codes, artworks = _artwork_codes(df)
    n_artworks = len(artworks)
    repetition = _artwork_repetition(df, codes, n_artworks)
    labels = np.empty(n_artworks, dtype=object)
    is_rest = (
        repetition >= rest_min_repetition if rest_min_repetition is not None else np.zeros(n_artworks, bool)
    )
    labels[is_rest] = "rest"
    candidates = np.flatnonzero(~is_rest)  # already in sorted (art_style, painting) order
    shuffled = candidates[np.random.default_rng(seed).permutation(len(candidates))]
    bounds = np.floor(np.cumsum(fr) * len(candidates) + 0.5).astype(int)
    bounds[-1] = len(candidates)
    for name, start, stop in zip(("train", "val", "test"), (0, bounds[0], bounds[1]), bounds, strict=True):
        labels[shuffled[start:stop]] = name
    out = df.copy()
    out["split"] = pd.array(labels[codes], dtype="str")
    return out


def build_v2(
    v1_df: pd.DataFrame, contrastive_df: pd.DataFrame, mode: str = "combined", seed: int = 2021
) -> pd.DataFrame:
    """ArtEmis v2.0 training data: v1 rows then contrastive rows, with a ``source`` column (``v1``/``contrastive``).

    ``mode="combined"`` (the v2.0 paper's "Combined"): all contrastive annotations plus an equally large sample of
    v1 annotations, drawn without replacement by ``numpy.random.default_rng(seed)`` and kept in v1 order;
    raises ``ValueError`` when v1 has fewer annotations than the contrastive set. ``mode="full_combined"``: all
    of both. Columns are the union of both frames (v1 rows get a missing ``anchor_painting``); any ``split``
    column is carried as is.
    """
    if mode not in ("combined", "full_combined"):
        raise ValueError(f"unknown ArtEmis v2.0 mode {mode!r}: expected 'combined' or 'full_combined'")
    if mode == "combined":
        if len(v1_df) < len(contrastive_df):
            raise ValueError(
                f"build_v2(mode='combined') samples as many v1 annotations as there are contrastive ones "
                f"({len(contrastive_df)}), but v1 has only {len(v1_df)}; use mode='full_combined' to take all of v1"
            )
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(v1_df), size=len(contrastive_df), replace=False))
        v1_part = v1_df.iloc[chosen]
    else:
        v1_part = v1_df
    v1_part = v1_part.assign(source="v1")
    contrastive_part = contrastive_df.assign(source="contrastive")
    out = pd.concat([v1_part, contrastive_part], ignore_index=True, sort=False)
    out["source"] = out["source"].astype("str")
    return out


# --------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------


def _forms(name: str) -> list[str]:
    """``name`` as written, then its NFC and NFD forms, without repeats."""
    out: list[str] = []
    for form in (name, unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)):
        if form not in out:
            out.append(form)
    return out


class ImageResolver:
    """Finds ``{image_root}/{art_style}/{painting}{ext}``, also under the NFC and NFD forms of both names.

    WikiArt names carry accents that ArtEmis and the image archive may spell in different Unicode
    normalisations. Folder listings are read once and cached, so checking 80k artworks costs one ``listdir``
    per style folder; build a new resolver (or call :meth:`clear_cache`) after adding files.
    """

    def __init__(self, image_root: PathLike, extensions: Sequence[str] = (".jpg", ".png")) -> None:
        self.image_root = Path(image_root)
        self.extensions = tuple(extensions)
        if not self.extensions:
            raise ValueError("ImageResolver needs at least one file extension, e.g. ('.jpg',)")
        self._listings: dict[str, frozenset[str]] = {}

    def clear_cache(self) -> None:
        """Forget the cached folder listings."""
        self._listings.clear()

    def _listing(self, relative: str) -> frozenset[str]:
        if relative not in self._listings:
            folder = self.image_root / relative if relative else self.image_root
            try:
                names = frozenset(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                names = frozenset()
            self._listings[relative] = names
        return self._listings[relative]

    def resolve(self, art_style: str, painting: str) -> Path | None:
        """The image path of one artwork, or ``None`` when no spelling of it exists."""
        styles = self._listing("")
        for style in _forms(str(art_style)):
            if style not in styles:
                continue
            files = self._listing(style)
            for name in _forms(str(painting)):
                for ext in self.extensions:
                    if name + ext in files:
                        return self.image_root / style / (name + ext)
        return None

    def check(self, df: pd.DataFrame, max_listed: int = 5) -> dict[tuple[str, str], Path]:
        """Resolve every artwork of ``df``; raise one ``FileNotFoundError`` listing what is missing.

        Returns ``{(art_style, painting): path}`` for the unique artworks, sorted. The error gives the number
        of missing images, the total, the first ``max_listed`` expected paths and the layout the root needs.
        """
        _require(df, ARTWORK_KEY, "ImageResolver.check")
        artworks = df[list(ARTWORK_KEY)].drop_duplicates().sort_values(list(ARTWORK_KEY))
        found: dict[tuple[str, str], Path] = {}
        missing: list[tuple[str, str]] = []
        for style, painting in artworks.itertuples(index=False, name=None):
            path = self.resolve(style, painting)
            if path is None:
                missing.append((style, painting))
            else:
                found[(style, painting)] = path
        if missing:
            root_state = (
                "" if self.image_root.is_dir() else f" (the image root {self.image_root} does not exist)"
            )
            listed = "\n".join(
                f"  {self.image_root / style / (painting + self.extensions[0])}"
                for style, painting in missing[:max_listed]
            )
            more = f"\n  ... and {len(missing) - max_listed} more" if len(missing) > max_listed else ""
            raise FileNotFoundError(
                f"{len(missing)} of {len(artworks)} images are missing under {self.image_root}{root_state}. "
                f"First expected paths:\n{listed}{more}\n"
                f"The image root must hold one folder per art style with one file per painting: "
                f"{self.image_root}/{{art_style}}/{{painting}}{{{'|'.join(self.extensions)}}}, e.g. "
                f"{self.image_root / 'Impressionism' / ('claude-monet_water-lilies-1919' + self.extensions[0])}. "
                f"Get the WikiArt images listed at {ARTEMIS_URL} and point SEVLM_WIKIART_DIR at their folder."
            )
        return found


# --------------------------------------------------------------------------------------------------------
# Training items
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtworkAnnotations:
    """All annotations of one artwork, in data-frame row order."""

    art_style: str
    painting: str
    emotions: tuple[str, ...]
    utterances: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.emotions) != len(self.utterances):
            raise ValueError(
                f"{self.art_style}/{self.painting}: {len(self.emotions)} emotions but {len(self.utterances)} utterances"
            )


def single_items(df: pd.DataFrame) -> list[dict[str, str]]:
    """One dict per annotation, in row order: ``art_style, painting, emotion, utterance`` (+ ``split`` if present).

    The items of plain captioning training (one image, one annotation).
    """
    columns = [*ARTWORK_KEY, "emotion", "utterance"]
    _require(df, columns, "single_items")
    if "split" in df.columns:
        columns.append("split")
    return [
        dict(zip(columns, map(str, values), strict=True)) for values in df[columns].itertuples(index=False)
    ]


def pair_items(df: pd.DataFrame, max_repetition: int | None = 40) -> list[ArtworkAnnotations]:
    """Artworks with at least two DISTINCT emotions, for the contrastive two-annotation items.

    The SEVLM recipe trains only on artworks with more than one distinct emotion (each item pairs two of its
    annotations whose emotions differ) and drops artworks whose ``repetition`` exceeds ``max_repetition``
    (40; ``None`` keeps all; without a ``repetition`` column the row count is used). Artworks come sorted by
    ``(art_style, painting)``; annotations keep row order.
    """
    _require(df, (*ARTWORK_KEY, "emotion", "utterance"), "pair_items")
    if len(df) == 0:
        return []
    codes, artworks = _artwork_codes(df)
    n_artworks = len(artworks)
    keep = pd.Series(df["emotion"].to_numpy()).groupby(codes).nunique().to_numpy() >= 2
    if max_repetition is not None:
        keep &= _artwork_repetition(df, codes, n_artworks) <= max_repetition
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(n_artworks + 1))
    emotions = df["emotion"].to_numpy(dtype=object)[order]
    utterances = df["utterance"].to_numpy(dtype=object)[order]
    styles = artworks["art_style"].to_numpy(dtype=object)
    paintings = artworks["painting"].to_numpy(dtype=object)
    return [
        ArtworkAnnotations(
            art_style=str(styles[k]),
            painting=str(paintings[k]),
            emotions=tuple(map(str, emotions[starts[k] : starts[k + 1]])),
            utterances=tuple(map(str, utterances[starts[k] : starts[k + 1]])),
        )
        for k in np.flatnonzero(keep)
    ]


def sample_pair(
    item: ArtworkAnnotations, rng: np.random.Generator
) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two annotations of ``item`` with different emotions: ``((emotion1, utterance1), (emotion2, utterance2))``.

    The first is uniform over all annotations, the second uniform over those with another emotion; the same
    ``rng`` state gives the same pair.
    """
    emotions = np.asarray(item.emotions, dtype=object)
    if len(set(item.emotions)) < 2:
        raise ValueError(
            f"{item.art_style}/{item.painting}: sample_pair needs two distinct emotions, got {sorted(set(item.emotions))}"
        )
    first = int(rng.integers(len(emotions)))
    others = np.flatnonzero(emotions != emotions[first])
    second = int(others[rng.integers(len(others))])
    return (item.emotions[first], item.utterances[first]), (item.emotions[second], item.utterances[second])


__all__ = [
    "COURSE_SPLIT_SEED",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGE_PIXELS",
    "ARTEMIS_URL",
    "DOMINANT_RULES",
    "EMOTIONS",
    "REQUIRED_COLUMNS",
    "REST_MIN_REPETITION",
    "SPLITS",
    "ArtworkAnnotations",
    "ImageError",
    "ImageResolver",
    "annotator_entropy",
    "build_v2",
    "check_image_size",
    "dominant_emotion",
    "dominant_emotions",
    "emotion_histograms",
    "load_artemis",
    "load_contrastive",
    "load_rgb",
    "open_image",
    "pair_items",
    "sample_pair",
    "single_items",
    "split_artemis",
    "to_rgb",
    "validate_annotations",
]
