"""Recipes shared by the notebooks and the command line: load the course data, build, train, evaluate.

Both profiles go through the same functions; only the :class:`Recipe` and the data paths differ.

* ``load_course_data(settings)`` -> :class:`CourseData` (annotations with splits, per-artwork histograms,
  tokenizer, sequence builder, VAD lexicon and token VAD table, images);
* ``build_model(data, config, seed)`` -> a SEVLM with the token VAD table installed;
* ``train_model(data, config, recipe, seed, name)`` -> trained model + history ("load if finished, else train");
* ``evaluate_model(model, data, split)`` -> metrics + a per-artwork predictions table.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from sevlm_lib.data import artemis
from sevlm_lib.data.datasets import (
    ArtworkKey,
    ImageSource,
    PairBatches,
    TensorBank,
    feature_bank,
    load_pixel_bank,
)
from sevlm_lib.emotions import EMOTIONS
from sevlm_lib.metrics import CaptionScorer
from sevlm_lib.models.sevlm import SEVLM, SEVLMConfig, full_config, tiny_config
from sevlm_lib.models.vision import image_transform
from sevlm_lib.settings import Settings, get_settings, seed_everything
from sevlm_lib.text import SequenceBuilder, load_gpt2_tokenizer, save_tokenizer_info, tiny_tokenizer

if TYPE_CHECKING:
    from sevlm_lib.training import TrainConfig

MIN_WORDS, MAX_WORDS = 5, 30  # ArtEmis's own preprocessing keeps utterances of 5..30 tokens


@dataclass
class Recipe:
    """How to train: optimiser, batch, steps. ``tiny`` trains from scratch (higher LR); ``full`` fine-tunes."""

    lr: float = 3e-3
    vad_lr: float = 6e-3
    batch_size: int = 32  # artworks per batch (= 2x sequences)
    max_steps: int | None = 600
    epochs: int | None = None  # passes over the training artworks; give this or max_steps
    eval_every: int | None = None
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1  # batches per optimizer step (effective batch = batch_size x this)
    max_len: int = 30
    max_new_tokens: int = 25
    mixed_precision: str = "auto"
    checkpoint_every: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def train_config(self, *, seed: int, device: str, evaluate: bool = True) -> TrainConfig:
        """The training engine's ``TrainConfig`` for this recipe (``evaluate=False``: no periodic evaluation)."""
        from sevlm_lib.training import TrainConfig

        return TrainConfig(
            seed=seed,
            max_steps=self.max_steps,
            epochs=self.epochs,
            lr=self.lr,
            max_grad_norm=self.max_grad_norm,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            eval_every=self.eval_every if evaluate else None,
            checkpoint_every=self.checkpoint_every,
            mixed_precision=self.mixed_precision,
            device=device,
        )


def recipe_for(profile: str, **overrides: Any) -> Recipe:
    """The default recipe of a profile, with overrides. ``full`` is the paper's: LR 2e-5/4e-5, batch 32."""
    if profile == "full":
        base = Recipe(lr=2e-5, vad_lr=4e-5, batch_size=32, max_steps=None, epochs=35, eval_every=2000,
                      checkpoint_every=1000)
    elif profile == "tiny":
        base = Recipe()
    else:
        raise ValueError(f"unknown profile {profile!r}: expected 'tiny' or 'full'")
    return Recipe(**{**base.to_dict(), **overrides})


def model_config_for(profile: str, **switches: Any) -> SEVLMConfig:
    """The architecture of a profile (``tiny_config`` or ``full_config``) with switches."""
    return full_config(**switches) if profile == "full" else tiny_config(**switches)


def word_count(text: str) -> int:
    return len(text.split())


