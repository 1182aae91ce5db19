"""Step 10: one stage of EEVE's training as the paper describes it: freeze by stage, step, merge.

A stage trains only what it names (new input rows, output rows, the transformer); every other
parameter, and every old row of a partly trained matrix, stays bit-identical (:mod:`.row_split`
splits each matrix into a frozen and a trained part). :func:`train_stage_loop` is the whole
loop and :func:`train_step` one step of it. How the loop runs on a machine (one process or
several, sharded, LoRA adapters, resuming, checkpoints, logs) is a :class:`StageEngine`'s
business: :class:`PlainEngine` here is one process in plain torch (the benchmarks'),
:class:`eeve_lib.method.stage_loop.AccelerateEngine` the pipeline's. Shown in chapter 04.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Sequence

import torch

from .embedding_init import Extension
from .lm import causal_lm_loss
from .row_split import install_stage, merge_stage, stage_optimizer
from .stages import Stage


def train_stage_loop(model, stage: Stage, ext: Extension, engine: StageEngine) -> list[float]:
    """Train ``model`` through one stage in place; returns the loss of each step."""
    trainable = engine.freeze(model, stage, ext)  # only the stage's rows and blocks require gradients
    train_model, optimizer, params = engine.prepare(model, trainable)
    losses = []
    with engine.running(train_model):  # training mode, the stage's own random state
        for step in engine.steps():
            for group in optimizer.param_groups:
                group["lr"] = engine.learning_rate(step)
            loss = engine.step(train_model, engine.batch(step), optimizer, params)
            losses.append(float(loss))
            engine.after_step(step, losses[-1], train_model, optimizer, params)
    engine.finish(model, train_model, params)
    merge_stage(model)  # whole matrices again: the frozen rows never left them
    return losses


def train_step(model, batch: torch.Tensor, optimizer, trainable: list, *, vocab_limit: int, grad_clip: float,
               backward: Callable | None = None, clip: Callable | None = None,
               autocast: Callable[[], Any] | None = None) -> torch.Tensor:
    """One optimizer step: forward, loss over the real tokens' logits, backward, clip, step.

    ``trainable`` are the stage's parameters (for clipping); ``backward``, ``clip`` and ``autocast``
    are an engine's (default: plain torch). Returns the detached loss.
    """
    with (autocast or contextlib.nullcontext)():
        logits = model(input_ids=batch).logits
    loss = causal_lm_loss(logits, batch, vocab_limit=vocab_limit)  # padding rows never predicted
    optimizer.zero_grad(set_to_none=True)
    (backward or torch.Tensor.backward)(loss)
    if grad_clip:
        (clip or torch.nn.utils.clip_grad_norm_)(trainable, grad_clip)
    optimizer.step()
    return loss.detach()


class StageEngine:
    """How :func:`train_stage_loop` runs on a machine: every hook the loop calls."""

    def freeze(self, model, stage: Stage, ext: Extension) -> list[tuple[str, torch.nn.Parameter]]:
        raise NotImplementedError

    def prepare(self, model, trainable) -> tuple[Any, Any, list]:
        """The model to train, its optimizer and the ``(name, parameter)`` pairs it updates."""
        raise NotImplementedError

    def running(self, train_model) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def steps(self) -> Iterable[int]:
        raise NotImplementedError

    def learning_rate(self, step: int) -> float:
        raise NotImplementedError

    def batch(self, step: int) -> torch.Tensor:
        raise NotImplementedError

    def step(self, train_model, batch: torch.Tensor, optimizer, params) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self, step: int, loss: float, train_model, optimizer, params) -> None:
        """Logs, validation, checkpoints: nothing by default."""

    def finish(self, model, train_model, params) -> None:
        """Bring what trained back into ``model`` (before the matrices merge): nothing by default."""


class PlainEngine(StageEngine):
    """One process, plain torch: ``batches[k]`` at ``learning_rates[k]``, AdamW over what trains."""

    def __init__(self, batches: Sequence[torch.Tensor], learning_rates: Sequence[float], *, vocab_limit: int,
                 grad_clip: float, weight_decay: float, autocast: Callable[[], Any] | None = None):
        self.batches, self.learning_rates, self.vocab_limit = batches, learning_rates, vocab_limit
        self.grad_clip, self.weight_decay, self.autocast = grad_clip, weight_decay, autocast

    def freeze(self, model, stage, ext):
        return install_stage(model, stage, ext)

    def prepare(self, model, trainable):
        return model, stage_optimizer(trainable, self.learning_rates[0], self.weight_decay), trainable

    @contextlib.contextmanager
    def running(self, train_model):
        train_model.train()
        yield

    def steps(self):
        return range(len(self.batches))

    def learning_rate(self, step):
        return self.learning_rates[step]

    def batch(self, step):
        return self.batches[step]

    def step(self, train_model, batch, optimizer, params):
        return train_step(train_model, batch, optimizer, [p for _, p in params], vocab_limit=self.vocab_limit,
                          grad_clip=self.grad_clip, autocast=self.autocast)


__all__ = ["train_stage_loop", "train_step", "StageEngine", "PlainEngine"]
