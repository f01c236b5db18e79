"""A stand-in for the full profile's downloads, for offline tests (issue 16).

* :func:`build_fake_hub` writes a Hugging Face hub cache in the hub's own on-disk layout
  (``models--{org}--{name}/{blobs,refs,snapshots/<revision>}``) at exactly the ids and pinned revisions the
  library loads (``CLIP_HUB_ID@CLIP_REVISION``, ``GPT2_HUB_ID@GPT2_REVISION``), holding small random-weight
  models of the right classes (a whole ``CLIPModel``, text tower included, as the hub has it; a
  ``GPT2LMHeadModel`` without cross-attention) and GPT-2-format tokenizer files (``vocab.json``,
  ``merges.txt``, ``tokenizer.json``, ``tokenizer_config.json``) of a byte-level BPE trained on the fixture text.
* :func:`write_artemis_v1` writes a small ArtEmis in v1's names and layout:
  ``artemis_dataset_release_v0.csv`` and ``wikiart/{art_style}/{painting}.jpg`` (one ``.png``).
* ``python -m tests.fake_hub MODULE ARGS...`` runs ``python -m MODULE ARGS...`` with the full profile's
  architecture sizes shrunk to the fake models' (``FAKE_HUB_SIZES``, JSON). This is the one deviation from a
  real run: ``full_config`` hard-codes ViT-B/16's and distilgpt2's sizes, and a checkpoint is rebuilt from
  those sizes, so real-size random weights would be needed otherwise (minutes on a CPU, GBs of checkpoints).
  With ``FAKE_HUB_INTERRUPT_AT=k`` the k-th training batch (0-based) raises ``KeyboardInterrupt`` (Ctrl-C at
  a deterministic point).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

VISION_SIZES = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 2,
    "intermediate_size": 64,
}
DECODER_SIZES = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64}
SIZES = {"vision": VISION_SIZES, "decoder": DECODER_SIZES}
CSV_NAME = "artemis_dataset_release_v0.csv"
STYLES = ("Impressionism", "Baroque", "Cubism")
WORDS = (
    "calm", "water", "light", "dark", "colours", "sky", "sea", "storm", "tree", "house", "woman",
    "man", "face", "eyes", "hands", "flowers", "field", "night", "sun", "cold", "warm", "soft",
    "bright", "heavy", "quiet", "loud", "happy", "sad", "lonely", "scary", "funny", "beautiful",
    "strange",
)


def repo_folder(hub_cache: Path, repo: str) -> Path:
    """``models--{org}--{name}``: where the hub cache keeps a model repository."""
    return Path(hub_cache) / ("models--" + repo.replace("/", "--"))


def write_repo(hub_cache: Path, repo: str, revision: str, files: dict[str, bytes]) -> Path:
    """Write ``files`` into the hub cache as the snapshot ``revision`` of ``repo`` (blobs + links + refs/main)."""
    folder = repo_folder(hub_cache, repo)
    snapshot = folder / "snapshots" / revision
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.unlink(missing_ok=True)
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:  # no symlinks (some Windows setups): the hub cache then holds copies too
            link.write_bytes(data)
    return snapshot


def _saved(model_or_tokenizer: Any, folder: Path) -> dict[str, bytes]:
    model_or_tokenizer.save_pretrained(folder)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def train_gpt2_bpe(texts: Sequence[str], folder: Path, vocab_size: int = 500) -> dict[str, bytes]:
    """GPT-2-format tokenizer files of a byte-level BPE trained on ``texts`` (``<|endoftext|>`` its only special)."""
    from tokenizers import ByteLevelBPETokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        list(texts), vocab_size=vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False
    )
    bpe.save_model(str(folder))  # vocab.json + merges.txt
    bpe.save(str(folder / "tokenizer.json"))
    files = {name: (folder / name).read_bytes() for name in ("vocab.json", "merges.txt", "tokenizer.json")}
    files["tokenizer_config.json"] = json.dumps({"model_max_length": 1024}).encode()  # what distilgpt2 ships
    return files


def build_fake_hub(hub_cache: Path, texts: Sequence[str], work: Path, seed: int = 0) -> dict[str, Path]:
    """Write CLIP and distilgpt2 stand-ins into ``hub_cache``; returns each repo's snapshot folder."""
    import torch
    from transformers import CLIPConfig, CLIPModel, GPT2Config, GPT2LMHeadModel

    from sevlm_lib.models.vision import CLIP_HUB_ID, CLIP_REVISION
    from sevlm_lib.text import GPT2_HUB_ID, GPT2_REVISION

    torch.manual_seed(seed)
    v = VISION_SIZES
    clip = CLIPModel(
        CLIPConfig(
            text_config={
                "vocab_size": 64,
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "max_position_embeddings": 16,
                "bos_token_id": 0,
                "eos_token_id": 1,
                "pad_token_id": 1,
            },
            vision_config={
                "image_size": v["image_size"],
                "patch_size": v["patch_size"],
                "hidden_size": v["hidden_size"],
                "intermediate_size": v["intermediate_size"],
                "num_hidden_layers": v["num_layers"],
                "num_attention_heads": v["num_heads"],
            },
            projection_dim=16,
        )
    )
    clip_files = _saved(clip, work / "clip")
    tokenizer_files = train_gpt2_bpe(texts, work / "bpe")
    vocab = json.loads(tokenizer_files["vocab.json"])
    eos = vocab["<|endoftext|>"]
    d = DECODER_SIZES
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(vocab),
            n_positions=d["n_positions"],
            n_embd=d["n_embd"],
            n_layer=d["n_layer"],
            n_head=d["n_head"],
            bos_token_id=eos,
            eos_token_id=eos,
        )
    )
    gpt2_files = _saved(gpt2, work / "gpt2")
    return {
        CLIP_HUB_ID: write_repo(hub_cache, CLIP_HUB_ID, CLIP_REVISION, clip_files),
        GPT2_HUB_ID: write_repo(hub_cache, GPT2_HUB_ID, GPT2_REVISION, {**gpt2_files, **tokenizer_files}),
    }


