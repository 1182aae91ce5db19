"""What a stage costs, computed from shapes: memory for weights, gradients and Adam state,
FLOPs per token, and disk per saved model; and memory plans (per GPU, for data parallelism,
FSDP sharding, LoRA and QLoRA, and the fewest GPUs that hold a stage) for phi-2 and SOLAR-10.7B.
Shown in "Run the full-scale version"; ``python -m eeve_lib.book.resources`` prints them.

These are lower bounds that leave out activations (they depend on batch size and sequence length,
and shrink with activation checkpointing) and framework overheads. Measured numbers come from
``benchmarks/stage_training.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..method.stages import STAGES, Stage, trainable_counts
from ..pipeline.profiles import load_profile
from .external import number


@dataclass(frozen=True)
class Shape:
    """The sizes that decide a stage's cost. The defaults describe phi-2's blocks (attention and MLP
    with biases, one LayerNorm per block, a plain two-layer MLP, an output bias); SOLAR-10.7B's
    (Llama) blocks have grouped-query attention, a gated MLP, two RMSNorms and no biases."""

    hidden: int
    layers: int
    intermediate: int
    n_base: int  # base tokens
    n_new: int  # new tokens
    rows: int  # embedding rows (with padding)
    heads: int = 1
    kv_heads: int = 1  # as many as heads: plain multi-head attention
    gated_mlp: bool = False  # gate, up and down projections instead of fc1 and fc2
    biases: bool = True  # biases on every linear layer of the blocks
    rms_norm: bool = False  # RMSNorm (a weight) instead of LayerNorm (a weight and a bias)
    output_bias: bool = True

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer of one block: the layers LoRA adapts and QLoRA quantises."""
        h, f = self.hidden, self.intermediate
        kv = h * self.kv_heads // self.heads
        attention = [(h, h), (h, kv), (h, kv), (h, h)]  # q, k, v, output
        mlp = [(h, f), (h, f), (f, h)] if self.gated_mlp else [(h, f), (f, h)]
        return attention + mlp

    @property
    def linear_params(self) -> int:
        """Weights of the blocks' linear layers (no biases), all blocks."""
        return self.layers * sum(i * o for i, o in self.linear_shapes())

    @property
    def body_params(self) -> int:
        h = self.hidden
        biases = sum(o for _, o in self.linear_shapes()) if self.biases else 0
        norms = 2 * h  # phi-2: one LayerNorm (weight and bias); Llama: two RMSNorms (a weight each)
        final_norm = h if self.rms_norm else 2 * h
        return self.linear_params + self.layers * (biases + norms) + final_norm

    def params_with_rows(self, rows: int) -> int:
        """Parameters of the model with ``rows`` embedding rows (input, output, output bias)."""
        return self.body_params + 2 * rows * self.hidden + (rows if self.output_bias else 0)

    @property
    def total_params(self) -> int:
        return self.params_with_rows(self.rows)

    def block_params(self) -> int:
        return (self.body_params - (self.hidden if self.rms_norm else 2 * self.hidden)) // self.layers


def stage_memory_bytes(shape: Shape, stage: Stage, weight_bytes: int = 4, adam_bytes: int = 8) -> dict[str, int]:
    """Weights (all), gradients and Adam moments (trainable only): the floor of a stage's memory."""
    trainable = trainable_counts(stage, n_base=shape.n_base, n_new=shape.n_new, hidden=shape.hidden,
                                 body_params=shape.body_params, output_bias=shape.output_bias)["total"]
    weights = shape.total_params * weight_bytes
    return {"weights": weights, "gradients": trainable * weight_bytes, "adam": trainable * adam_bytes,
            "total": weights + trainable * (weight_bytes + adam_bytes), "trainable": trainable}


def stage_flops_per_token(shape: Shape, stage: Stage) -> float:
    """Forward (2 per parameter) + backward: activation gradients through whatever lies between the
    loss and the first trainable block (2 per parameter there), and weight gradients of what trains."""
    head = shape.rows * shape.hidden
    forward = 2 * (shape.body_params + head)
    trainable = trainable_counts(stage, n_base=shape.n_base, n_new=shape.n_new, hidden=shape.hidden,
                                 body_params=shape.body_params, output_bias=shape.output_bias)
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
                     f"GPUs of {GPU_MEMORY_GIB} GB at least":
                         max(1, -(-int(floor * 2**30) // (GPU_MEMORY_GIB * 10**9))),
                     "training FLOPs": stage_flops_per_token(shape, stage) * tokens,
                     "saved model (GiB)": shape.total_params * save_bytes / 2**30})
    return rows


