"""The stand-ins of the ``full-dry`` (phi-2-shaped) and ``solar-dry`` (SOLAR-10.7B-shaped) profiles.

``full`` downloads microsoft/phi-2 and ``full-solar`` upstage/SOLAR-10.7B-v1.0; nothing here can.
So the dry profiles read a local model of the same *shape* with random weights and a tokenizer of
the same family and size trained locally on English:

* ``full-dry``: phi-2's configuration (hidden size, heads, untied head with a bias, the
  vocabulary padded to phi-2's row count) and a byte-level BPE of phi-2's size (its BPE entries
  plus whitespace tokens);
* ``solar-dry``: SOLAR-10.7B's configuration (a Llama: grouped-query attention, a gated MLP,
  untied head without a bias, unpadded rows) and a SentencePiece-style BPE with byte fallback of
  SOLAR's size.

The sizes, with their sources (the models' ``config.json``), are in
:mod:`eeve_lib.book.external`; the profiles ``full-dry`` and ``solar-dry`` hold the configurations.

Only the number of layers is cut down (the profile's ``num_hidden_layers``). ``eeve
prepare-full-dry --profile <name>`` writes it; chapter 00 then loads it exactly as the full
profile loads the real model. It writes only a new or empty folder or one holding a stand-in it
wrote before (its ``.eeve-standin`` marker), which it replaces whole. Shown in "Run the full-scale
version".
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import atomic, rundir
from ..errors import EeveError
from ..method.base_model import build_config, new_model, padded_rows
from ..method.families import family_named
from .corpora import load_corpus
from .paths import STANDIN_MARKER
from .profiles import PROJECT_ROOT, available_profiles, load_profile
from ..runtime import deterministic, seeded


def prepare_full_dry_base(output: str | Path | None = None, layers: int | None = None, profile: str = "full-dry",
                          overrides: dict | None = None) -> Path:
    """Write the stand-in (config, random bf16 weights, tokenizer) to ``output`` (default: the profile's
    ``local_path``, relative to the project). Refused, before any work, for a profile without a local
    stand-in, a number of layers below 1, and an ``output`` that is not a new or empty folder or an
    earlier stand-in (see :func:`eeve_lib.pipeline.rundir.refuse_unless_ours`)."""
    p = load_profile(profile, overrides)
    bm = p.base_model
    if bm.source != "local" or not bm.local_path or not bm.tokenizer_vocab_size:
        standins = [n for n in available_profiles() if _has_standin(n)]
        raise EeveError(f"Profile {p.name!r} has no stand-in base model to prepare (its base_model.source is "
                        f"{bm.source!r}; a stand-in is read from a 'local' path): choose one of "
                        f"{', '.join(standins)} with --profile.")
    if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 1):
        raise EeveError(f"--layers must be a whole number of at least 1, not {layers!r}: a model needs a layer. "
                        f"Leave it out for the profile's own ({bm.architecture.get('num_hidden_layers')}).")
    target = Path(output or bm.local_path)
    target = target if target.is_absolute() else PROJECT_ROOT / target
    rundir.refuse_unless_ours(target, STANDIN_MARKER, "a stand-in base model", "choose another --output")
    english = load_corpus(p, "english")
    tokenizer = family_named(bm.tokenizer_family).train_base_tokenizer(english.train, bm.tokenizer_vocab_size,
                                                                       bm.tokenizer_added_tokens)
    rows = padded_rows(len(tokenizer), bm.pad_vocab_to_multiple_of)
    architecture = dict(bm.architecture)
    if layers is not None:
        architecture["num_hidden_layers"] = layers
    config = build_config(bm.architecture_type, architecture, rows, tokenizer.bos_token_id, tokenizer.eos_token_id)
    with seeded(p.seed), deterministic():
        model = new_model(bm.architecture_type, config)
    # phi-2's and SOLAR-10.7B's published weights are 16-bit; store the stand-in in bfloat16 as well.
    model.to(torch.bfloat16)
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    rundir.refuse_unless_ours(target, STANDIN_MARKER, "a stand-in base model", "choose another --output")  # again
    with atomic.directory(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        rundir.write_marker(tmp, STANDIN_MARKER, eeve_standin=1, profile=p.name, layers=architecture.get(
            "num_hidden_layers"))
    return target


def _has_standin(name: str) -> bool:
    try:
        return load_profile(name).base_model.source == "local"
    except Exception:  # noqa: BLE001 - a broken profile file is not a choice to offer
        return False