def artemis_rows(n_artworks: int = 40, per_artwork: int = 5, seed: int = 0) -> list[tuple[str, str, str, str, str]]:
    """ArtEmis v1 rows (art_style, painting, emotion, utterance, repetition) with 6-12-word utterances."""
    from sevlm_lib.emotions import EMOTIONS

    rng = random.Random(seed)
    rows = []
    for i in range(n_artworks):
        style = STYLES[i % len(STYLES)]
        painting = f"artist-{i % 7}_painting-{i:03d}"
        main = EMOTIONS[i % len(EMOTIONS)]
        for j in range(per_artwork):
            emotion = main if j < 3 else rng.choice(EMOTIONS)
            words = [rng.choice(WORDS) for _ in range(rng.randint(6, 12))]
            rows.append((style, painting, emotion, " ".join(words), str(per_artwork)))
    return rows


def write_artemis_v1(root: Path, rows: Sequence[Sequence[str]], png: int = 1) -> tuple[Path, Path]:
    """``{root}/artemis/artemis_dataset_release_v0.csv`` and ``{root}/wikiart/{style}/{painting}.jpg`` (the
    first ``png`` artworks as ``.png``); returns (csv, wikiart dir)."""
    import csv

    import numpy as np
    from PIL import Image

    csv_path = root / "artemis" / CSV_NAME
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("art_style", "painting", "emotion", "utterance", "repetition"))
        writer.writerows(rows)
    wikiart = root / "wikiart"
    artworks = list(dict.fromkeys((r[0], r[1]) for r in rows))
    for k, (style, painting) in enumerate(artworks):
        rng = np.random.default_rng(k)
        pixels = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        path = wikiart / style / f"{painting}{'.png' if k < png else '.jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    return csv_path, wikiart


def write_nrc_vad(path: Path, words: Sequence[str], seed: int = 0) -> Path:
    """A small NRC-VAD v2 file (``term valence arousal dominance``, values in -1..1) for ``words``."""
    rng = random.Random(seed)
    lines = ["term\tvalence\tarousal\tdominance"]
    for word in sorted(set(words)):
        lines.append("\t".join([word, *(f"{rng.uniform(-1, 1):.3f}" for _ in range(3))]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ launcher


def shrink_full_config(sizes: dict[str, dict[str, int]]) -> None:
    """Make ``full_config`` build the fake models' sizes (call before anything imports ``full_config``)."""
    from sevlm_lib.models import sevlm

    original = sevlm.full_config

    def full_config(**switches: bool | float) -> sevlm.SEVLMConfig:
        d = original().to_dict()
        d["vision"].update(sizes["vision"])
        d["decoder"].update(sizes["decoder"])
        cfg = sevlm.SEVLMConfig.from_dict(d)
        return cfg.with_switches(**switches) if switches else cfg

    full_config.__doc__ = original.__doc__
    sevlm.full_config = full_config


def interrupt_at(batch_index: int) -> None:
    """The ``batch_index``-th training batch (0-based) raises ``KeyboardInterrupt`` instead of arriving."""
    from sevlm_lib.data.datasets import PairBatches

    original = PairBatches.batches

    def batches(self: Any, epoch: int = 0) -> Any:
        for i, batch in enumerate(original(self, epoch)):
            if i == batch_index:
                raise KeyboardInterrupt
            yield batch

    PairBatches.batches = batches  # type: ignore[method-assign]


def main(argv: Sequence[str]) -> None:
    """``python -m tests.fake_hub MODULE ARGS...``: run a sevlm_lib command with the fake models' sizes."""
    if not argv:
        raise SystemExit("usage: python -m tests.fake_hub MODULE [ARGS...]")
    sizes = json.loads(os.environ.get("FAKE_HUB_SIZES") or json.dumps(SIZES))
    shrink_full_config(sizes)
    if os.environ.get("FAKE_HUB_INTERRUPT_AT"):
        interrupt_at(int(os.environ["FAKE_HUB_INTERRUPT_AT"]))
    module, *args = argv
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