@dataclass
class CourseData:
    """Everything a notebook needs about the data, loaded once."""

    settings: Settings
    annotations: pd.DataFrame
    artworks: pd.DataFrame
    tokenizer: Any
    builder: SequenceBuilder
    lexicon: Any
    token_vad: tuple[torch.Tensor, torch.Tensor]
    images: ImageSource
    image_size: int
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def profile(self) -> str:
        return self.settings.profile

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the annotations and tokenizer, so checkpoints are reused only for the same data."""
        h = hashlib.sha256()
        cols = ["art_style", "painting", "emotion", "utterance", "split"]
        h.update(pd.util.hash_pandas_object(self.annotations[cols], index=False).values.tobytes())
        h.update(str(len(self.tokenizer)).encode())
        h.update(str(self.image_size).encode())
        return h.hexdigest()[:16]

    def split(self, name: str) -> pd.DataFrame:
        """The annotations of one split (``train``, ``val``, ``test`` or ``rest``)."""
        return self.annotations[self.annotations["split"] == name]

    def pair_items(self, split: str = "train") -> list[artemis.ArtworkAnnotations]:
        return artemis.pair_items(self.split(split))

    def artwork_keys(self, split: str) -> list[ArtworkKey]:
        rows = self.artworks[self.artworks["split"] == split]
        return list(zip(rows["art_style"], rows["painting"], strict=True))

    def references(self, split: str) -> dict[ArtworkKey, list[str]]:
        """All human explanations of each artwork of a split."""
        df = self.split(split)
        return {k: list(g["utterance"]) for k, g in df.groupby(["art_style", "painting"], sort=True)}

    def gold(self, split: str, rule: str = "artemis") -> dict[ArtworkKey, str | None]:
        rows = self.artworks[self.artworks["split"] == split]
        col = "dominant" if rule == "artemis" else f"dominant_{rule}"
        return dict(zip(zip(rows["art_style"], rows["painting"], strict=True), rows[col], strict=True))


def _filter_lengths(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    n_words = df["utterance"].map(word_count)
    short, long = n_words < MIN_WORDS, n_words > MAX_WORDS
    dropped = {"too_short": int(short.sum()), "too_long": int(long.sum())}
    return df[~(short | long)].reset_index(drop=True), dropped


def load_course_data(
    settings: Settings | None = None,
    *,
    image_size: int | None = None,
    max_len: int = 30,
    lexicon: Any = None,
    progress: bool | None = None,
) -> CourseData:
    """Load annotations, splits, tokenizer, lexicon and images for the settings' profile.

    tiny: ArtEmis-mini (generated on first use), a BPE trained on its training explanations, 64-px images
    held in memory. full: the ArtEmis CSV and WikiArt images from settings, GPT-2's tokenizer, images read
    lazily (or use the CLIP feature cache). Utterances under 5 or over 30 words are dropped as in ArtEmis's
    preprocessing, and the counts are reported in ``dropped``.
    """
    from sevlm_lib.data.datasets import LazyImages
    from sevlm_lib.vad import load_lexicon

    settings = settings or get_settings()
    progress = (not settings.quiet) if progress is None else progress
    if settings.profile == "tiny":
        from sevlm_lib.data.mini import ensure_artemis_mini, mini_image_root

        csv = ensure_artemis_mini(settings)
        image_root = mini_image_root(settings)
        image_size = image_size or tiny_config().vision.image_size
    else:
        csv = settings.artemis_csv
        image_root = settings.wikiart_dir
        image_size = image_size or full_config().vision.image_size
    raw = artemis.load_artemis(csv)
    df, dropped = _filter_lengths(raw)
    df = artemis.split_artemis(df, seed=2021)
    hist = artemis.emotion_histograms(df)
    split_of = df.drop_duplicates(["art_style", "painting"]).set_index(["art_style", "painting"])["split"]
    hist["split"] = [split_of[(a, p)] for a, p in zip(hist["art_style"], hist["painting"], strict=True)]
    hist["dominant"] = artemis.dominant_emotions(hist, rule="artemis")
    hist["dominant_strict"] = artemis.dominant_emotions(hist, rule="strict")
    hist["entropy"] = artemis.annotator_entropy(hist)
    if settings.profile == "tiny":
        tokenizer = tiny_tokenizer(list(df.loc[df["split"] == "train", "utterance"]), settings.cache_dir)
    else:
        tokenizer = load_gpt2_tokenizer()
    builder = SequenceBuilder(tokenizer, max_len=max_len)
    lexicon = lexicon if lexicon is not None else load_lexicon(
        "nrc" if settings.profile == "full" and settings.nrc_vad.is_file() else "warriner", settings=settings
    )
    token_vad = lexicon.token_vad_table(tokenizer)
    resolver = artemis.ImageResolver(image_root)
    transform = image_transform(image_size)
    keys = list(zip(hist["art_style"], hist["painting"], strict=True))
    if settings.profile == "tiny":
        images: ImageSource = load_pixel_bank(keys, resolver, transform, progress=progress)
    else:
        images = LazyImages(resolver, transform)
    return CourseData(settings, df, hist, tokenizer, builder, lexicon, token_vad, images, image_size, dropped)


def build_model(data: CourseData, config: SEVLMConfig, seed: int) -> SEVLM:
    """A fresh SEVLM for ``data``'s tokenizer, seeded, with the token VAD table installed."""
    seed_everything(seed)
    cfg = config.with_tokenizer(data.tokenizer)
    if cfg.vision.image_size != data.image_size:
        d = cfg.to_dict()
        d["vision"]["image_size"] = data.image_size
        cfg = SEVLMConfig.from_dict(d)
    model = SEVLM(cfg)
    model.set_token_vad(*data.token_vad)
    return model


def image_source_for(model: SEVLM, data: CourseData, use_features: bool = True) -> ImageSource:
    """Cached frozen-tower features when possible, else the raw images (the live encoder).

    Images held in memory (tiny profile) are encoded once into an in-memory bank; images read lazily (full
    profile) come from a matching on-disk feature cache (``sevlm_lib.features``: same encoder weights, every
    artwork present) when one exists under ``{cache_dir}/features``.
    """
    if use_features and model.config.vision.frozen:
        if isinstance(data.images, TensorBank):
            return feature_bank(model.vision, data.images)
        from sevlm_lib.features import find_feature_cache

        keys = list(zip(data.artworks["art_style"], data.artworks["painting"], strict=True))
        cache = find_feature_cache(data.settings, model.config, vision=model.vision, keys=keys)
        if cache is not None:
            return cache
    return data.images


@dataclass
class TrainedModel:
    model: SEVLM
    history: Any
    name: str
    seed: int
    checkpoint_dir: Path
    train_seconds: float


def train_model(
    data: CourseData,
    config: SEVLMConfig,
    recipe: Recipe,
    *,
    seed: int,
    name: str,
    use_features: bool = True,
    eval_fn: Any = None,
    resume: bool = True,
) -> TrainedModel:
    """Train one variant on the training split's two-annotation items ("load if finished, else train").

    Every variant (baseline included) sees the same pair batches, so ablations differ only in the model.
    Checkpoints go to ``{checkpoint_dir}/{name}/seed-{seed}`` and logs to ``{runs_dir}/train/{name}/seed-{seed}``.
    """
    from sevlm_lib.training import train_or_load

    settings = data.settings
    model = build_model(data, config, seed)
    source = image_source_for(model, data, use_features)
    batches = PairBatches(data.pair_items("train"), data.builder, source, batch_size=recipe.batch_size, seed=seed)
    train_cfg = recipe.train_config(seed=seed, device=settings.device)
    ckpt = settings.checkpoint_dir / name / f"seed-{seed}"
    run_dir = settings.runs_dir / "train" / name / f"seed-{seed}"

    def save_extra(folder: Path) -> None:
        save_tokenizer_info(data.tokenizer, folder / "tokenizer")
        (folder / "model_config.json").write_text(json.dumps(model.config.to_dict(), indent=1))

    t0 = time.perf_counter()
    history = train_or_load(
        model,
        train_cfg,
        batches.batches,
        len(batches),
        checkpoint_dir=ckpt,
        run_dir=run_dir,
        eval_fn=eval_fn,
        param_groups=model.parameter_groups(recipe.lr, recipe.vad_lr),
        save_extra=save_extra,
        fingerprint_extra={"model": model.config.to_dict(), "data": data.fingerprint, "recipe": recipe.to_dict()},
        quiet=settings.quiet,
    )
    seconds = float(getattr(history, "train_seconds", None) or (time.perf_counter() - t0))
    model.eval()
    return TrainedModel(model, history, name, seed, ckpt, seconds)


