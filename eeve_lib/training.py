"""Steps 8 and 10: biased sampling of Korean training windows, and the seven-stage training.

Exactness. A parameter, or a row, frozen in a stage is bit-identical after it. Zeroing gradients
(the model card's hook) is not enough: AdamW's decoupled weight decay and its momentum still move
rows whose gradient was zeroed. So during a stage the input embedding and the output head are
replaced by modules that hold the base rows, the new rows and the padding rows as *separate*
tensors, only the trainable ones being parameters that the optimizer sees; they are merged back
into ordinary ``nn.Embedding``/``nn.Linear`` modules at the end of the stage. The optimizer is
rebuilt at every stage boundary and holds state only for what trains (stage 1 holds Adam state for
the new input rows alone). When neither the input rows nor the transformer train (stages 2 and 4),
nothing upstream of the head requires a gradient, so autograd never backpropagates through the
transformer.

Resumability. Batches are drawn up front from a generator seeded by the profile seed and the
stage, the model has no dropout, and periodic checkpoints hold the trainable tensors, the
optimizer state and the loss log, so a killed run resumes from its last checkpoint and, on the
CPU, ends bit-identical to an uninterrupted run. Several GPUs: the loop runs through
``accelerate`` (see "Run the full-scale version"). Shown in chapter 04.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from tqdm import tqdm

from . import atomic
from .checkpoints import load_checkpoint, save_checkpoint
from .embedding_init import Extension, initialise_extended_model
from .errors import TrainingError
from .lm import causal_lm_loss, cosine_lr, mean_loss, pack_documents, window_starts
from .paths import run_paths
from .profiles import Profile, StageBudget
from .runtime import deterministic, generator, resolve_device, resolve_dtype, seeded
from .stages import ABLATION_SCHEDULES, Stage, get_stage, trainable_counts

STAGE_MARKER = "eeve_stage.json"
# Bump when the training algorithm changes, so completed stages are not reused across versions.
ALGORITHM_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Step 8: the training data, biased toward windows that contain new tokens


@dataclass
class TrainingData:
    """Non-overlapping windows of the Korean training stream and their sampling weights."""

    windows: torch.Tensor  # [N, seq_len] token ids
    new_share: torch.Tensor  # [N] share of tokens in each window that are new tokens
    weights: torch.Tensor  # [N] sampling weights: 1 + new_token_bias * new_share

    def expected_new_share(self, weights: torch.Tensor | None = None) -> float:
        """Expected share of new tokens per sampled window under ``weights`` (default: these)."""
        w = self.weights if weights is None else weights
        return float((w * self.new_share).sum() / w.sum())


def build_training_data(tokenizer, documents: Sequence[str], seq_len: int, base_size: int,
                        new_token_bias: float) -> TrainingData:
    """Pack documents into windows and weight each by how many new tokens it holds (step 8, chapter 04)."""
    stream = pack_documents(tokenizer, documents)
    starts = window_starts(len(stream), seq_len)
    if len(starts) == 0:
        raise TrainingError(f"The Korean training split gives {len(stream)} tokens, fewer than one window of "
                            f"{seq_len}; lower training.seq_len.")
    windows = torch.stack([stream[s:s + seq_len] for s in starts.tolist()])
    share = (windows >= base_size).float().mean(1)
    return TrainingData(windows, share, 1.0 + new_token_bias * share)


def sample_batches(data: TrainingData, steps: int, batch_size: int, seed: int) -> torch.Tensor:
    """Window indices for every step, drawn up front from a private generator: [steps, batch_size]."""
    g = generator(seed)
    return torch.multinomial(data.weights, steps * batch_size, replacement=True, generator=g).view(steps, batch_size)


# ---------------------------------------------------------------------------------------------
# Row-split modules: frozen rows are never parameters the optimizer sees


class SplitEmbedding(nn.Module):
    """An input embedding whose base, new and padding rows are separate tensors."""

    def __init__(self, weight: torch.Tensor, n_base: int, n_new: int, train_base: bool, train_new: bool):
        super().__init__()
        self.n_base, self.n_new = n_base, n_new
        self.base = nn.Parameter(weight[:n_base].detach().clone(), requires_grad=train_base)
        self.new = nn.Parameter(weight[n_base:n_base + n_new].detach().clone(), requires_grad=train_new)
        self.register_buffer("pad", weight[n_base + n_new:].detach().clone())

    def full_weight(self) -> torch.Tensor:
        return torch.cat([self.base, self.new, self.pad])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # Two lookups instead of concatenating the whole matrix at every step (phi-2: 600 MB).
        is_base = ids < self.n_base
        out = nn.functional.embedding(ids.clamp(max=self.n_base - 1), self.base)
        if self.n_new:
            new_rows = nn.functional.embedding((ids - self.n_base).clamp(0, self.n_new - 1), self.new)
            out = torch.where(is_base.unsqueeze(-1), out, new_rows)
        if bool((ids >= self.n_base + self.n_new).any()):  # padding ids are never real input; kept exact anyway
            out = nn.functional.embedding(ids, self.full_weight())
        return out


class SplitHead(nn.Module):
    """An output head (weight and bias) whose base, new and padding rows are separate tensors."""

    def __init__(self, linear: nn.Linear, n_base: int, n_new: int, train_base: bool, train_new: bool):
        super().__init__()
        w = linear.weight.detach()
        self.base = nn.Parameter(w[:n_base].clone(), requires_grad=train_base)
        self.new = nn.Parameter(w[n_base:n_base + n_new].clone(), requires_grad=train_new)
        self.register_buffer("pad", w[n_base + n_new:].clone())
        self.has_bias = linear.bias is not None
        if self.has_bias:
            b = linear.bias.detach()
            self.base_bias = nn.Parameter(b[:n_base].clone(), requires_grad=train_base)
            self.new_bias = nn.Parameter(b[n_base:n_base + n_new].clone(), requires_grad=train_new)
            self.register_buffer("pad_bias", b[n_base + n_new:].clone())

    def full_weight(self) -> torch.Tensor:
        return torch.cat([self.base, self.new, self.pad])

    def full_bias(self) -> torch.Tensor | None:
        return torch.cat([self.base_bias, self.new_bias, self.pad_bias]) if self.has_bias else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # One product per block: a frozen block needs no weight gradient, so backward skips it.
        parts = [nn.functional.linear(hidden, self.base, self.base_bias if self.has_bias else None),
                 nn.functional.linear(hidden, self.new, self.new_bias if self.has_bias else None),
                 nn.functional.linear(hidden, self.pad, self.pad_bias if self.has_bias else None)]
        return torch.cat(parts, dim=-1)


def install_stage(model, stage: Stage, ext: Extension) -> list[tuple[str, nn.Parameter]]:
    """Freeze and split ``model`` for ``stage``; return the (name, parameter) pairs that train."""
    for p in model.parameters():
        p.requires_grad_(False)
    n_base, n_new = ext.base_size, ext.n_new
    emb = SplitEmbedding(model.get_input_embeddings().weight, n_base, n_new,
                         stage.input_rows == "all", stage.input_rows in ("new", "all"))
    head = SplitHead(model.get_output_embeddings(), n_base, n_new,
                     stage.output_rows == "all", stage.output_rows in ("new", "all"))
    body = []
    if stage.transformer:
        input_ids = {id(p) for p in model.get_input_embeddings().parameters()}
        output_ids = {id(p) for p in model.get_output_embeddings().parameters()}
        for name, p in model.named_parameters():
            if id(p) not in input_ids and id(p) not in output_ids:
                p.requires_grad_(True)
                body.append((name, p))
    model.set_input_embeddings(emb)
    model.set_output_embeddings(head)
    named = [(f"input.{n}", p) for n, p in emb.named_parameters()] + \
            [(f"output.{n}", p) for n, p in head.named_parameters()] + body
    return [(n, p) for n, p in named if p.requires_grad]


def merge_stage(model) -> None:
    """Put ordinary ``nn.Embedding``/``nn.Linear`` modules back, holding exactly the split values."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    with torch.no_grad():
        if isinstance(emb, SplitEmbedding):
            model.set_input_embeddings(nn.Embedding.from_pretrained(emb.full_weight().detach().clone(), freeze=False))
        if isinstance(head, SplitHead):
            w = head.full_weight().detach().clone()
            linear = torch.nn.utils.skip_init(nn.Linear, w.shape[1], w.shape[0], bias=head.has_bias,
                                              device=w.device, dtype=w.dtype)
            linear.weight = nn.Parameter(w)
            if head.has_bias:
                linear.bias = nn.Parameter(head.full_bias().detach().clone())
            model.set_output_embeddings(linear)
    for p in model.parameters():
        p.requires_grad_(True)


