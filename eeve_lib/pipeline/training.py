"""The pipeline's steps 8-10: the extended model, trained stage by stage into ``runs/<profile>/``.

Loads the base model and the extended tokenizer, initialises the new rows (step 9), builds the
biased training data (step 8) and runs each stage of the schedule (step 10) through the pure
stage loop. A completed stage folder is reused while the key of its inputs matches; a stale one
is retrained and replaced atomically. A stage interrupted after a checkpoint resumes from it.
Only the main process writes. Shown in chapters 03, 04 and 05 (ablations).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import torch

from ..errors import TrainingError
from ..method.embedding_init import Extension, extend_model, is_tied, plan_rows, untie_embeddings
from ..method.lm import pack_documents
from ..method.sampling import TrainingData, build_training_data
from ..method.stage_loop import (ResumeState, StageLog, StageOptions, Validation, is_main_process, train_stage,
                                 wait_for_everyone)
from ..method.stages import StageBudget, ablation_schedule, get_stage
from ..runtime import deterministic, resolve_device, resolve_dtype
from . import atomic, cache, steps
from .arm import MAIN_ARM, Arm
from .base import load_base, load_base_tokenizer
from .checkpoints import load_checkpoint, save_checkpoint
from .corpora import load_corpus
from .paths import MARKERS, RunPaths, run_paths
from .profiles import Profile, load_profile
from .vocabulary import load_target_tokenizer


def initialise_extended_model(profile, run_dir=None, method: str | None = None):
    """The base model of a run, grown to its extended tokenizer and initialised (chapters 03 and 04).

    Returns ``(model, target_tokenizer, base_tokenizer, extension)``.
    """
    model, base_tok = load_base(profile, run_dir)
    target_tok = load_target_tokenizer(profile, run_dir)
    ext = extend_model(model, base_tok, target_tok, method or profile.embedding_init, seed=profile.seed,
                       pad_to_multiple_of=profile.vocabulary.pad_to_multiple_of,
                       untie=profile.tied_embeddings == "untie")
    return model, target_tok, base_tok, ext


def plan_extension(profile, run_dir=None) -> tuple[Extension, int, int]:
    """A run's row layout, hidden size and transformer parameter count, without loading any weights.

    Chapter 04 uses it for its tables; a phi-2-sized model is never held twice in memory for them.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    paths = run_paths(profile, run_dir)
    config = AutoConfig.from_pretrained(paths.base, trust_remote_code=False)
    base_size = len(AutoTokenizer.from_pretrained(paths.base, trust_remote_code=False))
    target_size = len(load_target_tokenizer(profile, run_dir))
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    embedding_ids = {id(p) for m in (skeleton.get_input_embeddings(), skeleton.get_output_embeddings())
                     for p in m.parameters()}
    body = sum(p.numel() for p in skeleton.parameters() if id(p) not in embedding_ids)
    rows = plan_rows(config.vocab_size, target_size, profile.vocabulary.pad_to_multiple_of)
    ext = Extension(base_size, target_size, config.vocab_size, rows, profile.embedding_init)
    return ext, config.hidden_size, body


def resolve_schedule(profile: Profile, schedule: Sequence[StageBudget | int] | None = None) -> list[StageBudget]:
    """The profile's schedule, or a custom subset given as stage numbers or budgets."""
    if schedule is None:
        return list(profile.training.schedule)
    by_stage = {b.stage: b for b in profile.training.schedule}
    out = []
    for item in schedule:
        if isinstance(item, StageBudget):
            get_stage(item.stage)
            out.append(item)
        else:
            get_stage(item)
            if item not in by_stage:
                raise TrainingError(f"Stage {item} has no budget in profile {profile.name!r}; give a StageBudget.")
            out.append(by_stage[item])
    return out


