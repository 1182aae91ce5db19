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
    """The sizes that decide a stage's cost.

    The defaults describe phi-2's kind of model (every linear layer and the head with a bias, one
    LayerNorm per layer, a two-matrix MLP, as many key-value heads as heads); SOLAR-10.7B's kind
    (Llama) has no biases, two RMSNorms per layer, a gated three-matrix MLP and 8 key-value heads
    for its 32 heads (``kv_fraction`` 0.25).
    """

    hidden: int
    layers: int
    intermediate: int
    n_base: int  # base tokens
    n_new: int  # new tokens
    rows: int  # embedding rows (with padding)
    kv_fraction: float = 1.0  # key/value width over the hidden size
    gated_mlp: bool = False
    biases: bool = True

    @property
    def body_params(self) -> int:
        h, f = self.hidden, self.intermediate
        kv = int(h * self.kv_fraction)
        attention = 2 * h * h + 2 * h * kv + ((2 * h + 2 * kv) if self.biases else 0)  # q, k, v, output
        mlp = (3 if self.gated_mlp else 2) * h * f + ((f + h) if self.biases else 0)
        norm = 2 * h  # LayerNorm weight and bias, or two RMSNorm weights
        final_norm = 2 * h if self.biases else h
        return self.layers * (attention + mlp + norm) + final_norm

    def params_with_rows(self, rows: int) -> int:
        """Parameters of the model with ``rows`` embedding rows (input, output, output bias)."""
        return self.body_params + 2 * rows * self.hidden + (rows if self.biases else 0)

    @property
    def total_params(self) -> int:
        return self.params_with_rows(self.rows)


def stage_memory_bytes(shape: Shape, stage: Stage, weight_bytes: int = 4, adam_bytes: int = 8) -> dict[str, int]:
    """Weights (all), gradients and Adam moments (trainable only): the floor of a stage's memory."""
    trainable = trainable_counts(stage, n_base=shape.n_base, n_new=shape.n_new, hidden=shape.hidden,
                                 body_params=shape.body_params, output_bias=shape.biases)["total"]
    weights = shape.total_params * weight_bytes
    return {"weights": weights, "gradients": trainable * weight_bytes, "adam": trainable * adam_bytes,
            "total": weights + trainable * (weight_bytes + adam_bytes), "trainable": trainable}


def stage_flops_per_token(shape: Shape, stage: Stage) -> float:
    """Forward (2 per parameter) + backward: activation gradients through whatever lies between the
    loss and the first trainable block (2 per parameter there), and weight gradients of what trains."""
    head = shape.rows * shape.hidden
    forward = 2 * (shape.body_params + head)
    trainable = trainable_counts(stage, n_base=shape.n_base, n_new=shape.n_new, hidden=shape.hidden,
                                 body_params=shape.body_params, output_bias=shape.biases)
    activation_grads = 2 * (head + shape.body_params) if stage.needs_body_backward else 0
    weight_grads = 2 * (trainable["transformer"] + trainable["output_embedding"])  # input rows: a scatter, ~free
    return float(forward + activation_grads + weight_grads)


# The largest single accelerator the page plans for (an 80 GB A100/H100): a stage whose memory
# floor exceeds it needs its weights, gradients and Adam state sharded over several GPUs.
GPU_MEMORY_GIB = 80