def run_disk_gib(shape: Shape, base_rows: int, stages: int, base_bytes: int = 4, save_bytes: int = 2) -> dict:
    """Disk of a run folder: the base model as loaded, and the stages plus the final model as saved."""
    return {"base": shape.params_with_rows(base_rows) * base_bytes / 2**30,
            "stages and final model": (stages + 1) * shape.total_params * save_bytes / 2**30}


# Cited, not computed (eeve_lib/book/external.py, with their sources): phi-2's config.json (layers,
# embedding rows), its tokenizer (tokens), and EEVE-Korean-2.8B's config.json (its vocabulary).
PHI2_LAYERS, PHI2_TOKENS, PHI2_ROWS, EEVE_KOREAN_2_8B_VOCABULARY = (
    number(k).value for k in ("phi2_layers", "phi2_tokenizer_tokens", "phi2_rows", "eeve_2_8b_vocab_rows"))


def phi2_shape() -> Shape:
    """phi-2 extended as EEVE-Korean-2.8B: the full-dry profile's phi-2 configuration with phi-2's
    32 layers, and as new tokens the rows EEVE-Korean-2.8B has beyond phi-2's tokens (our upper
    bound: those rows may also hold special tokens and padding)."""
    from ..method.embedding_init import plan_rows  # here, not at the top: it loads torch

    arch = load_profile("full-dry").base_model.architecture
    multiple = load_profile("full").vocabulary.pad_to_multiple_of
    return Shape(hidden=arch["hidden_size"], layers=PHI2_LAYERS, intermediate=arch["intermediate_size"],
                 n_base=PHI2_TOKENS, n_new=EEVE_KOREAN_2_8B_VOCABULARY - PHI2_TOKENS,
                 rows=plan_rows(PHI2_ROWS, EEVE_KOREAN_2_8B_VOCABULARY, multiple))



def profile_stage_table(shape: Shape, profile: str) -> list[dict]:
    """``stage_table`` for ``shape`` and the token budgets of ``profile``'s schedule."""
    t = load_profile(profile).training
    tokens = {b.stage: b.tokens or b.steps * t.batch_size * t.seq_len for b in t.schedule}
    return stage_table(shape, tokens)


def full_profile_stage_table() -> list[dict]:
    """``stage_table`` for phi-2's shape and the ``full`` profile's token budgets."""
    return profile_stage_table(phi2_shape(), "full")


# Cited, not computed (eeve_lib/book/external.py, with their sources): SOLAR-10.7B's config.json
# (upstage/SOLAR-10.7B-v1.0: hidden size, layers, attention and key-value heads, MLP width, vocabulary;
# RMSNorm, no biases, untied embeddings) and EEVE-Korean-10.8B's config.json (its vocabulary).
SOLAR_HIDDEN, SOLAR_LAYERS, SOLAR_HEADS, SOLAR_KV_HEADS, SOLAR_MLP, SOLAR_TOKENS = (
    number(k).value for k in ("solar_hidden", "solar_layers", "solar_heads", "solar_kv_heads", "solar_mlp",
                              "solar_vocab"))
SOLAR_ROWS = SOLAR_TOKENS  # SOLAR's embedding matrices are not padded
EEVE_KOREAN_10_8B_VOCABULARY = number("eeve_10_8b_vocab_rows").value


def solar_shape() -> Shape:
    """SOLAR-10.7B extended as EEVE-Korean-10.8B (rows padded as the ``full-solar`` profile pads)."""
    from ..method.embedding_init import plan_rows  # here, not at the top: it loads torch

    multiple = load_profile("full-solar").vocabulary.pad_to_multiple_of
    return Shape(hidden=SOLAR_HIDDEN, layers=SOLAR_LAYERS, intermediate=SOLAR_MLP, n_base=SOLAR_TOKENS,
                 n_new=EEVE_KOREAN_10_8B_VOCABULARY - SOLAR_TOKENS,
                 rows=plan_rows(SOLAR_TOKENS, EEVE_KOREAN_10_8B_VOCABULARY, multiple),
                 heads=SOLAR_HEADS, kv_heads=SOLAR_KV_HEADS, gated_mlp=True, biases=False, rms_norm=True,
                 output_bias=False)


