"""Memory plans of "Run the full-scale version": shapes, strategies and the fewest GPUs."""

import subprocess
import sys

import pytest
import torch

from eeve_lib.book.resources import (GB, STRATEGIES, Shape, fewest_gpus, lora_params, memory_plan, phi2_shape,
                                     solar_shape, strategy_bytes)
from eeve_lib.method.stages import STAGES


def meta_params(config) -> int:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())


@pytest.mark.parametrize("family", ["phi", "llama"])
def test_shape_counts_the_parameters_transformers_builds(family):
    from transformers import LlamaConfig, PhiConfig

    if family == "phi":
        config = PhiConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                           vocab_size=320)
        shape = Shape(hidden=64, layers=3, intermediate=256, n_base=300, n_new=0, rows=320)
    else:  # SOLAR-10.7B's family: grouped-query attention, gated MLP, RMSNorm, no biases, untied head
        config = LlamaConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=8,
                             num_key_value_heads=2, vocab_size=320, tie_word_embeddings=False)
        shape = Shape(hidden=64, layers=3, intermediate=160, n_base=300, n_new=0, rows=320, heads=8, kv_heads=2,
                      gated_mlp=True, biases=False, rms_norm=True, output_bias=False)
    assert shape.total_params == meta_params(config)


def test_the_two_models():
    assert phi2_shape().total_params == 2_819_340_864  # unchanged by the generalised shape
    solar = solar_shape()
    base = solar.total_params - 2 * solar.n_new * solar.hidden
    assert base == pytest.approx(10.7e9, rel=0.01) and solar.rows == 40960


def test_stage6_of_solar_needs_sharding_or_adapters():
    solar, six = solar_shape(), STAGES[6]
    plain = strategy_bytes(solar, six, "AdamW, data parallel")
    assert plain == pytest.approx(16 * solar.total_params) and plain / GB > 170  # the "some 170 GB"
    assert fewest_gpus(solar, six, "AdamW, data parallel", 141 * GB) is None
    assert fewest_gpus(solar, six, "AdamW, FSDP", 80 * GB) == 3
    assert fewest_gpus(solar, six, "AdamW, FSDP", 141 * GB) == 2
    assert strategy_bytes(solar, six, "AdamW, FSDP", 8) < plain / 7
    lora, qlora = strategy_bytes(solar, six, "LoRA"), strategy_bytes(solar, six, "QLoRA")
    assert qlora < lora < plain and fewest_gpus(solar, six, "QLoRA", 80 * GB) == 1
    assert lora_params(solar, 8) == 48 * 8 * (2 * (4096 + 4096) + 2 * (4096 + 1024) + 2 * (4096 + 14336)
                                             + (14336 + 4096))


def test_plans_cover_every_stage_and_adapters_only_stage6():
    for shape in (phi2_shape(), solar_shape()):
        plan = memory_plan(shape)
        assert {r["stage"] for r in plan} == set(STAGES)
        assert {r["stage"] for r in plan if r["strategy"] in ("LoRA", "QLoRA")} == {6}
        assert all(r["fewest 80 GB GPUs"] == 1 for r in plan if r["stage"] != 6 and r["stage"] != 7)


def test_the_command_prints_both_models_and_every_strategy():
    out = subprocess.run([sys.executable, "-m", "eeve_lib.book.resources"], capture_output=True, text=True,
                         check=True).stdout
    assert "phi-2" in out and "SOLAR-10.7B" in out
    for strategy in STRATEGIES:
        assert out.count(strategy) >= 2, strategy
