"""Profiles as data: one readable YAML file per profile in ``profiles/``.

A profile says which corpora, base model, tokenizer sizes, thresholds, training budgets and
seeds a run uses. Every profile shares one code path; only these files differ. Adding a profile
is adding a file here (and, for new data, a manifest in ``data_manifests/``). Unknown keys and
unknown profile names are errors that list the valid ones.
Shown in every chapter's first cell (see the introduction for an overview).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from ..errors import ProfileError
from ..method.families import supported_families
from ..method.stages import ABLATION_SCHEDULES, STAGES, StageBudget
from .arm import Arm, ArmError, ablation_arms

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
PROFILE_DIR = Path(os.environ.get("EEVE_PROFILE_DIR", PROJECT_ROOT / "profiles"))
# A profile name is also a folder name (runs/<name>), so it is a plain name: no '/', no '..'.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


def _allowed(low: float | None = None, high: float | None = None, *, above: bool = False, below: bool = False,
             min_items: int | None = None, pattern: re.Pattern | None = None, **field_kwargs: Any) -> Any:
    """A dataclass field whose value the loader checks: a range, a shortest length or a pattern.

    ``low``/``high`` are inclusive bounds unless ``above``/``below`` make them exclusive.
    """
    rule = {"low": low, "high": high, "above": above, "below": below, "min_items": min_items, "pattern": pattern}
    return field(metadata={"allowed": rule}, **field_kwargs)


def _describe_range(rule: Mapping[str, Any]) -> str:
    low, high = rule["low"], rule["high"]
    lo = f"{'>' if rule['above'] else '>='} {low}" if low is not None else ""
    hi = f"{'<' if rule['below'] else '<='} {high}" if high is not None else ""
    return " and ".join(x for x in (lo, hi) if x)


def _check_allowed(value: Any, rule: Mapping[str, Any], where: str) -> None:
    """Raise a one-line :class:`ProfileError` naming the key, the value and what is allowed."""
    if value is None:
        return
    if rule.get("min_items") is not None and len(value) < rule["min_items"]:
        raise ProfileError(f"{where}: {value!r} is too short; give at least {rule['min_items']} item(s).")
    if rule.get("pattern") is not None and not rule["pattern"].fullmatch(value):
        raise ProfileError(f"{where}: {value!r} is not allowed; use letters, digits, '-' and '_' only.")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = rule.get("low"), rule.get("high")
        bad = not math.isfinite(value)
        if low is not None:
            bad |= value <= low if rule.get("above") else value < low
        if high is not None:
            bad |= value >= high if rule.get("below") else value > high
        if bad:
            raise ProfileError(f"{where}: {value!r} is out of range; allowed: {_describe_range(rule)}.")


# base_model.architecture is passed to transformers' PhiConfig; these keys are checked here, so that
# a typo in a value fails when the profile loads instead of in chapter 00.
_ARCHITECTURE: dict[str, tuple[type, dict[str, Any]]] = {
    "hidden_size": (int, {"low": 1}),
    "intermediate_size": (int, {"low": 1}),
    "num_hidden_layers": (int, {"low": 1}),
    "num_attention_heads": (int, {"low": 1}),
    "num_key_value_heads": (int, {"low": 1}),
    "max_position_embeddings": (int, {"low": 1}),
    "partial_rotary_factor": (float, {"low": 0, "high": 1, "above": True}),
    "layer_norm_eps": (float, {"low": 0, "above": True}),
    "rope_theta": (float, {"low": 0, "above": True}),
    "resid_pdrop": (float, {"low": 0, "high": 1, "below": True}),
    "embd_pdrop": (float, {"low": 0, "high": 1, "below": True}),
    "attention_dropout": (float, {"low": 0, "high": 1, "below": True}),
    "hidden_act": (str, {}),
}
# Set by eeve from the tokenizer; in the profile they would clash with it.
_ARCHITECTURE_RESERVED = ("vocab_size", "bos_token_id", "eos_token_id")


def _check_architecture(architecture: Mapping[str, Any], where: str) -> None:
    for key, value in architecture.items():
        here = f"{where}.{key}"
        if key in _ARCHITECTURE_RESERVED:
            raise ProfileError(f"{here}: eeve sets {key} from the tokenizer; remove it from the profile.")
        if key in _ARCHITECTURE:
            tp, rule = _ARCHITECTURE[key]
            rule = {"low": None, "high": None, "above": False, "below": False, **rule}
            try:
                _convert(value, tp, here)
            except ProfileError:
                allowed = f"{_type_name(tp)} {_describe_range(rule)}".strip()
                raise ProfileError(f"{here}: expected {allowed}, got {value!r}.") from None
            _check_allowed(value, rule, here)
        elif isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ProfileError(f"{here}: {value!r} is out of range; allowed: >= 1.")


@dataclass(frozen=True)
class DataSettings:
    """Which manifest entries feed the run, and how they are split."""

    manifest: str
    korean: list[str] = _allowed(min_items=1)
    english: list[str] = _allowed(min_items=1)
    validation_fraction: float = _allowed(0, 1, above=True, below=True, default=0.1)
    # Held out from training beside the validation split: the sweeps of chapter 05 choose settings
    # on it, so the validation split the book reports is text that no choice saw. 0: no tuning split.
    tuning_fraction: float = _allowed(0, 1, below=True, default=0.0)
    max_korean_documents: int | None = _allowed(1, default=None)
    max_english_documents: int | None = _allowed(1, default=None)
    on_decode_error: Literal["fail", "skip"] = "fail"
    # A manifest entry of parallel Korean/English sentences (fertility on "same content").
    parallel: str | None = None


@dataclass(frozen=True)
class PretrainSettings:
    """Budget for pretraining the small English base model (``tiny``/``small`` only)."""

    steps: int = _allowed(1)
    batch_size: int = _allowed(1)
    seq_len: int = _allowed(2)
    learning_rate: float = _allowed(0, above=True)
    warmup_steps: int = _allowed(0, default=10)
    weight_decay: float = _allowed(0, default=0.01)
    log_every: int = _allowed(1, default=10)


@dataclass(frozen=True)
class BaseModelSettings:
    """The English base model: pretrained here, taken from the hub, or read from a directory."""

    # 'gguf': a quantised model file shipped in a PyPI wheel (``model_entry`` of the data manifest),
    # de-quantised to float32 once; the de-quantised model is the base from then on.
    source: Literal["pretrain", "hub", "local", "gguf"]
    model_entry: str | None = None
    # The token that separates documents and ends generation, when it is not the tokenizer's own
    # end-of-sequence token (an instruction-tuned GGUF names its chat turn's end).
    eos_token: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    local_path: str | None = None
    tokenizer_vocab_size: int | None = _allowed(1, default=None)
    # The family of the tokenizer pretrained here (source 'pretrain'); see eeve_lib.method.families.
    tokenizer_family: str = "byte-level BPE"
    # Extra added tokens appended after BPE training, like phi-2's whitespace tokens.
    tokenizer_added_tokens: int = _allowed(0, default=0)
    pad_vocab_to_multiple_of: int = _allowed(1, default=64)
    # The model class pretrained here or built as a stand-in: PhiForCausalLM (phi-2) or
    # LlamaForCausalLM (SOLAR-10.7B); hub and local models bring their own configuration.
    architecture_type: Literal["phi", "llama"] = "phi"
    architecture: dict[str, Any] = field(default_factory=dict, metadata={"check": _check_architecture})
    pretrain: PretrainSettings | None = None
    # Share of pretraining windows drawn from the Korean training split (source 'pretrain' only):
    # phi-2 saw a little Korean through its byte-level tokenizer, so the stand-in sees a few percent.
    # The base tokenizer is still trained on English alone, so Korean stays in bytes.
    korean_share: float = _allowed(0, 0.5, default=0.0)
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"

    @property
    def random_stand_in(self) -> bool:
        """Whether the base is a stand-in with random weights: source 'local' is what ``eeve
        prepare-full-dry`` writes (full-dry, solar-dry). Claims about what training achieves,
        which a few steps on random weights need not bear out, are asserted only on other bases."""
        return self.source == "local"


@dataclass(frozen=True)
class VocabularySettings:
    """Steps 1-7: intermediate tokenizer size, frequency threshold and the loop."""

    intermediate_vocab_size: int = _allowed(1)
    min_frequency: int = _allowed(1)
    threshold_rationale: str
    max_iterations: int = _allowed(1, default=10)
    pad_to_multiple_of: int = _allowed(1, default=64)
    counting_batch_size: int = _allowed(1, default=4096)
    counting_workers: int = _allowed(0, default=0)  # 0 = one per core


@dataclass(frozen=True)
class TrainingSettings:
    """Step 8 (biased sampling) and step 10 (the seven stages)."""

    seq_len: int = _allowed(2)
    batch_size: int = _allowed(1)
    schedule: list[StageBudget] = _allowed(min_items=1)
    new_token_bias: float = _allowed(0, default=1.0)
    # Share of every stage's training windows drawn from the English training split (English
    # replay), so the stages that train base parameters keep seeing English; 0 trains on Korean alone.
    english_replay: float = _allowed(0, 0.9, default=0.0)
    checkpoint_every: int = _allowed(0, default=50)  # 0 = no checkpoints
    weight_decay: float = _allowed(0, default=0.01)
    warmup_fraction: float = _allowed(0, 1, default=0.1)
    grad_clip: float = _allowed(0, default=1.0)  # 0 = no clipping
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # Saved stage directories: float32 keeps resumption bit-exact; bfloat16 halves the disk a
    # phi-2-sized run needs (frozen rows stay exact: they were bfloat16 values to begin with).
    save_dtype: Literal["float32", "bfloat16"] = "float32"
    validation_windows: int = _allowed(1, default=16)
    validation_points_per_stage: int = _allowed(1, default=4)
    log_every: int = _allowed(1, default=1)
    # Several processes (accelerate launch): 'ddp' keeps the whole model on each, 'fsdp' shards it
    # (FSDP2). An accelerate launch config with distributed_type FSDP also selects 'fsdp'. Not part
    # of a stage's cache key: like the number of processes, it changes how, not what, a stage trains.
    parallelism: Literal["ddp", "fsdp"] = "ddp"
    # Stage 6: 'full' trains every parameter (the paper); 'lora' trains adapters on the transformer's
    # linear layers (and every embedding row, as the full stage); 'qlora' also keeps those layers in
    # 4 bits (bitsandbytes, CUDA only). The adapters are merged into the weights at the end of the stage.
    stage6: Literal["full", "lora", "qlora"] = "full"
    lora_rank: int = _allowed(1, default=8)
    lora_alpha: float = _allowed(0, above=True, default=16.0)
    lora_dropout: float = _allowed(0, 1, below=True, default=0.0)


def _check_shots(shots: list[int], where: str) -> None:
    if not shots:
        raise ProfileError(f"{where}: give at least one number of demonstrations, e.g. [0, 4].")
    for k in shots:
        if k < 0 or k % 2:
            raise ProfileError(f"{where}: {k!r} is not allowed; demonstrations come in pairs (one of each label), "
                               f"so give even numbers >= 0.")


@dataclass(frozen=True)
class SentimentSettings:
    """NSMC sentiment (eeve_lib.method.tasks): ``items`` held-out reviews, half of each label,
    scored after each number of demonstrations in ``shots``; reviews of at most ``max_chars``."""

    entry: str  # the manifest entry of the labelled reviews, e.g. nsmc-reviews
    items: int = _allowed(2)
    shots: list[int] = field(metadata={"check": _check_shots})
    max_chars: int = _allowed(1, default=100)


@dataclass(frozen=True)
class MatchingSettings:
    """Korean-to-English matching on the profile's parallel corpus (eeve_lib.method.tasks)."""

    items: int = _allowed(2)
    candidates: int = _allowed(2, default=4)
    max_chars: int = _allowed(1, default=150)

    def __post_init__(self) -> None:
        if self.candidates > self.items:
            raise ProfileError(f"evaluation.matching: candidates ({self.candidates}) cannot exceed items "
                               f"({self.items}); the distractors are the other items' translations.")