def stage_options(training) -> StageOptions:
    """The stage loop's options from a profile's ``training`` section and the launch environment:
    an accelerate launch config with ``distributed_type: FSDP`` (accelerate then sets
    ``ACCELERATE_USE_FSDP``) shards as ``parallelism: fsdp`` does, and its
    ``fsdp_reshard_after_forward`` (``FSDP_RESHARD_AFTER_FORWARD``) is honoured."""
    launched_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() not in ("false", "no_shard", "0")
    return StageOptions(batch_size=training.batch_size, seq_len=training.seq_len, weight_decay=training.weight_decay,
                        grad_clip=training.grad_clip, warmup_fraction=training.warmup_fraction,
                        validation_points=training.validation_points_per_stage,
                        checkpoint_every=training.checkpoint_every, stage6=training.stage6,
                        lora_rank=training.lora_rank, lora_alpha=training.lora_alpha,
                        lora_dropout=training.lora_dropout,
                        sharded=launched_fsdp or training.parallelism == "fsdp", reshard_after_forward=reshard)


# Training settings outside a stage's key: how it runs (processes, sharding), not what it computes.
EXECUTION_SETTINGS = ("parallelism",)
# Settings of a LoRA/QLoRA stage 6: in the key only of the stages from a non-full stage 6 on.
STAGE6_SETTINGS = ("stage6", "lora_rank", "lora_alpha", "lora_dropout")


def _training_key(profile: Profile, schedule: Sequence[StageBudget], upto: int) -> dict[str, Any]:
    training = profile.to_dict()["training"]
    adapted = profile.training.stage6 != "full" and any(get_stage(b.stage).adapters_allowed
                                                        for b in schedule[:upto + 1])
    skip = {"schedule", *EXECUTION_SETTINGS, *(() if adapted else STAGE6_SETTINGS)}
    return {k: v for k, v in training.items() if k not in skip}


def _english_checksums(profile: Profile) -> list | None:
    """The English data's checksums when stages replay English (part of their key), else None."""
    if not profile.training.english_replay:
        return None
    return [s.get("sha256_verified") for s in load_corpus(profile, "english").sources]


def schedule_key(profile: Profile, run_dir, schedule: Sequence[StageBudget], init: str, upto: int) -> str:
    """The key of the model after stage ``upto`` of ``schedule`` (its index)."""
    return steps.key(
        "stages", profile, run_dir,
        extra={"training": _training_key(profile, schedule, upto),
               "schedule": [asdict(b) for b in schedule[:upto + 1]], "init": init,
               "tied_embeddings": profile.tied_embeddings,
               "english": _english_checksums(profile),
               "pad_to_multiple_of": profile.vocabulary.pad_to_multiple_of})


def _load_stage_dir(path: Path, marker: Path, key: str, dtype=torch.float32):
    """The model in a completed stage folder computed from ``key``, else None (stale folders are retrained)."""
    from transformers import AutoModelForCausalLM

    record = cache.cached(marker, key)
    if record is None:
        return None, None
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=False), record


def _load_checkpoint(path: Path, key: str) -> ResumeState | None:
    state = load_checkpoint(path)  # safetensors + JSON: refuses pickles, runs nothing
    if state is None:
        return None
    if state.get("key") != key:
        raise TrainingError(
            f"{path} belongs to another configuration (key {state.get('key')}, this run {key}). "
            f"Nothing was overwritten. Delete it, or the whole run directory, to start this stage afresh "
            f"(the same eeve run command, with --fresh added)."
        )
    return ResumeState(state["step"], state["trainable"], state["optimizer"], state["log"], state["rng"])


def _save_checkpoint(path: Path, key: str, resume: ResumeState) -> None:
    save_checkpoint(path, key=key, step=resume.step, trainable=resume.trainable, optimizer=resume.optimizer,
                    log=resume.log, rng=resume.rng)


class ScheduleResult:
    """The trained model and the log of every stage."""

    def __init__(self, model, tokenizer, extension: Extension, logs: list[StageLog],
                 base_validation: tuple[float, float] | None = None):
        self.model, self.tokenizer, self.extension = model, tokenizer, extension
        self.logs, self.base_validation = logs, base_validation


NO_EXPANSION = "none (no expansion)"  # the init of the no-expansion baseline: the base rows as they are


