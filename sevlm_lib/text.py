"""Tokenizers and the sequence builder: ``<bos> the emotion is {emotion} because {explanation} <eos>``.

Two tokenizers share one interface (a ``transformers.PreTrainedTokenizerFast``):

* **tiny**: a byte-level BPE trained with ``tokenizers`` on the ArtEmis-mini training explanations;
* **full**: GPT-2's BPE (the one distilgpt2 was trained with).

Both get the course's special tokens: ``<pad>``, ``<emotion>`` and ``<explanation>``. GPT-2 uses
``<|endoftext|>`` as both ``<bos>`` and ``<eos>``.

Byte-level gotcha: in a byte-level BPE a space is part of the *next* token (``Ġthe``). Encoding the string
``"... cliffs <|endoftext|>"`` therefore yields a lone ``Ġ`` token before the special token. The builder
never encodes special tokens inside text: it concatenates the ids of the pieces instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from sevlm_lib.emotions import EMOTIONS
from sevlm_lib.models.hub import load_from_hub

BOS_EOS = "<|endoftext|>"
PAD = "<pad>"
EMOTION_SEGMENT = "<emotion>"
EXPLANATION_SEGMENT = "<explanation>"
COURSE_SPECIALS = (PAD, EMOTION_SEGMENT, EXPLANATION_SEGMENT)
PROMPT = "the emotion is"
BECAUSE = "because"
GPT2_HUB_ID = "distilgpt2"
# Pinned hub revision of distilgpt2 (the commit its tokenizer and weights are read from).
GPT2_REVISION = "2290a62682d06624634c1f46a6ad5be0f47f38aa"


def _wrap(tokenizer_object: object) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_object,
        bos_token=BOS_EOS,
        eos_token=BOS_EOS,
        unk_token=BOS_EOS,
        pad_token=PAD,
        additional_special_tokens=[EMOTION_SEGMENT, EXPLANATION_SEGMENT],
    )


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 1200, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` (plus the prompt words and the nine emotions), deterministically."""

    corpus = [f"{PROMPT} {e} {BECAUSE}" for e in EMOTIONS] * 10
    corpus += [t.strip().lower() for t in texts]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[BOS_EOS, *COURSE_SPECIALS],
        show_progress=False,
    )
    return _wrap(bpe._tokenizer)