def generate_for_split(
    model: SEVLM, data: CourseData, split: str = "test", *, batch_size: int = 128, max_new_tokens: int = 25,
    use_features: bool = True, use_cache: bool | None = None,
) -> pd.DataFrame:
    """Greedy generations for every artwork of a split: one row per artwork with emotion and explanation.

    ``use_cache=None`` keeps the KV cache unless the model has a non-causal VAD encoder, which cannot decode
    incrementally and must re-run the whole sequence at every step (the reference's way).
    """
    from sevlm_lib.generation import emotion_distribution, generate

    if use_cache is None:
        use_cache = not (model.config.vad_fusion and not model.config.vad_encoder.causal)
    keys = data.artwork_keys(split)
    source = image_source_for(model, data, use_features)
    device = next(model.decoder.parameters()).device
    rows: list[dict[str, Any]] = []
    for i in range(0, len(keys), batch_size):
        chunk = keys[i : i + batch_size]
        batch = {k: v.to(device) for k, v in source.batch(chunk).items()}
        gen = generate(model, data.builder, batch, max_new_tokens=max_new_tokens, use_cache=use_cache)
        probs = emotion_distribution(model, data.builder, batch).cpu().numpy()
        for k, p, pr in zip(chunk, gen.parsed, probs, strict=True):
            rows.append({"art_style": k[0], "painting": k[1], "text": p.text, "emotion": p.emotion,
                         "explanation": p.explanation, "has_because": p.has_because,
                         "p_max_emotion": EMOTIONS[int(np.argmax(pr))], **{f"p_{e}": float(x) for e, x in zip(EMOTIONS, pr, strict=True)}})
    return pd.DataFrame(rows)


def evaluate_model(
    model: SEVLM,
    data: CourseData,
    split: str = "test",
    *,
    scorer: Any = None,
    classifier: Any = None,
    max_new_tokens: int = 25,
    predictions: pd.DataFrame | None = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Emo-A (both rules), BLEU-1..4/ROUGE-L/CIDEr (+METEOR with a METEOR-enabled ``scorer``), VAD error,
    Emo-Align (when a ``classifier`` is given) and diversity, on the explanations only."""
    from sevlm_lib import metrics

    preds = predictions if predictions is not None else generate_for_split(
        model, data, split, max_new_tokens=max_new_tokens)
    keys = list(zip(preds["art_style"], preds["painting"], strict=True))
    gold = data.gold(split, "artemis")
    gold_strict = data.gold(split, "strict")
    refs = data.references(split)
    out: dict[str, float] = {
        "emo_acc": metrics.emotion_accuracy(list(preds["emotion"]), [gold[k] for k in keys]),
        "emo_acc_strict": metrics.emotion_accuracy(list(preds["emotion"]), [gold_strict[k] for k in keys]),
        "emo_acc_dist": metrics.emotion_accuracy(list(preds["p_max_emotion"]), [gold[k] for k in keys]),
        "valid_emotion": float(preds["emotion"].notna().mean()),
    }
    own = scorer or metrics.CaptionScorer(tokenizer="simple", meteor=False)
    expl = {k: (e if e else "") for k, e in zip(keys, preds["explanation"], strict=True)}
    caption = own.score(expl, {k: refs[k] for k in keys})
    out.update({k: caption[k] for k in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider", "meteor")
                if caption.get(k) is not None})
    vad = metrics.vad_error_report(list(expl.values()), [refs[k] for k in keys], data.lexicon)
    out["vad_err"] = vad.error
    if classifier is not None:
        out["emo_align"] = metrics.emo_align(classifier, list(expl.values()), [gold[k] for k in keys])
    div = metrics.diversity(list(expl.values()), data.split("train")["utterance"])
    out.update({f"div_{k}": v for k, v in div.items()})
    out["n_artworks"] = float(len(keys))
    return out, preds


def train_emotion_classifier(data: CourseData, seed: int = 0) -> Any:
    """The Emo-Align classifier, trained on the training split's human explanations (cached in cache_dir)."""
    from sevlm_lib.metrics import EmotionClassifier

    folder = data.settings.cache_dir / "emo_align" / f"{data.fingerprint}-seed{seed}"
    if (folder / "config.json").is_file():
        return EmotionClassifier.load(folder)
    train = data.split("train")
    clf = EmotionClassifier()
    clf.fit(list(train["utterance"]), list(train["emotion"]), seed=seed)
    clf.save(folder)
    return clf


def majority_accuracy(data: CourseData, split: str = "test", rule: str = "artemis") -> float:
    """Accuracy of always predicting the most frequent dominant emotion of the training artworks."""
    train_gold = [g for g in data.gold("train", rule).values() if g is not None]
    top = pd.Series(train_gold).value_counts().index[0]
    gold = [g for g in data.gold(split, rule).values() if g is not None]
    return float(np.mean([g == top for g in gold]))


def write_metrics(settings: Settings, notebook: str, values: dict[str, Any]) -> Path:
    """Write ``{runs_dir}/{notebook}/metrics.json`` (sorted keys, atomically)."""
    folder = settings.run_dir(notebook)
    path = folder / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(values, indent=1, sort_keys=True, default=_jsonable))
    tmp.replace(path)
    return path