def initialise_unextended_model(profile, run_dir=None):
    """The base model with its own tokenizer, laid out as an extension with no new rows (the baseline)."""
    model, base_tok = load_base(profile, run_dir)
    # Untied like the extended model, so that the two arms differ by the new tokens alone.
    untied = untie_embeddings(model) if profile.tied_embeddings == "untie" else False
    rows = model.get_input_embeddings().weight.shape[0]
    return model, base_tok, base_tok, Extension(len(base_tok), len(base_tok), rows, rows, NO_EXPANSION,
                                                tied=is_tied(model), untied=untied)


def _completed(profile: Profile, run_dir, out: RunPaths, budgets: list[StageBudget], init: str,
               save_stages: bool | Collection[int]) -> ScheduleResult | None:
    """The finished result of this schedule in ``out`` when its final model, and every stage folder
    it should keep, hold the current keys; else None (the schedule runs, reusing what it can)."""
    from transformers import AutoTokenizer

    record = cache.cached(out.model_marker, schedule_key(profile, run_dir, budgets, init, len(budgets) - 1))
    if record is None:
        return None
    for index, budget in enumerate(budgets):
        if save_stages is True or (save_stages and budget.stage in save_stages):
            key = schedule_key(profile, run_dir, budgets, init, index)
            if cache.cached(out.stage_marker(budget.stage), key) is None:
                return None
    model, _ = _load_stage_dir(out.model, out.model_marker, record["key"])
    tokenizer = AutoTokenizer.from_pretrained(out.model, trust_remote_code=False)
    ext = Extension(**{k: record["extension"][k] for k in ("base_size", "target_size", "base_rows", "rows",
                                                            "method")},
                    tied=record["extension"].get("tied", False), untied=record["extension"].get("untied", False))
    base_validation = record.get("base_validation")
    return ScheduleResult(model, tokenizer, ext, [StageLog(**log) for log in record["logs"]],
                          tuple(base_validation) if base_validation else None)


# The training windows of the last few (tokenizer, corpus, settings) in this process. Chapter 05
# runs many arms one after another in each worker process, mostly with the same tokenizer and
# corpus; packing the corpus again took about 2 s of each ~37 s job at profile tiny.
_TRAINING_DATA: dict[tuple, tuple[Sequence[str], Sequence[str], TrainingData]] = {}


def _training_data(t, tokenizer, korean, english, base_size: int) -> TrainingData:
    """:func:`build_training_data` for these corpora, remembered while the corpora are the same
    objects (``load_corpus`` re-reads changed files into new ones) and the tokenizer the same."""
    english_train = english.train if t.english_replay else ()  # () is one object: it matches itself
    backend = getattr(tokenizer, "backend_tokenizer", None)
    key = None if backend is None else (
        hashlib.sha256(backend.to_str().encode()).hexdigest(), tokenizer.eos_token_id, t.seq_len, base_size,
        t.new_token_bias, t.english_replay)
    remembered = _TRAINING_DATA.get(key) if key else None
    if remembered and remembered[0] is korean.train and remembered[1] is english_train:
        return remembered[2]
    data = build_training_data(tokenizer, korean.train, t.seq_len, base_size, t.new_token_bias, english_train,
                               t.english_replay)
    if key:
        while len(_TRAINING_DATA) >= 4:
            del _TRAINING_DATA[next(iter(_TRAINING_DATA))]
        _TRAINING_DATA[key] = (korean.train, english_train, data)
    return data


def validation_set(profile: Profile, tokenizer, korean=None, english=None) -> Validation:
    """The fixed windows every stage is scored on: the Korean validation split and the first 2,000
    English validation documents, packed with ``tokenizer``."""
    korean = korean or load_corpus(profile, "korean")
    english = english or load_corpus(profile, "english")
    return Validation(pack_documents(tokenizer, korean.validation),
                      pack_documents(tokenizer, english.validation[:2000]), profile.training.seq_len,
                      profile.training.validation_windows)


