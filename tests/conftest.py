"""Shared fixtures: small configurations of the very same code the chapters run.

``MICRO`` shrinks the tiny profile (a smaller base model, a few steps per stage) so that whole
pipelines run in seconds; ``micro_run`` executes every chapter through the runner once per test
session and builds the book from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eeve_lib.method.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("EEVE_DATA_DIR", str((ROOT.parent / "shared" / "data").resolve()))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MICRO: dict = {
    "data.max_english_documents": 4000,
    "base_model.tokenizer_vocab_size": 1000,
    "base_model.architecture.hidden_size": 32,
    "base_model.architecture.intermediate_size": 64,
    "base_model.architecture.num_hidden_layers": 2,
    "base_model.architecture.num_attention_heads": 2,
    "base_model.pretrain.steps": 20,
    "base_model.pretrain.batch_size": 4,
    "base_model.pretrain.seq_len": 64,
    "vocabulary.intermediate_vocab_size": 700,
    "training.seq_len": 32,
    "training.batch_size": 4,
    "training.checkpoint_every": 2,
    "training.schedule": [{"stage": s, "steps": 4, "learning_rate": 3.0e-3} for s in STAGES],
    "evaluation.window": 64,
    "evaluation.stride": 32,
    "evaluation.max_korean_chars": 1500,
    "evaluation.max_english_chars": 1500,
    "evaluation.max_new_tokens": 8,
    "ablations.seeds": 2,
    "ablations.english_replay": [0.0, 0.25],
}


@pytest.fixture(scope="session")
def micro_profile():
    from eeve_lib.pipeline.profiles import load_profile

    return load_profile("tiny", MICRO)


@pytest.fixture(scope="session")
def micro_base(micro_profile, tmp_path_factory):
    """A run directory holding a micro base model (chapter 00's step only)."""
    from eeve_lib.pipeline.base import ensure_base_model

    run_dir = tmp_path_factory.mktemp("micro-base")
    ensure_base_model(micro_profile, run_dir, progress=False)
    return run_dir


@pytest.fixture(scope="session")
def micro_expanded(micro_profile, micro_base):
    """``micro_base`` plus the extended tokenizer (chapters 01-02)."""
    from eeve_lib.pipeline.vocabulary import expand_vocabulary

    expand_vocabulary(micro_profile, micro_base, progress=False)
    return micro_base


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """Every chapter executed through the runner at MICRO settings, and the book built from it."""
    from eeve_lib.book.build import build_book
    from eeve_lib.pipeline.runner import run_book

    root = tmp_path_factory.mktemp("micro-run")
    run_dir = root / "runs" / "tiny"
    report = run_book("tiny", run_dir=run_dir, overrides=MICRO, progress=False)
    index = build_book("tiny", run_dir=run_dir, output=root / "_build")
    return {"run_dir": run_dir, "report": report, "index": index, "root": root}


def assert_padding_never_generated(model, tok, prompt: str, new_tokens: int) -> None:
    """Rows beyond the tokenizer are suppressed in generation, even when made the most likely."""
    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    assert rows > len(tok), "the model should have padding rows"
    assert model.generation_config.suppress_tokens == list(range(len(tok), rows))
    with torch.no_grad():
        model.lm_head.bias[len(tok):] = 1e4
    ids = tok(prompt, return_tensors="pt").input_ids
    torch.manual_seed(0)
    out = model.generate(ids, do_sample=True, max_new_tokens=new_tokens, pad_token_id=tok.eos_token_id)
    assert int(out.max()) < len(tok)
