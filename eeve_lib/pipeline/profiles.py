"""Profiles as data: one readable YAML file per profile in ``profiles/``.

A profile says which corpora, base model, tokenizer sizes, thresholds, training budgets and
seeds a run uses. Every profile shares one code path; only these files differ. Adding a profile
is adding a file here (and, for new data, a manifest in ``data_manifests/``). Unknown keys and unknown profile names are errors that list the valid ones.
Shown in every chapter's first cell (see the introduction for an overview).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from ..errors import ProfileError
from ..method.stages import StageBudget

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
PROFILE_DIR = Path(os.environ.get("EEVE_PROFILE_DIR", PROJECT_ROOT / "profiles"))


@dataclass(frozen=True)
class DataSettings:
    """Which manifest entries feed the run, and how they are split."""

    manifest: str
    korean: list[str]
    english: list[str]
    validation_fraction: float = 0.1
    max_korean_documents: int | None = None
    max_english_documents: int | None = None
    on_decode_error: Literal["fail", "skip"] = "fail"
    # A manifest entry of parallel Korean/English sentences (fertility on "same content").
    parallel: str | None = None


@dataclass(frozen=True)
class PretrainSettings:
    """Budget for pretraining the small English base model (``tiny``/``small`` only)."""

    steps: int
    batch_size: int
    seq_len: int
    learning_rate: float
    warmup_steps: int = 10
    weight_decay: float = 0.01
    log_every: int = 10


@dataclass(frozen=True)
class BaseModelSettings:
    """The English base model: pretrained here, taken from the hub, or read from a directory."""

    source: Literal["pretrain", "hub", "local"]
    hub_id: str | None = None
    revision: str | None = None
    local_path: str | None = None
    tokenizer_vocab_size: int | None = None
    # The family of the tokenizer pretrained here (source 'pretrain'); see eeve_lib.method.families.
    tokenizer_family: str = "byte-level BPE"
    # Extra added tokens appended after BPE training, like phi-2's whitespace tokens.
    tokenizer_added_tokens: int = 0
    pad_vocab_to_multiple_of: int = 64
    # The model class pretrained here or built as a stand-in: PhiForCausalLM (phi-2) or
    # LlamaForCausalLM (SOLAR-10.7B); hub and local models bring their own configuration.
    architecture_type: Literal["phi", "llama"] = "phi"
    architecture: dict[str, Any] = field(default_factory=dict)
    pretrain: PretrainSettings | None = None
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"


@dataclass(frozen=True)
class VocabularySettings:
    """Steps 1-7: intermediate tokenizer size, frequency threshold and the loop."""

    intermediate_vocab_size: int
    min_frequency: int
    threshold_rationale: str
    max_iterations: int = 10
    pad_to_multiple_of: int = 64
    counting_batch_size: int = 4096
    counting_workers: int = 0  # 0 = one per core


@dataclass(frozen=True)
class TrainingSettings:
    """Step 8 (biased sampling) and step 10 (the seven stages)."""

    seq_len: int
    batch_size: int
    schedule: list[StageBudget]
    new_token_bias: float = 1.0
    checkpoint_every: int = 50
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # Saved stage directories: float32 keeps resumption bit-exact; bfloat16 halves the disk a
    # phi-2-sized run needs (frozen rows stay exact: they were bfloat16 values to begin with).
    save_dtype: Literal["float32", "bfloat16"] = "float32"
    validation_windows: int = 16
    validation_points_per_stage: int = 4
    log_every: int = 1


@dataclass(frozen=True)
class EvaluationSettings:
    """Held-out scoring, generation samples and KoBEST."""

    window: int
    stride: int
    max_korean_chars: int | None = None
    max_english_chars: int | None = None
    korean_prompts: list[str] = field(default_factory=list)
    english_prompts: list[str] = field(default_factory=list)
    max_new_tokens: int = 32
    kobest: bool = False
    kobest_limit: int | None = None


@dataclass(frozen=True)
class AblationSettings:
    """Step-10 and step-9 ablations at the same token budget and seeds."""

    enabled: bool = True
    schedules: list[str] = field(default_factory=lambda: ["full_finetune", "embeddings_only"])
    inits: list[str] = field(default_factory=lambda: ["mean_resizing", "random"])


@dataclass(frozen=True)
class Profile:
    """A whole profile; see ``profiles/<name>.yaml``."""

    name: str
    description: str
    seed: int
    device: Literal["auto", "cpu", "cuda"]
    data: DataSettings
    base_model: BaseModelSettings
    vocabulary: VocabularySettings
    training: TrainingSettings
    evaluation: EvaluationSettings
    embedding_init: Literal["subword_mean", "mean_resizing", "random"] = "subword_mean"
    ablations: AblationSettings = field(default_factory=AblationSettings)
    # Where this profile's own numbers come from, shown next to every result.
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self, *sections: str) -> str:
        """A short, stable hash of the whole profile or of some of its sections."""
        d = self.to_dict()
        if sections:
            d = {s: d[s] for s in sections}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def available_profiles() -> list[str]:
    """Names of the profile files in ``profiles/``."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; build nested dataclasses."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except ProfileError as e:
                errors.append(str(e))
        raise ProfileError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ProfileError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}.")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ProfileError(f"{where}: expected a mapping of settings, got {value!r}.")
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ProfileError(f"{where}: expected a list, got {value!r}.")
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ProfileError(f"{where}: expected a mapping, got {value!r}.")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise ProfileError(f"{where}: expected {_type_name(tp)}, got {value!r}.")


