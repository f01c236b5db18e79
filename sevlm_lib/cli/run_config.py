"""Run configs in YAML (``configs/*.yaml``): which profile, which model switches, which recipe, which seed.

A file has at most these top-level keys; all are optional::

    profile: tiny              # tiny | full
    name: tiny_sevlm           # run name: checkpoints go to {checkpoint_dir}/{name}/seed-{seed}
    seed: 0
    model:                     # SEVLMConfig switches and loss weights
      vad_fusion: true
      vad_head: true
      contrastive: true
      vad_loss_weight: 1.0
      contrastive_loss_weight: 1.0
      negative_prompt: own     # own | positive (negative 1 under the positive's prompt: run name -closed)
      vad_encoder:             # VADEncoderConfig fields
        causal: true
        d_model: 3             # > 3: a wider VAD encoder (Linear 3 -> d_model in, d_model -> 3 out)
    recipe:                    # experiments.Recipe fields, over the profile's defaults
      lr: 2.0e-3
      max_steps: 600

An unknown key, or a value of the wrong type, is an error that names the file, the line and the key.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from sevlm_lib.models.negatives import NEGATIVE_PROMPTS
from sevlm_lib.models.sevlm import REFERENCE_DEFAULTS, SEVLMConfig, reference_config
from sevlm_lib.models.vad_encoder import VADEncoderConfig
from sevlm_lib.recipes import Recipe, model_config_for, recipe_for
from sevlm_lib.settings import PROFILES

TOP_LEVEL = ("profile", "name", "seed", "model", "recipe")
MODEL_BOOLS = ("vad_fusion", "vad_head", "contrastive")
MODEL_FLOATS = ("vad_loss_weight", "contrastive_loss_weight")
MODEL_CHOICES: dict[str, tuple[str, ...]] = {"negative_prompt": NEGATIVE_PROMPTS}
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1 (``--max-new-tokens 0`` is refused up front)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected a whole number >= 1")
    return value


class ConfigError(ValueError):
    """A run config that cannot be used; the message names the file, line and key."""


def _recipe_fields() -> dict[str, Any]:

    defaults = Recipe()
    return {f.name: getattr(defaults, f.name) for f in fields(Recipe)}


def _vad_encoder_fields() -> dict[str, Any]:

    defaults = VADEncoderConfig()
    return {f.name: getattr(defaults, f.name) for f in fields(VADEncoderConfig)}


# Recipe fields that may be null (None) in a file.
_NULLABLE = {"eval_every", "checkpoint_every", "max_steps", "epochs", "monitor", "patience", "tiebreak"}
# The type a nullable field takes when it is set (its default is None).
_SET_TYPE = {
    "monitor": "emo_acc",
    "max_steps": 1,
    "epochs": 1,
    "patience": 1,
    "eval_every": 1,
    "checkpoint_every": 1,
}


@dataclass
class RunConfig:
    """A validated run config. Build it with :func:`load_run_config` (or directly, for defaults)."""

    profile: str | None = None
    name: str | None = None
    seed: int | None = None
    model: dict[str, Any] = field(default_factory=dict)
    vad_encoder: dict[str, Any] = field(default_factory=dict)
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)  # ``reference: true`` and single reference switches
    source: Path | None = None

    def model_config(self, profile: str | None = None) -> Any:
        """The profile's ``SEVLMConfig`` with this file's switches, loss weights and VAD-encoder fields."""

        cfg = model_config_for(profile or self.profile or "tiny", **self.model)
        if self.reference.get("reference"):
            cfg = reference_config(cfg)
        switches = {k: v for k, v in self.reference.items() if k != "reference"}
        if self.vad_encoder or switches:
            d = cfg.to_dict()
            d["vad_encoder"].update(self.vad_encoder)
            d.update(switches)
            cfg = SEVLMConfig.from_dict(d)
        return cfg

    def recipe(self, profile: str | None = None, **overrides: Any) -> Any:
        """The profile's ``Recipe`` with this file's fields, then ``overrides`` on top."""

        return recipe_for(profile or self.profile or "tiny", **{**self.recipe_overrides, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "name": self.name,
            "seed": self.seed,
            "model": {
                **self.model,
                **self.reference,
                **({"vad_encoder": dict(self.vad_encoder)} if self.vad_encoder else {}),
            },
            "recipe": dict(self.recipe_overrides),
            "source": str(self.source) if self.source else None,
        }


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """1-based line of every mapping key, by its path of keys (best effort: used in error messages)."""
    out: dict[tuple[str, ...], int] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    here = (*path, str(key.value))
                    out[here] = key.start_mark.line + 1
                    walk(value, here)

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out
    walk(root, ())
    return out


def _as_number(value: Any) -> Any:
    """YAML 1.1 reads ``2e-3`` (no dot) as a string: accept such strings where a number is expected."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _type_ok(value: Any, default: Any, nullable: bool) -> bool:
    if value is None:
        return nullable
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int) and not isinstance(default, bool):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return False


def _type_name(default: Any, nullable: bool) -> str:
    name = {bool: "true/false", int: "an integer", float: "a number", str: "a string", tuple: "a list of names"}.get(
        type(default), "a value"
    )
    return f"{name} or null" if nullable else name


