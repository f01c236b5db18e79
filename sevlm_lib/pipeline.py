"""The course pipeline: load the data, build, train, generate, evaluate, save and reload models.

Both profiles go through the same functions; only the :class:`~sevlm_lib.recipes.Recipe` and the data paths
differ.

* ``load_course_data(settings)`` -> :class:`CourseData` (annotations with splits, per-artwork histograms,
  tokenizer, sequence builder, VAD lexicon and token VAD table, images);
* ``build_model(data, config, seed)`` -> a SEVLM with the token VAD table installed;
* ``train_model(data, config, recipe, seed, name)`` -> trained model + history ("load if finished, else train");
* ``evaluate_model(model, data, split)`` -> metrics + a per-artwork predictions table;
* ``load_from_checkpoint(path)`` -> a trained model and its sequence builder, from a checkpoint folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sevlm_lib import metrics
from sevlm_lib.data import artemis
from sevlm_lib.data.datasets import (
    ArtworkKey,
    ImageSource,
    LazyImages,
    PairBatches,
    TensorBank,
    feature_bank,
    load_pixel_bank,
)
from sevlm_lib.data.mini import IMAGES_DIR, ensure_artemis_mini, mini_image_root
from sevlm_lib.emotions import EMOTIONS
from sevlm_lib.engine.checkpoint import is_finished
from sevlm_lib.engine.trainer import train_or_load
from sevlm_lib.engine.workers import Job, run_jobs
from sevlm_lib.features import describe_image_source, find_feature_cache
from sevlm_lib.generation import emotion_distribution, generate
from sevlm_lib.io import atomic_write_text, write_json
from sevlm_lib.models.emotion_classifier import EmotionClassifier
from sevlm_lib.models.sat import SATConfig, SATSpeaker
from sevlm_lib.models.sevlm import (
    SEVLM,
    SEVLMConfig,
    builder_options,
    full_config,
    tiny_config,
)
from sevlm_lib.models.vision import VisionConfig, VisionEncoder, image_transform
from sevlm_lib.recipes import SAT_NAME, SEEDS, Recipe, model_config_for, recipe_for, run_name
from sevlm_lib.reload import (  # noqa: F401  (re-exported: pipeline.load_from_checkpoint and friends)
    MODEL_CONFIG,
    RUN_INFO,
    SEVLM_CHECKPOINT_FILES,
    checkpoint_info,
    load_from_checkpoint,
    profile_of,
    resolve_sevlm_checkpoint,
)
from sevlm_lib.settings import Settings, get_settings, run_workers, seed_everything
from sevlm_lib.text import (
    SequenceBuilder,
    load_gpt2_tokenizer,
    save_tokenizer_info,
    tiny_tokenizer,
)
from sevlm_lib.tower import (
    TowerPretraining,
    cached_tower_state,
    install_tower,
    pretrain_tiny_tower,
    tower_build_info,
    training_texts,
    weights_key,
)
from sevlm_lib.vad import load_training_lexicon

logger = logging.getLogger(__name__)

MIN_WORDS, MAX_WORDS = 5, 30  # ArtEmis's own preprocessing keeps utterances of 5..30 tokens


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
    image_style: str = "clip"  # how images were turned into tensors (models.vision.image_transform)
    # frozen-tower feature banks of ``images``, by a hash of the tower's weights: encoded once, shared by runs
    feature_banks: dict[str, TensorBank] = field(default_factory=dict, repr=False)
    # where the images were read from (None: the profile's usual root, ``image_root_for(settings)``)
    image_root: Path | None = None

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
        if self.image_style != "clip":  # (the course's transform leaves the fingerprint as it always was)
            h.update(self.image_style.encode())
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
    tokenizer: Any = None,
    image_style: str = "clip",
    progress: bool | None = None,
    mini_options: Mapping[str, Any] | None = None,
    tokenizer_words: Sequence[str] = (),
) -> CourseData:
    """Load annotations, splits, tokenizer, lexicon and images for the settings' profile.

    tiny: ArtEmis-mini (generated on first use), a BPE trained on its training explanations, 64-px images
    held in memory. full: the ArtEmis CSV and WikiArt images from settings, GPT-2's tokenizer, images read
    lazily (or use the CLIP feature cache). Utterances under 5 or over 30 words are dropped as in ArtEmis's
    preprocessing, and the counts are reported in ``dropped``.

    ``mini_options`` (tiny profile only) go to :func:`~sevlm_lib.data.mini.ensure_artemis_mini`: e.g.
    ``{"rare_words": True}`` loads the rare-words condition (its own folder, ``artemis_mini_rare``), whose
    validation and test explanations use feeling words the training explanations do not, side by side with
    the normal data. Its tokenizer is trained on its own training explanations, as always.

    ``tokenizer_words`` (tiny profile): words the tiny BPE must also know as whole tokens although the
    training explanations may lack them (e.g. ``mini.HELD_OUT_FEELING_WORDS``), as GPT-2's BPE knows words
    from outside ArtEmis (``tiny_tokenizer(..., extra_words=...)``); only the tokenizer sees them. Without
    them such words are split into pieces that have no VAD of their own (or a wrong one).
    """

    settings = settings or get_settings()
    progress = (not settings.quiet) if progress is None else progress
    if mini_options is not None and not isinstance(mini_options, Mapping):
        raise TypeError(f"mini_options: expected None or a dict of ensure_artemis_mini arguments, got {mini_options!r}")
    if isinstance(tokenizer_words, str) or not all(isinstance(w, str) and w.strip() for w in tokenizer_words):
        raise TypeError(f"tokenizer_words: expected a sequence of non-empty words, got {tokenizer_words!r}")
    if tokenizer_words and (settings.profile != "tiny" or tokenizer is not None):
        raise ValueError(
            "tokenizer_words: only the tiny profile's tokenizer is trained here (this call "
            + ("passes its own tokenizer)" if tokenizer is not None else f"uses SEVLM_PROFILE={settings.profile!r})")
        )
    if settings.profile == "tiny":
        csv = ensure_artemis_mini(settings, **dict(mini_options or {}))
        image_root = csv.parent / IMAGES_DIR
        image_size = image_size or tiny_config().vision.image_size
    elif mini_options:
        raise ValueError(
            f"mini_options={dict(mini_options)!r}: ArtEmis-mini options apply to the tiny profile only "
            f"(this is SEVLM_PROFILE={settings.profile!r}, which reads ArtEmis)"
        )
    else:
        csv = settings.artemis_csv
        image_root = settings.wikiart_dir
        image_size = image_size or full_config().vision.image_size
    raw = artemis.load_artemis(csv)
    df, dropped = _filter_lengths(raw)
    df = artemis.split_artemis(df, seed=artemis.COURSE_SPLIT_SEED)
    hist = artemis.emotion_histograms(df)
    split_of = df.drop_duplicates(["art_style", "painting"]).set_index(["art_style", "painting"])["split"]
    hist["split"] = [split_of[(a, p)] for a, p in zip(hist["art_style"], hist["painting"], strict=True)]
    hist["dominant"] = artemis.dominant_emotions(hist, rule="artemis")
    hist["dominant_strict"] = artemis.dominant_emotions(hist, rule="strict")
    hist["entropy"] = artemis.annotator_entropy(hist)
    if tokenizer is not None:  # e.g. a checkpoint's own: nothing is trained or fetched
        pass
    elif settings.profile == "tiny":
        texts = list(df.loc[df["split"] == "train", "utterance"])
        tokenizer = tiny_tokenizer(texts, settings.cache_dir, extra_words=tokenizer_words)
    else:
        tokenizer = load_gpt2_tokenizer()
    builder = SequenceBuilder(tokenizer, max_len=max_len)
    lexicon = lexicon if lexicon is not None else load_training_lexicon(settings)
    token_vad = lexicon.token_vad_table(tokenizer)
    resolver = artemis.ImageResolver(image_root)
    transform = image_transform(image_size, style=image_style)
    keys = list(zip(hist["art_style"], hist["painting"], strict=True))
    if settings.profile == "tiny":
        images: ImageSource = load_pixel_bank(keys, resolver, transform, progress=progress)
    else:
        images = LazyImages(resolver, transform)
    return CourseData(
        settings,
        df,
        hist,
        tokenizer,
        builder,
        lexicon,
        token_vad,
        images,
        image_size,
        dropped,
        image_style,
        image_root=Path(image_root),
    )


# The rare-words condition of notebooks 03 and 04 (a positive control for VAD): the validation and test
# explanations use lexicon-covered feeling words that only 2% of the training explanations use (rare, not absent,
# so a decoder has seen them a few times), and the tiny BPE keeps every one of them whole, with its own VAD.
RARE_WORDS_OPTIONS: dict[str, Any] = {"rare_words": True, "rare_train_rate": 0.02}
RARE_WORDS_PREFIX = "rare-"  # runs on the rare-words condition: rare-baseline, rare-+fusion, ...


def load_rare_words_data(settings: Settings | None = None, *, progress: bool | None = None) -> CourseData:
    """ArtEmis-mini's rare-words condition (tiny profile; :data:`RARE_WORDS_OPTIONS`), loaded as the course does."""
    from sevlm_lib.data.mini.text import HELD_OUT_FEELING_WORDS

    settings = settings or get_settings()
    if settings.profile != "tiny":
        raise ValueError(
            f"the rare-words condition is a variant of ArtEmis-mini (tiny profile); SEVLM_PROFILE={settings.profile!r}"
        )
    return load_course_data(
        settings, progress=progress, mini_options=RARE_WORDS_OPTIONS, tokenizer_words=HELD_OUT_FEELING_WORDS
    )


