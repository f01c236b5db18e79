"""ArtEmis-mini: determinism, ArtEmis format, the structure it must carry, and the baselines that measure it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sevlm_lib import baselines
from sevlm_lib.data import mini
from sevlm_lib.data.artemis import (
    COURSE_SPLIT_SEED,
    ImageResolver,
    emotion_histograms,
    load_artemis,
    split_artemis,
)
from sevlm_lib.emotions import EMOTIONS, NEGATIVE_EMOTIONS, POSITIVE_EMOTIONS, SOMETHING_ELSE
from sevlm_lib.settings import Settings
from sevlm_lib.vad import Lexicon

os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_MEDIUM = 600


@pytest.fixture(scope="session")
def lexicon():
    from sevlm_lib.vad import load_lexicon

    return load_lexicon("warriner", settings=Settings.from_env())


@pytest.fixture(scope="session")
def medium(tmp_path_factory, lexicon) -> Path:
    """A moderately sized generation with the default settings (so some artworks have >= 41 annotations)."""
    out = tmp_path_factory.mktemp("mini") / "artemis_mini"
    mini.make_artemis_mini(out, n_artworks=N_MEDIUM, seed=2024, lexicon=lexicon)
    return out


@pytest.fixture(scope="session")
def medium_df(medium):
    return load_artemis(medium / mini.CSV_NAME)


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# ------------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_in_different_folders_and_other_seed_differs(tmp_path, lexicon):
    a = mini.make_artemis_mini(tmp_path / "a" / "mini", n_artworks=60, seed=7, lexicon=lexicon).parent
    b = mini.make_artemis_mini(tmp_path / "elsewhere" / "b", n_artworks=60, seed=7, lexicon=lexicon).parent
    c = mini.make_artemis_mini(tmp_path / "c", n_artworks=60, seed=8, lexicon=lexicon).parent
    tree_a, tree_b, tree_c = _tree(a), _tree(b), _tree(c)
    assert tree_a == tree_b
    assert len([k for k in tree_a if k.endswith(".png")]) == 60
    assert tree_a[mini.CSV_NAME] != tree_c[mini.CSV_NAME]
    assert tree_a[mini.MANIFEST_NAME] != tree_c[mini.MANIFEST_NAME]
    # the manifest lists every other file with its sha256, sorted, in `sha256sum -c` format
    lines = tree_a[mini.MANIFEST_NAME].decode("utf-8").splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}
    assert [line.split("  ", 1)[1] for line in lines] == sorted(listed)
    assert set(listed) == set(tree_a) - {mini.MANIFEST_NAME}
    assert all(hashlib.sha256(tree_a[name]).hexdigest() == digest for name, digest in listed.items())
    assert mini.verify_manifest(a) == []
    # nothing machine- or folder-specific leaks into the files
    for name in (mini.README_NAME, mini.GENERATOR_JSON, mini.CSV_NAME):
        assert str(tmp_path) not in tree_a[name].decode("utf-8")


def test_sha256sum_accepts_the_manifest(tmp_path, lexicon):
    out = mini.make_artemis_mini(tmp_path / "m", n_artworks=20, seed=3, lexicon=lexicon).parent
    try:
        done = subprocess.run(
            ["sha256sum", "-c", "--quiet", mini.MANIFEST_NAME], cwd=out, capture_output=True
        )
    except FileNotFoundError:
        pytest.skip("sha256sum is not installed")
    assert done.returncode == 0, done.stdout + done.stderr


def test_manifest_detects_changes_and_ensure_reuses_or_regenerates(tmp_path, lexicon, capsys):
    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    csv_path = mini.ensure_artemis_mini(settings, n_artworks=25, seed=5, lexicon=lexicon)
    assert csv_path == settings.mini_dir / mini.CSV_NAME
    assert "generating ArtEmis-mini" in capsys.readouterr().out
    assert mini.mini_image_root(settings) == settings.mini_dir / "images"
    stamp = csv_path.stat().st_mtime_ns
    # same parameters: reused, silently
    assert mini.ensure_artemis_mini(settings, n_artworks=25, seed=5, lexicon=lexicon) == csv_path
    assert capsys.readouterr().out == "" and csv_path.stat().st_mtime_ns == stamp
    # a changed file is caught by the manifest
    png = next(settings.mini_dir.rglob("*.png"))
    original = png.read_bytes()
    png.write_bytes(original + b"x")
    assert any("sha256 differs" in p for p in mini.verify_manifest(settings.mini_dir))
    png.write_bytes(original)
    # an interrupted generation (no manifest) is regenerated
    (settings.mini_dir / mini.MANIFEST_NAME).unlink()
    assert mini.verify_manifest(settings.mini_dir)
    mini.ensure_artemis_mini(settings, n_artworks=25, seed=5, lexicon=lexicon)
    assert "generating" in capsys.readouterr().out
    assert mini.verify_manifest(settings.mini_dir) == []
    # other parameters: regenerated with them
    mini.ensure_artemis_mini(settings, n_artworks=25, seed=6, lexicon=lexicon)
    assert "generating" in capsys.readouterr().out
    assert json.loads((settings.mini_dir / mini.GENERATOR_JSON).read_text())["seed"] == 6
    with pytest.raises(TypeError, match="unexpected"):
        mini.ensure_artemis_mini(settings, n_artwork=25, lexicon=lexicon)


def test_refuses_to_replace_a_folder_it_did_not_make(tmp_path, lexicon):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not an ArtEmis-mini folder"):
        mini.make_artemis_mini(tmp_path / "mine", n_artworks=5, lexicon=lexicon)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


# ------------------------------------------------------------------------------------------------ format


def test_csv_has_the_exact_artemis_header_and_loads(medium, medium_df):
    raw = (medium / mini.CSV_NAME).read_bytes()
    assert raw.split(b"\n", 1)[0] == b"art_style,painting,emotion,utterance,repetition"
    assert b"\r" not in raw
    df = medium_df
    assert list(df.columns[:5]) == ["art_style", "painting", "emotion", "utterance", "repetition"]
    assert df.groupby(["art_style", "painting"]).ngroups == N_MEDIUM
    # repetition = number of annotations of that artwork; rows grouped by artwork
    sizes = df.groupby(["art_style", "painting"])["repetition"].agg(["first", "size", "nunique"])
    assert (sizes["first"] == sizes["size"]).all() and (sizes["nunique"] == 1).all()
    keys = list(zip(df["art_style"], df["painting"], strict=True))
    changes = sum(k1 != k2 for k1, k2 in zip(keys, keys[1:], strict=False))
    assert changes == N_MEDIUM - 1
    assert (sizes["size"] >= 5).all()
    assert {s.name for s in mini.ART_STYLES} == set(df["art_style"])


def test_images_resolve_are_rgb_and_sized(medium, medium_df):
    paths = ImageResolver(medium / "images").check(medium_df)
    assert len(paths) == N_MEDIUM
    sizes = set()
    for path in list(paths.values())[:40]:
        with Image.open(path) as image:
            assert image.mode == "RGB"
            assert all(96 <= side <= 128 for side in image.size)
            sizes.add(image.size)
    assert len(sizes) > 5  # sizes vary


def test_a_non_ascii_painting_name_is_written_in_nfc(medium, medium_df):
    names = [p for p in medium_df["painting"].unique() if not p.isascii()]
    assert names
    assert all(unicodedata.normalize("NFC", n) == n for n in names)
    on_disk = {p.stem for p in (medium / "images").rglob("*.png") if not p.stem.isascii()}
    assert on_disk and all(unicodedata.normalize("NFC", n) == n for n in on_disk)
    assert set(names) == on_disk


def test_rest_split_gets_the_crowded_artworks(medium_df):
    crowded = medium_df.loc[medium_df["repetition"] >= 41, ["art_style", "painting"]].drop_duplicates()
    assert 1 <= len(crowded) <= 8
    split = split_artemis(medium_df)
    rest = split.loc[split["split"] == "rest", ["art_style", "painting"]].drop_duplicates()
    assert set(map(tuple, rest.to_numpy())) == set(map(tuple, crowded.to_numpy()))
    assert {"train", "val", "test"} <= set(split["split"])


def test_datasheet_says_synthetic_and_records_parameters(medium):
    text = (medium / mini.README_NAME).read_text(encoding="utf-8")
    assert "SYNTHETIC" in text and "not ArtEmis" in text and "no person annotated" in text
    assert "seed 2024" in text and "CC BY-NC-SA 4.0" in text and ".69 B + .22 S" in text
    params = json.loads((medium / mini.GENERATOR_JSON).read_text(encoding="utf-8"))
    assert params["n_artworks"] == N_MEDIUM and params["seed"] == 2024 and params["synthetic"] is True
    assert params["generator_version"] == mini.GENERATOR_VERSION
    assert params["lexicon"]["name"].startswith("warriner")


# ------------------------------------------------------------------------------------------------ structure


def test_label_mix_is_artemis_like(medium_df):
    share = medium_df["emotion"].value_counts(normalize=True)
    assert 0.50 <= share[list(POSITIVE_EMOTIONS)].sum() <= 0.68
    assert 0.20 <= share[list(NEGATIVE_EMOTIONS)].sum() <= 0.35
    assert 0.07 <= share[SOMETHING_ELSE] <= 0.18
    assert all(share.get(e, 0.0) >= 0.02 for e in EMOTIONS)
    hist = emotion_histograms(medium_df)
    distinct = (hist[list(EMOTIONS)] > 0).sum(axis=1)
    assert 0.03 <= (distinct == 1).mean() <= 0.5  # some unanimous artworks, most with disagreement


def test_explanations_are_artemis_like(medium_df):
    utterances = medium_df["utterance"]
    lengths = utterances.str.split().str.len()
    assert lengths.min() >= 6 and lengths.max() <= 25 and lengths.std() > 2
    assert (utterances == utterances.str.lower()).all()
    assert utterances.nunique() > 0.8 * len(utterances)
    # they name what is drawn: the motif phrase of the painting's motif
    slug_to_phrase = {m.slug: m.phrase for m in mini.MOTIFS}
    motif = medium_df["painting"].str.extract(r"_(.+)-\d{4}$")[0].map(slug_to_phrase)
    mentions = [phrase in text for phrase, text in zip(motif, utterances, strict=True)]
    assert np.mean(mentions) > 0.5
    # the emotion word itself appears only occasionally
    named = [
        e in t.split() for e, t in zip(medium_df["emotion"], utterances, strict=True) if e != SOMETHING_ELSE
    ]
    assert 0.0 < np.mean(named) < 0.2


def test_palette_follows_valdez_mehrabian():
    dark, bright = mini.palette_pad(0.3, 0.5), mini.palette_pad(0.9, 0.5)
    assert bright[0] > dark[0] and bright[2] < dark[2]  # brighter: more pleasant, less dominant
    grey, vivid = mini.palette_pad(0.6, 0.1), mini.palette_pad(0.6, 0.9)
    assert vivid[1] > grey[1]  # more saturated: more arousing
    z = mini.palette_zscores(np.array([0.55]), np.array([0.5]))
    assert np.allclose(z, 0.0)


def test_image_only_classifier_learns_but_not_trivially(medium, medium_df):
    result = baselines.image_only_accuracy(medium_df, medium / "images", fractions=(0.6, 0.05, 0.35))
    assert result["n_test"] >= 100
    assert result["image_only_acc"] >= result["majority_acc"] + 0.10, result
    assert result["image_only_acc"] <= 0.85, result


def test_explanation_words_follow_the_emotion_valence(medium_df, lexicon):
    stats = baselines.explanation_valence_by_group(medium_df, lexicon)
    assert stats["positive_mean"] - stats["negative_mean"] >= 0.15, stats
    assert stats["cohens_d"] >= 1.0, stats
    assert stats["n_positive"] > stats["n_negative"] > 100


# ------------------------------------------------------------------------------------------------ baselines


def test_color_histogram_features_shape_and_inputs():
    red = np.zeros((10, 12, 3), np.uint8)
    red[..., 0] = 255
    feats = baselines.color_histogram_features([red, Image.fromarray(red).convert("L")], bins=4)
    assert feats.shape == (2, 6 * 4 + 4)
    assert np.allclose(feats[:, : 6 * 4].reshape(2, 6, 4).sum(axis=2), 1.0)
    assert feats[0, 4 + 3] == 1.0  # fully saturated
    assert feats[1, 4 + 3] != 1.0  # the grey version is not
    with pytest.raises(ValueError, match="image 0"):
        baselines.color_histogram_features([np.zeros((4, 4), np.float32)])


def test_logistic_regression_is_seeded_and_learns():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + 2 * (X[:, 2] > 1)
    m1 = baselines.fit_logistic_regression(X * 10 + 3, y, 4, seed=1, epochs=300)
    m2 = baselines.fit_logistic_regression(X * 10 + 3, y, 4, seed=1, epochs=300)
    assert np.array_equal(m1.weights, m2.weights)
    assert np.mean(baselines.predict(m1, X * 10 + 3) == y) > 0.9
    proba = baselines.predict_proba(m1, X[:5] * 10 + 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    # soft labels with weights give the same fit as repeated hard labels
    soft = np.eye(4)[y]
    m3 = baselines.fit_logistic_regression(X, soft, 4, seed=1, epochs=100, sample_weight=np.full(300, 2.0))
    m4 = baselines.fit_logistic_regression(X, y, 4, seed=1, epochs=100)
    assert np.allclose(m3.weights, m4.weights)
    with pytest.raises(ValueError, match="labels"):
        baselines.fit_logistic_regression(X, y + 5, 4)


# ------------------------------------------------------------------------------------------------ rare words

# sha256 of a 200-artwork, seed-7 generation by the generator as it was before the rare-words option
# (commit b10edc1): with the option off the text files must stay byte for byte the same.
BEFORE_RARE_WORDS = {
    mini.CSV_NAME: "5043c4abe971117ace45faeca97a6e9bdbae0366d5f766c653308de5e19781dd",
    mini.README_NAME: "8d2ed7b935d5b2f56de1d6a4ad4f6ac75e7423413cc9a610635785b6c54dfcee",
    mini.GENERATOR_JSON: "cf01538395c6c2f985e8ad92eca1fb6c7d65eb553b180c3ce4b5a1c6d4785826",
}
N_RARE = 200


@pytest.fixture(scope="session")
def normal_200(lexicon) -> dict[str, bytes]:
    return mini.build_artemis_mini(N_RARE, 7, lexicon)


@pytest.fixture(scope="session")
def rare_200(lexicon) -> dict[str, bytes]:
    return mini.build_artemis_mini(N_RARE, 7, lexicon, rare_words=True)


def _split_rows(files: dict[str, bytes], path: Path):
    """The generated CSV, loaded and split as ``pipeline.load_course_data`` does."""
    path.write_bytes(files[mini.CSV_NAME])
    return split_artemis(load_artemis(path), seed=COURSE_SPLIT_SEED)


def _words(text: str) -> set[str]:
    return set(Lexicon.words(text))


def test_rare_words_off_is_byte_identical_to_before(normal_200, lexicon):
    for name, digest in BEFORE_RARE_WORDS.items():
        assert hashlib.sha256(normal_200[name]).hexdigest() == digest, name
    assert mini.build_artemis_mini(N_RARE, 7, lexicon, rare_words=False, rare_train_rate=0.0) == normal_200
    assert "rare_words" not in json.loads(normal_200[mini.GENERATOR_JSON])


def test_rare_words_is_deterministic_and_changes_only_held_out_feeling_words(
    normal_200, rare_200, lexicon, tmp_path
):
    assert mini.build_artemis_mini(N_RARE, 7, lexicon, rare_words=True) == rare_200
    assert (
        rare_200[mini.CSV_NAME] != mini.build_artemis_mini(N_RARE, 8, lexicon, rare_words=True)[mini.CSV_NAME]
    )
    # pictures are the same; generator.json and the datasheet record the condition
    assert {k: v for k, v in rare_200.items() if k.endswith(".png")} == {
        k: v for k, v in normal_200.items() if k.endswith(".png")
    }
    recorded = json.loads(rare_200[mini.GENERATOR_JSON])["rare_words"]
    assert recorded["held_out_splits"] == ["val", "test"] and recorded["split_seed"] == COURSE_SPLIT_SEED
    assert recorded["train_rate"] == 0.0 and recorded["n_held_out_words"] >= 150
    assert "Rare-words condition" in rare_200[mini.README_NAME].decode()
    normal, rare = _split_rows(normal_200, tmp_path / "n.csv"), _split_rows(rare_200, tmp_path / "r.csv")
    # the generator's held-out artworks are exactly the course split's validation and test artworks
    arts = mini.sample_artworks(N_RARE, 7, mini.MiniCalibration(), min(8, max(1, N_RARE // 100)))
    held = rare[rare["split"].isin(["val", "test"])]
    assert mini.held_out_artworks(arts) == set(zip(held["art_style"], held["painting"], strict=True))
    assert len(held) > 0
    # same artworks, labels and split; only the feeling words of validation and test explanations differ
    cols = ["art_style", "painting", "emotion", "repetition", "split"]
    assert normal[cols].equals(rare[cols])
    is_held = rare["split"].isin(["val", "test"]).to_numpy()
    assert normal["utterance"][~is_held].equals(rare["utterance"][~is_held])
    common = set(mini.FEELING_WORDS) - mini.DESCRIPTION_WORDS
    held_out = set(mini.HELD_OUT_FEELING_WORDS)
    for before, after in zip(normal["utterance"][is_held], rare["utterance"][is_held], strict=True):
        assert not _words(after) & common, after
        assert _words(after) & held_out or before == after  # (some templates have no feeling word)
        assert len(before.split()) == len(after.split())
    for text in rare["utterance"][~is_held]:
        assert not _words(text) & held_out
    # the held-out words carry the VAD of the words they replace (same perceived VAD, same emotion)
    valence_before = [lexicon.mean_vad(" ".join(_words(t) & common)) for t in normal["utterance"][is_held]]
    valence_after = [lexicon.mean_vad(" ".join(_words(t) & held_out)) for t in rare["utterance"][is_held]]
    pairs = [(b[0], a[0]) for b, a in zip(valence_before, valence_after, strict=True) if a and b]
    assert len(pairs) > 100 and np.corrcoef(np.array(pairs).T)[0, 1] > 0.8


def test_rare_word_share_tells_the_conditions_apart(normal_200, rare_200, lexicon, tmp_path):
    normal = mini.rare_word_share(_split_rows(normal_200, tmp_path / "n.csv"), k=5)
    rare = mini.rare_word_share(_split_rows(rare_200, tmp_path / "r.csv"), k=5)
    assert normal["k"] == 5 and set(normal) == {"k", "val", "test", "all", "train"}
    # (200 artworks give little training text, so some common feeling words are rare there too)
    assert normal["all"]["feeling_tokens"] > 100 and normal["all"]["rare_share"] < 0.35
    assert normal["all"]["absent_share"] < 0.1
    assert normal["all"]["held_out_share"] == 0.0 and normal["train"]["held_out_share"] == 0.0
    assert rare["all"]["held_out_share"] == 1.0 and rare["all"]["absent_share"] == 1.0
    assert rare["val"]["rare_share"] == rare["test"]["rare_share"] == 1.0
    assert rare["train"]["held_out_share"] == 0.0
    # a small share of training explanations may use the held-out words too: rare, no longer absent
    leaky = mini.build_artemis_mini(N_RARE, 7, lexicon, rare_words=True, rare_train_rate=0.05)
    df = _split_rows(leaky, tmp_path / "l.csv")
    some = mini.rare_word_share(df, k=5)
    assert 0.01 < some["train"]["held_out_share"] < 0.1
    assert some["all"]["absent_share"] < 1.0 and some["all"]["rare_share"] > 0.5
    assert json.loads(leaky[mini.GENERATOR_JSON])["rare_words"]["train_rate"] == 0.05
    assert "rare in training" in leaky[mini.README_NAME].decode()


def test_rare_word_share_counts_by_hand():
    import pandas as pd

    frame = pd.DataFrame(
        {
            "utterance": ["calm and calm", "calm, gloomy", "it looks placid", "so calm and gloomy", "dark"],
            "split": ["train", "train", "val", "test", "test"],
        }
    )
    out = mini.rare_word_share(frame, k=2)
    assert out["val"] == {
        "feeling_tokens": 1,
        "rare_tokens": 1,
        "rare_share": 1.0,
        "absent_share": 1.0,
        "held_out_share": 1.0,
    }
    # calm: 3 in training (not rare at k=2), gloomy: 1 (rare); "dark" also describes colours: not counted
    assert out["test"]["feeling_tokens"] == 2 and out["test"]["rare_tokens"] == 1
    assert out["test"]["absent_share"] == 0.0
    assert out["all"]["feeling_tokens"] == 3 and out["all"]["rare_share"] == pytest.approx(2 / 3)
    assert out["train"] == {"feeling_tokens": 4, "held_out_share": 0.0}
    assert mini.rare_word_share(frame, k=3, feeling_words=["calm"])["test"]["rare_share"] == 0.0


def test_held_out_token_coverage_sees_whole_words_only(lexicon):
    from sevlm_lib.text import train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer(["the sea looks placid", "the placid sea", "a calm sea"] * 5)
    out = mini.held_out_token_coverage(tokenizer, lexicon, words=["placid", "absurd", "notaword"])
    assert out["n_words"] == 2 and out["whole"] == 1 and out["split"] == 1
    pieces, known = out["per_word"]["placid"]
    assert pieces == [" placid"] and known == [True]
    assert len(out["per_word"]["absurd"][0]) > 1


def test_ensure_keeps_the_rare_words_condition_in_its_own_folder(tmp_path, lexicon, capsys):
    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    normal = mini.ensure_artemis_mini(settings, n_artworks=25, seed=5, lexicon=lexicon)
    rare = mini.ensure_artemis_mini(settings, n_artworks=25, seed=5, lexicon=lexicon, rare_words=True)
    assert rare == tmp_path / "data" / mini.RARE_MINI_DIR_NAME / mini.CSV_NAME
    assert rare.parent == mini.mini_dir(settings, rare_words=True) and normal.parent == settings.mini_dir
    assert mini.mini_image_root(settings, rare_words=True) == rare.parent / mini.IMAGES_DIR
    assert "rare-words condition" in capsys.readouterr().out
    stamps = normal.stat().st_mtime_ns, rare.stat().st_mtime_ns
    # both are reused as they are
    mini.ensure_artemis_mini(settings, n_artworks=25, seed=5, lexicon=lexicon)
    mini.ensure_artemis_mini(settings, n_artworks=25, seed=5, lexicon=lexicon, rare_words=True)
    assert capsys.readouterr().out == "" and (normal.stat().st_mtime_ns, rare.stat().st_mtime_ns) == stamps
    # another training rate regenerates the rare folder
    mini.ensure_artemis_mini(
        settings, n_artworks=25, seed=5, lexicon=lexicon, rare_words=True, rare_train_rate=0.1
    )
    assert "generating" in capsys.readouterr().out
    assert json.loads((rare.parent / mini.GENERATOR_JSON).read_text())["rare_words"]["train_rate"] == 0.1
    # a rare-words generation never passes for the normal data
    mini.make_artemis_mini(settings.mini_dir, n_artworks=25, seed=5, lexicon=lexicon, rare_words=True)
    mini.ensure_artemis_mini(settings, n_artworks=25, seed=5, lexicon=lexicon)
    assert "generating" in capsys.readouterr().out
    assert "rare_words" not in json.loads((settings.mini_dir / mini.GENERATOR_JSON).read_text())


def test_load_course_data_loads_the_rare_words_condition_side_by_side(tmp_path, lexicon):
    from sevlm_lib.pipeline import artwork_images, load_course_data

    settings = Settings.from_env().with_(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", quiet=True)
    options = {"n_artworks": 40, "seed": 3, "lexicon": lexicon}
    normal = load_course_data(settings, lexicon=lexicon, mini_options=options)
    rare = load_course_data(settings, lexicon=lexicon, mini_options={**options, "rare_words": True})
    assert (tmp_path / "data" / "artemis_mini").is_dir() and (
        tmp_path / "data" / mini.RARE_MINI_DIR_NAME
    ).is_dir()
    assert rare.image_root == tmp_path / "data" / mini.RARE_MINI_DIR_NAME / mini.IMAGES_DIR
    assert normal.fingerprint != rare.fingerprint
    cols = ["art_style", "painting", "emotion", "split"]
    assert normal.annotations[cols].equals(rare.annotations[cols])
    held = rare.annotations["split"].isin(["val", "test"])
    assert held.any() and normal.annotations["utterance"][~held].equals(rare.annotations["utterance"][~held])
    assert mini.rare_word_share(rare.annotations)["all"]["held_out_share"] == 1.0
    key = rare.artwork_keys("val")[0]
    assert artwork_images(rare, [key])[0].size == artwork_images(normal, [key])[0].size
    # the trained tokenizer splits the held-out words (no VAD of their own) unless it is told about them
    assert mini.held_out_token_coverage(rare.tokenizer, lexicon)["whole"] == 0
    told = load_course_data(
        settings,
        lexicon=lexicon,
        mini_options={**options, "rare_words": True},
        tokenizer_words=mini.HELD_OUT_FEELING_WORDS,
    )
    coverage = mini.held_out_token_coverage(told.tokenizer, lexicon)
    assert coverage["whole"] == coverage["n_words"] and coverage["split"] == 0
    assert told.annotations.equals(rare.annotations)