@dataclass(frozen=True)
class EvaluationSettings:
    """Held-out scoring, generation samples and KoBEST."""

    window: int = _allowed(2)
    stride: int = _allowed(1)
    max_korean_chars: int | None = _allowed(1, default=None)
    max_english_chars: int | None = _allowed(1, default=None)
    korean_prompts: list[str] = field(default_factory=list)
    english_prompts: list[str] = field(default_factory=list)
    max_new_tokens: int = _allowed(1, default=32)
    # The longest of the first 200 held-out Korean documents, cut to this many characters: the
    # sentence chapter 05 decodes token by token to compare the models' decoding steps.
    decoded_sentence_chars: int = _allowed(1, default=200)
    kobest: bool = False
    kobest_limit: int | None = _allowed(1, default=None)
    sentiment: SentimentSettings | None = None
    matching: MatchingSettings | None = None
    # Autocast for scoring (bits per character and the tasks); the log-softmax stays float32.
    dtype: Literal["float32", "bfloat16"] = "float32"


@dataclass(frozen=True)
class AblationSettings:
    """Step-10 and step-9 ablations at the same token budget and seeds."""

    enabled: bool = True
    schedules: list[str] = field(default_factory=lambda: ["full_finetune", "embeddings_only"])
    inits: list[str] = field(default_factory=lambda: ["mean_resizing", "random"])
    # The seven stages with stage 6 trained another way (training.stage6), e.g. [lora].
    stage6: list[Literal["full", "lora", "qlora"]] = field(default_factory=list)
    # Baselines without new tokens: the base model and its own tokenizer, every parameter trained.
    # no_expansion: for the same compute as the seven stages (optimizer steps x tokens per step);
    # equal_text: on the text the seven stages read (the same Korean characters, which take the base
    # tokenizer more tokens, so more steps, and the same English windows).
    baselines: list[Literal["no_expansion", "equal_text"]] = field(default_factory=list)
    # The seven stages at other English-replay shares (training.english_replay), e.g. [0.0, 0.5].
    english_replay: list[float] = field(default_factory=list)
    # A learning-rate grid, as multiples of the profile's rates, e.g. [0.5, 2.0]: the seven stages
    # (every stage's rate times the multiple) and the no-expansion baseline at each, at the
    # profile's seed, scored on the tuning split to choose both rates with the same grid.
    learning_rate_scales: list[float] = field(default_factory=list)
    # The no-expansion baseline's learning rate as a multiple of the seven stages' stage-6 rate:
    # chosen on the tuning split from learning_rate_scales (1: stage 6's own rate).
    baseline_lr_scale: float = _allowed(0, above=True, default=1.0)
    # The seven stages with the embeddings of a tied base kept tied (tied_embeddings: keep).
    tied: bool = False
    # Training seeds per arm, the seven stages included: the profile's seed, seed + 1, ...; the base
    # model and the tokenizer are shared, so the spread is that of the training's own randomness.
    seeds: int = _allowed(1, default=1)
    # Arms trained at the profile's seed only (e.g. [schedule:full_finetune]): shown, never claimed from.
    one_seed: list[str] = field(default_factory=list)
    # Further arms by name (kind:value, see pipeline/arm.py), e.g. a kind with no setting of its own.
    extra_arms: list[str] = field(default_factory=list)
    # Processes that train arms side by side (0: one per core); each runs its torch on one thread.
    # How the arms run, not what they compute: outside every cache key.
    workers: int = _allowed(0, default=1)


