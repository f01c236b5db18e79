"""Bad inputs to the data layer (issue 17): odd images, broken lexicons, wrong generator arguments.

Each test writes the bad input into ``tmp_path`` and checks that the error names the file, row or parameter.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sevlm_lib.data import artemis, images, mini
from sevlm_lib.data.artemis import ImageError, load_rgb, open_image, to_rgb
from sevlm_lib.settings import Settings
from sevlm_lib.vad import (
    MIN_REFERENCE_COVERAGE,
    REFERENCE_WORDS,
    Lexicon,
    LexiconError,
    check_coverage,
    load_lexicon,
    load_training_lexicon,
    read_nrc_vad,
    read_warriner_csv,
    training_lexicon_source,
    validate_lexicon,
)

# ---------------------------------------------------------------------------------------------- images


def _png_with_size(path: Path, width: int, height: int) -> Path:
    """A valid 1x1 PNG whose IHDR is then patched to claim ``width x height`` (CRC fixed)."""
    Image.new("L", (1, 1), 7).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_16_bit_grey_png_loads_as_its_mid_grey_not_white(tmp_path: Path) -> None:
    values = np.array([[0, 32896, 65535], [257, 128 * 257, 200 * 257]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "I;16"  # the mode that convert("RGB") clips to white
    image = load_rgb(path)
    assert image.mode == "RGB"
    pixels = np.asarray(image)
    assert pixels[..., 0].tolist() == [[0, 128, 255], [1, 128, 200]]
    assert (pixels == pixels[..., :1]).all()  # grey


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_and_32_bit_integer_modes_are_rescaled(mode: str) -> None:
    values = np.array([[0, 128 * 257, 65535]], dtype=np.uint16)
    raw = values.astype(">u2" if mode == "I;16B" else "<u2" if mode == "I;16" else "<i4").tobytes()
    image = Image.frombytes(mode, (3, 1), raw)
    assert image.mode == mode
    assert np.asarray(to_rgb(image))[0, :, 1].tolist() == [0, 128, 255]


def test_float_and_wide_integer_images_use_their_range(tmp_path: Path) -> None:
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(to_rgb(unit))[0, :, 0].tolist() == [0, 128, 255]
    path = tmp_path / "float.tiff"
    unit.save(path)
    assert np.asarray(load_rgb(path))[0, :, 2].tolist() == [0, 128, 255]
    wide = Image.fromarray(np.array([[-1000, 0, 1000]], dtype=np.int32), "I")
    assert np.asarray(to_rgb(wide))[0, :, 0].tolist() == [0, 128, 255]
    bad = Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32))
    with pytest.raises(ImageError, match=r"scan\.tiff: F-mode image holds NaN"):
        to_rgb(bad, "scan.tiff")


def test_transparency_is_composited_on_white_and_opaque_images_unchanged(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255  # one opaque red-ish pixel, the rest fully transparent (black underneath)
    out = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert out[0, 0].tolist() == [200, 0, 0] and out[1, 1].tolist() == [255, 255, 255]
    la = Image.fromarray(np.array([[[10, 0], [10, 255]]], dtype=np.uint8), "LA")
    assert np.asarray(to_rgb(la))[0].tolist() == [[255, 255, 255], [10, 10, 10]]
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 9, 9, 9] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    path = tmp_path / "palette.png"
    palette.save(path, transparency=0)
    assert np.asarray(load_rgb(path))[0].tolist() == [[255, 255, 255], [9, 9, 9]]
    opaque = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    opaque[..., 3] = 255
    assert np.array_equal(
        np.asarray(to_rgb(Image.fromarray(opaque, "RGBA"))), opaque[..., :3]
    )  # as convert("RGB") gives it


@pytest.mark.parametrize("mode", ["1", "L", "P", "CMYK", "YCbCr", "RGB"])
def test_8_bit_modes_convert_as_before(tmp_path: Path, mode: str) -> None:
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8), "RGB")
    image = rgb.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "YCbCr") else "PNG"
    path = tmp_path / f"img-{mode}.{fmt.lower()}"
    image.save(path, format=fmt)
    with Image.open(path) as reread:
        expected = np.asarray(reread.convert("RGB"))
    assert np.array_equal(np.asarray(load_rgb(path)), expected)


def test_ordinary_rgb_jpeg_and_png_are_byte_identical_to_convert(tmp_path: Path) -> None:
    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 256, (17, 23, 3), dtype=np.uint8), "RGB")
    for name in ("a.jpg", "a.png"):
        rgb.save(tmp_path / name)
        with Image.open(tmp_path / name) as reread:
            reread.load()
            expected = reread.convert("RGB").tobytes()
        assert open_image(tmp_path / name).tobytes() == expected


@pytest.mark.parametrize("size", [(60000, 1), (1, 10000), (5100, 100)])
def test_extreme_aspect_ratio_is_refused_before_decoding(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "strip.png"
    Image.new("L", size, 3).save(path)
    # damage the pixel data: if the loader decoded before checking, the error would be about that
    data = path.read_bytes()
    at = data.index(b"IDAT") + 8
    path.write_bytes(data[:at] + b"\0" * 8 + data[at + 8 :])
    with pytest.raises(ImageError) as info:
        load_rgb(path)
    message = str(info.value)
    assert str(path) in message and f"{size[0]}x{size[1]}" in message
    assert f"above the limit of {artemis.MAX_ASPECT_RATIO:g}:1" in message


def test_elongated_but_allowed_image_loads(tmp_path: Path) -> None:
    path = tmp_path / "scroll.png"
    Image.new("RGB", (40 * 8, 8), (1, 2, 3)).save(path)
    assert load_rgb(path).size == (320, 8)


@pytest.mark.parametrize(
    ("size", "what"),
    [((30000, 30000), "decompression bomb"), ((10000, 10000), "100,000,000 pixels")],
)
def test_decompression_bomb_header_is_refused_naming_the_file(
    tmp_path: Path, size: tuple[int, int], what: str, recwarn: pytest.WarningsRecorder
) -> None:
    path = _png_with_size(tmp_path / "bomb.png", *size)
    assert path.stat().st_size < 100
    with pytest.raises(ImageError, match=what) as info:
        load_rgb(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        open_image(path)  # the error type the loader, the preflight and predict already catch
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_own_pixel_limit_applies_even_with_pillows_limit_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _png_with_size(tmp_path / "big.png", 4000, 3000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1_000_000)  # the limit lives with the image reader
    with pytest.raises(ImageError, match=r"big\.png: image of size 4000x3000 \(12,000,000 pixels\)"):
        load_rgb(path)


def test_truncated_jpeg_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=rf"{re.escape(str(path))} is not a readable image.*truncated"):
        load_rgb(path)


def test_bytes_and_streams_are_named(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    Image.new("RGB", (4, 3), (5, 6, 7)).save(path)
    assert np.asarray(load_rgb(path.read_bytes()))[0, 0].tolist() == [5, 6, 7]
    with open(path, "rb") as handle:
        assert load_rgb(handle).size == (4, 3)
    with pytest.raises(ImageError, match=r"upload\.png is not a readable image"):
        load_rgb(b"not an image at all", name="upload.png")
    with pytest.raises(FileNotFoundError, match="absent.png"):
        load_rgb(tmp_path / "absent.png")


# ---------------------------------------------------------------------------------------------- lexicons


def _settings(tmp_path: Path, nrc: Path, profile: str = "full") -> Settings:
    return Settings.from_env().with_(profile=profile, nrc_vad=nrc)


@pytest.mark.parametrize(
    "text", ["", "\n\n", "Word\tValence\tArousal\tDominance\n", "term\tvalence\tarousal\tdominance\r\n"]
)
def test_empty_or_header_only_nrc_lexicon_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "NRC-VAD-Lexicon.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LexiconError, match=rf"{re.escape(str(path))}: the lexicon has no entries"):
        read_nrc_vad(path)
    with pytest.raises(LexiconError, match="no entries"):
        load_lexicon(path)


def test_empty_or_header_only_warriner_csv_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=rf"{re.escape(str(path))}: the lexicon has no entries"):
        read_warriner_csv(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(LexiconError, match=rf"{re.escape(str(path))}, line 1: expected a header"):
        read_warriner_csv(path)
    path.write_bytes(b"Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\n\xe9t\xe9,5,5,5\n")
    with pytest.raises(LexiconError, match=rf"{re.escape(str(path))}: not UTF-8"):
        read_warriner_csv(path)


def test_user_nrc_file_that_is_empty_fails_loudly_with_the_fallback(tmp_path: Path) -> None:
    path = tmp_path / "NRC-VAD-Lexicon.txt"
    path.write_text("Word\tValence\tArousal\tDominance\n", encoding="utf-8")
    settings = _settings(tmp_path, path)
    assert training_lexicon_source(settings) == "nrc"
    for call in (
        lambda: load_lexicon("nrc", settings=settings),
        lambda: load_training_lexicon(settings),
        lambda: validate_lexicon(settings=settings),
    ):
        with pytest.raises(LexiconError) as info:
            call()
        message = str(info.value)
        assert f"{path}: the lexicon has no entries" in message
        assert "unset SEVLM_NRC_VAD" in message and "Warriner" in message


def test_malformed_nrc_row_through_the_training_path_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "NRC-VAD-Lexicon.txt"
    path.write_text("happy\t1\t0.7\t0.7\nsad\t0.2\tlow\t0.1\n", encoding="utf-8")
    with pytest.raises(LexiconError, match=rf"{re.escape(str(path))}, line 2: expected three numbers"):
        load_training_lexicon(_settings(tmp_path, path))


def test_lexicon_of_two_words_fails_the_coverage_check(tmp_path: Path) -> None:
    path = tmp_path / "NRC-VAD-Lexicon.txt"
    path.write_text("happy\t1.0\t0.7\t0.8\nsad\t0.1\t0.3\t0.2\n", encoding="utf-8")
    assert len(read_nrc_vad(path)) == 2  # well-formed, so the readers accept it
    settings = _settings(tmp_path, path)
    n = len(REFERENCE_WORDS)
    for call in (lambda: validate_lexicon(settings=settings), lambda: load_training_lexicon(settings)):
        with pytest.raises(LexiconError) as info:
            call()
        message = str(info.value)
        assert str(path) in message
        assert f"covers only 2 of {n} reference words" in message
        assert f"at least {MIN_REFERENCE_COVERAGE:.0%} expected" in message
        assert "unset SEVLM_NRC_VAD" in message
    with pytest.raises(LexiconError, match=rf"{re.escape(str(path))}: .*covers only 2 of {n}"):
        validate_lexicon(path)


def test_coverage_of_texts_is_checked_when_given(tmp_path: Path) -> None:
    words = {w: (0.1, 0.2, 0.3) for w in REFERENCE_WORDS}
    lexicon = Lexicon(name="ref", source=str(tmp_path / "ref.txt"), entries=words)
    assert check_coverage(lexicon, REFERENCE_WORDS)["coverage"] == 1.0
    texts = ["zorblax quintessential foo bar baz qux happy"] * 3
    with pytest.raises(LexiconError, match=r"ref\.txt: .*covers only 1 of 7 distinct words of the texts"):
        check_coverage(
            lexicon,
            (w for t in texts for w in Lexicon.words(t)),
            min_coverage=0.5,
            what="distinct words of the texts",
        )
    with pytest.raises(ValueError, match="min_coverage"):
        check_coverage(lexicon, ["happy"], min_coverage=1.5)


def test_the_real_lexicon_passes_what_training_loads() -> None:
    settings = Settings.from_env().with_(profile="tiny")
    assert training_lexicon_source(settings) == "warriner"
    summary = validate_lexicon(settings=settings, texts=["the calm water makes me feel at peace"], allow_download=True)
    assert summary["name"] == "warriner2013" and summary["entries"] > 10_000
    assert summary["reference"]["covered"] == len(REFERENCE_WORDS)
    assert summary["texts"]["coverage"] >= 0.5
    assert len(load_training_lexicon(settings)) == summary["entries"]


def test_nrc_path_that_is_a_folder_names_it(tmp_path: Path) -> None:
    folder = tmp_path / "lexicon_dir"
    folder.mkdir()
    with pytest.raises(LexiconError, match=rf"{re.escape(str(folder))}: cannot be read"):
        read_nrc_vad(folder)


# ---------------------------------------------------------------------------------------------- generator


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"n_artworks": "10"}, TypeError, r"n_artworks: expected an integer >= 1, got str '10'"),
        ({"n_artworks": 10.0}, TypeError, r"n_artworks: expected an integer >= 1, got float 10\.0"),
        ({"n_artworks": True}, TypeError, r"n_artworks: expected an integer"),
        ({"n_artworks": 0}, ValueError, r"n_artworks: expected an integer >= 1, got 0"),
        ({"n_artworks": -5}, ValueError, r"n_artworks: expected an integer >= 1, got -5"),
        ({"seed": -1}, ValueError, r"seed: expected an integer >= 0, got -1"),
        ({"seed": "2024"}, TypeError, r"seed: expected an integer"),
        ({"n_crowded": 11}, ValueError, r"n_crowded: expected an integer 0\.\.10, got 11"),
        ({"n_crowded": 1.5}, TypeError, r"n_crowded: expected an integer 0\.\.10"),
        ({"lexicon": "warriner"}, TypeError, r"lexicon: expected None or a sevlm_lib\.vad\.Lexicon"),
        ({"calibration": {"noise": 0.1}}, TypeError, r"calibration: expected None or a MiniCalibration"),
        (
            {"calibration": mini.MiniCalibration(something_else_rate=1.5)},
            ValueError,
            r"calibration\.something_else_rate: expected a number \[0, 1\], got 1\.5",
        ),
        (
            {"calibration": mini.MiniCalibration(noise=-0.1)},
            ValueError,
            r"calibration\.noise: expected a number >= 0, got -0\.1",
        ),
        (
            {"calibration": mini.MiniCalibration(word_temperature=0.0)},
            ValueError,
            r"calibration\.word_temperature: expected a number > 0",
        ),
        (
            {"calibration": mini.MiniCalibration(word_k="8")},  # type: ignore[arg-type]
            TypeError,
            r"calibration\.word_k: expected an integer >= 1, got str",
        ),
        (
            {"calibration": mini.MiniCalibration(extra_annotation_rates=(0.7, 0.6))},
            ValueError,
            r"calibration\.extra_annotation_rates: P\(6\) \+ P\(7\) annotations must be at most 1",
        ),
        (
            {"calibration": mini.MiniCalibration(crowded_annotations=(41, 40))},
            ValueError,
            r"calibration\.crowded_annotations\[1\]: expected an integer >= 41, got 40",
        ),
        (
            {"calibration": mini.MiniCalibration(palette_scale=(0.2, float("nan"), 0.2))},
            ValueError,
            r"calibration\.palette_scale\[1\]: expected a number >= 0, got nan",
        ),
        ({"rare_words": "yes"}, TypeError, r"rare_words: expected True or False, got str 'yes'"),
        ({"rare_words": 1}, TypeError, r"rare_words: expected True or False, got int 1"),
        (
            {"rare_words": True, "rare_train_rate": "0.1"},
            TypeError,
            r"rare_train_rate: expected a number in \[0, 1\)",
        ),
        (
            {"rare_words": True, "rare_train_rate": 1.0},
            ValueError,
            r"rare_train_rate: expected a number in \[0, 1\).*got 1\.0",
        ),
        ({"rare_words": True, "rare_train_rate": -0.1}, ValueError, r"rare_train_rate: expected .*got -0\.1"),
        (
            {"rare_words": True, "rare_train_rate": float("nan")},
            ValueError,
            r"rare_train_rate: expected .*got nan",
        ),
        ({"rare_train_rate": 0.05}, ValueError, r"rare_train_rate=0\.05 only applies with rare_words=True"),
    ],
)
def test_make_artemis_mini_checks_its_arguments_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict, error: type, pattern: str
) -> None:
    def no_work(*args: object, **kw: object) -> None:
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(mini.build, "sample_artworks", no_work)  # where make_artemis_mini looks it up
    monkeypatch.setattr("sevlm_lib.vad.load_lexicon", no_work)
    args = {"n_artworks": 10, "seed": 1, **kwargs}
    out = tmp_path / "mini"
    with pytest.raises(error, match=pattern):
        mini.make_artemis_mini(out, **args)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(error, match=pattern):
        mini.ensure_artemis_mini(Settings.from_env().with_(data_dir=tmp_path), **args)


def test_make_artemis_mini_out_dir_type(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"out_dir: expected a folder path \(str or Path\), got int 5"):
        mini.make_artemis_mini(5, n_artworks=3)  # type: ignore[arg-type]


def test_valid_numpy_integer_arguments_are_accepted() -> None:
    mini.check_mini_args(np.int64(10), np.uint32(3), None, np.int8(2), mini.MiniCalibration())


def test_rare_word_share_rejects_bad_inputs() -> None:
    import pandas as pd

    frame = pd.DataFrame({"utterance": ["it feels calm"], "split": ["train"]})
    with pytest.raises(TypeError, match="annotations: expected a pandas DataFrame"):
        mini.rare_word_share([("it feels calm", "train")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"annotations: missing column\(s\) \['split'\]"):
        mini.rare_word_share(frame[["utterance"]])
    with pytest.raises(ValueError, match="k: expected an integer >= 1, got 0"):
        mini.rare_word_share(frame, k=0)
    with pytest.raises(TypeError, match="splits: expected a sequence of split names"):
        mini.rare_word_share(frame, splits="val")
    with pytest.raises(TypeError, match="feeling_words: expected a collection of words"):
        mini.rare_word_share(frame, feeling_words="calm")
    with pytest.raises(ValueError, match="feeling_words: expected a non-empty collection"):
        mini.rare_word_share(frame, feeling_words=[])


def test_load_course_data_mini_options_are_checked_before_any_work(tmp_path: Path) -> None:
    from sevlm_lib.pipeline import load_course_data

    tiny = Settings.from_env().with_(data_dir=tmp_path, profile="tiny")
    with pytest.raises(TypeError, match="mini_options: expected None or a dict"):
        load_course_data(tiny, mini_options="rare_words")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ensure_artemis_mini: unexpected arguments \['rare'\]"):
        load_course_data(tiny, mini_options={"rare": True})
    with pytest.raises(TypeError, match="rare_words: expected True or False"):
        load_course_data(tiny, mini_options={"rare_words": "on"})
    full = tiny.with_(profile="full")
    with pytest.raises(ValueError, match="ArtEmis-mini options apply to the tiny profile only"):
        load_course_data(full, mini_options={"rare_words": True})
    assert list(tmp_path.iterdir()) == []


def test_load_course_data_tokenizer_words_are_checked_before_any_work(tmp_path: Path) -> None:
    from sevlm_lib.pipeline import load_course_data

    tiny = Settings.from_env().with_(data_dir=tmp_path, profile="tiny")
    with pytest.raises(TypeError, match="tokenizer_words: expected a sequence of non-empty words"):
        load_course_data(tiny, tokenizer_words="placid")
    with pytest.raises(TypeError, match="tokenizer_words: expected a sequence of non-empty words"):
        load_course_data(tiny, tokenizer_words=["placid", ""])
    with pytest.raises(ValueError, match="tokenizer_words: only the tiny profile's tokenizer"):
        load_course_data(tiny.with_(profile="full"), tokenizer_words=["placid"])
    with pytest.raises(ValueError, match="passes its own tokenizer"):
        load_course_data(tiny, tokenizer=object(), tokenizer_words=["placid"])
    assert list(tmp_path.iterdir()) == []
