"""Tiny-CLIP pre-training of the tiny tower (issue 13): its cost, and what its features know about emotion.

    SEVLM_DATA_DIR=... SEVLM_CACHE_DIR=... python benchmarks/tower_pretraining.py   # ~1-2 min on 2 cores
    python benchmarks/tower_pretraining.py --steps 200 --lr 1e-3                     # other hyper-parameters
    python benchmarks/tower_pretraining.py --quick --out-dir /tmp/b                   # 10 steps: a smoke run

On the real ArtEmis-mini (``pipeline.load_course_data(get_settings())``, generated on first use) with the tiny
profile's tower (``tiny_config().vision``):

1. ``tower.pretrain_tiny_tower`` on the training split's (image, explanation) pairs with ``--seed``: wall
   seconds and CPU seconds of this process (``time.process_time``: on a loaded machine the wall time grows,
   the CPU time much less);
2. linear probes (``tower.linear_probe``) of the artworks' dominant emotion (ArtEmis rule; artworks without
   one are left out) from the tower's features: the mean patch feature of the *random* tower (the same
   initial weights the pre-training starts from) and of the *pre-trained* one, and all patch features
   flattened of the pre-trained one. Probes fit on ``train`` artworks; the L2 strength is chosen on ``val``
   (the best accuracy, ties to the stronger penalty); the chosen probe is scored once on ``test``;
3. the majority class (the most common dominant emotion of the training artworks) on ``val`` and ``test``;
4. top-1 image-to-text retrieval of the pre-trained pair over each split's artworks, each with its first
   explanation (chance: one over the number of artworks).

Hyper-parameters were tuned on the validation numbers only. The result goes to
``benchmarks/results/tower_pretraining.json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import base_parser, log, setup_run, write_result  # noqa: E402
from sevlm_lib import pipeline  # noqa: E402
from sevlm_lib.emotions import EMOTION_TO_IDX, EMOTIONS  # noqa: E402
from sevlm_lib.models.sevlm import tiny_config  # noqa: E402
from sevlm_lib.models.vision import build_vision_encoder  # noqa: E402
from sevlm_lib.settings import get_settings  # noqa: E402
from sevlm_lib.tower import (  # noqa: E402
    TowerPretraining,
    clip_from_state,
    encode_texts,
    linear_probe,
    pretrain_tiny_tower,
    retrieval_accuracy,
    tower_features,
    tower_from_state,
    training_texts,
)

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)  # fit_logistic_regression (lr 0.5) diverges at l2 = 10
SPLITS = ("train", "val", "test")


def labelled_keys(data: Any, split: str) -> tuple[list[tuple[str, str]], np.ndarray]:
    """A split's artworks that have a dominant emotion (ArtEmis rule), and their label indices."""
    rows = data.artworks[(data.artworks["split"] == split) & data.artworks["dominant"].notna()]
    keys = list(zip(rows["art_style"], rows["painting"], strict=True))
    return keys, np.asarray([EMOTION_TO_IDX[e] for e in rows["dominant"]], dtype=np.int64)


