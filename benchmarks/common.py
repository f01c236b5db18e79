"""Shared pieces of the benchmarks: machine facts, side-by-side timing, inputs, JSON and markdown output.

Every benchmark runs *both* sides in one process, on the same inputs and weights. :func:`compare` warms
each side up, then alternates them (A, B, A, B, ...) for the timed repeats, so that a change in the
machine's load during the run hits both sides alike; it reports the median of each side and the ratio of
the medians. The load average before and after is recorded with every result: other processes on a
shared machine slow both sides, and the ratio is what the benchmarks claim, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
VOCAB_GPT2 = 50260  # GPT-2's 50,257 tokens + <pad>, <emotion>, <explanation>
SCHEMA = 1


# ------------------------------------------------------------------------------------------ machine facts


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> list[float] | None:
    """``os.getloadavg()`` (1, 5 and 15 minutes), rounded; ``None`` where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_facts() -> dict[str, Any]:
    """What the numbers came from: CPU, cores, threads, memory, library versions, GPU if any."""
    import transformers

    facts: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }
    try:
        facts["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (AttributeError, ValueError, OSError):
        facts["memory_gib"] = None
    return facts


# ------------------------------------------------------------------------------------------ timing


def summarise(seconds: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and every repeat of a list of timings (seconds)."""
    if not seconds:
        raise ValueError("summarise: no timings")
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "repeats": len(seconds),
        "all_s": [round(s, 6) for s in seconds],
    }


@dataclass
class Comparison:
    """Timings of several sides measured alternately; ``ratio(slow, fast)`` divides their medians."""

    seconds: dict[str, list[float]]
    warmup: int
    outputs: dict[str, Any] = field(default_factory=dict)

    def median(self, side: str) -> float:
        return statistics.median(self.seconds[side])

    def ratio(self, slow: str, fast: str) -> float:
        """How many times faster ``fast`` is than ``slow`` (median over median)."""
        return self.median(slow) / self.median(fast)

    def summary(self) -> dict[str, Any]:
        return {side: summarise(times) for side, times in self.seconds.items()}


def compare(
    sides: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 1,
    repeats: int = 5,
    inner: int | Mapping[str, int] = 1,
) -> Comparison:
    """Time each side ``repeats`` times after ``warmup`` untimed calls, alternating sides every repeat.

    ``inner``: calls per timed repeat, for very fast sides (one number, or one per side); each repeat
    reports seconds per call. The last output of each side is kept in ``Comparison.outputs`` for checks.
    """
    calls = {name: inner if isinstance(inner, int) else inner.get(name, 1) for name in sides}
    if repeats < 1 or warmup < 0 or min(calls.values()) < 1:
        raise ValueError(f"compare: repeats={repeats} must be >= 1, warmup={warmup} >= 0, inner={inner} >= 1")
    outputs: dict[str, Any] = {}
    for name, fn in sides.items():
        for _ in range(warmup):
            outputs[name] = fn()
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(repeats):
        order = list(sides) if r % 2 == 0 else list(reversed(list(sides)))
        for name in order:
            fn = sides[name]
            start = time.perf_counter()
            for _ in range(calls[name]):
                outputs[name] = fn()
            seconds[name].append((time.perf_counter() - start) / calls[name])
    return Comparison(seconds, warmup, outputs)


# ------------------------------------------------------------------------------------------ inputs


def load_bench_lexicon(settings: Any = None) -> Any:
    """The Warriner lexicon from the course cache (fetched once, like ``make data``)."""
    from sevlm_lib.settings import Settings
    from sevlm_lib.vad import load_lexicon

    return load_lexicon("warriner", settings=settings or Settings.from_env())


def synthetic_annotations(lexicon: Any, n_artworks: int = 400, seed: int = 2024) -> list[tuple[str, str]]:
    """ArtEmis-mini (emotion, explanation) pairs for ``n_artworks`` artworks, without drawing any image.

    The same generator as ``sevlm_lib.data.mini`` (its artwork sampler and simulated annotators), so the
    texts are the course's tiny-profile texts; nothing is written to disk.
    """
    import numpy as np

    from sevlm_lib.data.mini import FeelingVocabulary, MiniCalibration, annotate, sample_artworks

    cal = MiniCalibration()
    vocab = FeelingVocabulary.from_lexicon(lexicon)
    artworks = sample_artworks(n_artworks, seed, cal)
    seeds = np.random.SeedSequence(seed).spawn(3)[2].spawn(n_artworks)
    out: list[tuple[str, str]] = []
    for art in artworks:
        out.extend(annotate(art, vocab, np.random.default_rng(seeds[art.index]), cal))
    return out


def word_corpus(lexicon: Any, texts: Sequence[str]) -> list[str]:
    """Texts, the lexicon's words, and every word form lemminflect knows (~70k), for a GPT-2-sized BPE."""
    from lemminflect.core.Lemmatizer import Lemmatizer

    words: dict[str, None] = {}
    for word in sorted(lexicon.entries):
        if " " not in word:
            words[word] = None
    for form, lemmas in sorted(Lemmatizer()._getLemmaDict().items()):
        if form.isalpha():
            words[form.lower()] = None
        for upos_lemmas in lemmas.values():
            for lemma in upos_lemmas:
                if lemma.isalpha():
                    words[lemma.lower()] = None
    # lines of 16 words, so that most words also get a token with GPT-2's leading space (Ġword)
    ordered = list(words)
    return [*texts, *(" ".join(ordered[i : i + 16]) for i in range(0, len(ordered), 16))]


def gpt2_sized_tokenizer(
    lexicon: Any, texts: Sequence[str], vocab_size: int = VOCAB_GPT2, cache_dir: Path | None = None
) -> Any:
    """A byte-level BPE with GPT-2's vocabulary size, trained on ``texts`` + the lexicon's words and forms.

    GPT-2's own BPE needs a download; this stand-in has the same size (so the LM head and the embedding cost
    what they cost in the full model) and, like GPT-2's, mostly whole English words with a leading space,
    so decoding and lemmatising its tokens costs what it costs with GPT-2's. Trained once (~20 s) and
    cached under ``{cache_dir}/tokenizers/`` (default: ``Settings.cache_dir``).
    """
    from sevlm_lib.text import tiny_tokenizer

    cache = cache_dir if cache_dir is not None else _default_cache_dir()
    return tiny_tokenizer(word_corpus(lexicon, texts), cache, vocab_size=vocab_size, min_frequency=1)


def _default_cache_dir() -> Path:
    from sevlm_lib.settings import Settings

    return Settings.from_env().cache_dir


# ------------------------------------------------------------------------------------------ VAD, reference style


def fresh_word_vad(lexicon: Any, word: str) -> tuple[float, float, float] | None:
    """``lexicon.vad(word)`` computed afresh: the same lemma path as ``Lexicon.match``, without its memo.

    The reference lemmatises every token every time (NLTK's POS tagger + WordNet lemmatiser); it keeps no
    memo. This reproduces that *work pattern* with the course's lemmatiser (``lemminflect``), which is the
    cheaper of the two, so a ratio measured against it is a lower bound for the real reference.
    """
    from sevlm_lib.vad import _candidates, _normalise

    key = _normalise(word)
    if not key:
        return None
    for candidate in _candidates(key):
        if candidate in lexicon.entries:
            return lexicon.entries[candidate]
    return None


def fresh_token_vad(lexicon: Any, surface: str) -> tuple[float, float, float]:
    """The VAD of one token's surface string, by the token-table rule, looked up afresh (zeros if unknown).

    Same rule as ``Lexicon.strings_vad_table``: stripped, lowercased, only alphabetic strings of two or more
    letters are looked up; punctuation, digits, special tokens and scraps get zeros.
    """
    s = surface.strip().lower()
    if len(s) >= 2 and s.isalpha():
        hit = fresh_word_vad(lexicon, s)
        if hit is not None:
            return hit
    return (0.0, 0.0, 0.0)


# ------------------------------------------------------------------------------------------ models


def gpt2_vocab_config(cfg: Any, vocab_size: int = VOCAB_GPT2) -> Any:
    """``cfg`` with a GPT-2-sized vocabulary and the course's three special ids at its end (no tokenizer)."""
    from sevlm_lib.models.sevlm import SEVLMConfig

    d = cfg.to_dict()
    d.update(
        vocab_size=vocab_size,
        pad_id=vocab_size - 3,
        emotion_segment_id=vocab_size - 2,
        explanation_segment_id=vocab_size - 1,
    )
    return SEVLMConfig.from_dict(d)


def random_token_vad(vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random token VAD table (half the tokens known), for models built without a tokenizer."""
    g = torch.Generator().manual_seed(seed)
    known = torch.rand(vocab_size, generator=g) > 0.5
    return (torch.rand(vocab_size, 3, generator=g) * 2 - 1) * known[:, None], known


def pair_batch(cfg: Any, artworks: int, seq_len: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A random pair batch shaped like the course's (2 sequences per artwork), text part only."""
    n = 2 * artworks
    vocab = cfg.vocab_size
    specials = {cfg.pad_id, cfg.emotion_segment_id, cfg.explanation_segment_id}
    ids = torch.randint(
        0, vocab - 3 if max(specials) >= vocab - 3 else vocab, (n, seq_len), generator=generator
    )
    lengths = torch.randint(max(10, seq_len - 8), seq_len + 1, (n,), generator=generator)
    lengths[0] = seq_len
    pos = torch.arange(seq_len)[None]
    real = pos < lengths[:, None]
    ids = ids.masked_fill(~real, cfg.pad_id)
    because = 6
    labels = ids.masked_fill(~real, -100)
    labels[:, 0] = -100
    return {
        "input_ids": ids,
        "attention_mask": real.long(),
        "segment_ids": torch.where(pos < because, cfg.emotion_segment_id, cfg.explanation_segment_id)
        .expand(n, -1)
        .clone(),
        "labels": labels,
        "emotion_mask": ((pos >= 4) & (pos < because)).expand(n, -1).clone(),
        "explanation_mask": (pos > because) & (pos < lengths[:, None] - 1),
        "explanation_segment": (pos >= because) & real,
        "image_index": torch.arange(artworks).repeat_interleave(2),
        "pair_index": torch.arange(n) ^ 1,
    }


# ------------------------------------------------------------------------------------------ output


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark has: ``--quick``, ``--out-dir``, ``--seed``, ``--threads``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a seconds-long smoke run (small sizes, 1 repeat)"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the JSON result goes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    return parser


def setup_run(args: argparse.Namespace) -> dict[str, Any]:
    """Apply ``--threads`` and seed; returns the facts to store (machine, load average at the start)."""
    from sevlm_lib.settings import seed_everything

    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    return {"machine": machine_facts(), "load_average_start": load_average(), "started": time.time()}


def write_result(name: str, result: dict[str, Any], run: Mapping[str, Any], out_dir: Path) -> Path:
    """Write ``{out_dir}/{name}.json`` with the machine facts and load averages; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "schema": SCHEMA,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(time.time() - run["started"], 1),
        "machine": run["machine"],
        "load_average_start": run["load_average_start"],
        "load_average_end": load_average(),
        **result,
    }
    path = out_dir / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def log(message: str) -> None:
    """Progress to stderr (stdout stays for the final summary)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def fmt_ratio(x: float) -> str:
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"
