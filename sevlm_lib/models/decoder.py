"""The text decoder: GPT-2 with cross-attention over image patches (``add_cross_attention=True``)."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import GPT2Config, GPT2LMHeadModel

from sevlm_lib.models.checks import check_divides, check_probability, check_sizes
from sevlm_lib.models.hub import load_from_hub


@dataclass
class DecoderConfig:
    """Either a small random GPT-2 (``hub_id=None``) or distilgpt2 from the hub plus fresh cross-attention."""

    hub_id: str | None = None
    revision: str | None = None
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 2
    n_positions: int = 64
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_sizes(self, ("n_embd", "n_layer", "n_head", "n_positions"))
        check_divides(self, "n_head", "n_embd")
        check_probability(self, "dropout")

    def gpt2_config(self, vocab_size: int) -> GPT2Config:
        """The transformers config for a randomly initialised decoder of these sizes."""
        return GPT2Config(
            vocab_size=vocab_size,
            n_positions=self.n_positions,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            add_cross_attention=True,
            bos_token_id=0,
            eos_token_id=0,
        )


def build_decoder(cfg: DecoderConfig, vocab_size: int) -> GPT2LMHeadModel:
    """A decoder whose embedding matrix has ``vocab_size`` rows (the tokenizer's length, specials included).

    For the hub model only the cross-attention layers are new (``~14M`` parameters for distilgpt2); the
    embedding matrix grows by the course's special tokens.
    """
    if cfg.hub_id is None:
        return GPT2LMHeadModel(cfg.gpt2_config(vocab_size))

    model = load_from_hub(GPT2LMHeadModel, cfg.hub_id, cfg.revision, add_cross_attention=True)
    # New rows (the course's special tokens) get the model's normal initialisation, as in the reference's
    # transformers; mean_resizing would draw them around the mean embedding and print a note every load.
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    return model
