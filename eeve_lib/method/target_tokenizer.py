"""Step 3: the target tokenizer = the base tokenizer + the candidates, through BPE itself.

Each new token becomes a vocabulary entry *and* the merges that produce it, appended after every
base merge. Because base merges always rank first, a word is first segmented exactly as the base
tokenizer segments it, and only then do the new merges apply. A merge chain copied from the
intermediate tokenizer could therefore never fire (its pieces do not exist after the base merges
ran); instead each candidate's merges are derived from the segmentation that the tokenizer built
so far gives it. Shorter candidates come first so that longer ones build on them; a candidate of
k pieces needs k-1 merges, and the k-2 partial results are *support* tokens (often the first two
bytes of a Hangul syllable, shared by 64 syllables). Base ids are unchanged; new ids continue after
the base tokenizer's last id. Shown in chapter 02.

No new merge fires on text without Hangul: every new merge's result is a piece that occurs only
in text containing Hangul (the family decides: for byte-level BPE, bytes found only in Hangul
text), so text without Hangul is segmented by the base merges alone and gets exactly the base ids
(after NFC). The merges of a candidate therefore start at its first Hangul piece, not at a Latin
prefix (`` UAE와``), and the build checks the rule (:func:`check_new_merges_need_hangul`).
Chapter 02 explains the choice.

The family says how a candidate's pieces are joined (:meth:`TokenizerFamily.merge_plan`, the
Hangul-anchored chain) and
which single pieces must first become vocabulary entries (:meth:`TokenizerFamily.missing_pieces`:
none for byte-level BPE, whose alphabet holds every byte; the Hangul characters a
SentencePiece-style vocabulary lacks, which would otherwise fall back to bytes that no merge
joins). Such a piece is a support token too, unless it is a candidate itself. A new single piece
must contain Hangul, so that text without Hangul keeps the base ids: a candidate that would need
another one, or for which the family finds no acceptable chain, is left unbuilt (``unbuildable``)
and, never produced, is dropped by the frequency loop.

The added-special-token alternative (``tokenizer.add_tokens``), which bypasses the BPE model and
matches inside words, is :func:`added_tokens_tokenizer`, used only as a comparison in chapter 02.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..errors import TokenizerError
from .families import (TokenizerFamily, family_of, hangul_anchored_merges, left_to_right_merges, merge_pairs,
                       tokenizer_json)

MergeChain = Callable[[Sequence[str], Callable[[str], bool]], "list[tuple[str, str]] | None"]


def check_new_merges_need_hangul(new_merges: Sequence[tuple[str, str]], family: TokenizerFamily) -> None:
    """Raise :class:`TokenizerError` naming the first new merge that could fire on text without Hangul."""
    for a, b in new_merges:
        if not family.piece_needs_hangul(a + b):
            raise TokenizerError(
                f"The new merge {a!r} + {b!r} ({family.describe_piece(a + b)}) could fire on text without "
                f"Hangul, which must keep the base tokenizer's ids. Every new merge's result must occur only "
                f"in text with Hangul.")


@dataclass
class TargetTokenizer:
    """The extended tokenizer and what was added to it."""

    tokenizer: object  # transformers PreTrainedTokenizerFast
    base_size: int
    new_tokens: list[str]  # the candidates, in the family's spelling, in id order
    support_tokens: list[str] = field(default_factory=list)  # partial results their merges need
    merges_added: int = 0
    # candidates no merge chain can build without a merge that fires on text without Hangul
    unbuildable: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.tokenizer)

    def new_ids(self) -> list[int]:
        vocab = self.tokenizer.get_vocab()
        return [vocab[t] for t in self.new_tokens]


def _base_size(spec: dict) -> int:
    ids = list(spec["model"]["vocab"].values()) + [t["id"] for t in spec.get("added_tokens", [])]
    return max(ids) + 1


def build_target_tokenizer(base_tokenizer, candidates: Sequence[str], merge_chain: MergeChain | None = None,
                           require_hangul: bool = True) -> TargetTokenizer:
    """Extend ``base_tokenizer`` with ``candidates`` (spelled as its family spells pieces); chapter 02.

    Candidates the base already has are ignored; candidates that only a merge firing on text
    without Hangul could build (see :func:`hangul_anchored_merges`) are left out and listed in
    ``unbuildable``. Deterministic: the same candidates in the same order give the same
    tokenizer, byte for byte. Raises :class:`TokenizerError` if a new merge could fire on text
    without Hangul. By default each candidate's merges are the family's ``merge_plan`` (the
    Hangul-anchored chain); ``merge_chain`` and ``require_hangul=False`` exist for chapter 02's
    comparison with :func:`left_to_right_merges`.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    family = family_of(base_tokenizer)
    spec = tokenizer_json(base_tokenizer)
    model = spec["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = merge_pairs(model)
    base_merges = len(merges)
    ranks = {pair: i for i, pair in enumerate(merges)}
    next_id = _base_size(spec)
    base_size = next_id
    order = {t: i for i, t in enumerate(candidates)}
    wanted = sorted((t for t in dict.fromkeys(candidates) if t not in vocab), key=lambda t: (len(t), order[t]))
    wanted_set = set(wanted)
    new_tokens, support, unbuildable = [], [], []

    def add_entry(result: str) -> None:
        nonlocal next_id
        if result not in vocab:
            vocab[result] = next_id
            next_id += 1
            (new_tokens if result in wanted_set else support).append(result)

    def add_merge(pair: tuple[str, str]) -> str:
        """Append the merge ``pair`` (and its result to the vocabulary if new); return the result."""
        result = pair[0] + pair[1]
        add_entry(result)
        if pair not in ranks:
            ranks[pair] = len(merges)
            merges.append(pair)
        return result

    # >>> the core, shown in the book
    for token in wanted:
        if token in vocab:  # created earlier as a support token: it is a candidate after all
            continue
        missing = family.missing_pieces(token, vocab)
        if not all(map(family.piece_needs_hangul, missing)):
            unbuildable.append(token)
            continue
        for piece in missing:
            add_entry(piece)
        pieces = family.segment(token, ranks)
        for _ in range(len(token)):  # once, unless an earlier merge of the new pieces outranks the plan
            if len(pieces) < 2:
                break
            plan = family.merge_plan(pieces) if merge_chain is None else merge_chain(pieces, family.piece_needs_hangul)
            if plan is None:
                break
            for pair in plan:
                add_merge(pair)
            pieces = family.segment(token, ranks)
        if len(pieces) > 1 and token not in vocab:
            unbuildable.append(token)
    if require_hangul:
        check_new_merges_need_hangul(merges[base_merges:], family)
    # <<< the core

    extended = family.extended_spec(spec, vocab, merges)
    backend = Tokenizer.from_str(json.dumps(extended, ensure_ascii=False))
    hf = PreTrainedTokenizerFast(tokenizer_object=backend, **_special_tokens(base_tokenizer))
    moved = [t["content"] for t in spec.get("added_tokens", []) if hf.convert_tokens_to_ids(t["content"]) != t["id"]]
    if moved:
        raise TokenizerError(f"Internal error: added tokens {moved[:3]!r} changed ids in the extended tokenizer.")
    new_tokens.sort(key=vocab.__getitem__)
    support.sort(key=vocab.__getitem__)
    return TargetTokenizer(hf, base_size, new_tokens, support, len(merges) - base_merges, unbuildable)


def _special_tokens(tokenizer) -> dict:
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = getattr(tokenizer, key, None)
        if value is not None:
            out[key] = str(value)
    return out


def unreachable_in_isolation(target: TargetTokenizer) -> list[str]:
    """New tokens that BPE does not produce from their own bytes (should be none)."""
    model = target.tokenizer.backend_tokenizer.model
    return [t for t in target.new_tokens if [x.value for x in model.tokenize(t)] != [t]]


def added_tokens_tokenizer(base_tokenizer, candidates: Sequence[str]):
    """The comparison of chapter 02: candidates inserted as *added tokens*, outside the BPE model.

    Added tokens are matched in the raw text before pre-tokenisation, longest first, even inside
    other words; this is what ``tokenizer.add_tokens`` does, and not EEVE's method.
    """
    from copy import deepcopy

    family = family_of(base_tokenizer)
    tok = deepcopy(base_tokenizer)
    texts = [family.token_text(t) for t in candidates]
    tok.add_tokens([t for t in texts if t])
    return tok
