"""Chapter 00's step: the base model is built, saved Hugging Face-native, cached and deterministic."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from eeve_lib.pipeline.base import ensure_base_model, load_base
from eeve_lib.errors import OfflineError
from eeve_lib.pipeline.profiles import load_profile
from tests.conftest import MICRO, assert_padding_never_generated


def test_saved_base_reloads_offline_with_auto_classes(micro_base):
    base = micro_base / "base"
    assert (base / "model.safetensors").is_file() and (base / "tokenizer.json").is_file()
    code = ("from transformers import AutoModelForCausalLM, AutoTokenizer;"
            f"m = AutoModelForCausalLM.from_pretrained({str(base)!r});"
            f"t = AutoTokenizer.from_pretrained({str(base)!r});"
            "print(type(m).__name__, len(t), m.config.vocab_size)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    name, tokens, rows = out.stdout.split()
    assert name == "PhiForCausalLM" and int(rows) >= int(tokens)


def test_cached_base_is_reused(micro_profile, micro_base):
    result = ensure_base_model(micro_profile, micro_base, progress=False)
    assert result.reused


def test_two_runs_from_scratch_are_bit_identical_even_with_the_global_rng_disturbed(micro_profile, tmp_path):
    torch.manual_seed(1)
    ensure_base_model(micro_profile, tmp_path / "a", progress=False)
    torch.manual_seed(999)
    torch.rand(1000)
    state_before = torch.get_rng_state()
    ensure_base_model(micro_profile, tmp_path / "b", progress=False)
    assert torch.equal(state_before, torch.get_rng_state()), "building the base model must not consume the global RNG"
    a = load_file(tmp_path / "a" / "base" / "model.safetensors")
    b = load_file(tmp_path / "b" / "base" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "base" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "base" / "tokenizer.json").read_bytes()


def test_padding_rows_are_never_generated(micro_base):
    model, tok = load_base("tiny", micro_base)
    assert_padding_never_generated(model, tok, "To be", 40)


def test_hub_model_offline_fails_fast_with_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from eeve_lib.pipeline import hub

    hub.hub_reachable.cache_clear()
    profile = load_profile("full")
    with pytest.raises(OfflineError) as e:
        ensure_base_model(profile, tmp_path / "run", progress=False)
    message = str(e.value)
    assert "microsoft/phi-2" in message and "hf download microsoft/phi-2" in message and profile.base_model.revision in message
    assert not (tmp_path / "run" / "base").exists()
    hub.hub_reachable.cache_clear()


def test_bad_corpus_leaves_no_partial_base(tmp_path):
    profile = load_profile("tiny", {**MICRO, "base_model.pretrain.seq_len": 10**7})
    with pytest.raises(Exception, match="shorter than one window"):
        ensure_base_model(profile, tmp_path, progress=False)
    assert not (tmp_path / "base").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".base")]
