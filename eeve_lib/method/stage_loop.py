"""Step 10: one stage of training, exactly and resumably.

A stage installs its row-split modules (:mod:`.row_split`), builds an optimizer over exactly
what trains, and runs :func:`train_step` on batches drawn up front (:mod:`.sampling`). The model
has no dropout at tiny scale, and where it has (phi-2) the random state is seeded per stage and
carried in the resume state, so a killed run resumes from its last checkpoint and, on the CPU,
ends bit-identical to an uninterrupted run. The loop is pure: the pipeline hands it the state to
resume from and a callback that stores checkpoints.

Several processes (``accelerate launch``, see "Run the full-scale version"): each process trains
on its share of every batch. In data-parallel mode (``training.parallelism: ddp``, the default)
accelerate wraps the model in DDP and every process holds all of it; in sharded mode
(``training.parallelism: fsdp``, or an accelerate launch config with ``distributed_type: FSDP``)
the loop trains a copy sharded with FSDP2 (:mod:`.sharding`). Either way checkpoints hold whole
tensors, so a stage resumes on any number of processes. Stage 6 may train LoRA or QLoRA adapters
instead of the transformer's weights (``training.stage6``, :mod:`.adapters`). Shown in chapter 04.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from tqdm import tqdm

from ..errors import TrainingError
from ..runtime import seeded
from . import adapters as lora
from . import sharding
from .embedding_init import Extension
from .lm import causal_lm_loss, cosine_lr, mean_loss
from .row_split import install_stage, merge_stage, optimizer_state_bytes, stage_optimizer
from .sampling import TrainingData, sample_batches
from .stages import Stage, StageBudget, flops_per_token, steps_for, trainable_counts


@dataclass
class StageLog:
    """What happened in one stage (saved beside each stage's model and in ``train/``)."""

    stage: int
    name: str
    steps: int
    tokens: int
    learning_rate: float
    losses: list[float] = field(default_factory=list)
    validation: dict[str, list] = field(default_factory=lambda: {"step": [], "korean": [], "english": []})
    trainable: dict[str, int] = field(default_factory=dict)
    optimizer_state_bytes: int = 0
    seconds_per_step: float = 0.0
    new_token_share_seen: float = 0.0
    english_share_seen: float = 0.0  # share of the stage's windows that were replayed English
    flops: float = 0.0  # estimated training FLOPs (see stages.flops_per_token)
    resumed_from_step: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Validation:
    """Fixed validation windows, scored at checkpoints of every stage."""

    korean: torch.Tensor
    english: torch.Tensor
    seq_len: int
    max_windows: int = 16

    def score(self, model, vocab_limit: int) -> tuple[float, float]:
        """Mean loss per token (nats) on the Korean and on the English windows."""
        return (mean_loss(model, self.korean, self.seq_len, self.max_windows, vocab_limit=vocab_limit),
                self.english_loss(model, vocab_limit))

    def english_loss(self, model, vocab_limit: int) -> float:
        """Mean loss per token on the English windows alone: English is cut into base tokens only,
        so the base model, which cannot read the new ids of the Korean windows, is scored here too."""
        return mean_loss(model, self.english, self.seq_len, self.max_windows, vocab_limit=vocab_limit)


@dataclass
class ResumeState:
    """Everything a stage needs to continue where a checkpoint left it."""

    step: int
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    log: dict[str, Any]
    rng: dict[str, Any]


def parallelism(settings) -> str:
    """``fsdp`` when the profile asks for it or an accelerate launch config with ``distributed_type:
    FSDP`` started this process (accelerate then sets ``ACCELERATE_USE_FSDP``), else ``ddp``."""
    launched_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    return "fsdp" if launched_fsdp or getattr(settings, "parallelism", "ddp") == "fsdp" else "ddp"


def _accelerator(dtype: torch.dtype, device: torch.device):
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import patch_environment

    # Under several processes a batch may hold no new token, leaving a trainable block without a
    # gradient in that step; DDP must tolerate it.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # The loop shards the model itself (sharding.shard_copy), the same way on CPUs and GPUs; accelerate
    # launches the processes and sets up the process group and the device. Its own FSDP plugin, which
    # a launch config's `distributed_type: FSDP` switches on (and only on GPUs), stays off.
    mixed_precision = "bf16" if dtype == torch.bfloat16 else "no"
    _forget_other_precision(mixed_precision)
    with patch_environment(accelerate_use_fsdp="false"):
        return Accelerator(cpu=device.type == "cpu", mixed_precision=mixed_precision, kwargs_handlers=[ddp])


def _forget_other_precision(mixed_precision: str) -> None:
    """accelerate keeps one process-wide precision and refuses a second; a notebook or test session
    that trains one profile in float32 and another in bfloat16 needs the second to start afresh. Only
    the precision state is dropped: the process group (PartialState) stays as launched."""
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def wait_for_everyone() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def train_step(model, batch: torch.Tensor, optimizer, trainable: list, *, vocab_limit: int, grad_clip: float,
               accelerator=None, autocast: Callable[[], Any] | None = None) -> torch.Tensor:
    """One optimizer step: forward, loss over the real tokens' logits, backward, clip, step.

    ``trainable`` are the stage's parameters (for clipping). With ``accelerator`` (the stage
    loop) autocast, backward and clipping go through accelerate; without it (the benchmark) they
    are plain torch, with ``autocast`` (a context-manager factory) around the forward pass.
    Returns the detached loss.
    """
    if accelerator is not None:
        autocast = accelerator.autocast
    with (autocast or contextlib.nullcontext)():
        logits = model(input_ids=batch).logits
    loss = causal_lm_loss(logits, batch, vocab_limit=vocab_limit)
    optimizer.zero_grad(set_to_none=True)
    if accelerator is not None:
        accelerator.backward(loss)
    else:
        loss.backward()
    if grad_clip:
        if accelerator is not None:
            accelerator.clip_grad_norm_(trainable, grad_clip)
        else:
            torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
    optimizer.step()
    return loss.detach()


def body_parameter_count(model) -> int:
    """Parameters outside the input embedding and the output head (weight and bias)."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight),
            id(getattr(model.get_output_embeddings(), "bias", None))}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def stage6_mode(settings, stage: Stage) -> str:
    """``full``, ``lora`` or ``qlora``: how this stage trains the transformer (only stage 6 has a choice)."""
    mode = getattr(settings, "stage6", "full")
    return mode if stage.number == 6 and stage.transformer else "full"


def train_stage(model, stage: Stage, budget: StageBudget, data: TrainingData, ext: Extension, *,
                settings, seed: int, device: torch.device, dtype: torch.dtype,
                resume: ResumeState | None = None, on_checkpoint: Callable[[ResumeState], None] | None = None,
                validation: Validation | None = None, progress: bool = True) -> StageLog:
    """Train one stage in place (chapter 04), continuing from ``resume`` when given.

    Every ``settings.checkpoint_every`` steps the main process calls ``on_checkpoint`` with the
    state to resume from; storing it is the pipeline's business.
    """
    steps = steps_for(budget, settings.batch_size, settings.seq_len)
    log = StageLog(stage.number, stage.name, steps, steps * settings.batch_size * settings.seq_len,
                   budget.learning_rate)
    body, (rows, hidden) = body_parameter_count(model), model.get_output_embeddings().weight.shape
    log.trainable = trainable_counts(stage, n_base=ext.base_size, n_new=ext.n_new, hidden=hidden, body_params=body,
                                     output_bias=model.get_output_embeddings().bias is not None, tied=ext.tied)
    mode = stage6_mode(settings, stage)
    accelerator = _accelerator(dtype, device)
    rank, world = accelerator.process_index, accelerator.num_processes
    sharded = parallelism(settings) == "fsdp" and world > 1
    if mode == "qlora":
        lora.require_qlora_support(device)
        if sharded:
            raise TrainingError("training.stage6: qlora is not wired for sharding; use training.stage6: lora with "
                                "FSDP, or qlora with data parallelism (its 4-bit model fits one GPU).")
    adapters = None
    if mode == "full":
        trainable = install_stage(model, stage, ext)
    else:
        # LoRA stage 6: the embedding rows train as in the full stage, the transformer through adapters.
        trainable = install_stage(model, Stage(stage.number, stage.name, stage.input_rows, stage.output_rows, False),
                                  ext)
        adapters, adapter_params = lora.add_adapters(
            model, rank=settings.lora_rank, alpha=settings.lora_alpha, dropout=settings.lora_dropout,
            seed=seed * 1000 + stage.number, quantize=mode == "qlora", compute_dtype=dtype)
        trainable += adapter_params
        log.trainable["transformer"] = adapters.parameter_count(model)
        log.trainable["total"] = sum(v for k, v in log.trainable.items() if k != "total")
    start, rng_state = 0, None
    if resume is not None:
        with torch.no_grad():
            for name, p in trainable:
                p.copy_(resume.trainable[name])
        start, rng_state = resume.step, resume.rng
        saved = StageLog(**resume.log)
        log.losses, log.validation, log.resumed_from_step = saved.losses[:start], saved.validation, start
    if sharded:
        # The host model stays whole on the CPU; a sharded copy trains (see eeve_lib.method.sharding).
        mesh = sharding.device_mesh(accelerator.device, world)
        train_model = sharding.shard_copy(model, mesh, param_dtype=dtype if dtype != torch.float32 else None,
                                          reshard_after_forward=_reshard_after_forward())
        fqn = {id(p): n for n, p in model.named_parameters()}
        shards = dict(train_model.named_parameters())
        train_params = [(name, shards[fqn[id(p)]]) for name, p in trainable]
        optimizer = stage_optimizer(train_params, budget.learning_rate, settings.weight_decay)
        if resume is not None:
            optimizer.load_state_dict(sharding.sharded_optimizer_state(resume.optimizer, _optimizer_params(optimizer)))
    else:
        optimizer = stage_optimizer(trainable, budget.learning_rate, settings.weight_decay)
        if resume is not None:
            optimizer.load_state_dict(resume.optimizer)
        model.to(accelerator.device)
        train_model, optimizer = accelerator.prepare(model, optimizer)
        train_params = trainable
    batches = sample_batches(data, steps, settings.batch_size, seed * 1000 + stage.number)
    log.new_token_share_seen = float(data.new_share[batches].mean())
    log.english_share_seen = float(data.english[batches].float().mean()) if data.english is not None else 0.0
    log.flops = flops_per_token(stage, log.trainable, body, hidden, rows) * log.tokens
    warmup = int(settings.warmup_fraction * steps)
    points = max(1, settings.validation_points_per_stage)
    eval_points = {max(1, steps * k // points) for k in range(1, points + 1)}
    started = time.time()
    bar = tqdm(range(start, steps), desc=f"stage {stage.number}: {stage.name}", disable=not progress,
               initial=start, total=steps)
    train_model.train()
    # Dropout (phi-2 has some) draws from the global RNG: seed it per stage inside a fork, so the
    # caller's random state is untouched, and checkpoint it, so a resumed run draws the same masks.
    with seeded(seed * 1000 + stage.number):
        if rng_state is not None:
            torch.set_rng_state(rng_state["cpu"])
            if torch.cuda.is_available() and rng_state.get("cuda"):
                torch.cuda.set_rng_state_all(rng_state["cuda"])
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, steps, budget.learning_rate, warmup)
            batch = data.windows[batches[step][rank::world]].to(accelerator.device)
            if sharded:  # FSDP averages the gradients; clipping sees the sharded gradients' global norm
                loss = train_step(train_model, batch, optimizer, [p for _, p in train_params],
                                  vocab_limit=ext.target_size, grad_clip=settings.grad_clip,
                                  autocast=accelerator.autocast)
            else:
                loss = train_step(train_model, batch, optimizer, [p for _, p in train_params],
                                  vocab_limit=ext.target_size, grad_clip=settings.grad_clip, accelerator=accelerator)
            if world > 1:  # the loss of the whole global batch, as one process would log it
                loss = accelerator.reduce(loss, reduction="mean")
            if step == start:
                log.optimizer_state_bytes = optimizer_state_bytes(getattr(optimizer, "optimizer", optimizer))
            log.losses.append(float(loss))
            bar.set_postfix(loss=f"{log.losses[-1]:.3f}")
            if validation is not None and (step + 1) in eval_points:
                scored = train_model if sharded else accelerator.unwrap_model(train_model)
                ko, en = validation.score(scored, ext.target_size)
                log.validation["step"].append(step + 1)
                log.validation["korean"].append(ko)
                log.validation["english"].append(en)
                train_model.train()
            if on_checkpoint is not None and settings.checkpoint_every and (step + 1) % settings.checkpoint_every == 0 \
                    and step + 1 < steps:
                if sharded:  # gathering is collective: every process takes part, the main one stores
                    state = _resume_state(step + 1, train_params, optimizer, log, gather=True)
                    if accelerator.is_main_process:
                        on_checkpoint(state)
                elif accelerator.is_main_process:
                    on_checkpoint(_resume_state(step + 1, train_params, optimizer, log))
    bar.close()
    ran = steps - start
    log.seconds_per_step = (time.time() - started) / ran if ran else 0.0
    if sharded:
        # Only the trainable tensors come back into the host model: its frozen ones never left it.
        with torch.no_grad():
            for (_, host), (_, shard) in zip(trainable, train_params):
                host.copy_(sharding.gather(shard.detach()).to(host.device))
        del train_model, train_params, optimizer
    else:
        model = accelerator.unwrap_model(train_model)
    accelerator.free_memory()  # drop accelerate's references to this stage's optimizer
    if adapters is not None:
        lora.merge_adapters(model, adapters)
    merge_stage(model)
    model.eval()
    return log


def _reshard_after_forward() -> bool:
    """Accelerate's launch config says (``fsdp_reshard_after_forward``); default: free gathered blocks after use."""
    return os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() not in ("false", "no_shard", "0")


def _optimizer_params(optimizer) -> list:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _resume_state(step: int, trainable, optimizer, log: StageLog, gather: bool = False) -> ResumeState:
    """What a checkpoint stores: whole trainable tensors and a whole optimizer state, in one process's
    layout whatever the number of processes (``gather`` collects FSDP shards: every process calls it)."""
    opt = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
    rng = {"cpu": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    if gather:
        tensors = {n: sharding.gather(p.detach()).cpu() for n, p in trainable}
        return ResumeState(step, tensors, sharding.full_optimizer_state(opt.state_dict()), log.as_dict(), rng)
    return ResumeState(step, {n: p.detach().cpu() for n, p in trainable}, opt.state_dict(), log.as_dict(), rng)


__all__ = ["StageLog", "Validation", "ResumeState", "train_step", "train_stage", "body_parameter_count",
           "is_main_process", "wait_for_everyone", "parallelism", "stage6_mode"]