def builder_for(data: CourseData, config: SEVLMConfig) -> SequenceBuilder:
    """The sequence builder a model of ``config`` reads: ``data.builder``, or one with the reference's prompt,
    padding and truncation when ``config`` switches them on (``models.sevlm.builder_options``)."""
    options = builder_options(config)
    if options == builder_options(SEVLMConfig()):
        return data.builder
    return SequenceBuilder(data.tokenizer, max_len=data.builder.max_len, **options)


TOWER_SEED = 0  # one pre-trained tiny tower per dataset, shared by every run and seed (as CLIP's weights are)
COURSE_TOWER = TowerPretraining()  # the course's tiny-CLIP pre-training (400 steps of 128 pairs)


def course_tower_state(
    data: CourseData, vision_config: VisionConfig, pretraining: TowerPretraining | None = None
) -> dict[str, torch.Tensor]:
    """The tiny-CLIP state dict for ``data`` (tower under ``vision.``): read from ``{cache_dir}/towers/`` or
    pre-trained on the training split's (image, explanation) pairs first (seconds on an idle CPU)."""
    if vision_config.hub_id is not None:
        raise ValueError(f"{vision_config.hub_id} is a hub tower: only the small course tower is pre-trained here")
    p = pretraining or COURSE_TOWER

    def build() -> dict[str, torch.Tensor]:
        if not data.settings.quiet:
            print(f"[sevlm] pre-training the tiny vision tower as a tiny CLIP ({p.steps} steps)", flush=True)
        return pretrain_tiny_tower(
            data.images,
            training_texts(data.annotations),
            data.tokenizer,
            vision_config,
            train_keys=data.artwork_keys("train"),
            seed=TOWER_SEED,
            progress=not data.settings.quiet,
            **asdict(p),
        )

    return cached_tower_state(data.settings, data.fingerprint, vision_config, TOWER_SEED, build, pretraining=p)