def probe(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    """Choose the L2 strength on ``val``, then score that probe once on ``test``."""
    val = {
        l2: linear_probe(
            features["train"],
            labels["train"],
            features["val"],
            labels["val"],
            seed,
            n_classes=len(EMOTIONS),
            l2=l2,
        )
        for l2 in L2_GRID
    }
    best = max(sorted(val, reverse=True), key=lambda l2: val[l2])  # ties: the stronger penalty
    test = linear_probe(
        features["train"],
        labels["train"],
        features["test"],
        labels["test"],
        seed,
        n_classes=len(EMOTIONS),
        l2=best,
    )
    return {"val_by_l2": {str(k): v for k, v in val.items()}, "l2": best, "val": val[best], "test": test}


def retrieval(model: Any, data: Any, keys: Sequence[tuple[str, str]], max_tokens: int) -> float:
    """Top-1 image-to-text retrieval over ``keys``, each artwork with its first explanation."""
    first = data.annotations.groupby(["art_style", "painting"], sort=True)["utterance"].first()
    ids, mask = encode_texts(data.tokenizer, [first[k] for k in keys], max_tokens)
    with torch.no_grad():
        images = model.encode_image(data.images.batch(list(keys))["pixel_values"])
        texts = model.encode_text(ids, mask)
    return retrieval_accuracy(images, texts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    defaults = TowerPretraining()
    for name, value in asdict(defaults).items():
        kind = (lambda s: s.lower() in ("1", "true", "yes")) if isinstance(value, bool) else type(value)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    args = parser.parse_args(argv)
    run = setup_run(args)
    hyper = {name: getattr(args, name) for name in asdict(defaults)}
    if args.quick:  # a smoke run: the numbers mean nothing
        hyper.update(steps=10, warmup_steps=1)
    settings = get_settings()
    log(f"loading ArtEmis-mini from {settings.data_dir} (generated on first use)")
    data = pipeline.load_course_data(settings, progress=False)
    vision_config = tiny_config().vision
    texts = training_texts(data.annotations)
    log(
        f"pre-training on {len(texts)} training artworks, {sum(map(len, texts.values()))} explanations: {hyper}"
    )
    wall, cpu = time.perf_counter(), time.process_time()
    state = pretrain_tiny_tower(
        data.images,
        texts,
        data.tokenizer,
        vision_config,
        train_keys=data.artwork_keys("train"),
        seed=args.seed,
        progress=not settings.quiet,
        **hyper,
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    log(f"pre-training: {wall:.1f} s wall, {cpu:.1f} s CPU")
    torch.manual_seed(args.seed)  # the initial weights of the pre-training (the tower is built first there)
    random_tower = build_vision_encoder(vision_config)
    trained_tower = tower_from_state(state, vision_config)
    keys, labels = {}, {}
    for split in SPLITS:
        keys[split], labels[split] = labelled_keys(data, split)
    pooled_random, pooled_trained, flat_trained = {}, {}, {}
    for split in SPLITS:
        pooled_random[split], _ = tower_features(random_tower, data.images, keys[split])
        pooled_trained[split], flat_trained[split] = tower_features(trained_tower, data.images, keys[split])
    log("fitting the linear probes")
    probes = {
        "pooled_random": probe(pooled_random, labels, args.seed),
        "pooled_pretrained": probe(pooled_trained, labels, args.seed),
        "flat_pretrained": probe(flat_trained, labels, args.seed),
    }
    majority = int(np.bincount(labels["train"], minlength=len(EMOTIONS)).argmax())
    model = clip_from_state(state, vision_config, data.tokenizer)
    result = {
        "seed": args.seed,
        "pretraining": hyper,
        "data_fingerprint": data.fingerprint,
        "n_train_artworks_pretraining": len(texts),
        "n_scored": {split: len(keys[split]) for split in SPLITS},
        "tower_pretrain_seconds": round(wall, 1),
        "tower_pretrain_cpu_seconds": round(cpu, 1),
        "torch_threads": torch.get_num_threads(),
        "probe_acc_pooled_random": probes["pooled_random"]["test"],
        "probe_acc_pooled_pretrained": probes["pooled_pretrained"]["test"],
        "probe_acc_flat_pretrained": probes["flat_pretrained"]["test"],
        "majority_emotion": EMOTIONS[majority],
        "majority_acc": {s: float(np.mean(labels[s] == majority)) for s in ("val", "test")},
        "probes": probes,
        "retrieval_top1": {
            s: retrieval(model, data, data.artwork_keys(s), hyper["max_tokens"]) for s in ("val", "test")
        },
        "retrieval_chance": {s: 1 / len(data.artwork_keys(s)) for s in ("val", "test")},
    }
    path = write_result("tower_pretraining", result, run, args.out_dir)
    for name, p in probes.items():
        print(f"{name:>18}: val {p['val']:.3f} (l2 {p['l2']:g}), test {p['test']:.3f}")
    print(
        f"{'majority':>18}: val {result['majority_acc']['val']:.3f}, test {result['majority_acc']['test']:.3f}"
    )
    print(f"{'retrieval top-1':>18}: {result['retrieval_top1']}")
    print(f"pre-training {wall:.1f} s wall, {cpu:.1f} s CPU; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