def read_metrics(settings: Settings, notebook: str) -> dict[str, Any] | None:
    path = settings.runs_dir / notebook / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} to metrics.json")


def seeds_table(rows: Sequence[dict[str, Any]], metrics_: Sequence[str]) -> pd.DataFrame:
    """Mean and std over seeds per variant: rows of ``{"variant":..., "seed":..., metric: value}``."""
    df = pd.DataFrame(rows)
    agg = df.groupby("variant", sort=False)[list(metrics_)].agg(["mean", "std"])
    return agg


SEEDS: tuple[int, ...] = (0, 1, 2)


def run_name(config: SEVLMConfig) -> str:
    """The checkpoint/run name of a variant, shared by every notebook (so a run trained once is reused)."""
    name = config.variant
    if config.vad_fusion and not config.vad_encoder.causal:
        name += "-noncausal"
    return name


def train_and_evaluate(
    data: CourseData,
    config: SEVLMConfig,
    seeds: Sequence[int] = SEEDS,
    recipe: Recipe | None = None,
    *,
    split: str = "test",
    classifier: Any = None,
    name: str | None = None,
) -> list[dict[str, Any]]:
    """Train (or load) one variant for each seed and evaluate it; one row of metrics per seed.

    Evaluations are cached in ``{runs_dir}/eval/{name}/seed-{seed}.json`` next to the checkpoint they came from
    (keyed by the data fingerprint), so the comparison notebook reads them back in seconds.
    """
    recipe = recipe or recipe_for(data.profile)
    name = name or run_name(config)
    classifier = classifier if classifier is not None else train_emotion_classifier(data)
    rows = []
    for seed in seeds:
        cache = data.settings.runs_dir / "eval" / name / f"seed-{seed}.json"
        trained = train_model(data, config, recipe, seed=seed, name=name)
        key = {"data": data.fingerprint, "recipe": recipe.to_dict(), "split": split,
               "model": trained.model.config.to_dict()}
        if cache.is_file():
            saved = json.loads(cache.read_text())
            if saved.get("key") == key:
                rows.append(saved["row"])
                continue
        metrics, _ = evaluate_model(trained.model, data, split, classifier=classifier,
                                    max_new_tokens=recipe.max_new_tokens)
        row = {"variant": name, "seed": seed, "train_seconds": trained.train_seconds,
               "n_params": trained.model.count_parameters()["trainable"], **metrics}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "row": row}, indent=1, default=_jsonable))
        rows.append(row)
    return rows


def load_trained(data: CourseData, config: SEVLMConfig, seed: int, recipe: Recipe | None = None,
                 name: str | None = None) -> TrainedModel:
    """The trained model of a variant and seed (trains it first when no finished run exists)."""
    return train_model(data, config, recipe or recipe_for(data.profile), seed=seed, name=name or run_name(config))


# ---------------------------------------------------------------------------------------------------------
# VAD head analysis (notebook 04)
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def teacher_forced_vad(
    model: SEVLM,
    builder: SequenceBuilder,
    images: ImageSource,
    items: Sequence[dict[str, str]],
    *,
    batch_size: int = 128,
    hidden: bool = False,
) -> dict[str, np.ndarray]:
    """Teacher-force ``items`` (dicts with ``art_style, painting, emotion, utterance``) through ``model`` and
    collect, at every position the VAD loss scores (next token known, in the explanation segment, real):

    ``target`` ``[M, 3]`` the next token's VAD; ``lm`` ``[M, 3]`` the VAD implied by the model's next-word
    distribution (:func:`sevlm_lib.models.heads.implied_vad`); ``head`` ``[M, 3]`` the VAD head's prediction
    (only when the model has one); ``item`` ``[M]`` the index into ``items``; ``offset`` ``[M]`` the position
    minus that of `` because`` (0: reading `` because``, predicting the explanation's first token); and
    with ``hidden=True`` the decoder's last hidden states ``hidden`` ``[M, d]``. ``images`` must match the
    model (``image_source_for(model, data)``). The model is put in eval mode.
    """
    from sevlm_lib.data.datasets import CaptionBatches
    from sevlm_lib.models.heads import implied_vad

    if not items:
        raise ValueError("teacher_forced_vad: no items")
    model.eval()
    device = next(model.parameters()).device
    batches = CaptionBatches(list(items), builder, images, batch_size=batch_size, shuffle=False)
    keys = ("target", "lm", "head", "item", "offset", "hidden")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    first = 0
    for batch in batches.batches():
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(batch)
        nxt = batch["input_ids"][:, 1:]
        seg = batch["explanation_segment"]
        mask = model.token_vad_known[nxt] & seg[:, 1:] & batch["attention_mask"][:, 1:].bool()
        n, t = nxt.shape
        rows = torch.arange(first, first + n, device=device)[:, None].expand(n, t)
        offset = torch.arange(t, device=device)[None] - seg.long().argmax(1, keepdim=True)
        parts["target"].append(model.token_vad[nxt][mask])
        parts["lm"].append(implied_vad(out.logits[:, :-1], model.token_vad, model.token_vad_known)[mask])
        parts["item"].append(rows[mask])
        parts["offset"].append(offset[mask])
        if out.vad_pred is not None:
            parts["head"].append(out.vad_pred[:, :-1].float()[mask])
        if hidden:
            parts["hidden"].append(out.hidden_states[:, :-1].float()[mask])
        first += n
    return {k: torch.cat(v).cpu().numpy() for k, v in parts.items() if v}


