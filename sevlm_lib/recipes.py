"""Recipes: how each variant is trained, named and seeded (the choices, not the machinery).

A :class:`Recipe` holds the optimiser, batch, step and evaluation settings of a profile (``recipe_for``);
``variant_config`` turns a variant name (``baseline``, ``+fusion``, ``+head``, ``+contrastive``, ``full``)
into a model config; ``run_name`` is the checkpoint name every notebook and the command line share.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sevlm_lib.engine.config import TrainConfig
from sevlm_lib.models.sevlm import SEVLMConfig, full_config, tiny_config


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
    checkpoint_every: int | None = 200  # a checkpoint every 200 steps: an interrupted run loses little
    weight_decay: float = 0.0
    warmup_steps: int = 0
    monitor: str | None = None  # the validation metric that picks the best checkpoint (with eval_every)
    mode: str = "max"  # "max" or "min": which way the monitored metric improves
    patience: int | None = None  # stop after this many evaluations without a better monitored metric
    tiebreak: str | None = None  # decides between evaluations equal in ``monitor`` (e.g. bleu4 under emo_acc)
    select_metrics: tuple[str, ...] = ()  # also keep best-{metric}/ for each (the reference: emo_acc, bleu4)
    optimizer: str = "adamw"  # "adamw" (torch) or "adamw_hf" (transformers' old AdamW, as the reference)
    adam_eps: float = 1e-8
    clip_groups: bool = False  # clip each optimizer group on its own, the heads in a group of their own

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_len", "max_new_tokens", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Recipe.{name}={value!r}: expected a whole number >= 1")
        for name in ("lr", "vad_lr"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"Recipe.{name}={value!r}: expected a finite number > 0")
        self.select_metrics = tuple(self.select_metrics)
        if not isinstance(self.clip_groups, bool):
            raise ValueError(f"Recipe.clip_groups={self.clip_groups!r}: expected True or False")
        if self.monitor is not None and not self.eval_every:
            raise ValueError(
                f"Recipe.monitor={self.monitor!r} needs Recipe.eval_every (how often to evaluate)"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (part of a run's fingerprint), less the fields added later while they keep their
        default (``NEW_RECIPE_DEFAULTS``), so that the runs trained before them keep their fingerprints."""
        d = asdict(self)
        for name, default in NEW_RECIPE_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return d

    def train_config(self, *, seed: int, device: str, evaluate: bool = True) -> TrainConfig:
        """The training engine's ``TrainConfig`` for this recipe (``evaluate=False``: no periodic evaluation)."""

        return TrainConfig(
            seed=seed,
            max_steps=self.max_steps,
            epochs=self.epochs,
            lr=self.lr,
            max_grad_norm=self.max_grad_norm,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            eval_every=self.eval_every if evaluate else None,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            monitor=self.monitor if evaluate else None,
            mode=self.mode,
            patience=self.patience if evaluate else None,
            tiebreak=self.tiebreak if evaluate else None,
            select_metrics=tuple(self.select_metrics) if evaluate else (),
            optimizer=self.optimizer,
            adam_eps=self.adam_eps,
            clip_groups=self.clip_groups,
            checkpoint_every=self.checkpoint_every,
            mixed_precision=self.mixed_precision,
            device=device,
        )


# Recipe fields that ``to_dict`` leaves out at their default (added after runs were trained and fingerprinted).
NEW_RECIPE_DEFAULTS: dict[str, Any] = {"clip_groups": False}


TINY_STEPS = 600  # chosen on validation by benchmarks/tune_tiny_recipe.py (results/tiny_recipe_tuning.json)


def recipe_for(profile: str, **overrides: Any) -> Recipe:
    """The default recipe of a profile, with overrides. ``full`` is the paper's: LR 2e-5/4e-5, batch 32."""
    if profile == "full":
        # the paper's: 35 epochs, selected on validation every 2,000 steps (best Emo-A, ties by BLEU-4),
        # stopping after 10 evaluations without a gain
        base = Recipe(
            lr=2e-5,
            vad_lr=4e-5,
            batch_size=32,
            max_steps=None,
            epochs=35,
            eval_every=2000,
            checkpoint_every=1000,
            monitor="emo_acc",
            tiebreak="bleu4",
            patience=10,
        )
    elif profile == "tiny":
        # trains from scratch (except the pre-trained frozen tower); length and learning rate chosen on the
        # validation split (benchmarks/tune_tiny_recipe.py); selected on validation every 100 steps (best
        # Emo-A, ties by BLEU-4), stopping after 5 evaluations without a gain
        base = Recipe(
            max_steps=TINY_STEPS, eval_every=100, monitor="emo_acc", tiebreak="bleu4", patience=5
        )
    else:
        raise ValueError(f"unknown profile {profile!r}: expected 'tiny' or 'full'")
    values = {**base.to_dict(), **overrides}
    # A run has a length in steps or in epochs: setting one clears the other (unless both were given).
    for one, other in (("max_steps", "epochs"), ("epochs", "max_steps")):
        if overrides.get(one) is not None and other not in overrides:
            values[other] = None
    # No periodic evaluation (eval_every=None) means no selection on validation, unless a monitor was given.
    if "eval_every" in overrides and overrides["eval_every"] is None and "monitor" not in overrides:
        values.update(monitor=None, patience=None, tiebreak=None, select_metrics=())
    return Recipe(**values)