def run_schedule(profile: Profile, run_dir=None, *, schedule: Sequence[StageBudget | int] | None = None,
                 init: str | None = None, output: RunPaths | None = None,
                 save_stages: bool | Collection[int] = True, reuse: Sequence[RunPaths] = (),
                 expand: bool = True, validate: bool = True, progress: bool = True) -> ScheduleResult:
    """Initialise the extended model and train it through ``schedule`` (chapter 04).

    Completed stages whose key matches are loaded instead of retrained (from the output, the run,
    or the runs in ``reuse``); a stage interrupted after a checkpoint resumes from it. Writes
    ``stages/stage<N>/`` after each stage (when ``save_stages``, or for the stage numbers it
    lists), the final model to ``model/`` and per-stage logs to ``train/`` of the run (or of
    ``output``). ``expand=False`` trains the base model with its own tokenizer (the no-expansion
    baseline of chapter 05). ``validate=False`` skips the held-out loss at checkpoints of each
    stage (chapter 04's curves; chapter 05 scores the arms' final models instead).
    """
    paths = run_paths(profile, run_dir)
    out = output or paths
    budgets = resolve_schedule(profile, schedule)
    init = (init or profile.embedding_init) if expand else NO_EXPANSION
    device = resolve_device(profile.device)
    dtype = resolve_dtype(profile.training.dtype, device)
    save_dtype = resolve_dtype(profile.training.save_dtype, device)
    done = _completed(profile, run_dir, out, budgets, init, save_stages)
    if done is not None:
        return done
    if expand:
        model, tokenizer, base_tok, ext = initialise_extended_model(profile, run_dir, init)
    else:
        model, tokenizer, base_tok, ext = initialise_unextended_model(profile, run_dir)
    korean, english = load_corpus(profile, "korean"), load_corpus(profile, "english")
    data = _training_data(profile.training, tokenizer, korean, english, ext.base_size)
    validation, base_validation = None, None
    if validate:
        validation = validation_set(profile, tokenizer, korean, english)
        base_validation = validation.score(model, ext.target_size)
    logs: list[StageLog] = []
    last_folder: Path | None = None  # the saved folder that holds the model as it is now
    options = stage_options(profile.training)
    with deterministic():
        for index, budget in enumerate(budgets):
            stage = get_stage(budget.stage)
            key = schedule_key(profile, run_dir, budgets, init, index)
            # A completed stage with this key is reused: the run's own, or (an ablation arm that shares
            # its first stages with the main run, like stage6:lora) the main run's.
            for where in ([out] if save_stages else []) + ([paths] if out.root != paths.root else []) + list(reuse):
                loaded, record = _load_stage_dir(where.stage(stage.number), where.stage_marker(stage.number), key)
                if loaded is not None:
                    break
            else:
                loaded = None
            if loaded is not None:
                model = loaded
                logs.append(StageLog(**record["log"]))
                last_folder = where.stage(stage.number)
                continue
            checkpoint = out.checkpoint(stage.number)
            log = train_stage(model, stage, budget, data, ext, options=options, seed=profile.seed,
                              device=device, dtype=dtype, resume=_load_checkpoint(checkpoint, key),
                              on_checkpoint=lambda state, c=checkpoint, k=key: _save_checkpoint(c, k, state),
                              validation=validation, progress=progress)
            model.to("cpu")
            logs.append(log)
            if is_main_process():  # several GPUs: one process writes
                atomic.write_json(out.stage_log(stage.number), log.as_dict())
                if save_stages is True or (save_stages and stage.number in save_stages):
                    atomic.model_directory(out.stage(stage.number), out.stage_marker(stage.number).name, model,
                                           tokenizer, {"key": key, "stage": stage.number, "init": init,
                                                       "extension": ext.as_dict(), "log": log.as_dict()}, save_dtype)
                    last_folder = out.stage(stage.number)
                else:
                    last_folder = None
                checkpoint.unlink(missing_ok=True)
            wait_for_everyone()
    final_key = schedule_key(profile, run_dir, budgets, init, len(budgets) - 1)
    if not is_main_process():
        return ScheduleResult(model, tokenizer, ext, logs, base_validation)
    # The final model is the last stage's: its folder's weights are linked, not written again.
    atomic.model_directory(out.model, out.model_marker.name, model, tokenizer,
                           {"key": final_key, "stages": [b.stage for b in budgets], "init": init,
                            "extension": ext.as_dict(), "base_validation": base_validation,
                            "logs": [log.as_dict() for log in logs]}, save_dtype,
                           weights_of=last_folder, leave_out=(MARKERS["stage"],))
    return ScheduleResult(model, tokenizer, ext, logs, base_validation)