# ---------------------------------------------------------------------------------------------------------
# Contrastive head analysis (notebook 05)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PairEmbeddings:
    """The contrastive head's three embeddings for every sequence of a split's two-annotation items.

    ``image``, ``emotion``, ``explanation``: ``[N, d]`` (the image embedding repeated for both sequences of an
    artwork); ``table``: one row per sequence (``art_style, painting, slot, emotion, utterance, dominant,
    batch``); ``scores``: the head's ``pos``, ``neg_emotion`` and ``neg_visual`` scores ``[N]`` when the model
    has a contrastive head, else ``None``.
    """

    image: torch.Tensor
    emotion: torch.Tensor
    explanation: torch.Tensor
    table: pd.DataFrame
    scores: dict[str, torch.Tensor] | None = None


@torch.no_grad()
def pair_embeddings(
    model: SEVLM,
    data: CourseData,
    split: str = "test",
    *,
    batch_size: int = 32,
    seed: int = 0,
    images: ImageSource | None = None,
) -> PairEmbeddings:
    """Teacher-force every two-annotation item of ``split`` and collect the contrastive head's embeddings.

    Items come in ``pair_items`` order; each artwork's two annotations are drawn with
    ``np.random.default_rng(seed)`` (as in training, two different emotions) and batched like
    :class:`PairBatches` (``[a0, a0', a1, a1', ...]``); a last batch of one artwork joins the one before, so
    every item is used. The negative-2 derangement of batch ``b`` is drawn with torch seed
    ``seed * 1_000_003 + b`` without touching the global random state. ``images``: the model's image source
    (``image_source_for(model, data)``, computed when not given; pass it to reuse a feature bank across
    calls). The model is put in eval mode.
    """
    from sevlm_lib.data.artemis import sample_pair
    from sevlm_lib.models.heads import masked_mean

    items = data.pair_items(split)
    if len(items) < 2:
        raise ValueError(
            f"pair_embeddings: split {split!r} has {len(items)} artworks with two distinct emotions; need 2+"
        )
    if batch_size < 2:
        raise ValueError(f"pair_embeddings: batch_size={batch_size}, need at least 2 artworks per batch")
    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if len(chunks[-1]) == 1:
        lone = chunks.pop()
        chunks[-1] = chunks[-1] + lone
    model.eval()
    device = next(model.decoder.parameters()).device
    source = images if images is not None else image_source_for(model, data)
    dominant = dict(
        zip(
            zip(data.artworks["art_style"], data.artworks["painting"], strict=True),
            data.artworks["dominant"],
            strict=True,
        )
    )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("image", "emotion", "explanation", "pos", "neg_emotion", "neg_visual")
    }
    rows: list[dict[str, Any]] = []
    for b, chunk in enumerate(chunks):
        seqs = []
        for it in chunk:
            pair = sample_pair(it, rng)
            for slot, (emotion, utterance) in enumerate(pair):
                seqs.append(data.builder.encode(emotion, utterance))
                rows.append(
                    {
                        "art_style": it.art_style,
                        "painting": it.painting,
                        "slot": slot,
                        "emotion": emotion,
                        "utterance": utterance,
                        "dominant": dominant[(it.art_style, it.painting)],
                        "batch": b,
                    }
                )
        batch = data.builder.collate(seqs)
        batch.update(source.batch([(it.art_style, it.painting) for it in chunk]))
        batch["image_index"] = torch.arange(len(chunk)).repeat_interleave(2)
        batch["pair_index"] = torch.arange(2 * len(chunk)) ^ 1
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + b)
            out = model(batch)
        parts["image"].append(model.encode_images(batch).mean(1)[batch["image_index"]].float().cpu())
        parts["emotion"].append(masked_mean(out.hidden_states.float(), batch["emotion_mask"]).cpu())
        parts["explanation"].append(masked_mean(out.hidden_states.float(), batch["explanation_mask"]).cpu())
        for k, v in (out.scores or {}).items():
            parts[k].append(v.float().cpu())
    scores = {k: torch.cat(parts[k]) for k in ("pos", "neg_emotion", "neg_visual") if parts[k]} or None
    return PairEmbeddings(
        torch.cat(parts["image"]),
        torch.cat(parts["emotion"]),
        torch.cat(parts["explanation"]),
        pd.DataFrame(rows),
        scores,
    )


# ---------------------------------------------------------------------------------------------------------
# Notebook 07: the Show-Attend-Tell baseline, the image-only classifier, cached comparison rows, attention
# ---------------------------------------------------------------------------------------------------------

SAT_NAME = "sat"
SEVLM_VARIANTS: tuple[str, ...] = ("baseline", "+fusion", "+head", "+contrastive", "full")


def variant_config(profile: str, variant: str) -> SEVLMConfig:
    """The config of a named variant (``baseline``, ``+fusion``, ``+head``, ``+contrastive``, ``full``)."""
    switches = {
        "baseline": {},
        "+fusion": {"vad_fusion": True},
        "+head": {"vad_head": True},
        "+contrastive": {"contrastive": True},
        "full": {"vad_fusion": True, "vad_head": True, "contrastive": True},
    }
    if variant not in switches:
        raise ValueError(f"unknown variant {variant!r}: expected one of {', '.join(switches)}")
    return model_config_for(profile, **switches[variant])