def _build(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ProfileError(
            f"{where}: unknown key(s) {', '.join(unknown)}. Valid keys here: {', '.join(fields)}."
        )
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ProfileError(f"{where}: the required key '{name}' is missing.")
    return cls(**kwargs)


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted-key ``overrides`` applied (``"training.batch_size": 4``)."""
    out = json.loads(json.dumps(raw))
    for dotted, value in (overrides or {}).items():
        node = out
        parts = dotted.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ProfileError(f"override {dotted!r}: '{p}' is not a section of the profile.")
            node = node[p]
        node[parts[-1]] = value
    return out


def _check_consistency(p: Profile) -> None:
    from ..method.stages import STAGES  # the stage table lives with the stage definitions

    for i, b in enumerate(p.training.schedule):
        if b.stage not in STAGES:
            raise ProfileError(
                f"training.schedule[{i}]: unknown stage {b.stage}. Valid stages: {', '.join(map(str, STAGES))}."
            )
        if (b.steps is None) == (b.tokens is None):
            raise ProfileError(f"training.schedule[{i}]: give exactly one of 'steps' or 'tokens'.")
    if not 0 < p.data.validation_fraction < 1:
        raise ProfileError("data.validation_fraction must lie strictly between 0 and 1.")
    if p.vocabulary.min_frequency < 1:
        raise ProfileError("vocabulary.min_frequency must be at least 1.")
    bm = p.base_model
    if bm.source == "pretrain" and (bm.pretrain is None or not bm.tokenizer_vocab_size):
        raise ProfileError("base_model: source 'pretrain' needs 'pretrain' and 'tokenizer_vocab_size'.")
    if bm.source == "hub" and not (bm.hub_id and bm.revision):
        raise ProfileError("base_model: source 'hub' needs 'hub_id' and a pinned 'revision'.")
    if bm.source == "local" and not bm.local_path:
        raise ProfileError("base_model: source 'local' needs 'local_path'.")


def load_profile(name: str | Profile, overrides: Mapping[str, Any] | None = None) -> Profile:
    """Load and validate ``profiles/<name>.yaml``; optional dotted-key overrides.

    Shown in every chapter's parameters cell. ``overrides`` lets tests and users shrink budgets
    without a new file: ``load_profile("tiny", {"training.batch_size": 2})``.
    """
    if isinstance(name, Profile):
        if not overrides:
            return name
        raw = name.to_dict()
    else:
        if isinstance(overrides, str):
            overrides = json.loads(overrides) if overrides.strip() else {}
        path = PROFILE_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ProfileError(
                f"Unknown profile {name!r}. Valid profiles: {', '.join(available_profiles())} "
                f"(files in {PROFILE_DIR})."
            )
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if raw.get("name", name) != name:
            raise ProfileError(f"{path}: 'name' says {raw.get('name')!r} but the file is {name!r}.")
    raw = apply_overrides(raw, overrides)
    profile = _build(Profile, raw, f"profile {raw.get('name', name)!r}")
    _check_consistency(profile)
    return profile


def build_typed(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    """Validate a mapping against a dataclass's annotations (profiles and data manifests alike)."""
    return _build(cls, raw, where)