def korean_token_ratio(profile: Profile, run_dir=None) -> float:
    """Tokens of the base tokenizer per token of the extended one, over the Korean training split:
    how many more tokens the same Korean text costs without the new tokens."""
    korean = load_corpus(profile, "korean").train
    base_tokens = len(pack_documents(load_base_tokenizer(profile, run_dir), korean))
    return base_tokens / len(pack_documents(load_target_tokenizer(profile, run_dir), korean))


def _scaled_rates(schedule: Sequence[StageBudget], scale: float) -> list[StageBudget]:
    return [replace(b, learning_rate=b.learning_rate * scale) for b in schedule]


def _no_expansion_schedule(profile: Profile, scale: float) -> list[StageBudget]:
    """Every parameter trained (the strongest use of the compute without new tokens) for the seven
    stages' optimizer steps, at their stage 6's learning rate times ``scale``."""
    t = profile.training
    return _scaled_rates(ablation_schedule(t.schedule, "full_finetune", t.batch_size, t.seq_len), scale)


def arm_seeds(profile: Profile) -> list[int]:
    """The training seeds of every arm: the profile's seed, then the next ``ablations.seeds - 1``."""
    return [profile.seed + k for k in range(profile.ablations.seeds)]


def arm_paths(profile: Profile, arm: Arm | str, seed: int | None = None, run_dir=None) -> RunPaths:
    """Where ``arm`` at ``seed`` lives: the run itself for the seven stages at the profile's seed."""
    paths = run_paths(profile, run_dir)
    seed = profile.seed if seed is None else seed
    if arm == MAIN_ARM and seed == profile.seed:
        return paths
    return paths.ablation(arm, None if seed == profile.seed else seed)


def _train_main(profile: Profile, arm: Arm, out: RunPaths, main: RunPaths, run_dir, **common) -> ScheduleResult:
    if out.root == run_paths(profile, run_dir).root:
        return run_schedule(profile, run_dir, progress=common["progress"])
    # A replicate keeps the stages that the stage-6 arms start from (those before the first stage
    # that may train through adapters).
    t = profile.training
    first_adapted = next((k for k, b in enumerate(t.schedule) if get_stage(b.stage).adapters_allowed),
                         len(t.schedule))
    keep = {b.stage for b in t.schedule[:first_adapted]} if profile.ablations.stage6 else set()
    return run_schedule(profile, run_dir, output=out, save_stages=keep, validate=False, **common)


def _train_baseline(profile: Profile, arm: Arm, out: RunPaths, main: RunPaths, run_dir, **common) -> ScheduleResult:
    schedule = _no_expansion_schedule(profile, profile.ablations.baseline_lr_scale)
    if arm.value == "equal_text":
        schedule, replay = equal_text_budget(schedule, korean_token_ratio(profile, run_dir),
                                             profile.training.english_replay)
        profile = load_profile(profile, {"training.english_replay": replay})
    elif arm.value != "no_expansion":
        raise TrainingError(f"Ablation arm {arm!r}: use baseline:no_expansion or baseline:equal_text.")
    return run_schedule(profile, run_dir, schedule=schedule, output=out, expand=False, **_no_stages(common))


def equal_text_budget(schedule: Sequence[StageBudget], korean_ratio: float, english_replay: float
                      ) -> tuple[list[StageBudget], float]:
    """The no-expansion baseline's steps and English-replay share for the same text as ``schedule``.

    A share ``english_replay`` of the seven stages' windows is English, which both tokenizers
    encode alike; the rest is Korean, which the base tokenizer spends ``korean_ratio`` times as
    many tokens on. So each stage's steps grow by ``(1 - r) * korean_ratio + r``, and English
    takes ``r`` over that factor of the windows: the same Korean characters and the same English
    windows as the seven stages, in expectation (windows are drawn at random).
    """
    factor = (1 - english_replay) * korean_ratio + english_replay
    return ([replace(b, steps=max(1, round(b.steps * factor))) for b in schedule], english_replay / factor)


