"""Small shared builders for tests: a tokenizer trained on a few sentences, a micro SEVLM, a small course."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sevlm_lib.models.decoder import DecoderConfig
from sevlm_lib.models.sevlm import SEVLM, SEVLMConfig
from sevlm_lib.models.vad_encoder import VADEncoderConfig
from sevlm_lib.models.vision import VisionConfig
from sevlm_lib.text import SequenceBuilder, train_tiny_tokenizer

TEXTS = [
    "the dark cliffs tower over a tiny figure",
    "bright yellow flowers make me smile",
    "the jagged red shapes feel angry and loud",
    "a calm blue sea under a soft sky",
    "the lonely tree looks sad in the grey field",
] * 20


def tokenizer():
    return train_tiny_tokenizer(TEXTS, vocab_size=400, min_frequency=1)


def micro_config(tok, **switches) -> SEVLMConfig:
    cfg = SEVLMConfig(
        vision=VisionConfig(
            image_size=32, patch_size=16, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64
        ),
        decoder=DecoderConfig(n_embd=32, n_layer=2, n_head=2, n_positions=48, dropout=0.0),
        vad_encoder=VADEncoderConfig(max_len=48, dropout=0.0),
    ).with_tokenizer(tok)
    return cfg.with_switches(**switches) if switches else cfg


def micro_model(tok, seed: int = 0, **switches) -> SEVLM:
    torch.manual_seed(seed)
    model = SEVLM(micro_config(tok, **switches))
    g = torch.Generator().manual_seed(123)
    table = torch.rand(len(tok), 3, generator=g) * 2 - 1
    known = torch.rand(len(tok), generator=g) > 0.3
    model.set_token_vad(table * known[:, None], known)
    return model


def pair_batch(builder: SequenceBuilder, image_size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    seqs = [
        builder.encode("awe", TEXTS[0]),
        builder.encode("something else", TEXTS[1]),
        builder.encode("anger", TEXTS[2]),
        builder.encode("fear", TEXTS[4]),
        builder.encode("contentment", TEXTS[3]),
        builder.encode("sadness", TEXTS[4]),
    ]
    batch = builder.collate(seqs)
    batch["pixel_values"] = torch.randn(3, 3, image_size, image_size, generator=g)
    batch["image_index"] = torch.arange(3).repeat_interleave(2)
    batch["pair_index"] = torch.arange(6) ^ 1
    return batch


def small_course_data(root: Path, n_artworks: int = 160) -> Any:
    """``pipeline.load_course_data`` on a small ArtEmis-mini under ``root`` (data and runs there; the
    lexicon cache shared with the real settings, so nothing is fetched twice)."""
    from sevlm_lib import pipeline
    from sevlm_lib.data import mini
    from sevlm_lib.settings import Settings

    real = Settings.from_env()
    settings = Settings.from_env(
        data_dir=root / "data",
        cache_dir=real.cache_dir,
        runs_dir=root / "runs",
        checkpoint_dir=root / "runs" / "checkpoints",
        quiet=True,
    )
    real_ensure = mini.ensure_artemis_mini
    # load_course_data asks for the default size; a small mini keeps these tests fast
    with pytest.MonkeyPatch.context() as mp:
        small = lambda s=None, **kw: real_ensure(s, n_artworks=n_artworks)  # noqa: E731
        mp.setattr(mini, "ensure_artemis_mini", small)
        mp.setattr(pipeline, "ensure_artemis_mini", small)  # the pipeline binds the name at import
        data = pipeline.load_course_data(settings, progress=False)
    assert len(data.artworks) == n_artworks
    return data


def micro_items_and_bank() -> tuple[list[dict[str, str]], Any]:
    """Five annotations of three paintings (one per emotion, ``TEXTS`` as utterances) and a random image bank."""
    from sevlm_lib.data.datasets import TensorBank

    emotions = ["awe", "something else", "anger", "sadness", "fear"]
    items = [
        {"art_style": "s", "painting": f"p{i % 3}", "emotion": e, "utterance": TEXTS[i]}
        for i, e in enumerate(emotions)
    ]
    g = torch.Generator().manual_seed(0)
    bank = TensorBank([("s", f"p{i}") for i in range(3)], torch.randn(3, 3, 32, 32, generator=g))
    return items, bank


def micro_vad_head_setup() -> tuple[SequenceBuilder, SEVLM, list[dict[str, str]], Any]:
    """A builder (24 tokens), a micro model with a VAD head, and ``micro_items_and_bank()``."""
    tok = tokenizer()
    items, bank = micro_items_and_bank()
    return SequenceBuilder(tok, max_len=24), micro_model(tok, seed=1, vad_head=True), items, bank
