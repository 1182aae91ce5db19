"""Step 10: one stage of training on this machine, exactly and resumably: the engine around the loop.

The loop itself is :func:`~.training_loop.train_stage_loop` (freeze by stage, step, merge);
:class:`AccelerateEngine` runs it here: it installs the stage's row-split modules
(:mod:`.row_split`), builds an optimizer over exactly what trains, and feeds :func:`train_step`
batches drawn up front (:mod:`.sampling`). The model
has no dropout at tiny scale, and where it has (phi-2) the random state is seeded per stage and
carried in the resume state, so a killed run resumes from its last checkpoint and, on the CPU,
ends bit-identical to an uninterrupted run. The loop is pure: the pipeline hands it the state to
resume from and a callback that stores checkpoints.

Several processes (``accelerate launch``, see "Run the full-scale version"): each process trains
on its share of every batch. In data-parallel mode (the default) accelerate wraps the model in DDP
and every process holds all of it; in sharded mode (``StageOptions.sharded``: the pipeline sets it
for ``training.parallelism: fsdp`` or an accelerate launch config with ``distributed_type: FSDP``)
the loop trains a copy sharded with FSDP2 (:mod:`.sharding`). Either way checkpoints hold whole
tensors, so a stage resumes on any number of processes. Stage 6 may train LoRA or QLoRA adapters
instead of the transformer's weights (``StageOptions.stage6``, :mod:`.adapters`). Shown in chapter 04.
"""

from __future__ import annotations

import contextlib
import time
import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from tqdm import tqdm

from ..errors import TrainingError
from ..runtime import seeded
from . import adapters as lora
from . import sharding
from .embedding_init import Extension
from .lm import cosine_lr, mean_loss
from .row_split import install_stage, optimizer_state_bytes, stage_optimizer
from .sampling import TrainingData, sample_batches
from .stages import Stage, StageBudget, flops_per_token, steps_for, trainable_counts
from .training_loop import StageEngine, train_stage_loop, train_step


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


@dataclass(frozen=True)
class StageOptions:
    """How every stage trains, in plain values; the pipeline fills them from the profile's
    ``training`` section and the launch environment (``eeve_lib.pipeline.training.stage_options``)."""

    batch_size: int
    seq_len: int
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # 0 = no clipping
    warmup_fraction: float = 0.1
    validation_points: int = 4
    checkpoint_every: int = 0  # 0 = no checkpoints
    stage6: str = "full"  # full, lora or qlora
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    sharded: bool = False  # with several processes: FSDP2 shards instead of whole copies (DDP)
    reshard_after_forward: bool = True  # sharded only: free gathered blocks after their forward


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