def _parse_model(model: Any, where: Callable[..., str], cfg: RunConfig) -> None:
    """Check the ``model:`` mapping into ``cfg`` (switches, loss weights, VAD encoder, reference mode)."""
    if not isinstance(model, dict):
        raise ConfigError(
            f"{where('model')}: model: expected a mapping of switches, got {type(model).__name__}"
        )
    allowed_model = (*MODEL_BOOLS, *MODEL_FLOATS, *MODEL_CHOICES, "vad_encoder", "reference", *REFERENCE_DEFAULTS)
    for key, value in model.items():
        if key == "reference" or key in REFERENCE_DEFAULTS:  # reference mode: all switches, or one by one
            default = True if key == "reference" else REFERENCE_DEFAULTS[key]
            if isinstance(default, float):
                value = _as_number(value)
            if not _type_ok(value, default, False):
                raise ConfigError(
                    f"{where('model', key)}: model.{key}: {value!r}, expected {_type_name(default, False)}"
                )
            cfg.reference[key] = value
            continue
        if key not in allowed_model:
            raise ConfigError(
                f"{where('model', str(key))}: unknown key {key!r} in model; expected one of "
                f"{', '.join(allowed_model)}"
            )
        if key in MODEL_BOOLS and not isinstance(value, bool):
            raise ConfigError(f"{where('model', key)}: model.{key}: {value!r}, expected true or false")
        if key in MODEL_CHOICES and value not in MODEL_CHOICES[key]:
            raise ConfigError(
                f"{where('model', key)}: model.{key}: {value!r}, expected one of {', '.join(MODEL_CHOICES[key])}"
            )
        if key in MODEL_FLOATS:
            value = _as_number(value)
        if key in MODEL_FLOATS and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
        ):
            raise ConfigError(f"{where('model', key)}: model.{key}: {value!r}, expected a number >= 0")
        if key == "vad_encoder":
            if not isinstance(value, dict):
                raise ConfigError(f"{where('model', key)}: model.vad_encoder: expected a mapping")
            known = _vad_encoder_fields()
            for sub, v in value.items():
                if sub not in known:
                    raise ConfigError(
                        f"{where('model', key, str(sub))}: unknown key {sub!r} in model.vad_encoder; "
                        f"expected one of {', '.join(known)}"
                    )
                if not _type_ok(v, known[sub], False):
                    raise ConfigError(
                        f"{where('model', key, sub)}: model.vad_encoder.{sub}: {v!r}, expected "
                        f"{_type_name(known[sub], False)}"
                    )
            cfg.vad_encoder = dict(value)
        elif key != "vad_encoder":
            cfg.model[key] = float(value) if key in MODEL_FLOATS else value


def _parse_recipe(recipe: Any, where: Callable[..., str], cfg: RunConfig) -> None:
    """Check the ``recipe:`` mapping into ``cfg.recipe_overrides`` (``Recipe`` fields, typed)."""
    if not isinstance(recipe, dict):
        raise ConfigError(
            f"{where('recipe')}: recipe: expected a mapping of Recipe fields, got {type(recipe).__name__}"
        )
    known = _recipe_fields()
    for key, value in recipe.items():
        if key not in known:
            raise ConfigError(
                f"{where('recipe', str(key))}: unknown key {key!r} in recipe; expected one of "
                f"{', '.join(known)}"
            )
        nullable = key in _NULLABLE
        default = _SET_TYPE.get(key, 1) if known[key] is None else known[key]
        if isinstance(default, float):
            value = _as_number(value)
        if not _type_ok(value, default, nullable):
            raise ConfigError(
                f"{where('recipe', key)}: recipe.{key}: {value!r}, expected {_type_name(default, nullable)}"
            )
        if key == "mixed_precision" and value not in MIXED_PRECISION:
            raise ConfigError(
                f"{where('recipe', key)}: recipe.mixed_precision: {value!r}, expected one of "
                f"{', '.join(MIXED_PRECISION)}"
            )
        if isinstance(default, tuple):
            value = tuple(value)
        cfg.recipe_overrides[key] = (
            float(value) if isinstance(default, float) and value is not None else value
        )


def parse_run_config(values: Any, source: str | os.PathLike[str] = "<config>", text: str = "") -> RunConfig:
    """Validate a parsed YAML mapping; ``text`` (the file's content) lets errors give line numbers."""
    src = str(source)
    lines = _line_index(text) if text else {}

    def where(*path: str) -> str:
        line = lines.get(tuple(path))
        return f"{src}, line {line}" if line else src

    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"{src}: expected a mapping of keys ({', '.join(TOP_LEVEL)}), got {type(values).__name__}"
        )
    for key in values:
        if key not in TOP_LEVEL:
            raise ConfigError(
                f"{where(str(key))}: unknown key {key!r}; expected one of {', '.join(TOP_LEVEL)}"
            )
    cfg = RunConfig(source=Path(source) if src != "<config>" else None)
    if "profile" in values:
        if values["profile"] not in PROFILES:
            raise ConfigError(
                f"{where('profile')}: profile: {values['profile']!r}, expected one of {', '.join(PROFILES)}"
            )
        cfg.profile = values["profile"]
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ConfigError(
                f"{where('name')}: name: {name!r}, expected a folder name (no '/', not starting with '.')"
            )
        cfg.name = name
    if "seed" in values:
        if isinstance(values["seed"], bool) or not isinstance(values["seed"], int):
            raise ConfigError(f"{where('seed')}: seed: {values['seed']!r}, expected an integer")
        cfg.seed = values["seed"]

    _parse_model(values.get("model") or {}, where, cfg)
    _parse_recipe(values.get("recipe") or {}, where, cfg)
    try:  # every value checked now, before any data or model loads
        cfg.recipe(cfg.profile or "tiny").train_config(seed=0, device="cpu")
        cfg.model_config(cfg.profile or "tiny")
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{src}: {err}") from None
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (not "last one wins")."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} appears twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_run_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run config."""

    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{path}: is a folder; expected a YAML run config file such as configs/tiny_sevlm.yaml"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from None
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    return parse_run_config(values, path, text)