def sat_config_for(data: CourseData, **overrides: Any) -> Any:
    """The Show-Attend-Tell speaker for ``data``: the profile's frozen vision tower, ``data``'s tokenizer.

    tiny: 64-wide embeddings and LSTM (~0.23M trainable parameters, about the tiny SEVLM's 0.2M); full:
    ArtEmis-like sizes (embeddings 128, LSTM 512, attention 512) over CLIP's patches.
    """
    from dataclasses import replace

    from sevlm_lib.models.sat import SATConfig

    vision = replace(model_config_for(data.profile).vision, image_size=data.image_size)
    sizes: dict[str, Any] = {}
    if data.profile == "full":
        sizes = {"embed_dim": 128, "hidden_size": 512, "attention_dim": 512, "emotion_dim": 32}
    b = data.builder
    return SATConfig(
        vision=vision,
        vocab_size=len(data.tokenizer),
        pad_id=b.pad_id,
        bos_id=b.bos_id,
        eos_id=b.eos_id,
        emotion_token_ids=[list(b.emotion_ids[e]) for e in EMOTIONS],
        **{**sizes, **overrides},
    )


def train_sat(
    data: CourseData,
    seed: int,
    recipe: Recipe | None = None,
    *,
    config: Any = None,
    name: str = SAT_NAME,
) -> TrainedModel:
    """Train (or load, "load if finished, else train") the Show-Attend-Tell speaker on the pair batches every
    SEVLM variant sees, with the same training engine and recipe (one learning rate: ``recipe.lr``).

    Checkpoints go to ``{checkpoint_dir}/{name}/seed-{seed}``, logs to ``{runs_dir}/train/{name}/seed-{seed}``.
    """
    from sevlm_lib.models.sat import SATSpeaker
    from sevlm_lib.training import train_or_load

    settings = data.settings
    recipe = recipe or recipe_for(data.profile)
    config = config or sat_config_for(data)
    seed_everything(seed)
    model = SATSpeaker(config)
    source = image_source_for(model, data)  # type: ignore[arg-type]
    batches = PairBatches(
        data.pair_items("train"), data.builder, source, batch_size=recipe.batch_size, seed=seed
    )
    train_cfg = recipe.train_config(seed=seed, device=settings.device, evaluate=False)

    def save_extra(folder: Path) -> None:
        save_tokenizer_info(data.tokenizer, folder / "tokenizer")
        (folder / "sat_config.json").write_text(json.dumps(config.to_dict(), indent=1))

    t0 = time.perf_counter()
    history = train_or_load(
        model,
        train_cfg,
        batches.batches,
        len(batches),
        checkpoint_dir=settings.checkpoint_dir / name / f"seed-{seed}",
        run_dir=settings.runs_dir / "train" / name / f"seed-{seed}",
        save_extra=save_extra,
        fingerprint_extra={"sat": config.to_dict(), "data": data.fingerprint, "recipe": recipe.to_dict()},
        quiet=settings.quiet,
    )
    seconds = float(getattr(history, "train_seconds", None) or (time.perf_counter() - t0))
    model.eval()
    return TrainedModel(model, history, name, seed, settings.checkpoint_dir / name / f"seed-{seed}", seconds)  # type: ignore[arg-type]


def image_root_for(settings: Settings) -> Path:
    """Where the profile's artwork images live (ArtEmis-mini's images, or the WikiArt folder)."""
    if settings.profile == "tiny":
        from sevlm_lib.data.mini import mini_image_root

        return mini_image_root(settings)
    return settings.wikiart_dir


def artwork_images(data: CourseData, keys: Sequence[ArtworkKey]) -> list[Any]:
    """The original images (RGB ``PIL.Image``) of some artworks, read from disk."""
    resolver = artemis.ImageResolver(image_root_for(data.settings))
    paths = resolver.check(pd.DataFrame(list(keys), columns=["art_style", "painting"]))
    return [artemis.open_image(paths[k]) for k in keys]


@dataclass
class ImageOnlyClassifier:
    """Colour histograms + logistic regression (``sevlm_lib.baselines``): an image-to-emotion classifier.

    Trained like ``baselines.image_only_accuracy(train_on="annotations")``: one row per training artwork with
    its annotators' emotion distribution as the soft target, weighted by its number of votes.
    """

    model: Any
    bins: int = 8

    def predict_proba(self, images: Sequence[Any]) -> np.ndarray:
        """``[len(images), 9]`` emotion probabilities (``EMOTIONS`` order) for PIL images or RGB arrays."""
        from sevlm_lib.baselines import color_histogram_features, predict_proba

        return predict_proba(self.model, color_histogram_features(images, bins=self.bins))

    def predict(self, images: Sequence[Any]) -> list[str]:
        return [EMOTIONS[i] for i in self.predict_proba(images).argmax(axis=1)]


def image_histograms(data: CourseData, split: str, *, bins: int = 8) -> tuple[list[ArtworkKey], np.ndarray]:
    """The artworks of a split and their colour-histogram features (``baselines.color_histogram_features``)."""
    from sevlm_lib.baselines import color_histogram_features

    keys = data.artwork_keys(split)
    return keys, color_histogram_features(artwork_images(data, keys), bins=bins)


