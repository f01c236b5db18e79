"""Data pipeline speed: the VAD part of a training batch, by table lookup against per-item lemmatisation.

    python benchmarks/bench_data.py            # ~1 min on 2 cores
    python benchmarks/bench_data.py --quick    # seconds

Inputs: ArtEmis-mini annotations (the tiny profile's texts, generated in memory), encoded once by the
course's ``SequenceBuilder`` with the tiny BPE, then grouped into training batches of 64 sequences
(32 artworks, two annotations each) and right-padded as ``SequenceBuilder.collate`` does.

**Ours**: ``table[input_ids]`` (and ``known[input_ids]``) with the ``[vocab, 3]`` token VAD table from
``Lexicon.token_vad_table``, one indexing operation per batch (the model does exactly this in ``embed``).

**Reference style** (the reference's ``artEmisXTrainDataset.__getitem__``, VAD part): per item, the padded
token strings with GPT-2's ``Ġ`` removed, each one lemmatised and looked up afresh (no memo, as the
reference), a ``[T, 3]`` tensor per item, then stacked. As in ``bench_decoding``, the lemmatiser is the
course's ``lemminflect`` path (``common.fresh_word_vad``), cheaper than the reference's NLTK POS tagger +
WordNet lemmatiser, so the ratio is a lower bound. Both sides must give the same tensor: it is checked.

A second comparison times the whole batch build from encoded sequences (``collate`` + the VAD part) on both
sides. The reference also re-tokenises every item every epoch; that is left out here (it would only widen the
gap). The reference spreads ``__getitem__`` over DataLoader worker processes, which hides some of this cost on
a machine with idle cores, but it still costs CPU time every epoch; the table costs it once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    base_parser,
    compare,
    fmt_ratio,
    fresh_token_vad,
    load_bench_lexicon,
    log,
    setup_run,
    synthetic_annotations,
    write_result,
)


def make_batches(
    annotations: Sequence[tuple[str, str]], builder: Any, n_batches: int, batch_size: int, seed: int
) -> list[list[Any]]:
    """``n_batches`` lists of ``batch_size`` encoded sequences, drawn in a seeded order."""
    import numpy as np

    need = n_batches * batch_size
    if len(annotations) < batch_size:
        raise ValueError(f"need at least {batch_size} annotations for one batch, got {len(annotations)}")
    order = np.random.default_rng(seed).permutation(len(annotations))
    order = np.resize(order, need)
    encoded = [builder.encode(*annotations[i]) for i in order]
    return [encoded[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]


def reference_vad(tokenizer: Any, lexicon: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """The reference's per-item VAD: token strings without ``Ġ``, each looked up afresh, stacked ``[N, T, 3]``."""
    rows = []
    for ids in input_ids.tolist():
        words = [token.replace("\u0120", "") for token in tokenizer.convert_ids_to_tokens(ids)]
        rows.append(torch.tensor([fresh_token_vad(lexicon, w) for w in words], dtype=torch.float))
    return torch.stack(rows)


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options, time both sides, write ``data.json``; returns the result."""
    from sevlm_lib.text import SequenceBuilder, train_tiny_tokenizer

    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="sequences per batch (2 per artwork)")
    parser.add_argument("--batches", type=int, default=8, help="batches per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    run_info = setup_run(args)
    lexicon = load_bench_lexicon()
    annotations = synthetic_annotations(lexicon, 120 if args.quick else 400, seed=2024)
    tokenizer = train_tiny_tokenizer([u for _, u in annotations])
    builder = SequenceBuilder(tokenizer)
    table, known = lexicon.token_vad_table(tokenizer)
    n_batches = 2 if args.quick else args.batches
    batch_size = 16 if args.quick else args.batch
    repeats = 1 if args.quick else args.repeats
    batches = make_batches(annotations, builder, n_batches, batch_size, args.seed)
    collated = [builder.collate(b) for b in batches]
    items = n_batches * batch_size
    log(f"data: {n_batches} batches of {batch_size} sequences per repeat, {repeats} repeats")

    def ours_vad() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(table[b["input_ids"]], known[b["input_ids"]]) for b in collated]

    def reference_vad_part() -> list[torch.Tensor]:
        return [reference_vad(tokenizer, lexicon, b["input_ids"]) for b in collated]

    def ours_full() -> list[dict[str, torch.Tensor]]:
        out = []
        for seqs in batches:
            b = builder.collate(seqs)
            b["vad"], b["vad_known"] = table[b["input_ids"]], known[b["input_ids"]]
            out.append(b)
        return out

    def reference_full() -> list[dict[str, torch.Tensor]]:
        out = []
        for seqs in batches:
            b = builder.collate(seqs)
            b["vad"] = reference_vad(tokenizer, lexicon, b["input_ids"])
            out.append(b)
        return out

    vad_cmp = compare(
        {"ours": ours_vad, "reference": reference_vad_part}, warmup=1, repeats=repeats, inner={"ours": 50}
    )
    full_cmp = compare(
        {"ours": ours_full, "reference": reference_full}, warmup=1, repeats=repeats, inner={"ours": 5}
    )
    ours_out, ref_out = vad_cmp.outputs["ours"], vad_cmp.outputs["reference"]
    identical = all(torch.equal(a[0], b) for a, b in zip(ours_out, ref_out, strict=True))
    tokens = sum(int(b["attention_mask"].sum()) for b in collated)
    padded = sum(b["input_ids"].numel() for b in collated)

    def sides(cmp: Any) -> dict[str, Any]:
        s = cmp.summary()
        for side in s:
            s[side]["items_per_s"] = items / cmp.median(side)
        return s

    result = {
        "quick": args.quick,
        "what": "items/s to build the VAD part of training batches (and whole batches from encoded sequences)",
        "target": "ours / reference >= 20x (VAD part)",
        "tokenizer": f"tiny BPE ({len(tokenizer)} tokens) on ArtEmis-mini texts",
        "batch_sequences": batch_size,
        "batches_per_repeat": n_batches,
        "items_per_repeat": items,
        "real_tokens_per_repeat": tokens,
        "padded_tokens_per_repeat": padded,
        "vad_part": {
            "sides": sides(vad_cmp),
            "ratio_reference_over_ours": vad_cmp.ratio("reference", "ours"),
        },
        "whole_batch": {
            "sides": sides(full_cmp),
            "ratio_reference_over_ours": full_cmp.ratio("reference", "ours"),
        },
        "identical_vad": identical,
    }
    log(
        f"data: VAD part {fmt_ratio(result['vad_part']['ratio_reference_over_ours'])}, whole batch "
        f"{fmt_ratio(result['whole_batch']['ratio_reference_over_ours'])}; identical VAD: {identical}"
    )
    path = write_result("data", result, run_info, args.out_dir)
    log(f"written {path}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return 0 if run(argv)["identical_vad"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
