"""Decoding speed: our KV-cached generation against the reference's way of decoding, side by side.

    python benchmarks/bench_decoding.py            # tiny (batch 64) + full-size (batch 4), ~3-5 min on 2 cores
    python benchmarks/bench_decoding.py --quick    # seconds: a small tiny run, for the smoke test

**Ours** is ``sevlm_lib.generation.generate(use_cache=True)``: the image is encoded once, each step feeds only
the new token through the decoder (key/value cache) and through the *causal* VAD encoder (its own cache),
and the new token's VAD is one row of the token VAD table (``table[input_ids]``).

**Reference style** re-implements the decoding loop of the SEVLM reference code (``sample_sequences`` in
its ``artEmisX_test.py``) step for step, on the same model object and weights:

1. the CLIP tower re-encodes the images at *every* step (the reference calls ``model.encoder(img)`` inside
   the step loop);
2. no cache: the VAD encoder and the whole decoder re-run over the full sequence at every step, and the LM
   head computes logits at every position (``GPT2LMHeadModel`` does), of which only the last is used;
3. the top-p 0.9 filter of the reference (``top_filtering1``: a sort of the vocabulary and a Python loop
   over the rows) runs before the greedy pick (it never changes the argmax);
4. after every step, in a Python loop over the samples, every token of the sample's sequence is decoded to
   text with ``tokenizer.decode`` (one 0-d tensor at a time, as the reference iterates ``input_ids[j]``) and
   its VAD is looked up again, *afresh* (the reference keeps no memo);
   the prompt's VAD is computed the same way before the loop, as its dataset does;
5. the segment ids are extended in the same per-sample Python loop.

What differs from the real reference, and why the ratio is a lower bound: the reference lemmatises with
NLTK (a perceptron POS tagger over the whole sequence + the WordNet lemmatiser); we use the course's own
lemma path (``lemminflect``, the same candidates as ``Lexicon.match``, with the memo bypassed, see
``common.fresh_word_vad``), which is cheaper per token. Both sides use the **causal** VAD encoder (the
reference's is not causal; a causal one is what makes the cache possible), and the reference-style VAD
values follow the token-table rule, so both sides compute the same numbers by different routes: the
benchmark checks that they generate *identical tokens*. The same LM-head hook on both sides (``StepControl``)
suppresses ``<eos>``, so that every sample decodes all 25 new tokens (a random model may stop early), and
forces `` because`` at the second step, so that the other 23 steps run in the explanation segment where the
VAD path is fused in (a random model would almost never get there).

Configs: tiny (``tiny_config`` with every switch on, the tiny profile's 1,200-token BPE, batch 64, 25 new
tokens) and full-size (``random_weights(full_config(...))``: CLIP ViT-B/16 tower + distilgpt2-sized decoder,
a GPT-2-sized 50,260-token stand-in BPE, batch 4 on CPU). A third side, ``generate(use_cache=False)``, shows
how much of the gain is the cache alone (it re-runs the sequence but encodes the image once and uses the table).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.common import (  # noqa: E402
    base_parser,
    compare,
    fmt_ratio,
    fresh_token_vad,
    gpt2_sized_tokenizer,
    load_bench_lexicon,
    log,
    setup_run,
    synthetic_annotations,
    write_result,
)

OURS, NO_CACHE, REFERENCE = "ours", "no_cache", "reference"
SIDE_LABELS = {
    OURS: "ours: generate(use_cache=True), causal VAD encoder + token VAD table",
    NO_CACHE: "generate(use_cache=False): full re-run, image encoded once, table VAD",
    REFERENCE: "reference style: image re-encoded + full re-run every step, per-sample VAD re-lemmatised",
}


# ------------------------------------------------------------------------------------------ models


def build_model(profile: str, lexicon: Any, texts: Sequence[str], seed: int) -> tuple[Any, Any, Any]:
    """(model, tokenizer, builder) for ``tiny`` or ``full`` (random weights), VAD table from ``lexicon``."""
    from sevlm_lib.models.sevlm import SEVLM, full_config, random_weights, tiny_config
    from sevlm_lib.settings import seed_everything
    from sevlm_lib.text import SequenceBuilder, train_tiny_tokenizer

    switches = {"vad_fusion": True, "vad_head": True, "contrastive": True}
    if profile == "tiny":
        tokenizer = train_tiny_tokenizer(texts)
        cfg = tiny_config(**switches)
    elif profile == "full":
        tokenizer = gpt2_sized_tokenizer(lexicon, texts)
        cfg = random_weights(full_config(**switches))
    else:
        raise ValueError(f"unknown profile {profile!r}: expected 'tiny' or 'full'")
    seed_everything(seed)
    model = SEVLM(cfg.with_tokenizer(tokenizer))
    model.set_token_vad(*lexicon.token_vad_table(tokenizer))
    model.eval()
    return model, tokenizer, SequenceBuilder(tokenizer)


class StepControl:
    """A forward hook on the LM head, the same for both sides: ``<eos>`` never wins, and at step
    ``because_step`` every sample says `` because``.

    A random model may stop early, so ``<eos>`` is suppressed (its logit set to -inf) and every sample decodes
    all the new tokens. A random model also almost never says `` because``, so the explanation segment, where
    the VAD path is fused into the embeddings, would never be reached; forcing it at step 1 (right after a
    one-token emotion, as a trained model does) puts the remaining steps in the explanation segment. The hook
    counts LM-head calls (one per decoding step on both sides): call :meth:`reset` before each generation.
    """

    def __init__(self, model: Any, eos_id: int, because_id: int | None, because_step: int = 1):
        self.eos_id, self.because_id, self.because_step = eos_id, because_id, because_step
        self.calls = 0
        self.handle = model.decoder.lm_head.register_forward_hook(self._hook)

    def _hook(self, _module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self.because_id is not None and self.calls == self.because_step:
            output[..., self.because_id] = output.detach().amax() + 100.0
        output[..., self.eos_id] = float("-inf")
        self.calls += 1
        return output

    def reset(self) -> None:
        self.calls = 0

    def remove(self) -> None:
        self.handle.remove()


# ------------------------------------------------------------------------------------------ reference side


def reference_top_p(logits: torch.Tensor, top_p: float = 0.9) -> torch.Tensor:
    """The reference's ``top_filtering1`` (top-k off): sort, cumulative softmax, then a Python loop over rows."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    remove = cumulative > top_p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    for i in range(logits.size(0)):
        logits[i][sorted_indices[i][remove[i]]] = float("-inf")
    return logits