def body_parameter_count(model) -> int:
    """Parameters outside the input embedding and the output head (weight and bias)."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight),
            id(getattr(model.get_output_embeddings(), "bias", None))}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def stage_accounting(model, stage: Stage, ext: Extension) -> tuple[dict[str, int], float]:
    """Trainable parameters of ``stage`` on ``model`` (by group) and its estimated training FLOPs per
    token: what a :class:`StageLog` records, and what the benchmarks' MFU divides by. Read off the
    whole model, before any LoRA or row split changes its parameters."""
    body, (rows, hidden) = body_parameter_count(model), model.get_output_embeddings().weight.shape
    trainable = trainable_counts(stage, n_base=ext.base_size, n_new=ext.n_new, hidden=hidden, body_params=body,
                                 output_bias=model.get_output_embeddings().bias is not None, tied=ext.tied)
    return trainable, flops_per_token(stage, trainable, body, hidden, rows)


def stage6_mode(options: StageOptions, stage: Stage) -> str:
    """``full``, ``lora`` or ``qlora``: how this stage trains the transformer (only stage 6 has a choice)."""
    return options.stage6 if stage.adapters_allowed and stage.transformer else "full"


class AccelerateEngine(StageEngine):
    """:func:`~.training_loop.train_stage_loop` on this machine's processes, through accelerate: DDP
    or a sharded copy (FSDP2), LoRA/QLoRA for stage 6, resuming, checkpoints, validation, the log."""

    def __init__(self, stage: Stage, budget: StageBudget, data: TrainingData, ext: Extension, log: StageLog, *,
                 options: StageOptions, seed: int, device: torch.device, dtype: torch.dtype, resume: ResumeState | None,
                 on_checkpoint: Callable[[ResumeState], None] | None, validation: Validation | None, progress: bool,
                 flops_per_token: float):
        self.flops_per_token = flops_per_token  # of the whole model, before any split (stage_accounting)
        self.stage, self.budget, self.data, self.ext, self.log = stage, budget, data, ext, log
        self.options, self.seed, self.dtype, self.resume = options, seed, dtype, resume
        self.on_checkpoint, self.validation, self.progress = on_checkpoint, validation, progress
        self.total = log.steps
        self.mode = stage6_mode(options, stage)
        self.accelerator = _accelerator(dtype, device)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.sharded = options.sharded and self.world > 1
        self.adapters, self.trainable, self.start, self.rng_state = None, [], 0, None
        if self.mode == "qlora":
            lora.require_qlora_support(device)
            if self.sharded:
                raise TrainingError("training.stage6: qlora is not wired for sharding; use training.stage6: lora "
                                    "with FSDP, or qlora with data parallelism (its 4-bit model fits one GPU).")

    def freeze(self, model, stage, ext):
        if self.mode == "full":
            trainable = install_stage(model, stage, ext)
        else:
            # LoRA stage 6: the embedding rows train as in the full stage, the transformer through adapters.
            trainable = install_stage(model, dataclasses.replace(stage, transformer=False), ext)
            s = self.options
            self.adapters, adapter_params = lora.add_adapters(
                model, rank=s.lora_rank, alpha=s.lora_alpha, dropout=s.lora_dropout,
                seed=self.seed * 1000 + stage.number, quantize=self.mode == "qlora", compute_dtype=self.dtype)
            trainable += adapter_params
            self.log.trainable["transformer"] = self.adapters.parameter_count(model)
            self.log.trainable["total"] = sum(v for k, v in self.log.trainable.items() if k != "total")
        if self.resume is not None:
            with torch.no_grad():
                for name, p in trainable:
                    p.copy_(self.resume.trainable[name])
            self.start, self.rng_state = self.resume.step, self.resume.rng
            saved = StageLog(**self.resume.log)
            log = self.log
            log.losses, log.validation, log.resumed_from_step = saved.losses[:self.start], saved.validation, self.start
        self.trainable = trainable
        return trainable

    def prepare(self, model, trainable):
        accelerator, resume, lr = self.accelerator, self.resume, self.budget.learning_rate
        if self.sharded:
            # The host model stays whole on the CPU; a sharded copy trains (see eeve_lib.method.sharding).
            mesh = sharding.device_mesh(accelerator.device, self.world)
            train_model = sharding.shard_copy(model, mesh, param_dtype=self.dtype if self.dtype != torch.float32
                                              else None, reshard_after_forward=self.options.reshard_after_forward)
            fqn = {id(p): n for n, p in model.named_parameters()}
            shards = dict(train_model.named_parameters())
            train_params = [(name, shards[fqn[id(p)]]) for name, p in trainable]
            optimizer = stage_optimizer(train_params, lr, self.options.weight_decay)
            if resume is not None:
                optimizer.load_state_dict(sharding.sharded_optimizer_state(resume.optimizer,
                                                                           _optimizer_params(optimizer)))
        else:
            optimizer = stage_optimizer(trainable, lr, self.options.weight_decay)
            if resume is not None:
                optimizer.load_state_dict(resume.optimizer)
            model.to(accelerator.device)
            train_model, optimizer = accelerator.prepare(model, optimizer)
            train_params = trainable
        log, s = self.log, self.options
        self.batches = sample_batches(self.data, self.total, s.batch_size, self.seed * 1000 + self.stage.number)
        log.new_token_share_seen = float(self.data.new_share[self.batches].mean())
        log.english_share_seen = float(self.data.english[self.batches].float().mean()) \
            if self.data.english is not None else 0.0
        log.flops = self.flops_per_token * log.tokens
        self.warmup = int(s.warmup_fraction * self.total)
        points = max(1, s.validation_points)
        self.eval_points = {max(1, self.total * k // points) for k in range(1, points + 1)}
        return train_model, optimizer, train_params

    @contextlib.contextmanager
    def running(self, train_model):
        self.started = time.time()
        self.bar = tqdm(range(self.start, self.total), desc=f"stage {self.stage.number}: {self.stage.name}",
                        disable=not self.progress, initial=self.start, total=self.total)
        train_model.train()
        # Dropout (phi-2 has some) draws from the global RNG: seed it per stage inside a fork, so the
        # caller's random state is untouched, and checkpoint it, so a resumed run draws the same masks.
        with seeded(self.seed * 1000 + self.stage.number):
            if self.rng_state is not None:
                torch.set_rng_state(self.rng_state["cpu"])
                if torch.cuda.is_available() and self.rng_state.get("cuda"):
                    torch.cuda.set_rng_state_all(self.rng_state["cuda"])
            yield
        self.bar.close()

    def steps(self):
        return self.bar

    def learning_rate(self, step):
        return cosine_lr(step, self.total, self.budget.learning_rate, self.warmup)

    def batch(self, step):
        return self.data.windows[self.batches[step][self.rank::self.world]].to(self.accelerator.device)

    def step(self, train_model, batch, optimizer, params):
        accelerator, tensors = self.accelerator, [p for _, p in params]
        if self.sharded:  # FSDP averages the gradients; clipping sees the sharded gradients' global norm
            loss = train_step(train_model, batch, optimizer, tensors, vocab_limit=self.ext.target_size,
                              grad_clip=self.options.grad_clip, autocast=accelerator.autocast)
        else:
            loss = train_step(train_model, batch, optimizer, tensors, vocab_limit=self.ext.target_size,
                              grad_clip=self.options.grad_clip, backward=accelerator.backward,
                              clip=accelerator.clip_grad_norm_, autocast=accelerator.autocast)
        if self.world > 1:  # the loss of the whole global batch, as one process would log it
            loss = accelerator.reduce(loss, reduction="mean")
        return loss

    def after_step(self, step, loss, train_model, optimizer, params):
        log, accelerator = self.log, self.accelerator
        if step == self.start:
            log.optimizer_state_bytes = optimizer_state_bytes(getattr(optimizer, "optimizer", optimizer))
        log.losses.append(loss)
        self.bar.set_postfix(loss=f"{loss:.3f}")
        if self.validation is not None and (step + 1) in self.eval_points:
            scored = train_model if self.sharded else accelerator.unwrap_model(train_model)
            ko, en = self.validation.score(scored, self.ext.target_size)
            log.validation["step"].append(step + 1)
            log.validation["korean"].append(ko)
            log.validation["english"].append(en)
            train_model.train()
        every = self.options.checkpoint_every
        if self.on_checkpoint is not None and every and (step + 1) % every == 0 and step + 1 < self.total:
            if self.sharded:  # gathering is collective: every process takes part, the main one stores
                state = _resume_state(step + 1, params, optimizer, log, gather=True)
                if accelerator.is_main_process:
                    self.on_checkpoint(state)
            elif accelerator.is_main_process:
                self.on_checkpoint(_resume_state(step + 1, params, optimizer, log))

    def finish(self, model, train_model, params):
        ran = self.total - self.start
        self.log.seconds_per_step = (time.time() - self.started) / ran if ran else 0.0
        if self.sharded:
            # Only the trainable tensors come back into the host model: its frozen ones never left it.
            with torch.no_grad():
                for (_, host), (_, shard) in zip(self.trainable, params):
                    host.copy_(sharding.gather(shard.detach()).to(host.device))
        self.accelerator.free_memory()  # drop accelerate's references to this stage's optimizer
        if self.adapters is not None:
            lora.merge_adapters(model, self.adapters)


def train_stage(model, stage: Stage, budget: StageBudget, data: TrainingData, ext: Extension, *,
                options: StageOptions, seed: int, device: torch.device, dtype: torch.dtype,
                resume: ResumeState | None = None, on_checkpoint: Callable[[ResumeState], None] | None = None,
                validation: Validation | None = None, progress: bool = True) -> StageLog:
    """Train one stage in place (chapter 04), continuing from ``resume`` when given: the textbook
    loop (:func:`~.training_loop.train_stage_loop`) through :class:`AccelerateEngine`.

    Every ``options.checkpoint_every`` steps the main process calls ``on_checkpoint`` with the
    state to resume from; storing it is the pipeline's business.
    """
    steps = steps_for(budget, options.batch_size, options.seq_len)
    log = StageLog(stage.number, stage.name, steps, steps * options.batch_size * options.seq_len,
                   budget.learning_rate)
    log.trainable, model_flops_per_token = stage_accounting(model, stage, ext)
    engine = AccelerateEngine(stage, budget, data, ext, log, options=options, seed=seed, device=device, dtype=dtype,
                              resume=resume, on_checkpoint=on_checkpoint, validation=validation, progress=progress,
                              flops_per_token=model_flops_per_token)
    train_stage_loop(model, stage, ext, engine)
    model.eval()
    return log


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


__all__ = ["StageLog", "Validation", "ResumeState", "AccelerateEngine", "train_step", "train_stage",
           "body_parameter_count", "stage_accounting", "is_main_process", "wait_for_everyone", "StageOptions",
           "stage6_mode"]