def stage_table(shape: Shape, tokens_per_stage: dict[int, int], save_bytes: int = 2) -> list[dict]:
    """One row per stage: memory floor, FLOPs for its token budget, disk of its saved model."""
    rows = []
    for number, tokens in tokens_per_stage.items():
        stage = STAGES[number]
        memory = stage_memory_bytes(shape, stage)
        floor = memory["total"] / 2**30
        rows.append({"stage": number, "trains": stage.name, "trainable parameters": memory["trainable"],
                     "memory floor (GiB)": floor,
                     f"GPUs of {GPU_MEMORY_GIB} GB at least": max(1, -(-int(floor * 2**30) // (GPU_MEMORY_GIB * 10**9))),
                     "training FLOPs": stage_flops_per_token(shape, stage) * tokens,
                     "saved model (GiB)": shape.total_params * save_bytes / 2**30})
    return rows


def run_disk_gib(shape: Shape, base_rows: int, stages: int, base_bytes: int = 4, save_bytes: int = 2) -> dict:
    """Disk of a run folder: the base model as loaded, and the stages plus the final model as saved."""
    return {"base": shape.params_with_rows(base_rows) * base_bytes / 2**30,
            "stages and final model": (stages + 1) * shape.total_params * save_bytes / 2**30}


# Cited, not computed: phi-2's config.json (32 layers, 51,200 embedding rows), its tokenizer (50,295
# tokens), and the EEVE-Korean-2.8B model card (a vocabulary of 58,944).
PHI2_LAYERS, PHI2_TOKENS, PHI2_ROWS, EEVE_KOREAN_2_8B_VOCABULARY = 32, 50295, 51200, 58944
# Cited, not computed: upstage/SOLAR-10.7B-v1.0's config.json (48 layers, 32,000 rows for its
# 32,000-piece tokenizer, unpadded) and the EEVE-Korean-10.8B model card (8,960 new tokens; its
# config's 40,960 rows are 32,000 + 8,960).
SOLAR_LAYERS, SOLAR_TOKENS, SOLAR_ROWS, EEVE_KOREAN_10_8B_NEW_TOKENS = 48, 32000, 32000, 8960


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


def solar_shape() -> Shape:
    """SOLAR-10.7B extended as EEVE-Korean-10.8B: the solar-dry profile's SOLAR configuration with
    SOLAR's 48 layers, and the card's 8,960 new tokens."""
    from ..method.embedding_init import plan_rows
    from ..pipeline.profiles import load_profile

    arch = load_profile("solar-dry").base_model.architecture
    multiple = load_profile("full-solar").vocabulary.pad_to_multiple_of
    target = SOLAR_TOKENS + EEVE_KOREAN_10_8B_NEW_TOKENS
    return Shape(hidden=arch["hidden_size"], layers=SOLAR_LAYERS, intermediate=arch["intermediate_size"],
                 n_base=SOLAR_TOKENS, n_new=EEVE_KOREAN_10_8B_NEW_TOKENS, rows=plan_rows(SOLAR_ROWS, target, multiple),
                 kv_fraction=arch["num_key_value_heads"] / arch["num_attention_heads"], gated_mlp=True, biases=False)


#: the models of the paper: (name, shape, rows of the base model, profile whose budgets apply)
MODELS = {"phi-2": (phi2_shape, PHI2_ROWS, "full"), "SOLAR-10.7B": (solar_shape, SOLAR_ROWS, "full-solar")}


def profile_stage_table(shape: Shape, profile: str) -> list[dict]:
    """``stage_table`` for ``shape`` and the token budgets of ``profile``'s schedule."""
    from ..pipeline.profiles import load_profile

    t = load_profile(profile).training
    tokens = {b.stage: b.tokens or b.steps * t.batch_size * t.seq_len for b in t.schedule}
    return stage_table(shape, tokens)


def full_profile_stage_table() -> list[dict]:
    """``stage_table`` for phi-2's shape and the ``full`` profile's token budgets."""
    return profile_stage_table(phi2_shape(), "full")


def full_solar_stage_table() -> list[dict]:
    """``stage_table`` for SOLAR-10.7B's shape and the ``full-solar`` profile's token budgets."""
    return profile_stage_table(solar_shape(), "full-solar")


if __name__ == "__main__":  # python -m eeve_lib.book.resources: the README's per-stage memory table
    for name, (make_shape, base_rows, profile) in MODELS.items():
        shape = make_shape()
        print(f"{name} extended to {shape.rows:,} rows: {shape.total_params:,} parameters (budgets of profile {profile})")
        print(f"{'stage':>5}  {'trainable':>14}  {'memory floor GiB':>16}  {'GPUs':>4}  {'training FLOPs':>14}  trains")
        for row in profile_stage_table(shape, profile):
            print(f"{row['stage']:>5}  {row['trainable parameters']:>14,}  {row['memory floor (GiB)']:>16.1f}  "
                  f"{row[f'GPUs of {GPU_MEMORY_GIB} GB at least']:>4}  {row['training FLOPs']:>14.3g}  {row['trains']}")
        print()