def train_image_only_classifier(
    data: CourseData,
    seed: int = 0,
    *,
    bins: int = 8,
    l2: float = 1e-2,
    epochs: int = 500,
    train_features: tuple[list[ArtworkKey], np.ndarray] | None = None,
) -> ImageOnlyClassifier:
    """Fit the image-only classifier on the training artworks of ``data`` (``train_features``: the result of
    ``image_histograms(data, "train", bins=bins)``, to reuse across seeds)."""
    from sevlm_lib.baselines import fit_logistic_regression

    keys, features = (
        train_features if train_features is not None else image_histograms(data, "train", bins=bins)
    )
    rows = data.artworks.set_index(["art_style", "painting"]).loc[keys]
    if (rows["split"] != "train").any() or len(features) != len(keys):
        raise ValueError(
            "train_features must be image_histograms(data, 'train'): one row per training artwork"
        )
    counts = rows[list(EMOTIONS)].to_numpy(dtype=np.float64)
    votes = counts.sum(axis=1)
    model = fit_logistic_regression(
        features, counts / votes[:, None], len(EMOTIONS), l2=l2, seed=seed, epochs=epochs, sample_weight=votes
    )
    return ImageOnlyClassifier(model, bins)


def sat_predictions(
    model: Any,
    data: CourseData,
    split: str = "test",
    *,
    grounding: ImageOnlyClassifier,
    max_new_tokens: int = 25,
    batch_size: int = 128,
) -> pd.DataFrame:
    """Greedy SAT explanations for every artwork of a split, each grounded on the emotion ``grounding``
    predicts from the image (as ArtEmis does at test time). Same columns as :func:`generate_for_split`."""
    keys = data.artwork_keys(split)
    probs = grounding.predict_proba(artwork_images(data, keys))
    source = image_source_for(model, data)
    device = next(model.parameters()).device
    rows: list[dict[str, Any]] = []
    for i in range(0, len(keys), batch_size):
        chunk = keys[i : i + batch_size]
        batch = {k: v.to(device) for k, v in source.batch(chunk).items()}
        emotions = torch.as_tensor(probs[i : i + len(chunk)].argmax(axis=1), device=device)
        gen = model.generate(batch, emotions, max_new_tokens=max_new_tokens)
        for k, ids, e, pr in zip(
            chunk, gen.token_ids, emotions.tolist(), probs[i : i + len(chunk)], strict=True
        ):
            emotion = EMOTIONS[e]
            explanation = data.builder.decode(ids)
            rows.append(
                {
                    "art_style": k[0],
                    "painting": k[1],
                    "text": f"{emotion} because {explanation}",
                    "emotion": emotion,
                    "explanation": explanation,
                    "has_because": True,
                    "p_max_emotion": emotion,
                    **{f"p_{x}": float(p) for x, p in zip(EMOTIONS, pr, strict=True)},
                }
            )
    return pd.DataFrame(rows)


class MemoCaptionScorer(CaptionScorer):
    """A :class:`sevlm_lib.metrics.CaptionScorer` that remembers each text's tokenization.

    With the PTB tokenizer every :meth:`score` call starts Java to tokenize the predictions *and* all the
    references; when many models are scored against the same references, :meth:`tokenize` them all once
    (one Java start) and later calls only look them up. PTB tokenizes each caption on its own, so the result
    is the same as tokenizing every call afresh.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._memo: dict[str, str] = {}

    def tokenize(self, texts: Sequence[str]) -> list[str]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            self._memo.update(zip(todo, super().tokenize(todo), strict=True))
        return [self._memo[t] for t in texts]


def _grounding_id(grounding: ImageOnlyClassifier) -> str:
    """A short hash of an image-only classifier's weights (SAT predictions depend on them)."""
    m = grounding.model
    h = hashlib.sha256()
    for array in (m.mean, m.scale, m.weights, m.bias):
        h.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return f"colour-histogram-lr-{grounding.bins}-{h.hexdigest()[:12]}"


def _scorer_tag(scorer: Any) -> str:
    meteor = getattr(scorer, "meteor_unavailable", "off") is None
    return f"{scorer.tokenizer}{'-meteor' if meteor else ''}"


