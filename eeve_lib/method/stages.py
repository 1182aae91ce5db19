"""Step 10: the seven training stages of EEVE, as data.

Each stage says which rows of the input embedding, which rows of the output embedding (the
language-model head, with its bias) and whether the transformer body train. "new" rows are those
of the added tokens; "all" rows are every real token's (base and new). Rows beyond the tokenizer
are padding and never train. A schedule is a list of stages with budgets, read from the profile,
so a custom subset (say stages 1, 2 and 6) is a one-line change; an ablation arm is a list of
stages that share the whole schedule's budget. Plots, chapters and tests ask a :class:`Stage`
what it trains instead of naming stage numbers. Shown in chapter 04.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Sequence

from ..errors import TrainingError

Rows = Literal["none", "new", "all"]


@dataclass(frozen=True)
class Stage:
    """What trains in one stage."""

    number: int
    name: str
    input_rows: Rows
    output_rows: Rows
    transformer: bool
    # The stage the paper, as secondary descriptions report it, trains with QLoRA: ``training.stage6``
    # may train its transformer through LoRA or QLoRA adapters instead of its weights.
    adapters_allowed: bool = False

    @property
    def trains_base_input_rows(self) -> bool:
        return self.input_rows == "all"

    @property
    def trains_base_output_rows(self) -> bool:
        return self.output_rows == "all"

    @property
    def trains_embeddings(self) -> bool:
        return self.input_rows != "none" or self.output_rows != "none"

    @property
    def needs_body_backward(self) -> bool:
        """Whether gradients must flow back through the transformer (to input rows or body)."""
        return self.transformer or self.input_rows != "none"


STAGES: dict[int, Stage] = {
    1: Stage(1, "new input embeddings", "new", "none", False),
    2: Stage(2, "new output embeddings", "none", "new", False),
    3: Stage(3, "new input and output embeddings", "new", "new", False),
    4: Stage(4, "all output embeddings", "none", "all", False),
    5: Stage(5, "new input and all output embeddings", "new", "all", False),
    6: Stage(6, "all parameters", "all", "all", True, adapters_allowed=True),
    7: Stage(7, "all but the embeddings", "none", "none", True),
}

def as_tied(stage: Stage) -> Stage:
    """``stage`` on a model whose input and output rows are one matrix: it trains the union of its rows.

    Stages 1, 2 and 3 then all train the new rows, stages 4 and 5 every row, as re-implementations of
    EEVE on tied models have to.
    """
    order: tuple[Rows, ...] = ("none", "new", "all")
    rows = max(stage.input_rows, stage.output_rows, key=order.index)
    return dataclasses.replace(stage, name=f"{stage.name} (tied: {rows} rows)", input_rows=rows, output_rows=rows)


# Ablation arms: these stages share the whole budget of the seven-stage schedule.
ABLATION_SCHEDULES: dict[str, list[int]] = {
    "full_finetune": [6],   # one stage of full fine-tuning
    "embeddings_only": [3],  # only the new input and output embeddings, base model untouched
}


def _at_least(low: float, *, above: bool = False, **field_kwargs):
    """A field whose range the profile loader checks (see ``eeve_lib.pipeline.profiles``)."""
    rule = {"low": low, "high": None, "above": above, "below": False, "min_items": None, "pattern": None}
    return field(metadata={"allowed": rule}, **field_kwargs)


@dataclass(frozen=True)
class StageBudget:
    """One stage of a schedule: which stage, for how long, at which learning rate."""

    stage: int
    learning_rate: float = _at_least(0, above=True)
    steps: int | None = _at_least(1, default=None)
    tokens: int | None = _at_least(1, default=None)


def get_stage(number: int) -> Stage:
    """The stage with this number; a clear error for any other."""
    if number not in STAGES:
        raise TrainingError(f"Unknown stage {number!r}. Valid stages: "
                            + ", ".join(f"{s.number} ({s.name})" for s in STAGES.values()) + ".")
    return STAGES[number]


def trainable_counts(stage: Stage, *, n_base: int, n_new: int, hidden: int, body_params: int,
                     output_bias: bool = True, tied: bool = False) -> dict[str, int]:
    """Trainable parameters per block in ``stage`` (chapter 04's table); a tied model's output rows
    are its input rows, counted once."""
    rows = {"none": 0, "new": n_new, "all": n_base + n_new}
    if tied:
        stage = as_tied(stage)
    inp = rows[stage.input_rows] * hidden
    out = 0 if tied else rows[stage.output_rows] * (hidden + (1 if output_bias else 0))
    body = body_params if stage.transformer else 0
    return {"input_embedding": inp, "output_embedding": out, "transformer": body, "total": inp + out + body}


def flops_per_token(stage: Stage, trainable: dict[str, int], body_params: int, hidden: int, rows: int) -> float:
    """Estimated training FLOPs per token of ``stage`` (``trainable`` from :func:`trainable_counts`).

    Forward: 2 per body and head parameter. Backward: activation gradients (2 per parameter)
    through the head and, when input rows or the body train, through the body too; weight
    gradients (2 per trainable parameter) of the body (or its adapters) and the head. Input rows
    are a scatter, counted as free; attention's sequence-length term is left out (small here).
    """
    head = rows * hidden
    forward = 2 * (body_params + head)
    activation_grads = 2 * (head + (body_params if stage.needs_body_backward else 0))
    weight_grads = 2 * (trainable["transformer"] + trainable["output_embedding"])
    return float(forward + activation_grads + weight_grads)


def steps_for(budget: StageBudget, batch_size: int, seq_len: int) -> int:
    """Optimizer steps of a budget given in steps or in tokens."""
    return budget.steps if budget.steps is not None else max(1, -(-budget.tokens // (batch_size * seq_len)))


def ablation_schedule(schedule: Sequence[StageBudget], arm: str, batch_size: int, seq_len: int) -> list[StageBudget]:
    """The stages of ablation ``arm`` sharing the steps of ``schedule`` (chapter 05).

    Each stage keeps the learning rate it has in ``schedule`` (the last stage's when absent);
    the total steps are split evenly, the first stages taking any remainder.
    """
    if arm not in ABLATION_SCHEDULES:
        raise TrainingError(f"Unknown ablation schedule {arm!r}. Valid: {', '.join(ABLATION_SCHEDULES)}.")
    total_steps = sum(steps_for(b, batch_size, seq_len) for b in schedule)
    stages = ABLATION_SCHEDULES[arm]
    share, extra = divmod(total_steps, len(stages))
    out = []
    for k, number in enumerate(stages):
        get_stage(number)
        lr = next((b.learning_rate for b in schedule if b.stage == number), schedule[-1].learning_rate)
        out.append(StageBudget(stage=number, learning_rate=lr, steps=share + (1 if k < extra else 0)))
    return out


def trained_so_far(schedule: Sequence[StageBudget]) -> list[tuple[Stage, frozenset[str]]]:
    """Each stage of ``schedule`` with the base blocks trained by it or any stage before it.

    Blocks: ``"input"`` (base input rows), ``"output"`` (base output rows and bias), ``"body"``
    (the transformer). A block outside the set must still equal the base model's after that stage.
    """
    out, trained = [], frozenset()
    for budget in schedule:
        stage = get_stage(budget.stage)
        trained |= ({"input"} if stage.trains_base_input_rows else set()) | \
            ({"output"} if stage.trains_base_output_rows else set()) | ({"body"} if stage.transformer else set())
        out.append((stage, trained))
    return out