def full_solar_stage_table() -> list[dict]:
    """``stage_table`` for SOLAR-10.7B's shape and the ``full-solar`` profile's token budgets."""
    return profile_stage_table(solar_shape(), "full-solar")


#: the models of the paper: (name, shape, rows of the base model, profile whose budgets apply)
MODELS = {"phi-2": (phi2_shape, PHI2_ROWS, "full"), "SOLAR-10.7B": (solar_shape, SOLAR_ROWS, "full-solar")}


# Bytes per parameter, as the stage loop holds them: float32 weights (frozen ones too: the full
# profile loads the base in float32 and computes in bfloat16 autocast), float32 gradients and
# AdamW's two float32 moments for what trains: 4 + 4 + 8 = 16 bytes per trainable parameter.
WEIGHT_BYTES, GRAD_BYTES, ADAM_BYTES = 4, 4, 8
# QLoRA's NF4 with double quantisation (bitsandbytes' Linear4bit default): 4 bits per weight plus
# 0.127 bits of quantisation constants (Dettmers et al. 2023, "QLoRA", section 3): 4.127 / 8 bytes.
NF4_BYTES = 4.127 / 8
# FSDP gathers a unit's weights in the compute dtype (bfloat16) for the moment it computes with
# them; with prefetching two blocks are whole at once, and the head stays gathered between its
# forward and backward passes (sharding.shard_copy).
GATHER_BYTES = 2
# Memory left over for activations, the CUDA context and the allocator: model states must fit in
# the rest (activations depend on micro-batch and sequence length; measure them with
# benchmarks/stage_training.py --device cuda).
RESERVE = 0.10
GB = 10**9
# The vendors' figures, in GB: A100/H100 80 GB, H200 141 GB.
GPU_MEMORY = {"80 GB": 80 * GB, "141 GB": 141 * GB}
STRATEGIES = ("AdamW, data parallel", "AdamW, FSDP", "LoRA", "QLoRA")


def lora_params(shape: Shape, rank: int) -> int:
    """Parameters of rank-``rank`` adapters on every linear layer of the blocks: r (in + out) each."""
    return shape.layers * sum(rank * (i + o) for i, o in shape.linear_shapes())


def strategy_bytes(shape: Shape, stage: Stage, strategy: str, gpus: int = 1, rank: int = 8) -> float | None:
    """Model-state bytes per GPU of ``stage`` under ``strategy`` on ``gpus`` GPUs (None: does not apply).

    * AdamW, data parallel: every GPU holds all weights, and gradients and Adam moments of what trains.
    * AdamW, FSDP: the same states split over the GPUs, plus the gathered units (bfloat16).
    * LoRA (stage 6 only, data parallel): all weights frozen but the embedding rows, which train
      as in the full stage 6, and adapters of rank ``rank`` that train beside the linear layers.
    * QLoRA: LoRA with the blocks' linear weights in NF4; other weights float32.
    """
    counts = trainable_counts(stage, n_base=shape.n_base, n_new=shape.n_new, hidden=shape.hidden,
                              body_params=shape.body_params, output_bias=shape.output_bias)
    per_trainable = GRAD_BYTES + ADAM_BYTES
    if strategy == "AdamW, data parallel":
        return shape.total_params * WEIGHT_BYTES + counts["total"] * per_trainable
    if strategy == "AdamW, FSDP":
        states = shape.total_params * WEIGHT_BYTES + counts["total"] * per_trainable
        head = shape.rows * (shape.hidden + (1 if shape.output_bias else 0))
        gathered = (2 * max(shape.block_params(), shape.rows * shape.hidden) + head) * GATHER_BYTES
        return states / gpus + (gathered if gpus > 1 else 0)
    if strategy in ("LoRA", "QLoRA"):
        if not (stage.adapters_allowed and stage.transformer):
            return None
        adapters = lora_params(shape, rank)
        rows = counts["input_embedding"] + counts["output_embedding"]
        frozen_linear = shape.linear_params * (NF4_BYTES if strategy == "QLoRA" else WEIGHT_BYTES)
        other = (shape.total_params - shape.linear_params) * WEIGHT_BYTES
        return frozen_linear + other + (rows + adapters) * per_trainable + adapters * WEIGHT_BYTES
    raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")


