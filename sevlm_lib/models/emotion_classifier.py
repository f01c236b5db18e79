"""The Emo-Align classifier: a small text-to-emotion model (bag of words or a GRU), trained on the training
split's human explanations, saved as safetensors + JSON."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sevlm_lib.emotions import EMOTION_TO_IDX, EMOTIONS

# ---------------------------------------------------------------------------------------------------------
# Emo-Align: a text-to-emotion classifier
# ---------------------------------------------------------------------------------------------------------

_CLASSIFIER_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+")
PAD, UNK = "<pad>", "<unk>"
_CLASSIFIER_FORMAT = "sevlm-emotion-classifier"


def classifier_words(text: str) -> list[str]:
    """The emotion classifier's fixed word tokenizer: lowercase runs of letters (with one inner apostrophe,
    ``don't``) or digits; everything else separates words."""
    return _CLASSIFIER_WORD.findall(text.lower())


@dataclass(frozen=True)
class EmotionClassifierConfig:
    """Hyper-parameters of :class:`EmotionClassifier`.

    ``encoder``: ``"bag"`` (mean of the word embeddings, fastText-like; the default, ~1 s per epoch on 7k
    texts on one CPU thread) or ``"gru"`` (a 1-layer bidirectional GRU, its two final states concatenated,
    closer to ArtEmis's LSTM and ~8x slower; ``lr=3e-3`` suits it).
    """

    encoder: str = "bag"
    embed_dim: int = 64
    hidden_dim: int = 64
    min_count: int = 2
    max_len: int = 40
    dropout: float = 0.2
    lr: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 5

    def __post_init__(self) -> None:
        if self.encoder not in ("gru", "bag"):
            raise ValueError(f"encoder={self.encoder!r}: expected 'gru' or 'bag'")


class _EmotionNet(nn.Module):
    def __init__(self, vocab_size: int, config: EmotionClassifierConfig) -> None:
        super().__init__()
        self.encoder = config.encoder
        self.embed = nn.Embedding(vocab_size, config.embed_dim, padding_idx=0)
        if config.encoder == "gru":
            self.rnn = nn.GRU(config.embed_dim, config.hidden_dim, batch_first=True, bidirectional=True)
            width = 2 * config.hidden_dim
        else:
            width = config.embed_dim
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(width, len(EMOTIONS))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embed(ids))
        if self.encoder == "gru":
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, h = self.rnn(packed)
            feature = torch.cat([h[0], h[1]], dim=-1)
        else:
            feature = x.sum(dim=1) / lengths.unsqueeze(1).to(x.dtype)
        return self.out(self.dropout(feature))


