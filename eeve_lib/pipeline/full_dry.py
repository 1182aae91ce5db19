"""The phi-2-shaped stand-in of the ``full-dry`` profile.

``full`` downloads microsoft/phi-2; nothing here can. So ``full-dry`` reads a local model of the
same *shape*: phi-2's configuration (hidden size 2560, 32 heads, untied head with a bias, the
vocabulary padded to 51,200 rows) with random weights, and a byte-level BPE tokenizer of phi-2's
size (50,257 BPE entries plus 38 whitespace tokens, 50,295 in all) trained locally on English.
Only the number of layers is cut down (profile ``full-dry``). ``eeve prepare-full-dry`` writes
it; chapter 00 at ``full-dry`` then loads it exactly as ``full`` loads phi-2. Shown in "Run the
full-scale version".
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import atomic
from ..method.base_model import build_phi_config, padded_rows
from ..method.families import family_named
from .corpora import load_corpus
from .profiles import PROJECT_ROOT, load_profile
from ..runtime import deterministic, seeded


def prepare_full_dry_base(output: str | Path | None = None, layers: int | None = None, profile: str = "full-dry",
                          overrides: dict | None = None) -> Path:
    """Write the stand-in (config, random bf16 weights, tokenizer) to the profile's ``local_path``."""
    from transformers import PhiForCausalLM

    p = load_profile(profile, overrides)
    bm = p.base_model
    target = Path(output or bm.local_path)
    target = target if target.is_absolute() else PROJECT_ROOT / target
    english = load_corpus(p, "english")
    tokenizer = family_named(bm.tokenizer_family).train_base_tokenizer(english.train, bm.tokenizer_vocab_size,
                                                                       bm.tokenizer_added_tokens)
    rows = padded_rows(len(tokenizer), bm.pad_vocab_to_multiple_of)
    architecture = dict(bm.architecture)
    if layers is not None:
        architecture["num_hidden_layers"] = layers
    config = build_phi_config(architecture, rows, tokenizer.eos_token_id)
    with seeded(p.seed), deterministic():
        model = PhiForCausalLM(config)
    # phi-2's published weights are 16-bit; store the stand-in in bfloat16 as well.
    model.to(torch.bfloat16)
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    with atomic.directory(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target
