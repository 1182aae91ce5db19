"""The pipeline's steps 1-7: ``runs/<profile>/intermediate/`` and ``runs/<profile>/tokenizer/``.

Loads the base tokenizer and the Korean corpus, calls the method (intermediate tokenizer,
candidates, the frequency loop) and saves the results; each folder is reused while the key of
its inputs matches (:mod:`.cache`). Shown in chapters 01 and 02.
"""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import numpy as np

from ..errors import EeveError, VocabularyError
from ..method.candidates import extract_candidates, hangul_share
from ..method.families import family_of
from ..method.frequency_loop import ExpansionResult, Iteration, refine_vocabulary
from ..method.intermediate_tokenizer import train_intermediate_tokenizer
from ..method.target_tokenizer import TargetTokenizer
from ..method.token_frequency import WordCounts, count_words
from . import atomic, cache, steps
from .base import base_info, load_base_tokenizer
from .corpora import load_corpus
from .paths import run_paths
from .profiles import Profile

SECTIONS = ("vocabulary", "data", "seed")


def candidates_key(profile: Profile, run_dir=None) -> str:
    return steps.key("candidates", profile, run_dir)


def vocabulary_key(profile: Profile, run_dir=None) -> str:
    return steps.key("vocabulary", profile, run_dir)


def prepare_candidates(profile: Profile, run_dir=None):
    """Steps 1 and 2 for a profile: train (or reuse) the intermediate tokenizer, extract candidates.

    Saves ``runs/<profile>/intermediate/`` (the tokenizer and ``candidates.json``); chapter 01
    shows the result and chapter 02 reuses it. Returns ``(intermediate_tokenizer, candidates)``.
    """
    from tokenizers import Tokenizer

    paths = run_paths(profile, run_dir)
    key = candidates_key(profile, run_dir)
    record = cache.cached(paths.candidates, key)
    if record is not None:
        return Tokenizer.from_file(str(paths.intermediate_tokenizer)), record["candidates"]
    base_tok = load_base_tokenizer(profile, run_dir)
    korean = load_corpus(profile, "korean")
    intermediate = train_intermediate_tokenizer(korean.train, base_tok, profile.vocabulary.intermediate_vocab_size)
    candidates = extract_candidates(intermediate, base_tok)
    if not candidates:
        raise VocabularyError(
            f"No candidates were found: none of the {intermediate.get_vocab_size()} tokens of the intermediate "
            f"tokenizer contains Hangul and is missing from the base vocabulary. Only "
            f"{hangul_share(korean.train[:2000]):.1%} of the corpus' non-space characters are Hangul; "
            f"data.korean must name Korean text."
        )
    token_text = family_of(base_tok).token_text
    with atomic.directory(paths.intermediate) as tmp:
        intermediate.save(str(tmp / paths.intermediate_tokenizer.name))
        atomic.write_json(tmp / paths.candidates.name, {"key": key, "candidates": candidates,
                                                        "texts": [token_text(c) for c in candidates]})
    return intermediate, candidates


def _save_expansion(paths, result: ExpansionResult, summary: dict[str, Any]) -> None:
    wc = result.word_counts
    details = {
        "new_tokens": result.target.new_tokens, "support_tokens": result.target.support_tokens,
        "merges_added": result.target.merges_added, "initial_candidates": result.initial_candidates,
        "singles": result.singles, "first_frequencies": result.first_frequencies,
        "iterations": [it.as_dict() for it in result.iterations],
    }
    words = {"words": wc.words, "counts": wc.counts.tolist(), "added": wc.added, "documents": wc.documents,
             "characters": wc.characters, "utf8_bytes": wc.utf8_bytes}
    with atomic.directory(paths.tokenizer) as tmp:
        result.target.tokenizer.save_pretrained(tmp)
        np.save(tmp / paths.token_counts.name, result.counts)
        atomic.write_json(tmp / paths.expansion_details.name, details)
        atomic.write_bytes(tmp / paths.word_counts.name,
                           gzip.compress(json.dumps(words, ensure_ascii=False).encode(), mtime=0))
        atomic.write_json(tmp / paths.expansion_summary.name, summary)


def _load_expansion(paths, summary: dict[str, Any]) -> ExpansionResult:
    details = json.loads(paths.expansion_details.read_text())
    words = json.loads(gzip.decompress(paths.word_counts.read_bytes()))
    word_counts = WordCounts(words["words"], np.asarray(words["counts"], dtype=np.int64), words["added"],
                             words["documents"], words["characters"], words["utf8_bytes"])
    target = TargetTokenizer(load_target_tokenizer_at(paths), summary["base_size"], details["new_tokens"],
                             details["support_tokens"], details["merges_added"])
    return ExpansionResult(target, np.load(paths.token_counts), [Iteration(**it) for it in details["iterations"]],
                           summary["threshold"], summary["converged"], details["initial_candidates"],
                           details["singles"], word_counts, details["first_frequencies"])