def course_tower_build_info(data: CourseData, vision_config: VisionConfig) -> dict[str, Any] | None:
    """How long the cached course tower's pre-training took (``tower.tower_build_info``), or None if unknown."""
    return tower_build_info(data.settings, data.fingerprint, vision_config, TOWER_SEED, COURSE_TOWER)


def install_course_tower(vision: VisionEncoder, data: CourseData, vision_config: VisionConfig) -> None:
    """Give a small tower the weights its config asks for: ``"tiny-clip"`` -> the cached pre-trained tower;
    ``"random"`` (or a hub tower) -> leave it as built."""
    if vision_config.hub_id is None and vision_config.weights == "tiny-clip":
        install_tower(vision, course_tower_state(data, vision_config))


def build_model(data: CourseData, config: SEVLMConfig, seed: int) -> SEVLM:
    """A fresh SEVLM for ``data``'s tokenizer, seeded, with its tower's weights (``install_course_tower``) and
    the token VAD table installed."""
    if config.image_transform != data.image_style:
        raise ValueError(
            f"the model expects images transformed as {config.image_transform!r} but the data was loaded with "
            f"{data.image_style!r}: load_course_data(..., image_style={config.image_transform!r})"
        )
    seed_everything(seed)
    cfg = config.with_tokenizer(data.tokenizer)
    if cfg.vision.image_size != data.image_size:
        d = cfg.to_dict()
        d["vision"]["image_size"] = data.image_size
        cfg = SEVLMConfig.from_dict(d)
    model = SEVLM(cfg)
    install_course_tower(model.vision, data, cfg.vision)
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
            key = weights_key(model.vision)
            if key not in data.feature_banks:
                data.feature_banks[key] = feature_bank(model.vision, data.images)
            return data.feature_banks[key]

        if data.image_style != "clip":  # on-disk caches hold features of the course's image transform only
            return data.images
        keys = list(zip(data.artworks["art_style"], data.artworks["painting"], strict=True))
        cache = find_feature_cache(data.settings, model.config, vision=model.vision, keys=keys)
        if cache is not None:
            return cache
    return data.images


