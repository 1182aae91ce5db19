"""What a stage costs, computed from shapes: memory for weights, gradients and Adam state,
FLOPs per token, and disk per saved model. Shown in "Run the full-scale version".

These are lower bounds that leave out activations (they depend on batch size and sequence length,
and shrink with activation checkpointing) and framework overheads. Measured numbers come from
``benchmarks/stage_training.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..method.stages import STAGES, Stage, trainable_counts


@dataclass(frozen=True)
class Shape:
    """The sizes that decide a stage's cost."""

    hidden: int
    layers: int
    intermediate: int
    n_base: int  # base tokens
    n_new: int  # new tokens
    rows: int  # embedding rows (with padding)

    @property
    def body_params(self) -> int:
        h, f = self.hidden, self.intermediate
        attention = 4 * h * h + 4 * h  # q, k, v, dense with biases
        mlp = 2 * h * f + f + h
        norm = 2 * h
        return self.layers * (attention + mlp + norm) + 2 * h  # + final layer norm

    @property
    def total_params(self) -> int:
        return self.body_params + 2 * self.rows * self.hidden + self.rows  # input, output, output bias


def stage_memory_bytes(shape: Shape, stage: Stage, weight_bytes: int = 4, adam_bytes: int = 8) -> dict[str, int]:
    """Weights (all), gradients and Adam moments (trainable only): the floor of a stage's memory."""
    trainable = trainable_counts(stage, n_base=shape.n_base, n_new=shape.n_new, hidden=shape.hidden,
                                 body_params=shape.body_params)["total"]
    weights = shape.total_params * weight_bytes
    return {"weights": weights, "gradients": trainable * weight_bytes, "adam": trainable * adam_bytes,
            "total": weights + trainable * (weight_bytes + adam_bytes), "trainable": trainable}


def stage_flops_per_token(shape: Shape, stage: Stage) -> float:
    """Forward (2 per parameter) + backward: activation gradients through whatever lies between the
    loss and the first trainable block (2 per parameter there), and weight gradients of what trains."""
    head = shape.rows * shape.hidden
    forward = 2 * (shape.body_params + head)
    trainable = trainable_counts(stage, n_base=shape.n_base, n_new=shape.n_new, hidden=shape.hidden,
                                 body_params=shape.body_params)
    activation_grads = 2 * (head + shape.body_params) if stage.needs_body_backward else 0
    weight_grads = 2 * (trainable["transformer"] + trainable["output_embedding"])  # input rows: a scatter, ~free
    return float(forward + activation_grads + weight_grads)


def stage_table(shape: Shape, tokens_per_stage: dict[int, int], save_bytes: int = 2) -> list[dict]:
    """One row per stage: memory floor, FLOPs for its token budget, disk of its saved model."""
    rows = []
    for number, tokens in tokens_per_stage.items():
        stage = STAGES[number]
        memory = stage_memory_bytes(shape, stage)
        rows.append({"stage": number, "trains": stage.name, "trainable parameters": memory["trainable"],
                     "memory floor (GiB)": memory["total"] / 2**30,
                     "training FLOPs": stage_flops_per_token(shape, stage) * tokens,
                     "saved model (GiB)": shape.total_params * save_bytes / 2**30})
    return rows


# Cited, not computed: phi-2's config.json (32 layers, 51,200 embedding rows), its tokenizer (50,295
# tokens), and the EEVE-Korean-2.8B model card (a vocabulary of 58,944).
PHI2_LAYERS, PHI2_TOKENS, PHI2_ROWS, EEVE_KOREAN_2_8B_VOCABULARY = 32, 50295, 51200, 58944


def phi2_shape() -> Shape:
    """phi-2 extended as EEVE-Korean-2.8B: the full-dry profile's phi-2 configuration with phi-2's
    32 layers, and as many new tokens as the card's vocabulary implies."""
    from ..method.embedding_init import plan_rows
    from ..pipeline.profiles import load_profile

    arch = load_profile("full-dry").base_model.architecture
    multiple = load_profile("full").vocabulary.pad_to_multiple_of
    return Shape(hidden=arch["hidden_size"], layers=PHI2_LAYERS, intermediate=arch["intermediate_size"],
                 n_base=PHI2_TOKENS, n_new=EEVE_KOREAN_2_8B_VOCABULARY - PHI2_TOKENS,
                 rows=plan_rows(PHI2_ROWS, EEVE_KOREAN_2_8B_VOCABULARY, multiple))


def full_profile_stage_table() -> list[dict]:
    """``stage_table`` for phi-2's shape and the ``full`` profile's token budgets."""
    from ..pipeline.profiles import load_profile

    t = load_profile("full").training
    tokens = {b.stage: b.tokens or b.steps * t.batch_size * t.seq_len for b in t.schedule}
    return stage_table(phi2_shape(), tokens)


if __name__ == "__main__":  # python -m eeve_lib.resources: the README's per-stage memory table
    shape = phi2_shape()
    print(f"phi-2 extended to {shape.rows:,} rows: {shape.total_params:,} parameters")
    print(f"{'stage':>5}  {'trainable':>14}  {'memory floor GiB':>16}  {'training FLOPs':>14}  trains")
    for row in full_profile_stage_table():
        print(f"{row['stage']:>5}  {row['trainable parameters']:>14,}  {row['memory floor (GiB)']:>16.1f}  "
              f"{row['training FLOPs']:>14.3g}  {row['trains']}")