def expand_vocabulary(profile: Profile, run_dir=None, progress: bool = True) -> ExpansionResult:
    """Steps 1-7 for a profile, saving (or reusing) ``runs/<profile>/tokenizer/`` (chapter 02).

    Needs the base model of chapter 00. Writes nothing unless every step succeeds.
    """
    started = time.time()
    paths = run_paths(profile, run_dir)
    key = vocabulary_key(profile, run_dir)
    summary = cache.cached(paths.expansion_summary, key)
    if summary is not None and paths.expansion_details.is_file() and paths.word_counts.is_file():
        return _load_expansion(paths, summary)
    base_tok = load_base_tokenizer(profile, run_dir)
    korean = load_corpus(profile, "korean")
    voc = profile.vocabulary
    _, candidates = prepare_candidates(profile, run_dir)
    word_counts = count_words(korean.train, base_tok, workers=voc.counting_workers, batch_size=voc.counting_batch_size,
                              progress=progress, total_documents=len(korean.train))
    result = refine_vocabulary(base_tok, candidates, word_counts, voc.min_frequency, voc.max_iterations)
    summary = result.summary(len(base_tok))
    token_text = family_of(base_tok).token_text
    summary.update({
        "key": key,
        "profile": profile.name,
        "tokenizer_family": family_of(base_tok).name,
        "intermediate_vocab_size": voc.intermediate_vocab_size,
        "threshold_rationale": voc.threshold_rationale,
        "base_model_hash": base_info(profile, run_dir)["key"],
        "config_hash": profile.hash(*SECTIONS),
        "wall_seconds": round(time.time() - started, 1),
        "new_token_texts": [token_text(t) for t in result.target.new_tokens],
        "support_token_count": len(result.target.support_tokens),
    })
    _save_expansion(paths, result, summary)
    return result


def load_expansion_summary(profile: Profile | str, run_dir=None) -> dict[str, Any]:
    """The ``expansion.json`` summary of a run's extended tokenizer."""
    path = run_paths(profile, run_dir).expansion_summary
    if not path.is_file():
        raise EeveError(f"No extended tokenizer in {path.parent}. Run chapter 02 first.")
    return json.loads(path.read_text())


def load_expansion(profile: Profile | str, run_dir=None) -> ExpansionResult:
    """A run's saved frequency loop (chapter 02's ``result``), loaded without recomputing anything."""
    paths = run_paths(profile, run_dir)
    summary = load_expansion_summary(profile, run_dir)
    if not (paths.expansion_details.is_file() and paths.word_counts.is_file()):
        raise EeveError(f"The extended tokenizer in {paths.tokenizer} is incomplete. Run chapter 02 again.")
    return _load_expansion(paths, summary)


def load_candidates(profile: Profile | str, run_dir=None) -> list[str]:
    """A run's candidates (chapter 01), in the order the intermediate tokenizer created them."""
    paths = run_paths(profile, run_dir)
    record = cache.read_marker(paths.candidates)
    if record is None:
        raise EeveError(f"No candidates in {paths.intermediate}. Run chapter 01 first.")
    return record["candidates"]


def load_intermediate_tokenizer(profile: Profile | str, run_dir=None):
    """A run's intermediate tokenizer (chapter 01), a ``tokenizers.Tokenizer``."""
    from tokenizers import Tokenizer

    paths = run_paths(profile, run_dir)
    if not paths.intermediate_tokenizer.is_file():
        raise EeveError(f"No intermediate tokenizer in {paths.intermediate}. Run chapter 01 first.")
    return Tokenizer.from_file(str(paths.intermediate_tokenizer))


def load_target_tokenizer_at(paths):
    from transformers import AutoTokenizer

    if not paths.expansion_summary.is_file():
        raise EeveError(f"No extended tokenizer in {paths.tokenizer}. Run chapter 02 first.")
    return AutoTokenizer.from_pretrained(paths.tokenizer, trust_remote_code=False)


def load_target_tokenizer(profile: Profile | str, run_dir=None):
    """The saved extended tokenizer, loaded with ``AutoTokenizer``."""
    return load_target_tokenizer_at(run_paths(profile, run_dir))


__all__ = ["prepare_candidates", "expand_vocabulary", "load_expansion_summary", "load_target_tokenizer",
           "load_expansion", "load_candidates", "load_intermediate_tokenizer",
           "candidates_key", "vocabulary_key"]