VALIDATION_METRICS = ("emo_acc", "bleu4", "cider", "vad_err")


def validation_scorer(data: CourseData, recipe: Recipe) -> Any:
    """``eval_fn(model) -> {emo_acc, bleu4, cider, vad_err}`` on the validation split: what the engine calls
    every ``recipe.eval_every`` steps to keep the best checkpoint (the test split never chooses anything)."""

    keys = data.artwork_keys("val")
    gold = data.gold("val", "artemis")
    refs = data.references("val")
    scorer = metrics.CaptionScorer(tokenizer="simple", meteor=False)

    def eval_fn(model: Any) -> dict[str, float]:
        # only what selection reads (the same numbers evaluate_model gives): no emotion distribution, no diversity
        preds = generate_for_split(model, data, "val", max_new_tokens=recipe.max_new_tokens, with_distribution=False)
        expl = {k: (e if e else "") for k, e in zip(keys, preds["explanation"], strict=True)}
        caption = scorer.score(expl, {k: refs[k] for k in keys})
        return {
            "emo_acc": metrics.emotion_accuracy(list(preds["emotion"]), [gold[k] for k in keys]),
            "bleu4": caption["bleu4"],
            "cider": caption["cider"],
            "vad_err": metrics.vad_error_report(list(expl.values()), [refs[k] for k in keys], data.lexicon).error,
        }

    return eval_fn


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

    settings = data.settings
    model = build_model(data, config, seed)
    source = image_source_for(model, data, use_features)
    logger.info(describe_image_source(source, data.settings))
    batches = PairBatches(
        data.pair_items("train"),
        builder_for(data, model.config),
        source,
        batch_size=recipe.batch_size,
        seed=seed,
    )
    train_cfg = recipe.train_config(seed=seed, device=settings.device)
    ckpt = settings.checkpoint_dir / name / f"seed-{seed}"
    run_dir = settings.runs_dir / "train" / name / f"seed-{seed}"

    def save_extra(folder: Path) -> None:
        save_tokenizer_info(data.tokenizer, folder / "tokenizer")
        (folder / "model_config.json").write_text(json.dumps(model.config.to_dict(), indent=1))

    if eval_fn is None and recipe.monitor is not None:  # the recipe selects its checkpoint on validation
        eval_fn = validation_scorer(data, recipe)
    t0 = time.perf_counter()
    selecting = eval_fn is not None and recipe.monitor is not None  # test scores use the selected weights
    history = train_or_load(
        model,
        train_cfg,
        batches.batches,
        len(batches),
        checkpoint_dir=ckpt,
        run_dir=run_dir,
        eval_fn=eval_fn,
        param_groups=model.parameter_groups(recipe.lr, recipe.vad_lr, heads=recipe.clip_groups),
        save_extra=save_extra,
        fingerprint_extra={
            "model": model.config.to_dict(),
            "data": data.fingerprint,
            "recipe": recipe.to_dict(),
            "tower": weights_key(model.vision),  # features come from these weights: a run never mixes towers
        },
        quiet=settings.quiet,
        weights="best" if selecting else "latest",
    )
    seconds = float(getattr(history, "train_seconds", None) or (time.perf_counter() - t0))
    model.eval()
    return TrainedModel(model, history, name, seed, ckpt, seconds)