def _no_stages(common: dict) -> dict:
    return {**common, "save_stages": False, "validate": False}


TrainArm = Callable[..., ScheduleResult]
# How each kind of arm (pipeline/arm.py's ARM_KINDS) trains: (profile at the arm's seed, arm, its
# folders, the seven stages' folders at that seed, run_dir, progress) -> the trained schedule.
ARM_TRAINERS: dict[str, TrainArm] = {
    "seven_stages": _train_main,
    "schedule": lambda p, arm, out, main, run_dir, **c: run_schedule(
        p, run_dir, schedule=ablation_schedule(p.training.schedule, arm.value, p.training.batch_size,
                                               p.training.seq_len), output=out, **_no_stages(c)),
    "init": lambda p, arm, out, main, run_dir, **c: run_schedule(p, run_dir, init=arm.value, output=out,
                                                                  **_no_stages(c)),
    "stage6": lambda p, arm, out, main, run_dir, **c: run_schedule(
        load_profile(p, {"training.stage6": arm.value}), run_dir, output=out, reuse=[main], **_no_stages(c)),
    "baseline": _train_baseline,
    "replay": lambda p, arm, out, main, run_dir, **c: run_schedule(
        load_profile(p, {"training.english_replay": arm.number}), run_dir, output=out, **_no_stages(c)),
    "tied": lambda p, arm, out, main, run_dir, **c: run_schedule(
        load_profile(p, {"tied_embeddings": "keep"}), run_dir, output=out, **_no_stages(c)),
    "lr": lambda p, arm, out, main, run_dir, **c: run_schedule(
        p, run_dir, schedule=_scaled_rates(p.training.schedule, arm.number), output=out, **_no_stages(c)),
    "baseline_lr": lambda p, arm, out, main, run_dir, **c: run_schedule(
        p, run_dir, schedule=_no_expansion_schedule(p, arm.number), output=out, expand=False, **_no_stages(c)),
}


def run_ablation(profile: Profile, arm: Arm | str, run_dir=None, progress: bool = True,
                 seed: int | None = None) -> ScheduleResult:
    """Train one ablation arm into ``runs/<profile>/ablations/<arm>/`` (chapter 05).

    The kinds of arm and what each trains: :data:`eeve_lib.pipeline.arm.ARM_KINDS`; how:
    :data:`ARM_TRAINERS`. Every arm but the seven stages trains at the same optimizer steps and
    tokens per step as the seven stages unless its kind says otherwise. ``seed`` (default: the
    profile's) is the training seed; another seed writes to ``ablations/<arm>@seed<N>/``.
    """
    arm = Arm(arm)
    seed = profile.seed if seed is None else seed
    out = arm_paths(profile, arm, seed, run_dir)
    main = arm_paths(profile, MAIN_ARM, seed, run_dir)
    if seed != profile.seed:
        profile = load_profile(profile, {"seed": seed})
    return ARM_TRAINERS[arm.kind](profile, arm, out, main, run_dir, progress=progress)


def load_stage_record(profile: Profile | str, run_dir=None, stage: int | None = None) -> dict[str, Any]:
    """The marker record of a stage folder (or of the final model when ``stage`` is None)."""
    paths = run_paths(profile, run_dir)
    marker = paths.model_marker if stage is None else paths.stage_marker(stage)
    record = cache.read_marker(marker)
    if record is None:
        raise TrainingError(f"No trained model in {marker.parent}. Run chapter 04 first.")
    return record


__all__ = ["initialise_extended_model", "initialise_unextended_model", "arm_seeds", "arm_paths",
           "ARM_TRAINERS", "equal_text_budget", "plan_extension", "resolve_schedule", "run_schedule", "run_ablation",
           "ScheduleResult", "load_stage_record", "schedule_key", "stage_options"]