class EmotionClassifier:
    """A small text-to-emotion classifier for Emo-Align, in the spirit of ArtEmis's LSTM classifier.

    Words (:func:`classifier_words`) -> embeddings (vocabulary from the training texts, words seen fewer than
    ``min_count`` times become ``<unk>``; an empty text is one ``<unk>``) -> mean (or a bidirectional GRU)
    -> nine logits, trained with cross-entropy and AdamW. Training is seeded and leaves torch's global random
    state untouched. (ArtEmis's LSTM classifier reached 63.35% test accuracy on real ArtEmis.)
    """

    def __init__(self, config: EmotionClassifierConfig | None = None) -> None:
        self.config = config or EmotionClassifierConfig()
        self.vocab: list[str] = []
        self.history: dict[str, list[float]] = {}
        self._index: dict[str, int] = {}
        self._net: _EmotionNet | None = None

    # -- data --------------------------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        unk = self._index[UNK]
        rows = []
        for i, text in enumerate(texts, start=1):
            if not isinstance(text, str):
                raise ValueError(f"text {i}: expected a string, got {type(text).__name__}")
            ids = [self._index.get(w, unk) for w in classifier_words(text)][: self.config.max_len]
            rows.append(ids or [unk])
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        ids = torch.zeros((len(rows), int(lengths.max()) if rows else 1), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return ids, lengths

    @staticmethod
    def _label_ids(labels: Sequence[str], what: str) -> torch.Tensor:
        out = []
        for i, label in enumerate(labels, start=1):
            if label not in EMOTION_TO_IDX:
                raise ValueError(f"{what} {i}: expected one of {', '.join(EMOTIONS)}, got {label!r}")
            out.append(EMOTION_TO_IDX[label])
        return torch.tensor(out, dtype=torch.long)

    def _build_vocab(self, texts: Sequence[str]) -> None:
        counts = Counter(w for t in texts for w in classifier_words(t))
        kept = sorted(
            (w for w, c in counts.items() if c >= self.config.min_count), key=lambda w: (-counts[w], w)
        )
        self.vocab = [PAD, UNK, *kept]
        self._index = {w: i for i, w in enumerate(self.vocab)}

    # -- training ------------------------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        seed: int = 0,
        epochs: int | None = None,
        val: tuple[Sequence[str], Sequence[str]] | None = None,
    ) -> EmotionClassifier:
        """Train from scratch (vocabulary included) on CPU. With ``val=(texts, labels)`` the weights of the
        epoch with the best validation accuracy are kept. Per-epoch ``train_loss`` (and ``val_accuracy``)
        are stored in :attr:`history`. Same data and seed give the same model."""
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels: expected the same number")
        if not texts:
            raise ValueError("fit: no training texts")
        y = self._label_ids(labels, "training label")
        for i, t in enumerate(texts, start=1):
            if not isinstance(t, str):
                raise ValueError(f"training text {i}: expected a string, got {type(t).__name__}")
        self._build_vocab(texts)
        x, lengths = self._encode(texts)
        if val is not None:
            val_texts, val_labels = val
            if len(val_texts) != len(val_labels):
                raise ValueError(f"val: {len(val_texts)} texts but {len(val_labels)} labels")
            val_y = self._label_ids(val_labels, "validation label")
        cfg = self.config
        n_epochs = cfg.epochs if epochs is None else epochs
        self.history = {"train_loss": [], "val_accuracy": []}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _EmotionNet(len(self.vocab), cfg)
            self._net = net
            generator = torch.Generator().manual_seed(seed)
            optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            best_acc, best_state = -1.0, None
            for _ in range(n_epochs):
                net.train()
                order = torch.randperm(len(y), generator=generator)
                total = 0.0
                for start in range(0, len(order), cfg.batch_size):
                    idx = order[start : start + cfg.batch_size]
                    width = int(lengths[idx].max())
                    logits = net(x[idx, :width], lengths[idx])
                    loss = nn.functional.cross_entropy(logits, y[idx])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(idx)
                self.history["train_loss"].append(total / len(y))
                if val is not None:
                    pred = self.predict_proba(val_texts).argmax(axis=1)
                    acc = (
                        float((torch.from_numpy(pred) == val_y).double().mean())
                        if len(val_y)
                        else float("nan")
                    )
                    self.history["val_accuracy"].append(acc)
                    if acc > best_acc:
                        best_acc = acc
                        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            if best_state is not None:
                net.load_state_dict(best_state)
        net.eval()
        return self

    # -- inference -----------------------------------------------------------------------------------------
    def _require_fitted(self) -> _EmotionNet:
        if self._net is None:
            raise RuntimeError("EmotionClassifier: call fit() or EmotionClassifier.load() first")
        return self._net

    def predict_proba(self, texts: Sequence[str], batch_size: int = 512) -> np.ndarray:
        """Class probabilities, ``[len(texts), 9]`` in ``EMOTIONS`` order."""
        net = self._require_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
        was_training = net.training
        net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                ids, lengths = self._encode(texts[start : start + batch_size])
                out.append(torch.softmax(net(ids, lengths), dim=-1))
        net.train(was_training)
        return torch.cat(out).numpy()

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable emotion of each text."""
        return [EMOTIONS[i] for i in self.predict_proba(texts).argmax(axis=1)]

    def accuracy(self, texts: Sequence[str], labels: Sequence[str | None]) -> float:
        """Share of texts whose prediction equals the label, over texts whose label is not ``None``
        (``nan`` when none has one): ``sevlm_lib.metrics.emotion_accuracy`` of the predictions."""
        pairs = [(p, g) for p, g in zip(self.predict(texts), labels, strict=True) if g is not None]
        return sum(p == g for p, g in pairs) / len(pairs) if pairs else float("nan")

    # -- files ---------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (config + vocabulary) into ``folder``."""

        net = self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().contiguous() for k, v in net.state_dict().items()},
            str(folder / "model.safetensors"),
        )
        meta = {
            "format": _CLASSIFIER_FORMAT,
            "version": 1,
            "emotions": list(EMOTIONS),
            "config": asdict(self.config),
            "vocab": self.vocab,
        }
        (folder / "config.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> EmotionClassifier:
        """Read a classifier written by :meth:`save`."""

        folder = Path(folder)
        meta_path, weights_path = folder / "config.json", folder / "model.safetensors"
        for path in (meta_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: missing; expected a folder written by EmotionClassifier.save()"
                )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path}: not valid JSON ({err})") from err
        if meta.get("format") != _CLASSIFIER_FORMAT:
            raise ValueError(
                f"{meta_path}: expected format {_CLASSIFIER_FORMAT!r}, got {meta.get('format')!r}"
            )
        if meta.get("emotions") != list(EMOTIONS):
            raise ValueError(f"{meta_path}: its emotion list {meta.get('emotions')} differs from EMOTIONS")
        model = cls(EmotionClassifierConfig(**meta["config"]))
        model.vocab = list(meta["vocab"])
        model._index = {w: i for i, w in enumerate(model.vocab)}
        net = _EmotionNet(len(model.vocab), model.config)
        net.load_state_dict(load_file(str(weights_path)))
        net.eval()
        model._net = net
        return model