def generate_for_split(
    model: SEVLM,
    data: CourseData,
    split: str = "test",
    *,
    batch_size: int = 128,
    max_new_tokens: int = 25,
    use_features: bool = True,
    use_cache: bool | None = None,
    with_distribution: bool = True,
) -> pd.DataFrame:
    """Greedy generations for every artwork of a split: one row per artwork with emotion and explanation.

    ``with_distribution`` adds ``p_max_emotion`` and ``p_{emotion}`` (the nine-emotion distribution at the
    emotion slot: one more forward pass); validation scoring leaves it out.

    ``use_cache=None`` keeps the KV cache unless the model has a non-causal VAD encoder, which cannot decode
    incrementally and must re-run the whole sequence at every step (the reference's way).
    """

    if use_cache is None:
        use_cache = not (model.config.vad_fusion and not model.config.vad_encoder.causal)
    keys = data.artwork_keys(split)
    source = image_source_for(model, data, use_features)
    logger.info(describe_image_source(source, data.settings))
    builder = builder_for(data, model.config)
    device = next(model.decoder.parameters()).device
    rows: list[dict[str, Any]] = []
    for i in range(0, len(keys), batch_size):
        chunk = keys[i : i + batch_size]
        batch = {k: v.to(device) for k, v in source.batch(chunk).items()}
        gen = generate(model, builder, batch, max_new_tokens=max_new_tokens, use_cache=use_cache)
        probs = emotion_distribution(model, builder, batch).cpu().numpy() if with_distribution else None
        for i, (k, p) in enumerate(zip(chunk, gen.parsed, strict=True)):
            row = {
                "art_style": k[0],
                "painting": k[1],
                "text": p.text,
                "emotion": p.emotion,
                "explanation": p.explanation,
                "has_because": p.has_because,
            }
            if probs is not None:
                row["p_max_emotion"] = EMOTIONS[int(np.argmax(probs[i]))]
                row.update({f"p_{e}": float(x) for e, x in zip(EMOTIONS, probs[i], strict=True)})
            rows.append(row)
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

    preds = (
        predictions
        if predictions is not None
        else generate_for_split(model, data, split, max_new_tokens=max_new_tokens)
    )
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
    out.update(
        {
            k: caption[k]
            for k in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider", "meteor")
            if caption.get(k) is not None
        }
    )
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
    return write_json(settings.run_dir(notebook) / "metrics.json", values, sort_keys=True, default=jsonable)


def read_metrics(settings: Settings, notebook: str) -> dict[str, Any] | None:
    path = settings.runs_dir / notebook / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} to metrics.json")