def evaluate_runs(
    data: CourseData,
    runs: Sequence[TrainedModel],
    *,
    scorer: Any,
    classifier: Any,
    split: str = "test",
    grounding: dict[int, ImageOnlyClassifier] | None = None,
    max_new_tokens: int = 25,
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Rows of the comparison table (metrics of :func:`evaluate_model`, plus ``model``, ``seed``,
    ``train_seconds``, ``n_params``) and predictions of trained SEVLM variants and SAT speakers, all scored
    by one ``scorer`` (so one METEOR JVM; texts are tokenized together first when the scorer remembers
    tokenizations, see :class:`MemoCaptionScorer`). SAT runs need ``grounding[seed]``: the image-to-emotion
    classifier whose emotion the speaker explains.

    Each result is cached in ``{runs_dir}/eval/{name}/seed-{seed}-{tokenizer}[-meteor].json`` with its
    predictions, keyed by the run's training fingerprint, the data, the split and the scorer.
    """
    from sevlm_lib.models.sat import SATSpeaker

    tag = _scorer_tag(scorer)
    results: list[tuple[dict[str, Any], pd.DataFrame] | None] = []
    pending: list[tuple[int, Path, dict[str, Any], pd.DataFrame]] = []
    for i, trained in enumerate(runs):
        is_sat = isinstance(trained.model, SATSpeaker)
        if is_sat and (grounding is None or trained.seed not in grounding):
            raise ValueError(
                f"evaluate_runs: SAT run {trained.name} seed {trained.seed} needs grounding[{trained.seed}]"
            )
        cache = data.settings.runs_dir / "eval" / trained.name / f"seed-{trained.seed}-{tag}.json"
        key = {
            "data": data.fingerprint,
            "run": getattr(trained.history, "fingerprint", None),
            "split": split,
            "scorer": tag,
            "classifier": type(classifier).__name__ if classifier is not None else None,
            "grounding": _grounding_id(grounding[trained.seed]) if is_sat else None,  # type: ignore[index]
            "max_new_tokens": max_new_tokens,
        }
        if cache.is_file():
            saved = json.loads(cache.read_text())
            if saved.get("key") == key:
                results.append((saved["row"], pd.DataFrame(saved["predictions"])))
                continue
        if is_sat:
            preds = sat_predictions(
                trained.model,
                data,
                split,
                grounding=grounding[trained.seed],  # type: ignore[index]
                max_new_tokens=max_new_tokens,
            )
        else:
            preds = generate_for_split(trained.model, data, split, max_new_tokens=max_new_tokens)
        results.append(None)
        pending.append((i, cache, key, preds))
    if pending and isinstance(scorer, MemoCaptionScorer):
        refs = [r for rs in data.references(split).values() for r in rs]
        scorer.tokenize([*refs, *(e or "" for *_, p in pending for e in p["explanation"])])
    for i, cache, key, preds in pending:
        trained = runs[i]
        metrics, _ = evaluate_model(
            trained.model, data, split, scorer=scorer, classifier=classifier, predictions=preds
        )
        row = {
            "model": trained.name,
            "seed": trained.seed,
            "train_seconds": trained.train_seconds,
            "n_params": trained.model.count_parameters()["trainable"],
            **metrics,
        }
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".json.tmp")
        tmp.write_text(
            json.dumps(
                {"key": key, "row": row, "predictions": preds.to_dict(orient="records")}, default=_jsonable
            )
        )
        tmp.replace(cache)
        results[i] = (row, preds)
    return [r for r in results if r is not None]


@torch.no_grad()
def cross_attention_maps(
    model: SEVLM,
    builder: SequenceBuilder,
    batch: dict[str, torch.Tensor],
    max_new_tokens: int = 25,
    *,
    average: bool = True,
) -> tuple[list[str], torch.Tensor]:
    """Greedy-decode one image and return each generated token (as text) with the cross-attention over the
    image patches that produced it: ``[n_tokens, P]``, averaged over layers and heads (``average=False``:
    ``[layers, heads, n_tokens, P]``).

    The generated sequence is run again in one teacher-forced pass with ``output_attentions=True``
    (eager attention, which returns the weights); the map of token ``k`` is the attention of the position
    before it, the one whose output predicted it.
    """
    from sevlm_lib.generation import generate

    if next(iter(batch.values())).shape[0] != 1:
        raise ValueError("cross_attention_maps: pass a batch with exactly one image")
    gen = generate(model, builder, batch, max_new_tokens=max_new_tokens)
    new = gen.token_ids[0]
    ids = [*builder.prompt_ids, *new]
    because = builder.because_ids[-1]
    switch = len(builder.prompt_ids) + new.index(because) if because in new else len(ids)
    device = next(model.decoder.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    expl = torch.zeros_like(input_ids, dtype=torch.bool)
    expl[:, switch:] = True
    seg = torch.where(expl, builder.explanation_segment_id, builder.emotion_segment_id)
    was_training = model.training
    impl = model.decoder.config._attn_implementation
    model.eval()
    try:
        if impl != "eager":
            model.decoder.set_attn_implementation("eager")
        memory = model.encode_images({k: v.to(device) for k, v in batch.items()})
        out = model.decode(model.embed(input_ids, seg, expl), memory, output_attentions=True)
    finally:
        if impl != "eager":
            model.decoder.set_attn_implementation(impl)
        model.train(was_training)
    if out.cross_attentions is None:
        raise RuntimeError("the decoder returned no cross-attention weights")
    maps = torch.stack(list(out.cross_attentions))[:, 0]  # [layers, heads, T, P]
    start = len(builder.prompt_ids) - 1
    maps = maps[:, :, start : start + len(new)].cpu()
    words = [builder.tokenizer.decode([t]).strip() for t in new]
    return words, maps.mean(dim=(0, 1)) if average else maps


@torch.no_grad()
def sequence_embeddings(
    model: SEVLM,
    data: CourseData,
    rows: Sequence[tuple[str, str, ArtworkKey]],
    *,
    images: ImageSource | None = None,
    batch_size: int = 64,
) -> dict[str, torch.Tensor]:
    """Teacher-force ``(emotion, utterance, artwork key)`` rows, each with its artwork's image, and return the
    contrastive head's text embeddings: ``{"emotion": [M, d], "explanation": [M, d]}`` (masked means of the
    last hidden states over the emotion words and over the explanation words).

    Any combination works, e.g. one annotation's words after another annotation's emotion, which is how
    notebook 05 tests what the head reads. ``images``: as in :func:`pair_embeddings`. Eval mode.
    """
    from sevlm_lib.models.heads import masked_mean

    if not rows:
        raise ValueError("sequence_embeddings: no rows")
    model.eval()
    device = next(model.decoder.parameters()).device
    source = images if images is not None else image_source_for(model, data)
    parts: dict[str, list[torch.Tensor]] = {"emotion": [], "explanation": []}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        keys = list(dict.fromkeys(key for _, _, key in chunk))
        where = {key: i for i, key in enumerate(keys)}
        batch = data.builder.collate([data.builder.encode(e, u) for e, u, _ in chunk])
        batch.update(source.batch(keys))
        batch = {k: v.to(device) for k, v in batch.items()}
        index = torch.tensor([where[key] for _, _, key in chunk], device=device)
        memory = model.encode_images(batch)[index]
        ids, attn = batch["input_ids"], batch["attention_mask"]
        embeds = model.embed(ids, batch["segment_ids"], batch["explanation_segment"], attn)
        hidden = model.decode(embeds, memory, attn).last_hidden_state.float()
        parts["emotion"].append(masked_mean(hidden, batch["emotion_mask"]).cpu())
        parts["explanation"].append(masked_mean(hidden, batch["explanation_mask"]).cpu())
    return {k: torch.cat(v) for k, v in parts.items()}