def stage_optimizer(trainable: list[tuple[str, nn.Parameter]], learning_rate: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over exactly the trainable tensors of a stage (no decay on biases and norms)."""
    decay = [p for _, p in trainable if p.dim() >= 2]
    no_decay = [p for _, p in trainable if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate, betas=(0.9, 0.95))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of tensor state the optimizer holds (Adam: two moments per trainable element)."""
    total = 0
    for state in optimizer.state.values():
        for v in state.values():
            if torch.is_tensor(v) and v.dim() > 0:
                total += v.numel() * v.element_size()
    return total


# ---------------------------------------------------------------------------------------------
# One stage


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
        return (mean_loss(model, self.korean, self.seq_len, self.max_windows, vocab_limit=vocab_limit),
                mean_loss(model, self.english, self.seq_len, self.max_windows, vocab_limit=vocab_limit))


def _accelerator(dtype: torch.dtype, device: torch.device):
    from accelerate import Accelerator, DistributedDataParallelKwargs

    # Under several processes a batch may hold no new token, leaving a trainable block without a
    # gradient in that step; DDP must tolerate it.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if dtype == torch.bfloat16 else "no",
                       kwargs_handlers=[ddp])


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _wait_for_everyone() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def _steps_for(budget: StageBudget, batch_size: int, seq_len: int) -> int:
    return budget.steps if budget.steps is not None else max(1, -(-budget.tokens // (batch_size * seq_len)))


def train_stage(model, stage: Stage, budget: StageBudget, data: TrainingData, ext: Extension, *,
                settings, seed: int, device: torch.device, dtype: torch.dtype, checkpoint: Path, key: str,
                validation: Validation | None = None, progress: bool = True) -> StageLog:
    """Train one stage in place; resume from ``checkpoint`` if it holds this ``key`` (chapter 04)."""
    steps = _steps_for(budget, settings.batch_size, settings.seq_len)
    log = StageLog(stage.number, stage.name, steps, steps * settings.batch_size * settings.seq_len,
                   budget.learning_rate)
    body_params = sum(p.numel() for n, p in model.named_parameters()
                      if p is not model.get_input_embeddings().weight and p is not model.get_output_embeddings().weight
                      and p is not getattr(model.get_output_embeddings(), "bias", None))
    log.trainable = trainable_counts(stage, n_base=ext.base_size, n_new=ext.n_new,
                                     hidden=model.get_input_embeddings().weight.shape[1], body_params=body_params,
                                     output_bias=model.get_output_embeddings().bias is not None)
    trainable = install_stage(model, stage, ext)
    optimizer = stage_optimizer(trainable, budget.learning_rate, settings.weight_decay)
    start, rng_state = 0, None
    state = load_checkpoint(checkpoint)  # safetensors + JSON: refuses pickles, runs nothing
    if state is not None:
        if state.get("key") != key:
            raise TrainingError(
                f"{checkpoint} belongs to another configuration (key {state.get('key')}, this run {key}). "
                f"Nothing was overwritten. Delete it, or the whole run directory, to start this stage afresh "
                f"(eeve run --fresh)."
            )
        with torch.no_grad():
            for name, p in trainable:
                p.copy_(state["trainable"][name])
        optimizer.load_state_dict(state["optimizer"])
        start, rng_state = state["step"], state["rng"]
        saved = StageLog(**state["log"])
        log.losses, log.validation, log.resumed_from_step = saved.losses[:start], saved.validation, start
    batches = sample_batches(data, steps, settings.batch_size, seed * 1000 + stage.number)
    log.new_token_share_seen = float(data.new_share[batches].mean())
    warmup = int(settings.warmup_fraction * steps)
    accelerator = _accelerator(dtype, device)
    model.to(accelerator.device)
    model, optimizer = accelerator.prepare(model, optimizer)
    rank, world = accelerator.process_index, accelerator.num_processes
    points = max(1, settings.validation_points_per_stage)
    eval_points = {max(1, steps * k // points) for k in range(1, points + 1)}
    started = time.time()
    bar = tqdm(range(start, steps), desc=f"stage {stage.number}: {stage.name}", disable=not progress,
               initial=start, total=steps)
    model.train()
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
            with accelerator.autocast():
                logits = model(input_ids=batch).logits
            loss = causal_lm_loss(logits, batch, vocab_limit=ext.target_size)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if settings.grad_clip:
                accelerator.clip_grad_norm_([p for _, p in trainable], settings.grad_clip)
            optimizer.step()
            if step == start:
                log.optimizer_state_bytes = optimizer_state_bytes(getattr(optimizer, "optimizer", optimizer))
            log.losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{log.losses[-1]:.3f}")
            if validation is not None and (step + 1) in eval_points:
                ko, en = validation.score(accelerator.unwrap_model(model), ext.target_size)
                log.validation["step"].append(step + 1)
                log.validation["korean"].append(ko)
                log.validation["english"].append(en)
                model.train()
            if settings.checkpoint_every and (step + 1) % settings.checkpoint_every == 0 and step + 1 < steps \
                    and accelerator.is_main_process:
                _save_checkpoint(checkpoint, key, step + 1, trainable, optimizer, log)
    bar.close()
    ran = steps - start
    log.seconds_per_step = (time.time() - started) / ran if ran else 0.0
    model = accelerator.unwrap_model(model)
    accelerator.free_memory()  # drop accelerate's references to this stage's optimizer
    merge_stage(model)
    model.eval()
    return log


def _save_checkpoint(path: Path, key: str, step: int, trainable, optimizer, log: StageLog) -> None:
    opt = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
    rng = {"cpu": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    save_checkpoint(path, key=key, step=step, trainable={n: p.detach().cpu() for n, p in trainable},
                    optimizer=opt.state_dict(), log=log.as_dict(), rng=rng)


# ---------------------------------------------------------------------------------------------
# A schedule of stages


@dataclass
class ScheduleResult:
    """The trained model and the log of every stage."""

    model: Any
    tokenizer: Any
    extension: Extension
    logs: list[StageLog]
    base_validation: tuple[float, float] | None = None


def _schedule_key(profile: Profile, run_dir, schedule: Sequence[StageBudget], init: str, upto: int) -> str:
    from .base_model import base_info
    from .vocabulary_expansion import load_expansion_summary

    payload = {
        "algorithm": ALGORITHM_VERSION,
        "training": {k: v for k, v in profile.to_dict()["training"].items() if k != "schedule"},
        "schedule": [asdict(b) for b in schedule[:upto + 1]],
        "init": init,
        "seed": profile.seed,
        "base": base_info(profile, run_dir)["config_hash"],
        "tokenizer": load_expansion_summary(profile, run_dir)["config_hash"],
        "pad_to_multiple_of": profile.vocabulary.pad_to_multiple_of,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _load_stage_dir(path: Path, key: str, dtype=torch.float32):
    """The model in a completed stage directory if it holds ``key``; None if absent; error if foreign."""
    from transformers import AutoModelForCausalLM

    marker = path / STAGE_MARKER
    if not marker.is_file():
        return None, None
    info = json.loads(marker.read_text())
    if info.get("key") != key:
        raise TrainingError(
            f"{path} was produced with another configuration (key {info.get('key')}, this run {key}). Nothing was "
            f"overwritten. Remove it (or run `eeve run --profile <profile> --fresh`) to train again."
        )
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=False), info


def _save_model_dir(path: Path, model, tokenizer, record: dict[str, Any], dtype: torch.dtype = torch.float32) -> None:
    with atomic.directory(path) as tmp:
        if dtype != torch.float32:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
            model.save_pretrained(tmp, safe_serialization=True, state_dict=state)
            config = json.loads((tmp / "config.json").read_text())
            config["dtype"] = str(dtype).removeprefix("torch.")
            atomic.write_json(tmp / "config.json", config)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic.write_json(tmp / STAGE_MARKER, record)


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


def run_schedule(profile: Profile, run_dir=None, *, schedule: Sequence[StageBudget | int] | None = None,
                 init: str | None = None, output: str | Path | None = None, save_stages: bool = True,
                 progress: bool = True) -> ScheduleResult:
    """Initialise the extended model and train it through ``schedule`` (chapter 04).

    Completed stages whose key matches are loaded instead of retrained; a stage interrupted after a
    checkpoint resumes from it. Writes ``stages/stage<N>/`` after each stage (when ``save_stages``),
    the final model to ``model/`` (or ``<output>/model``) and per-stage logs to ``train/``.
    """
    paths = run_paths(profile, run_dir)
    budgets = resolve_schedule(profile, schedule)
    init = init or profile.embedding_init
    out_root = Path(output) if output else paths.root
    train_dir = out_root / "train"
    device = resolve_device(profile.device)
    dtype = resolve_dtype(profile.training.dtype, device)
    save_dtype = resolve_dtype(profile.training.save_dtype, device)
    model, tokenizer, base_tok, ext = initialise_extended_model(profile, run_dir, init)
    from .corpora import load_corpus

    korean, english = load_corpus(profile, "korean"), load_corpus(profile, "english")
    data = build_training_data(tokenizer, korean.train, profile.training.seq_len, ext.base_size,
                               profile.training.new_token_bias)
    validation = Validation(pack_documents(tokenizer, korean.validation),
                            pack_documents(tokenizer, english.validation[:2000]), profile.training.seq_len,
                            profile.training.validation_windows)
    base_validation = validation.score(model, ext.target_size)
    logs: list[StageLog] = []
    with deterministic():
        for index, budget in enumerate(budgets):
            stage = get_stage(budget.stage)
            key = _schedule_key(profile, run_dir, budgets, init, index)
            stage_dir = (paths.stage(stage.number) if output is None else out_root / "stages" / f"stage{stage.number}")
            if save_stages:
                loaded, info = _load_stage_dir(stage_dir, key)
                if loaded is not None:
                    model = loaded
                    logs.append(StageLog(**info["log"]))
                    continue
            checkpoint = train_dir / f"stage{stage.number}" / "checkpoint.safetensors"
            log = train_stage(model, stage, budget, data, ext, settings=profile.training, seed=profile.seed,
                              device=device, dtype=dtype, checkpoint=checkpoint, key=key, validation=validation,
                              progress=progress)
            model.to("cpu")
            logs.append(log)
            if _is_main_process():  # several GPUs: one process writes
                atomic.write_json(train_dir / f"stage{stage.number}.json", log.as_dict())
                if save_stages:
                    _save_model_dir(stage_dir, model, tokenizer, {"key": key, "stage": stage.number, "init": init,
                                                                  "extension": ext.as_dict(), "log": log.as_dict()},
                                    save_dtype)
                checkpoint.unlink(missing_ok=True)
            _wait_for_everyone()
    final_key = _schedule_key(profile, run_dir, budgets, init, len(budgets) - 1)
    if not _is_main_process():
        return ScheduleResult(model, tokenizer, ext, logs, base_validation)
    _save_model_dir(out_root / "model", model, tokenizer,
                    {"key": final_key, "stages": [b.stage for b in budgets], "init": init,
                     "extension": ext.as_dict(), "base_validation": base_validation,
                     "logs": [log.as_dict() for log in logs]}, save_dtype)
    return ScheduleResult(model, tokenizer, ext, logs, base_validation)


def ablation_schedule(profile: Profile, arm: str) -> list[StageBudget]:
    """One stage repeated for the whole token budget of the profile's schedule (chapter 05)."""
    if arm not in ABLATION_SCHEDULES:
        raise TrainingError(f"Unknown ablation schedule {arm!r}. Valid: {', '.join(ABLATION_SCHEDULES)}.")
    t = profile.training
    total_steps = sum(_steps_for(b, t.batch_size, t.seq_len) for b in t.schedule)
    stage = ABLATION_SCHEDULES[arm]
    lr = next((b.learning_rate for b in t.schedule if b.stage == stage), t.schedule[-1].learning_rate)
    return [StageBudget(stage=stage, learning_rate=lr, steps=total_steps)]


def run_ablation(profile: Profile, arm: str, run_dir=None, progress: bool = True) -> ScheduleResult:
    """Train one ablation arm into ``runs/<profile>/ablations/<arm>/`` (chapter 05).

    Arms: ``schedule:full_finetune``, ``schedule:embeddings_only`` (same token budget as the seven
    stages) and ``init:mean_resizing``, ``init:random`` (the seven stages from another initialisation).
    """
    kind, _, name = arm.partition(":")
    out = run_paths(profile, run_dir).ablations / arm.replace(":", "-")
    if kind == "schedule":
        return run_schedule(profile, run_dir, schedule=ablation_schedule(profile, name), output=out,
                            save_stages=False, progress=progress)
    if kind == "init":
        return run_schedule(profile, run_dir, init=name, output=out, save_stages=False, progress=progress)
    raise TrainingError(f"Unknown ablation arm {arm!r}: use schedule:<name> or init:<name>.")
