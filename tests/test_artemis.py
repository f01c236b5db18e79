"""The ArtEmis data layer: loading and validation, votes, splits, v2.0 mixing, images and training items."""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sevlm_lib.data import artemis
from sevlm_lib.emotions import EMOTIONS

ARTEMIS_HEADER = artemis.REQUIRED_COLUMNS  # the exact v1.0 header, in file order
GOOD = ("Realism", "ivan-shishkin_morning-in-a-pine-forest-1889", "awe", "the tall trees feel majestic", "5")


def _rows_with(bad_row: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Two good rows, then ``bad_row`` as data row 3 (file line 4)."""
    return [GOOD, GOOD, bad_row, GOOD]


def _artworks_frame(n_artworks: int, seed: int = 0, repetition: int = 5) -> pd.DataFrame:
    """An in-memory annotation table with ``repetition`` rows per artwork and random emotions."""
    rng = np.random.default_rng(seed)
    styles = [f"Style_{i % 7}" for i in range(n_artworks)]
    paintings = [f"artist-{i}_work-{i}" for i in range(n_artworks)]
    idx = np.repeat(np.arange(n_artworks), repetition)
    return pd.DataFrame(
        {
            "art_style": np.array(styles)[idx],
            "painting": np.array(paintings)[idx],
            "emotion": np.array(EMOTIONS)[rng.integers(len(EMOTIONS), size=len(idx))],
            "utterance": [f"utterance {k}" for k in range(len(idx))],
            "repetition": repetition,
        }
    )


# ---------------------------------------------------------------------------------------------- loading


def test_load_keeps_strings_and_converts_repetition(artemis_csv: Path, artemis_rows: tuple) -> None:
    df = artemis.load_artemis(artemis_csv)
    assert list(df.columns) == list(ARTEMIS_HEADER)
    assert len(df) == len(artemis_rows)
    assert df["repetition"].dtype == np.int64
    assert df["painting"].tolist() == [row[1] for row in artemis_rows]  # "nan" and "1" stay strings
    assert "nan" in set(df["painting"]) and "1" in set(df["painting"])
    assert df["utterance"].iloc[10] == 'the grey tones feel "heavy", like loss'


def test_load_accepts_integral_decimal_repetition_and_extra_columns(write_csv) -> None:
    rows = [(*GOOD[:4], "5.0", "x"), (*GOOD[:4], " 7 ", "y")]
    df = artemis.load_artemis(write_csv("extra.csv", rows, header=(*ARTEMIS_HEADER, "note")))
    assert df["repetition"].tolist() == [5, 7]
    assert df["note"].tolist() == ["x", "y"]


def test_missing_column_names_file_column_and_found_columns(write_csv) -> None:
    path = write_csv(
        "no_emotion.csv",
        [(r[0], r[1], r[3], r[4]) for r in [GOOD]],
        header=("art_style", "painting", "utterance", "repetition"),
    )
    with pytest.raises(ValueError) as err:
        artemis.load_artemis(path)
    message = str(err.value)
    assert "no_emotion.csv" in message
    assert "'emotion'" in message
    assert "'utterance'" in message  # the found columns are listed


@pytest.mark.parametrize(
    ("column", "bad_row"),
    [
        ("emotion", (*GOOD[:2], "joy", *GOOD[3:])),
        ("emotion", (*GOOD[:2], "Awe", *GOOD[3:])),
        ("emotion", (*GOOD[:2], "something_else", *GOOD[3:])),
        ("utterance", (*GOOD[:3], "", GOOD[4])),
        ("utterance", (*GOOD[:3], "   ", GOOD[4])),
        ("repetition", (*GOOD[:4], "abc")),
        ("repetition", (*GOOD[:4], "")),
        ("repetition", (*GOOD[:4], "5.5")),
        ("repetition", (*GOOD[:4], "0")),
        ("painting", (GOOD[0], "", *GOOD[2:])),
    ],
)
def test_bad_value_names_file_row_line_column_and_value(write_csv, column: str, bad_row: tuple) -> None:
    path = write_csv("bad_annotations.csv", _rows_with(bad_row))
    with pytest.raises(ValueError) as err:
        artemis.load_artemis(path)
    message = str(err.value)
    assert "bad_annotations.csv" in message
    assert "data row 3 (line 4)" in message
    assert f"column {column!r}" in message
    bad_value = bad_row[ARTEMIS_HEADER.index(column)]
    assert repr(bad_value) in message


def test_row_and_line_differ_after_a_multiline_utterance(write_csv) -> None:
    rows = [(*GOOD[:3], "first line\nsecond line", "5"), GOOD, (*GOOD[:2], "happiness", *GOOD[3:])]
    with pytest.raises(ValueError, match=r"data row 3 \(line 5\).*'emotion'"):
        artemis.load_artemis(write_csv("multiline.csv", rows))


@pytest.mark.parametrize(("bad_at", "where"), [(0, "line 2"), (2, "line 4")])
def test_rows_with_surplus_fields_are_refused(write_csv, bad_at: int, where: str) -> None:
    rows: list[tuple[str, ...]] = [GOOD, GOOD, GOOD]
    rows[bad_at] = (*GOOD[:3], "unquoted", "comma", "5")
    with pytest.raises(ValueError, match=rf"surplus\.csv.*{where}"):
        artemis.load_artemis(write_csv("surplus.csv", rows))


def test_every_failing_column_is_reported(write_csv) -> None:
    rows = [GOOD, (*GOOD[:2], "joy", "", "many")]
    with pytest.raises(ValueError) as err:
        artemis.load_artemis(write_csv("several.csv", rows))
    message = str(err.value)
    for column in ("emotion", "utterance", "repetition"):
        assert f"column {column!r}" in message


def test_missing_file_says_what_and_where(tmp_path: Path) -> None:
    path = tmp_path / "artemis_dataset_release_v0.csv"
    with pytest.raises(FileNotFoundError) as err:
        artemis.load_artemis(path)
    assert str(path) in str(err.value)
    assert artemis.ARTEMIS_URL in str(err.value)
    assert "SEVLM_ARTEMIS_CSV" in str(err.value)


def test_load_contrastive_keeps_anchor_but_does_not_require_it(
    contrastive_csv: Path, artemis_csv: Path, artemis_rows: tuple
) -> None:
    df = artemis.load_contrastive(contrastive_csv)
    assert df["anchor_painting"].eq("claude-monet_water-lilies-1919").all()
    assert len(artemis.load_contrastive(artemis_csv)) == len(artemis_rows)


# ---------------------------------------------------------------------------------------------- votes


def test_emotion_histograms_counts_and_order(artemis_csv: Path, artemis_rows: tuple) -> None:
    hist = artemis.emotion_histograms(artemis.load_artemis(artemis_csv))
    assert list(hist.columns) == ["art_style", "painting", *EMOTIONS, "n_votes"]
    keys = list(zip(hist["art_style"], hist["painting"], strict=True))
    assert keys == sorted(keys)
    assert len(keys) == 4
    monet = hist[hist["painting"] == "claude-monet_water-lilies-1919"].iloc[0]
    assert (monet["contentment"], monet["awe"], monet["something else"], monet["n_votes"]) == (3, 1, 1, 5)
    assert hist[list(EMOTIONS)].sum().sum() == len(artemis_rows)
    assert all(hist[e].dtype == np.int64 for e in EMOTIONS)


def _counts(**votes: int) -> list[int]:
    return [votes.get(e.replace(" ", "_"), 0) for e in EMOTIONS]


@pytest.mark.parametrize(
    ("counts", "artemis_rule", "strict_rule"),
    [
        (_counts(awe=4, fear=1), "awe", "awe"),
        (_counts(awe=3, fear=3), None, None),  # a tie at exactly half
        (_counts(awe=3, fear=2, anger=1), "awe", None),  # exactly half, unique maximum
        (_counts(awe=2, fear=2, anger=1), None, None),  # tied and under half
        (_counts(awe=2, fear=1, anger=1, sadness=1), None, None),  # unique maximum but under half
        (_counts(something_else=5), "something else", "something else"),
        (_counts(), None, None),  # no votes
    ],
)
def test_dominant_rules_by_hand(counts: list[int], artemis_rule: str | None, strict_rule: str | None) -> None:
    assert artemis.dominant_emotion(counts, rule="artemis") == artemis_rule
    assert artemis.dominant_emotion(counts, rule="strict") == strict_rule
    assert artemis.dominant_emotion(np.array(counts)) == artemis_rule
    as_dict = {e: c for e, c in zip(EMOTIONS, counts, strict=True) if c}
    assert artemis.dominant_emotion(as_dict) == artemis_rule
    assert artemis.dominant_emotion(pd.Series(counts, index=list(EMOTIONS)), rule="strict") == strict_rule


def test_dominant_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="rule"):
        artemis.dominant_emotion(_counts(awe=1), rule="majority")
    with pytest.raises(ValueError, match="joy"):
        artemis.dominant_emotion({"joy": 3})
    with pytest.raises(ValueError, match="9"):
        artemis.dominant_emotion([1, 2, 3])


def test_vectorised_dominant_matches_scalar() -> None:
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 4, size=(300, len(EMOTIONS))) * (rng.random((300, len(EMOTIONS))) < 0.3)
    hist = pd.DataFrame(counts, columns=list(EMOTIONS), index=np.arange(300) * 2)
    for rule in artemis.DOMINANT_RULES:
        series = artemis.dominant_emotions(hist, rule)
        assert series.index.equals(hist.index)
        expected = [artemis.dominant_emotion(row, rule) for row in counts]
        assert series.tolist() == expected
    assert (
        artemis.dominant_emotions(hist, "strict").notna().sum()
        <= artemis.dominant_emotions(hist).notna().sum()
    )


def test_annotator_entropy_in_bits() -> None:
    hist = pd.DataFrame([_counts(awe=5), _counts(awe=2, fear=2), [1] * len(EMOTIONS)], columns=list(EMOTIONS))
    entropy = artemis.annotator_entropy(hist)
    assert entropy.tolist() == pytest.approx([0.0, 1.0, math.log2(len(EMOTIONS))])


# ---------------------------------------------------------------------------------------------- splits


def _split_of_artwork(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    per_artwork = df.groupby(["art_style", "painting"])["split"].agg(set)
    assert per_artwork.map(len).eq(1).all(), "an artwork landed in two splits"
    return {key: next(iter(splits)) for key, splits in per_artwork.items()}


def test_split_is_by_artwork_seeded_and_row_order_free() -> None:
    df = _artworks_frame(1000, repetition=3)
    first = artemis.split_artemis(df)
    assert "split" not in df.columns  # a copy, the input is untouched
    assert set(first["split"]) <= set(artemis.SPLITS)
    mapping = _split_of_artwork(first)
    assert mapping == _split_of_artwork(artemis.split_artemis(df, seed=2021))
    shuffled = df.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert _split_of_artwork(artemis.split_artemis(shuffled)) == mapping
    assert _split_of_artwork(artemis.split_artemis(df, seed=2022)) != mapping
    counts = pd.Series(mapping).value_counts()
    assert (
        abs(counts["train"] - 850) <= 10 and abs(counts["val"] - 50) <= 10 and abs(counts["test"] - 100) <= 10
    )


def test_split_sends_high_repetition_artworks_to_rest() -> None:
    normal = _artworks_frame(60, repetition=5)
    heavy = _artworks_frame(3, seed=1, repetition=41).assign(art_style="Heavy")
    borderline = _artworks_frame(2, seed=2, repetition=40).assign(art_style="Borderline")
    df = pd.concat([normal, heavy, borderline], ignore_index=True)
    split = artemis.split_artemis(df)
    assert split.loc[split["art_style"] == "Heavy", "split"].eq("rest").all()
    assert split.loc[split["art_style"] != "Heavy", "split"].ne("rest").all()
    # Rest artworks are removed before the shuffle: the others split as if the heavy ones were never there.
    without_heavy = artemis.split_artemis(pd.concat([normal, borderline], ignore_index=True))
    assert _split_of_artwork(without_heavy) == {
        k: v for k, v in _split_of_artwork(split).items() if k[0] != "Heavy"
    }


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match="fractions"):
        artemis.split_artemis(_artworks_frame(10), fractions=(0.8, 0.1, 0.2))


# ---------------------------------------------------------------------------------------------- v2.0


def test_build_v2_sizes_and_sources(artemis_csv: Path, contrastive_csv: Path) -> None:
    v1 = artemis.load_artemis(artemis_csv)
    contrastive = artemis.load_contrastive(contrastive_csv)
    combined = artemis.build_v2(v1, contrastive, mode="combined", seed=3)
    assert len(combined) == 2 * len(contrastive)
    assert combined["source"].value_counts().to_dict() == {
        "v1": len(contrastive),
        "contrastive": len(contrastive),
    }
    v1_part = combined[combined["source"] == "v1"]
    assert v1_part["anchor_painting"].isna().all()
    assert not v1_part.drop(columns=["source", "anchor_painting"]).duplicated().any()
    assert artemis.build_v2(v1, contrastive, seed=3).equals(combined)
    other = [artemis.build_v2(v1, contrastive, seed=s)["utterance"].tolist() for s in range(4, 10)]
    assert any(o != combined["utterance"].tolist() for o in other)
    full = artemis.build_v2(v1, contrastive, mode="full_combined")
    assert len(full) == len(v1) + len(contrastive)
    assert (full["source"] == "v1").sum() == len(v1)


def test_build_v2_refuses_a_too_small_v1(artemis_csv: Path, contrastive_csv: Path) -> None:
    v1 = artemis.load_artemis(artemis_csv).head(3)
    contrastive = artemis.load_contrastive(contrastive_csv)
    with pytest.raises(ValueError, match="full_combined"):
        artemis.build_v2(v1, contrastive, mode="combined")
    with pytest.raises(ValueError, match="mode"):
        artemis.build_v2(v1, contrastive, mode="balanced")


# ---------------------------------------------------------------------------------------------- images


def _save_png(path: Path, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (8, 6), color=128).save(path, format="PNG")
    return path


def test_resolver_falls_back_to_nfd_and_nfc(tmp_path: Path) -> None:
    style, painting = "Expressionism", "egon-schiele_portrait-of-the-painter-anton-peschka-1909-café"
    nfd = unicodedata.normalize("NFD", painting)
    assert nfd != unicodedata.normalize("NFC", painting)
    stored = _save_png(tmp_path / style / f"{nfd}.png")
    resolver = artemis.ImageResolver(tmp_path)
    assert resolver.resolve(style, unicodedata.normalize("NFC", painting)) == stored
    assert resolver.resolve(style, nfd) == stored
    assert resolver.resolve(style, "egon-schiele_another-work") is None
    nfc_stored = _save_png(tmp_path / "Fauvism" / "henri-matisse_été.png")
    fresh = artemis.ImageResolver(tmp_path)
    assert fresh.resolve("Fauvism", unicodedata.normalize("NFD", "henri-matisse_été")) == nfc_stored


def test_check_reports_missing_count_and_first_paths(tmp_path: Path) -> None:
    present = _save_png(tmp_path / "Cubism" / "1.jpg")
    df = pd.DataFrame(
        {"art_style": ["Cubism"] * 2 + ["Baroque"] * 7, "painting": ["1", "1"] + [f"p{i}" for i in range(7)]}
    )
    resolver = artemis.ImageResolver(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        resolver.check(df, max_listed=3)
    message = str(err.value)
    assert "7 of 8 images" in message
    assert str(tmp_path / "Baroque" / "p0.jpg") in message
    assert str(tmp_path / "Baroque" / "p2.jpg") in message
    assert str(tmp_path / "Baroque" / "p3.jpg") not in message
    assert "4 more" in message and "{art_style}" in message
    assert resolver.check(df[df["art_style"] == "Cubism"]) == {("Cubism", "1"): present}


def test_open_image_gives_rgb_and_clear_errors(tmp_path: Path) -> None:
    image = artemis.open_image(_save_png(tmp_path / "grey.png", mode="L"))
    assert image.mode == "RGB" and image.size == (8, 6)
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg.*not a readable image"):
        artemis.open_image(corrupt)
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        artemis.open_image(tmp_path / "absent.jpg")


# ---------------------------------------------------------------------------------------------- items


def test_single_items_one_per_annotation(artemis_csv: Path, artemis_rows: tuple) -> None:
    df = artemis.load_artemis(artemis_csv)
    items = artemis.single_items(df)
    assert len(items) == len(df)
    assert set(items[0]) == {"art_style", "painting", "emotion", "utterance"}
    assert items[5]["utterance"] == artemis_rows[5][3]
    with_split = artemis.single_items(artemis.split_artemis(df))
    assert all(item["split"] in artemis.SPLITS for item in with_split)


def test_pair_items_keep_only_multi_emotion_artworks(artemis_csv: Path) -> None:
    df = artemis.load_artemis(artemis_csv)
    items = artemis.pair_items(df)
    assert [(i.art_style, i.painting) for i in items] == [
        ("Cubism", "1"),
        ("Impressionism", "claude-monet_water-lilies-1919"),
        ("Romanticism", "francisco-goya_saturn-devouring-his-son-1823"),
    ]  # the all-sadness Baroque artwork is gone
    assert all(len(set(i.emotions)) >= 2 and len(i.emotions) == 5 for i in items)
    crowded = df.assign(repetition=np.where(df["art_style"] == "Cubism", 41, 5))
    assert [i.art_style for i in artemis.pair_items(crowded)] == ["Impressionism", "Romanticism"]
    assert len(artemis.pair_items(crowded, max_repetition=None)) == 3


def test_sample_pair_always_differs_and_repeats_with_the_seed(artemis_csv: Path) -> None:
    items = artemis.pair_items(artemis.load_artemis(artemis_csv))
    rng = np.random.default_rng(0)
    draws = [artemis.sample_pair(item, rng) for _ in range(200) for item in items]
    assert all(a[0] != b[0] for a, b in draws)
    assert len(set(draws)) > len(items)  # not stuck on one pair
    for item in items:
        for emotion, utterance in artemis.sample_pair(item, np.random.default_rng(5)):
            assert (emotion, utterance) in zip(item.emotions, item.utterances, strict=True)
    again = [artemis.sample_pair(item, np.random.default_rng(9)) for item in items]
    assert again == [artemis.sample_pair(item, np.random.default_rng(9)) for item in items]
    single = artemis.ArtworkAnnotations("Baroque", "nan", ("sadness", "sadness"), ("a", "b"))
    with pytest.raises(ValueError, match="distinct"):
        artemis.sample_pair(single, rng)