@dataclass(frozen=True)
class Profile:
    """A whole profile; see ``profiles/<name>.yaml``."""

    name: str = _allowed(pattern=NAME_PATTERN)
    description: str
    seed: int = _allowed(0, 2**32 - 1)
    device: Literal["auto", "cpu", "cuda"]
    data: DataSettings
    base_model: BaseModelSettings
    vocabulary: VocabularySettings
    training: TrainingSettings
    evaluation: EvaluationSettings
    embedding_init: str = "subword_mean"  # a name in method/embedding_init.py's INIT_METHODS
    # A base whose output matrix is its input matrix (SmolLM2): 'untie' gives the extended model
    # its own output matrix, starting as an exact copy, so that every stage trains the rows it
    # names; 'keep' keeps one shared matrix (a stage then trains the union of its rows). No effect
    # on untied bases (phi-2, SOLAR-10.7B).
    tied_embeddings: Literal["untie", "keep"] = "untie"
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
            rule = f.metadata.get("allowed")
            try:
                kwargs[name] = _convert(raw[name], hints[name], f"{where}.{name}")
            except ProfileError as e:
                if rule and _describe_range(rule):
                    raise ProfileError(f"{e} Allowed: {_describe_range(rule)}.") from None
                raise
            if rule:
                _check_allowed(raw[name], rule, f"{where}.{name}")
            if "check" in f.metadata:
                f.metadata["check"](kwargs[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ProfileError(f"{where}: the required key '{name}' is missing.")
    return cls(**kwargs)


def parse_overrides(value: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Overrides as a dict of dotted keys, from None, "", a mapping or a JSON object in a string.

    The one parser of overrides: the command line (``--overrides``), the chapters' ``overrides``
    parameter and :func:`load_profile` all go through it. Anything else is a one-line ProfileError.
    """
    example = "e.g. '{\"training.batch_size\": 4}'"
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ProfileError(f"overrides: not valid JSON ({e.msg} at column {e.colno}); give a JSON object of "
                               f"dotted profile keys, {example}.") from None
    if not isinstance(value, Mapping):
        raise ProfileError(f"overrides: expected a JSON object of dotted profile keys, got {type(value).__name__} "
                           f"{value!r}; {example}.")
    bad = [k for k in value if not isinstance(k, str) or not k]
    if bad:
        raise ProfileError(f"overrides: keys must be dotted profile keys such as 'training.batch_size', "
                           f"not {bad[0]!r}.")
    return dict(value)


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted-key ``overrides`` applied (``"training.batch_size": 4``)."""
    out = json.loads(json.dumps(raw))
    for dotted, value in parse_overrides(overrides).items():
        node = out
        parts = dotted.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ProfileError(f"override {dotted!r}: '{p}' is not a section of the profile.")
            node = node[p]
        node[parts[-1]] = value
    return out


def _check_consistency(p: Profile) -> None:
    for i, b in enumerate(p.training.schedule):
        if b.stage not in STAGES:
            raise ProfileError(
                f"training.schedule[{i}]: unknown stage {b.stage}. Valid stages: {', '.join(map(str, STAGES))}."
            )
        if (b.steps is None) == (b.tokens is None):
            raise ProfileError(f"training.schedule[{i}]: give exactly one of 'steps' or 'tokens'.")
    # Names the chapters look up: a wrong one is refused here, before chapter 00, not in chapter 05.
    from ..method.embedding_init import INIT_METHODS  # here, not at the top: it loads torch

    for where, names, known in (("ablations.schedules", p.ablations.schedules, list(ABLATION_SCHEDULES)),
                                ("embedding_init", [p.embedding_init], list(INIT_METHODS)),
                                ("ablations.inits", p.ablations.inits, list(INIT_METHODS)),
                                ("base_model.tokenizer_family", [p.base_model.tokenizer_family],
                                 list(supported_families()))):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ProfileError(f"{where}: unknown name {unknown[0]!r}; known: {', '.join(map(repr, known))}.")
    for share in p.ablations.english_replay:
        if not 0 <= share <= 0.9:
            raise ProfileError(f"ablations.english_replay: {share} is not a share between 0 and 0.9.")
    for where in ("extra_arms", "one_seed"):  # arms by name: each a kind accepts (pipeline/arm.py)
        for name in getattr(p.ablations, where):
            try:
                Arm(name)
            except ArmError as e:
                raise ProfileError(f"ablations.{where}: {e}") from None
    try:
        arms = ablation_arms(p)
    except ArmError as e:
        raise ProfileError(f"ablations: {e}") from None
    unknown = sorted(set(p.ablations.one_seed) - set(arms))
    if unknown:
        raise ProfileError(f"ablations.one_seed: {', '.join(unknown)} is not an arm of this profile; its arms: "
                           f"{', '.join(arms)}.")
    if not 0 < p.data.validation_fraction < 1:
        raise ProfileError("data.validation_fraction must lie strictly between 0 and 1.")
    if p.data.validation_fraction + p.data.tuning_fraction >= 1:
        raise ProfileError("data.validation_fraction + data.tuning_fraction must stay below 1: the rest is "
                           "the training split.")
    for scale in p.ablations.learning_rate_scales:
        if not 0 < scale <= 10 or scale == 1:
            raise ProfileError(f"ablations.learning_rate_scales: {scale} is not a multiple in (0, 10] other than "
                               f"1 (the profile's own rates are always in the grid).")
    grid = {1.0, *p.ablations.learning_rate_scales}
    if p.ablations.learning_rate_scales and p.ablations.baseline_lr_scale not in grid:
        raise ProfileError(f"ablations.baseline_lr_scale: {p.ablations.baseline_lr_scale:g} is not on the grid it is "
                           f"chosen from (1 and ablations.learning_rate_scales: "
                           f"{', '.join(f'{x:g}' for x in sorted(grid))}).")
    if p.ablations.learning_rate_scales and not p.data.tuning_fraction:
        raise ProfileError("ablations.learning_rate_scales chooses learning rates on the tuning split: set "
                           "data.tuning_fraction (e.g. 0.1) or leave the grid empty.")
    if p.vocabulary.min_frequency < 1:
        raise ProfileError("vocabulary.min_frequency must be at least 1.")
    bm = p.base_model
    if bm.source == "pretrain" and (bm.pretrain is None or not bm.tokenizer_vocab_size):
        raise ProfileError("base_model: source 'pretrain' needs 'pretrain' and 'tokenizer_vocab_size'.")
    if bm.source == "hub" and not (bm.hub_id and bm.revision):
        raise ProfileError("base_model: source 'hub' needs 'hub_id' and a pinned 'revision'.")
    if bm.source == "local" and not bm.local_path:
        raise ProfileError("base_model: source 'local' needs 'local_path'.")
    if bm.source == "gguf" and not bm.model_entry:
        raise ProfileError("base_model: source 'gguf' needs 'model_entry', an entry of the data manifest.")
    arch = bm.architecture
    if isinstance(arch.get("hidden_size"), int) and isinstance(arch.get("num_attention_heads"), int) \
            and arch["hidden_size"] % arch["num_attention_heads"]:
        raise ProfileError(f"base_model.architecture: hidden_size {arch['hidden_size']} is not a multiple of "
                           f"num_attention_heads {arch['num_attention_heads']}; change one of them.")


# A profile is a few kilobytes of plain settings. These budgets refuse a hostile file before it takes
# the machine's memory: an alias bomb (a few hundred bytes whose aliases, *name, expand to billions
# of values) or values nested thousands deep. The expanded size counts every value and every
# character of a scalar, an alias as often as it is used.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_EXPANDED = 1_000_000
MAX_YAML_DEPTH = 100


def _check_yaml_budget(root: yaml.Node, path: Path, error: type[Exception]) -> None:
    """Refuse (one-line ``error`` naming ``path``) a composed YAML document over the budgets above,
    or one that contains itself; walks each distinct node once, so an alias bomb costs nothing here."""
    fix = "a settings file holds plain values: write them out instead of repeating aliases (*name)"
    sizes: dict[int, int] = {}
    on_path: set[int] = set()  # nodes whose children are being walked: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool, int]] = [(root, False, 1)]
    while stack:
        node, done, depth = stack.pop()
        key = id(node)
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        if done:
            on_path.discard(key)
            size = 1 + (sum(sizes[id(c)] for c in children) if children else len(str(node.value)))
            if size > MAX_YAML_EXPANDED:
                raise error(f"{path}: its aliases expand to more than {MAX_YAML_EXPANDED:,} values and "
                            f"characters (an alias bomb?); {fix}.")
            sizes[key] = size
        elif key in on_path:
            raise error(f"{path}: an alias refers to a value that contains it (a recursive structure); {fix}.")
        elif key not in sizes:
            if depth > MAX_YAML_DEPTH:
                raise error(f"{path}: values nested more than {MAX_YAML_DEPTH} levels deep; a settings file holds "
                            f"plain values.")
            on_path.add(key)
            stack.append((node, True, depth))
            stack.extend((c, False, depth + 1) for c in children if id(c) not in sizes)


def read_yaml_file(path: Path, error: type[Exception] = ProfileError) -> Any:
    """The value in a small YAML settings file (a profile; a data manifest could use it too), read
    safely within a size and alias budget. Anything else is a one-line ``error`` naming the file."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise error(f"{path}: {size:,} bytes, more than a settings file holds (at most {MAX_YAML_BYTES:,}); "
                        f"check that it is the right file.")
        loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_yaml_budget(node, path, error)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{path}: not valid YAML ({problem}{where}); fix the file's syntax.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot be read ({e}); check that it is a readable UTF-8 file.") from None
    except RecursionError:  # nested deeper than the parser's own recursion allows
        raise error(f"{path}: values nested too deeply to read; a settings file holds plain values.") from None


def _read_profile_file(path: Path) -> dict[str, Any]:
    """The mapping in a profile file; a one-line ProfileError naming the file if it is not one."""
    raw = read_yaml_file(path)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{path}: a profile is a mapping of settings (key: value), not a "
                           f"{type(raw).__name__}; see profiles/tiny.yaml for the shape.")
    return dict(raw)


def load_profile(name: str | Profile, overrides: Mapping[str, Any] | str | None = None) -> Profile:
    """Load and validate ``profiles/<name>.yaml``; optional dotted-key overrides.

    Shown in every chapter's parameters cell. ``overrides`` lets tests and users shrink budgets
    without a new file: ``load_profile("tiny", {"training.batch_size": 2})``.
    """
    overrides = parse_overrides(overrides)
    if isinstance(name, Profile):
        if not overrides:
            return name
        raw = name.to_dict()
    else:
        path = PROFILE_DIR / f"{name}.yaml"
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or not path.is_file():
            raise ProfileError(
                f"Unknown profile {name!r}. Valid profiles: {', '.join(available_profiles())} "
                f"(files in {PROFILE_DIR})."
            )
        raw = _read_profile_file(path)
        if raw.get("name", name) != name:
            raise ProfileError(f"{path}: 'name' says {raw.get('name')!r} but the file is {name!r}.")
    raw = apply_overrides(raw, overrides)
    profile = _build(Profile, raw, f"profile {raw.get('name', name)!r}")
    _check_consistency(profile)
    return profile


def build_typed(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    """Validate a mapping against a dataclass's annotations (profiles and data manifests alike)."""
    return _build(cls, raw, where)