def model_config_for(profile: str, **switches: Any) -> SEVLMConfig:
    """The architecture of a profile (``tiny_config`` or ``full_config``) with switches."""
    return full_config(**switches) if profile == "full" else tiny_config(**switches)


SEEDS: tuple[int, ...] = (0, 1, 2)


SEVLM_VARIANTS: tuple[str, ...] = ("baseline", "+fusion", "+head", "+contrastive", "full")


SAT_NAME = "sat"


def run_name(config: SEVLMConfig, recipe: Recipe | None = None) -> str:
    """The checkpoint/run name of a variant, shared by every notebook (so a run trained once is reused).

    Loss weights other than the paper's 1.0 add ``-cw{w}`` (contrastive) or ``-vw{w}`` (VAD head), and a
    ``recipe`` that clips each group on its own adds ``-clip-groups``: runs that compute differently never share
    a name."""
    name = config.variant
    if config.is_reference:  # every reference behaviour on (models.sevlm.reference_config)
        name += "-reference"
    elif config.vad_fusion and config.vad_encoder.style != "causal":
        name += f"-{config.vad_encoder.style}"  # -noncausal, or -reference for the reference's encoder alone
    if config.vad_encoder.d_model != 3:
        name += f"-vad{config.vad_encoder.d_model}"  # a VAD encoder wider than the paper's 3
    if config.contrastive and config.contrastive_loss_weight != 1.0:
        name += f"-cw{config.contrastive_loss_weight:g}"
    if config.vad_head and config.vad_loss_weight != 1.0:
        name += f"-vw{config.vad_loss_weight:g}"
    if config.negative_prompt == "positive":
        name += "-closed"  # negative 1 under the positive's prompt: the prompt shortcut closed
    if config.vision.hub_id is None and config.vision.weights == "random":
        name += "-random-tower"  # the tiny tower left at its random initialisation (notebook 02's comparison)
    if recipe is not None and recipe.clip_groups:
        name += "-clip-groups"
    return name


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


@dataclass(frozen=True)
class LossBalance:
    """How the added losses join the language model's: their weights, the gradient clip, negative 1's prompt.

    The paper adds both at weight 1.0 under one clip shared by every loss, with negative 1 encoded under its own
    (wrong) prompt. That was set for a *pre-trained* decoder fine-tuned at 2e-5; the tiny profile trains its
    decoder from scratch at 3e-3, and notebook 05 measures how the losses then compete."""

    contrastive_weight: float = 1.0
    vad_weight: float = 1.0
    clip_groups: bool = False  # clip the heads' group on its own (Recipe.clip_groups)
    negative_prompt: str = "own"  # "positive": negative 1 under the positive's prompt (the shortcut closed)


PAPER_BALANCE = LossBalance()
# Chosen on the validation split by benchmarks/tune_loss_balance.py (results/loss_balance_tuning.json): the
# candidate closest to the paper within one standard error of the best; the closed shortcut kept because it
# scored at least as well as the open one.
TINY_BALANCE = LossBalance(contrastive_weight=0.3, vad_weight=1.0, clip_groups=True, negative_prompt="positive")
BALANCES: tuple[str, ...] = ("course", "paper")


def loss_balance(profile: str, balance: str = "course") -> LossBalance:
    """The loss balance of a profile: ``course`` (tiny: chosen on validation; full: the paper's, which was set
    for its pre-trained decoder) or ``paper``."""
    if balance not in BALANCES:
        raise ValueError(f"unknown balance {balance!r}: expected one of {', '.join(BALANCES)}")
    return TINY_BALANCE if profile == "tiny" and balance == "course" else PAPER_BALANCE


@dataclass(frozen=True)
class VariantRun:
    """A variant ready to train: its model config, its recipe and the run name they give."""

    config: SEVLMConfig
    recipe: Recipe

    @property
    def name(self) -> str:
        return run_name(self.config, self.recipe)


def variant_run(profile: str, variant: str, balance: str = "course", **recipe_overrides: Any) -> VariantRun:
    """A named variant with a loss balance applied (see :func:`loss_balance`).

    Only what a variant has changes: the contrastive weight and negative 1's prompt with the contrastive head,
    the VAD weight with the VAD head, the per-group clip when either head is on. ``baseline`` and ``+fusion``
    are the same under both balances."""
    config = variant_config(profile, variant)
    bal = loss_balance(profile, balance)
    switches: dict[str, Any] = {}
    if config.contrastive:
        switches.update(contrastive_loss_weight=bal.contrastive_weight, negative_prompt=bal.negative_prompt)
    if config.vad_head:
        switches.update(vad_loss_weight=bal.vad_weight)
    if switches:
        config = config.with_switches(**switches)
    has_head = config.contrastive or config.vad_head
    recipe = recipe_for(profile, **({"clip_groups": bal.clip_groups} if has_head else {}), **recipe_overrides)
    return VariantRun(config, recipe)