def fewest_gpus(shape: Shape, stage: Stage, strategy: str, capacity: float, rank: int = 8) -> int | None:
    """The fewest GPUs of ``capacity`` bytes whose model states fit in ``1 - RESERVE`` of each
    (None: no number does; data parallelism and LoRA do not divide memory)."""
    usable = capacity * (1 - RESERVE)
    one = strategy_bytes(shape, stage, strategy, 1, rank)
    if one is None:
        return None
    if one <= usable:
        return 1
    if strategy != "AdamW, FSDP":
        return None
    gathered = strategy_bytes(shape, stage, strategy, 2, rank) - one / 2
    if gathered >= usable:
        return None
    return max(2, math.ceil(one / (usable - gathered)))


def memory_plan(shape: Shape, gpus: int = 8, rank: int = 8) -> list[dict]:
    """One row per stage and strategy: GB per GPU on one and on ``gpus`` GPUs, the fewest GPUs that fit."""
    rows = []
    for number, stage in STAGES.items():
        for strategy in STRATEGIES:
            one = strategy_bytes(shape, stage, strategy, 1, rank)
            if one is None:
                continue
            row = {"stage": number, "strategy": strategy, "GB per GPU, 1 GPU": one / GB,
                   f"GB per GPU, {gpus} GPUs": strategy_bytes(shape, stage, strategy, gpus, rank) / GB}
            for name, capacity in GPU_MEMORY.items():
                row[f"fewest {name} GPUs"] = fewest_gpus(shape, stage, strategy, capacity, rank)
            rows.append(row)
    return rows


def plan_models() -> dict[str, Shape]:
    """The two models of the memory plans."""
    return {"phi-2 (EEVE-Korean-2.8B)": phi2_shape(), "SOLAR-10.7B (EEVE-Korean-10.8B)": solar_shape()}


def print_memory_plans(gpus: int = 8, rank: int | None = None) -> None:
    rank = rank or load_profile("full").training.lora_rank
    print(f"\nModel states per GPU (GB = 1e9 bytes): float32 weights, and float32 gradients and AdamW moments of what")
    print(f"trains; LoRA/QLoRA (stage 6 only) with rank-{rank} adapters; 'fewest' GPUs keep states within "
          f"{1 - RESERVE:.0%} of each GPU (activations come on top; '-': no number of GPUs does).")
    for model, shape in plan_models().items():
        print(f"\n{model}: {shape.total_params:,} parameters, {shape.rows:,} embedding rows")
        print(f"{'stage':>5}  {'strategy':<22}{'GB/GPU (1)':>11}{f'GB/GPU ({gpus})':>12}"
              + "".join(f"{'fewest ' + n:>14}" for n in GPU_MEMORY))
        for row in memory_plan(shape, gpus, rank):
            fewest = "".join(f"{row[f'fewest {n} GPUs'] or '-':>14}" for n in GPU_MEMORY)
            print(f"{row['stage']:>5}  {row['strategy']:<22}{row['GB per GPU, 1 GPU']:>11.1f}"
                  f"{row[f'GB per GPU, {gpus} GPUs']:>12.1f}{fewest}")


if __name__ == "__main__":  # python -m eeve_lib.book.resources: the README's per-stage tables
    for name, (make_shape, base_rows, profile) in MODELS.items():
        shape = make_shape()
        print(f"{name} extended to {shape.rows:,} rows: {shape.total_params:,} parameters "
              f"(budgets of profile {profile})")
        print(f"{'stage':>5}  {'trainable':>14}  {'memory floor GiB':>16}  {'GPUs':>4}  {'training FLOPs':>14}  trains")
        for row in profile_stage_table(shape, profile):
            print(f"{row['stage']:>5}  {row['trainable parameters']:>14,}  {row['memory floor (GiB)']:>16.1f}  "
                  f"{row[f'GPUs of {GPU_MEMORY_GIB} GB at least']:>4}  {row['training FLOPs']:>14.3g}  {row['trains']}")
        print()
    print_memory_plans()