def _sample_vad(tokenizer: Any, lexicon: Any, ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """One sample's VAD, as the reference does it: decode each token to text, look every one up afresh.

    Like the reference (``for wj in input_ids[j]``), a tensor row is iterated element by element and each
    0-d tensor handed to ``tokenizer.decode``.
    """
    words = [tokenizer.decode(w, skip_special_tokens=False).lstrip() for w in ids]
    return torch.tensor([fresh_token_vad(lexicon, w) for w in words], dtype=torch.float)


def _embed_with_vad(
    model: Any, ids: torch.Tensor, seg: torch.Tensor, expl: torch.Tensor, vad: torch.Tensor
) -> torch.Tensor:
    """``SEVLM.embed`` with the VAD given from outside (the reference passes per-sample VAD features)."""
    wte = model.decoder.transformer.wte
    words = wte(ids)
    enc, _ = model.vad_encoder(vad.to(words.device))
    fused = model.fusion(torch.cat([words, enc.to(words.dtype)], dim=-1))
    words = torch.where(expl.unsqueeze(-1), fused, words)
    return words + wte(seg)


@torch.no_grad()
def reference_generate(
    model: Any,
    builder: Any,
    lexicon: Any,
    pixel_values: torch.Tensor,
    max_new_tokens: int = 25,
    top_p: float = 0.9,
    timings: dict[str, float] | None = None,
) -> list[list[int]]:
    """Greedy decoding the reference's way (see the module notes); returns the new tokens of every sample.

    ``timings`` (optional) accumulates seconds per part: ``image_encoder``, ``vad_python``, ``decoder``,
    ``top_p``.
    """
    if not model.config.vad_fusion:
        raise ValueError(
            "reference_generate needs a model with vad_fusion=True (the VAD path is what it re-does)"
        )
    tokenizer = builder.tokenizer
    parts = timings if timings is not None else {}
    for key in ("image_encoder", "vad_python", "decoder", "top_p"):
        parts.setdefault(key, 0.0)
    n = pixel_values.shape[0]
    prompt = builder.prompt_batch(n)
    ids, seg = prompt["input_ids"], prompt["segment_ids"]
    expl = torch.zeros_like(ids, dtype=torch.bool)
    special = {builder.eos_id, builder.pad_id, builder.emotion_segment_id, builder.explanation_segment_id}
    because = builder.because_ids[-1]
    t0 = time.perf_counter()
    vad = torch.stack([_sample_vad(tokenizer, lexicon, row) for row in ids])  # the dataset's __getitem__
    parts["vad_python"] += time.perf_counter() - t0
    end_idx = [max_new_tokens] * n
    always_expl = [False] * n
    new_tokens: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        t0 = time.perf_counter()
        memory = model.encode_images({"pixel_values": pixel_values})
        t1 = time.perf_counter()
        emb = _embed_with_vad(model, ids, seg, expl, vad)
        hidden = model.decode(emb, memory, None).last_hidden_state
        lm_logits = model.decoder.lm_head(hidden)
        t2 = time.perf_counter()
        logits = reference_top_p(lm_logits[:, -1, :] / 1.0, top_p)
        prev = torch.topk(F.softmax(logits, dim=-1), 1)[1]
        t3 = time.perf_counter()
        ids = torch.cat([ids, prev], dim=1)
        new_tokens.append(prev[:, 0])
        rows = ids.tolist()
        vad_rows: list[torch.Tensor] = []
        new_seg = torch.empty(n, 1, dtype=torch.long)
        for j in range(n):
            token = rows[j][-1]
            if token in special and end_idx[j] == max_new_tokens:
                end_idx[j] = step + 1
            vad_rows.append(_sample_vad(tokenizer, lexicon, ids[j]))
            if not always_expl[j] and token == because:
                always_expl[j] = True
            new_seg[j] = builder.explanation_segment_id if always_expl[j] else builder.emotion_segment_id
        vad = torch.stack(vad_rows)
        seg = torch.cat([seg, new_seg], dim=1)
        expl = torch.cat([expl, torch.tensor(always_expl)[:, None]], dim=1)
        t4 = time.perf_counter()
        parts["image_encoder"] += t1 - t0
        parts["decoder"] += t2 - t1
        parts["top_p"] += t3 - t2
        parts["vad_python"] += t4 - t3
    return torch.stack(new_tokens, 1).tolist()


# ------------------------------------------------------------------------------------------ the benchmark


def bench_config(
    profile: str,
    lexicon: Any,
    texts: Sequence[str],
    *,
    batch: int,
    new_tokens: int,
    warmup: int,
    repeats: int,
    seed: int,
    warmup_tokens: int | None = None,
) -> dict[str, Any]:
    """Time the three sides on one config; check that they produce identical tokens.

    ``warmup`` untimed runs of each side first, with ``warmup_tokens`` new tokens (default: all of them).
    """
    from sevlm_lib.generation import generate

    model, tokenizer, builder = build_model(profile, lexicon, texts, seed)
    control = StepControl(model, builder.eos_id, builder.because_ids[-1])
    size = model.config.vision.image_size
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed + 1))
    images = {"pixel_values": pixels}
    parts: dict[str, float] = {}
    ref_runs = [0]
    n = [warmup_tokens or new_tokens]

    def ours() -> list[list[int]]:
        control.reset()
        return generate(model, builder, images, max_new_tokens=n[0], use_cache=True).token_ids

    def no_cache() -> list[list[int]]:
        control.reset()
        return generate(model, builder, images, max_new_tokens=n[0], use_cache=False).token_ids

    def reference() -> list[list[int]]:
        control.reset()
        return reference_generate(model, builder, lexicon, pixels, n[0], timings=parts)

    sides = {OURS: ours, NO_CACHE: no_cache, REFERENCE: reference}
    log(
        f"decoding/{profile}: batch {batch}, {new_tokens} new tokens, warm-up {warmup} x {n[0]} tokens, "
        f"repeats {repeats}"
    )
    try:
        for _ in range(warmup):
            for fn in sides.values():
                fn()
        n[0] = new_tokens
        parts.clear()
        result = compare(sides, warmup=0, repeats=repeats)
        ref_runs[0] = repeats
    finally:
        control.remove()
    tokens = {side: result.outputs[side] for side in (OURS, NO_CACHE, REFERENCE)}
    lengths = sorted({len(row) for rows in tokens.values() for row in rows})
    mismatched = sum(a != b for a, b in zip(tokens[OURS], tokens[REFERENCE], strict=True))
    mismatched_nc = sum(a != b for a, b in zip(tokens[OURS], tokens[NO_CACHE], strict=True))
    generated = batch * new_tokens
    summary = result.summary()
    for side in summary:
        summary[side]["tokens_per_s"] = generated / result.median(side)
        summary[side]["label"] = SIDE_LABELS[side]
    share = {k: round(v / ref_runs[0], 4) for k, v in parts.items()}
    counts = model.count_parameters()
    out = {
        "profile": profile,
        "model": ("tiny_config(...)" if profile == "tiny" else "random_weights(full_config(...))")
        + " with vad_fusion, vad_head, contrastive; causal VAD encoder",
        "parameters": counts,
        "vocab_size": model.config.vocab_size,
        "tokenizer": f"tiny byte-level BPE ({len(tokenizer):,} tokens) on ArtEmis-mini texts"
        if profile == "tiny"
        else f"GPT-2-sized stand-in byte-level BPE ({len(tokenizer):,} tokens) on ArtEmis-mini texts + English words",
        "batch": batch,
        "new_tokens": new_tokens,
        "generated_tokens_per_run": generated,
        "token_lengths": lengths,
        "warmup": {"runs": warmup, "new_tokens": warmup_tokens or new_tokens},
        "sides": summary,
        "ratio_reference_over_ours": result.ratio(REFERENCE, OURS),
        "ratio_no_cache_over_ours": result.ratio(NO_CACHE, OURS),
        "ratio_reference_over_no_cache": result.ratio(REFERENCE, NO_CACHE),
        "reference_seconds_per_run_by_part": share,
        "identical_tokens": mismatched == 0 and mismatched_nc == 0,
        "samples_differing_reference": mismatched,
        "samples_differing_no_cache": mismatched_nc,
    }
    log(
        f"decoding/{profile}: ours {summary[OURS]['tokens_per_s']:.0f} tok/s, reference "
        f"{summary[REFERENCE]['tokens_per_s']:.0f} tok/s: {fmt_ratio(out['ratio_reference_over_ours'])}; "
        f"identical tokens: {out['identical_tokens']}"
    )
    return out


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options, run the configs, write ``decoding.json``; returns the result."""
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="tiny config batch (images)")
    parser.add_argument("--full-batch", type=int, default=4, help="full-size config batch (images)")
    parser.add_argument("--new-tokens", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats, tiny config")
    parser.add_argument("--full-repeats", type=int, default=2, help="timed repeats, full-size config")
    parser.add_argument("--skip-full", action="store_true", help="tiny config only")
    args = parser.parse_args(argv)
    run_info = setup_run(args)
    lexicon = load_bench_lexicon()
    texts = [u for _, u in synthetic_annotations(lexicon, 60 if args.quick else 400, seed=2024)]
    configs: list[dict[str, Any]] = []
    if args.quick:
        configs.append(
            bench_config(
                "tiny",
                lexicon,
                texts,
                batch=4,
                new_tokens=args.new_tokens,
                warmup=1,
                repeats=1,
                seed=args.seed,
            )
        )
    else:
        configs.append(
            bench_config(
                "tiny",
                lexicon,
                texts,
                batch=args.batch,
                new_tokens=args.new_tokens,
                warmup=1,
                repeats=args.repeats,
                seed=args.seed,
            )
        )
        if not args.skip_full:
            configs.append(
                bench_config(
                    "full",
                    lexicon,
                    texts,
                    batch=args.full_batch,
                    new_tokens=args.new_tokens,
                    warmup=1,
                    repeats=args.full_repeats,
                    seed=args.seed,
                    warmup_tokens=3,
                )
            )
    result = {
        "quick": args.quick,
        "what": "greedy decoding, tokens/s; ratio = reference-style median time / ours",
        "target": "reference / ours >= 10x at 25 new tokens, batch 64, tiny config",
        "configs": configs,
    }
    path = write_result("decoding", result, run_info, args.out_dir)
    log(f"written {path}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    result = run(argv)
    return 0 if all(c["identical_tokens"] for c in result["configs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