def train_side_by_side(
    data: CourseData, config: SEVLMConfig, recipe: Recipe, seeds: Sequence[int], name: str
) -> None:
    """Train the unfinished seeds in ``run_workers`` worker processes (``SEVLM_WORKERS``), each with the
    notebook's threads, so each gives the numbers it would give in-process; nothing happens with one worker."""
    workers = run_workers(data.settings)
    todo = [s for s in seeds if not is_finished(data.settings.checkpoint_dir / name / f"seed-{s}")] if workers > 1 else []
    if len(todo) < 2:
        return
    sources = {id(x): x for x in (image_source_for(build_model(data, config, s), data) for s in todo)}
    images = next(iter(sources.values())) if len(sources) == 1 else data.images  # one tower's features: no pixels
    shipped = replace(data, settings=data.settings.with_(quiet=True), images=images)  # (and no progress bars)
    jobs = [Job(f"{name} seed {s}", train_model, (shipped, config, recipe), {"seed": s, "name": name}) for s in todo]
    run_jobs(jobs, workers, data.settings.threads, quiet=data.settings.quiet)


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
    (keyed by the data fingerprint), with the generated predictions, so the comparison notebook re-scores them
    without decoding the split again (:func:`saved_predictions`).
    """
    recipe = recipe or recipe_for(data.profile)
    name = name or run_name(config, recipe)
    classifier = classifier if classifier is not None else train_emotion_classifier(data)
    train_side_by_side(data, config, recipe, seeds, name)
    rows = []
    for seed in seeds:
        cache = data.settings.runs_dir / "eval" / name / f"seed-{seed}.json"
        trained = train_model(data, config, recipe, seed=seed, name=name)
        key = {
            "data": data.fingerprint,
            "recipe": recipe.to_dict(),
            "split": split,
            "model": trained.model.config.to_dict(),
        }
        if cache.is_file():
            saved = json.loads(cache.read_text())
            if saved.get("key") == key:
                rows.append(saved["row"])
                continue
        metrics, preds = evaluate_model(
            trained.model, data, split, classifier=classifier, max_new_tokens=recipe.max_new_tokens
        )
        row = {
            "variant": name,
            "seed": seed,
            "train_seconds": trained.train_seconds,
            "n_params": trained.model.count_parameters()["trainable"],
            **metrics,
        }
        # the predictions too, with the run's fingerprint: notebook 07 re-scores them without decoding again
        saved_predictions = {"run": getattr(trained.history, "fingerprint", None), "predictions": preds.to_dict(orient="records")}
        atomic_write_text(cache, json.dumps({"key": key, "row": row, **saved_predictions}, default=jsonable))
        rows.append(row)
    return rows


def saved_predictions(
    data: CourseData, trained: TrainedModel, split: str, max_new_tokens: int
) -> pd.DataFrame | None:
    """The predictions :func:`train_and_evaluate` saved for this very run (same training fingerprint, data,
    split and decoding length), or ``None``: a model is decoded once per split."""
    cache = data.settings.runs_dir / "eval" / trained.name / f"seed-{trained.seed}.json"
    if not cache.is_file():
        return None
    saved = json.loads(cache.read_text())
    key = saved.get("key", {})
    fingerprint = getattr(trained.history, "fingerprint", None)
    if (
        fingerprint is None
        or saved.get("run") != fingerprint
        or "predictions" not in saved
        or key.get("data") != data.fingerprint
        or key.get("split") != split
        or key.get("recipe", {}).get("max_new_tokens") != max_new_tokens
    ):
        return None
    return pd.DataFrame(saved["predictions"])


def load_trained(
    data: CourseData, config: SEVLMConfig, seed: int, recipe: Recipe | None = None, name: str | None = None
) -> TrainedModel:
    """The trained model of a variant and seed (trains it first when no finished run exists)."""
    recipe = recipe or recipe_for(data.profile)
    return train_model(data, config, recipe, seed=seed, name=name or run_name(config, recipe))


def sat_config_for(data: CourseData, **overrides: Any) -> Any:
    """The Show-Attend-Tell speaker for ``data``: the profile's frozen vision tower, ``data``'s tokenizer.

    tiny: 64-wide embeddings and LSTM (~0.23M trainable parameters, about the tiny SEVLM's 0.2M); full:
    ArtEmis-like sizes (embeddings 128, LSTM 512, attention 512) over CLIP's patches.
    """
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


def build_sat(data: CourseData, config: Any, seed: int) -> SATSpeaker:
    """A fresh Show-Attend-Tell speaker, seeded, with the same frozen tower as SEVLM (``install_course_tower``)."""
    seed_everything(seed)
    model = SATSpeaker(config)
    install_course_tower(model.vision, data, config.vision)
    return model


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

    settings = data.settings
    recipe = recipe or recipe_for(data.profile)
    config = config or sat_config_for(data)
    model = build_sat(data, config, seed)
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
        fingerprint_extra={
            "sat": config.to_dict(),
            "data": data.fingerprint,
            "recipe": recipe.to_dict(),
            "tower": weights_key(model.vision),
        },
        quiet=settings.quiet,
    )
    seconds = float(getattr(history, "train_seconds", None) or (time.perf_counter() - t0))
    model.eval()
    return TrainedModel(model, history, name, seed, settings.checkpoint_dir / name / f"seed-{seed}", seconds)  # type: ignore[arg-type]


def image_root_for(settings: Settings) -> Path:
    """Where the profile's artwork images live (ArtEmis-mini's images, or the WikiArt folder)."""
    if settings.profile == "tiny":
        return mini_image_root(settings)
    return settings.wikiart_dir


def artwork_images(data: CourseData, keys: Sequence[ArtworkKey]) -> list[Any]:
    """The original images (RGB ``PIL.Image``) of some artworks, read from disk."""
    resolver = artemis.ImageResolver(data.image_root or image_root_for(data.settings))
    paths = resolver.check(pd.DataFrame(list(keys), columns=["art_style", "painting"]))
    return [artemis.open_image(paths[k]) for k in keys]