def add_course_specials(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Add ``<pad>``, ``<emotion>``, ``<explanation>`` to a GPT-2 tokenizer (in place, returned for chaining)."""
    tokenizer.add_special_tokens(
        {"pad_token": PAD, "additional_special_tokens": [EMOTION_SEGMENT, EXPLANATION_SEGMENT]}
    )
    return tokenizer


def load_gpt2_tokenizer(hub_id: str = GPT2_HUB_ID, revision: str = GPT2_REVISION) -> PreTrainedTokenizerFast:
    """GPT-2's BPE from the hub (cached after the first download) with the course's special tokens."""

    tokenizer = load_from_hub(AutoTokenizer, hub_id, revision)  # fails fast offline, names the download
    return add_course_specials(tokenizer)


def tokenizer_fingerprint(texts: Sequence[str], vocab_size: int, min_frequency: int) -> str:
    """A short hash naming a tiny tokenizer trained on ``texts`` with these settings."""
    h = hashlib.sha256(f"{vocab_size}|{min_frequency}|".encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\n")
    return h.hexdigest()[:12]


def tiny_tokenizer(
    texts: Sequence[str],
    cache_dir: Path,
    vocab_size: int = 1200,
    min_frequency: int = 2,
    extra_words: Iterable[str] = (),
) -> PreTrainedTokenizerFast:
    """The tiny tokenizer for ``texts``, trained once and cached under ``{cache_dir}/tokenizers/``.

    ``extra_words``: words to learn as whole tokens although ``texts`` may lack them (the rare-words
    condition's held-out feeling words): each is added to the corpus twice as ``"feels {word}"`` (so the
    token has the leading space it has inside an explanation) and ``vocab_size`` grows by 4 a word (an upper
    bound: BPE stops when no pair occurs ``min_frequency`` times).
    """
    words = sorted({w.strip().lower() for w in extra_words})
    if words:
        texts = [*texts, *[f"feels {w}" for w in words] * 2]
        vocab_size += 4 * len(words)
    folder = Path(cache_dir) / "tokenizers" / f"tiny-{tokenizer_fingerprint(texts, vocab_size, min_frequency)}"
    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer = train_tiny_tokenizer(texts, vocab_size, min_frequency)
    tmp = folder.with_name(folder.name + ".tmp")
    save_tokenizer_info(tokenizer, tmp)
    if not folder.exists():
        tmp.replace(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


@dataclass(frozen=True)
class EncodedSequence:
    """One training sequence and where its parts are. Spans are half-open ``[start, end)`` token ranges."""

    input_ids: tuple[int, ...]
    segment_ids: tuple[int, ...]
    labels: tuple[int, ...]
    emotion_span: tuple[int, int]
    explanation_span: tuple[int, int]
    because_pos: int
    truncated: bool

    def __len__(self) -> int:
        return len(self.input_ids)


class SequenceBuilder:
    """Turns (emotion, explanation) pairs into token ids, segment ids, labels and span masks.

    ``loss_on_prompt``: the reference scores every token after ``<bos>``, prompt words included (they are
    trivially predictable, so they only dilute the loss). Set it False to score only emotion + explanation.

    Reference-mode options (``models.sevlm.builder_options``; docs/reference.md), all off by default:

    * ``prompt_lead_space``: encode `` the emotion is`` (GPT-2: ``Ġthe``, 262), as the reference does,
      instead of ``the emotion is`` (``the``, 1169);
    * ``pad_to_max_len``: pad every batch to ``max_len`` (the reference's explanation mean counts padding);
    * ``truncation``: ``"explanation"`` cuts explanation words so that ``<eos>`` fits; ``"sequence"`` (the
      reference) cuts the whole sequence at ``max_len``, ``<eos>`` included.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerFast,
        max_len: int = 30,
        loss_on_prompt: bool = True,
        prompt_lead_space: bool = False,
        pad_to_max_len: bool = False,
        truncation: str = "explanation",
    ):
        if truncation not in ("explanation", "sequence"):
            raise ValueError(f"SequenceBuilder: truncation={truncation!r}, expected 'explanation' or 'sequence'")
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.loss_on_prompt = loss_on_prompt
        self.prompt_lead_space = prompt_lead_space
        self.pad_to_max_len = pad_to_max_len
        self.truncation = truncation
        ids = tokenizer.convert_tokens_to_ids
        self.bos_id: int = ids(BOS_EOS)
        self.eos_id: int = ids(BOS_EOS)
        self.pad_id: int = ids(PAD)
        self.emotion_segment_id: int = ids(EMOTION_SEGMENT)
        self.explanation_segment_id: int = ids(EXPLANATION_SEGMENT)
        vocab = tokenizer.get_vocab()
        missing = [tok for tok in (BOS_EOS, *COURSE_SPECIALS) if tok not in vocab]
        if missing:
            raise ValueError(f"the tokenizer lacks {missing}: build it with sevlm_lib.text (add_course_specials)")
        self.prompt_ids: tuple[int, ...] = (self.bos_id, *self._enc(PROMPT, lead_space=prompt_lead_space))
        self.because_ids: tuple[int, ...] = tuple(self._enc(BECAUSE))
        if len(self.because_ids) != 1:
            raise ValueError(f"' {BECAUSE}' must be one token for the segment switch; this tokenizer splits it")
        self.emotion_ids: dict[str, tuple[int, ...]] = {e: tuple(self._enc(e)) for e in EMOTIONS}
        if self.max_len < len(self.prompt_ids) + max(map(len, self.emotion_ids.values())) + len(self.because_ids) + 2:
            raise ValueError(f"max_len={max_len} is too short for the prompt, an emotion and one explanation token")

    def _enc(self, text: str, lead_space: bool = True) -> list[int]:
        text = " ".join(text.split())
        if not text:
            return []
        return self.tokenizer(f" {text}" if lead_space else text, add_special_tokens=False)["input_ids"]

    def encode(self, emotion: str, explanation: str) -> EncodedSequence:
        """Encode one annotation; the explanation is truncated so that ``<eos>`` always fits in ``max_len``."""
        if emotion not in self.emotion_ids:
            raise ValueError(f"unknown emotion {emotion!r}: expected one of {', '.join(EMOTIONS)}")
        expl = self._enc(explanation)
        if not expl:
            raise ValueError(f"empty explanation for emotion {emotion!r}")
        head = [*self.prompt_ids, *self.emotion_ids[emotion]]
        budget = self.max_len - len(head) - len(self.because_ids) - 1
        truncated = len(expl) > budget
        because_pos = len(head)
        expl_start = because_pos + len(self.because_ids)
        if self.truncation == "sequence":  # the reference: cut everything past max_len, <eos> included
            ids = [*head, *self.because_ids, *expl, self.eos_id][: self.max_len]
            expl = expl[: max(0, self.max_len - expl_start)]
        else:
            expl = expl[:budget]
            ids = [*head, *self.because_ids, *expl, self.eos_id]
        segments = [self.emotion_segment_id] * because_pos + [self.explanation_segment_id] * (len(ids) - because_pos)
        first_scored = 1 if self.loss_on_prompt else len(self.prompt_ids)
        labels = [-100] * first_scored + ids[first_scored:]
        return EncodedSequence(
            input_ids=tuple(ids),
            segment_ids=tuple(segments),
            labels=tuple(labels),
            emotion_span=(len(self.prompt_ids), because_pos),
            explanation_span=(expl_start, expl_start + len(expl)),
            because_pos=because_pos,
            truncated=truncated,
        )

    def collate(self, sequences: Sequence[EncodedSequence]) -> dict[str, torch.Tensor]:
        """Right-pad a list of sequences into ``[N, T]`` tensors (see docs/architecture.md for the keys)."""
        if not sequences:
            raise ValueError("cannot collate an empty batch: no sequences were given")
        n, t = len(sequences), max(len(s) for s in sequences)
        if self.pad_to_max_len:
            t = max(t, self.max_len)
        out = {
            "input_ids": torch.full((n, t), self.pad_id, dtype=torch.long),
            "segment_ids": torch.full((n, t), self.explanation_segment_id, dtype=torch.long),
            "labels": torch.full((n, t), -100, dtype=torch.long),
            "attention_mask": torch.zeros((n, t), dtype=torch.long),
            "emotion_mask": torch.zeros((n, t), dtype=torch.bool),
            "explanation_mask": torch.zeros((n, t), dtype=torch.bool),
            "explanation_segment": torch.zeros((n, t), dtype=torch.bool),
        }
        for i, s in enumerate(sequences):
            k = len(s)
            out["input_ids"][i, :k] = torch.tensor(s.input_ids)
            out["segment_ids"][i, :k] = torch.tensor(s.segment_ids)
            out["labels"][i, :k] = torch.tensor(s.labels)
            out["attention_mask"][i, :k] = 1
            out["emotion_mask"][i, s.emotion_span[0] : s.emotion_span[1]] = True
            out["explanation_mask"][i, s.explanation_span[0] : s.explanation_span[1]] = True
            out["explanation_segment"][i, s.because_pos : k] = True
        return out

    def prompt_batch(self, n: int) -> dict[str, torch.Tensor]:
        """``<bos> the emotion is`` for ``n`` rows, the start of every generation."""
        ids = torch.tensor([self.prompt_ids] * n, dtype=torch.long)
        return {"input_ids": ids, "segment_ids": torch.full_like(ids, self.emotion_segment_id)}

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids, stopping at ``<eos>`` and dropping special tokens."""
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


@dataclass(frozen=True)
class ParsedOutput:
    """A generated text split into its emotion and explanation; ``emotion`` is None when it is not one of nine."""

    text: str
    emotion: str | None
    emotion_text: str
    explanation: str
    has_because: bool


def parse_generation(text: str) -> ParsedOutput:
    """Split ``"{emotion} because {explanation}"`` (the text after the prompt).

    Robust to a missing ``because`` (everything is then the emotion text and the explanation is empty) and
    to an unknown emotion word (reported as ``emotion=None`` with the raw ``emotion_text``, never guessed).
    """
    clean = " ".join(text.split())
    if clean.startswith(PROMPT):
        clean = clean[len(PROMPT) :].strip()
    words = clean.split(" ")
    if BECAUSE in words:
        k = words.index(BECAUSE)
        emotion_text, explanation, has_because = " ".join(words[:k]), " ".join(words[k + 1 :]), True
    else:
        emotion_text, explanation, has_because = clean, "", False
    emotion = emotion_text if emotion_text in EMOTIONS else None
    return ParsedOutput(clean, emotion, emotion_text, explanation, has_because)


def save_tokenizer_info(tokenizer: PreTrainedTokenizerFast, folder: Path) -> None:
    """Save a tokenizer with ``save_pretrained`` plus a small JSON note of its special ids."""
    folder = Path(folder)
    tokenizer.save_pretrained(folder)
    info = {k: tokenizer.convert_tokens_to_ids(k) for k in (BOS_EOS, *COURSE_SPECIALS)}
    (folder / "course_specials.json").write_text(json.dumps(info, indent=1))


def load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with a checkpoint."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder}: no tokenizer.json here; was this folder written by save_tokenizer_info?")
    return PreTrainedTokenizerFast.from_pretrained(folder)
