"""Step 11: two tasks a real model deserves: Korean sentiment, and matching Korean to English.

Bits per character say how well a model predicts text; these two say whether it understands it.
Both score answers by log-likelihood, as KoBEST does, on local data (no hub needed):

* **Sentiment** (a local stand-in for KoBEST SentiNeg): Naver movie reviews, ratings 1-4
  negative and 9-10 positive (5-8 are ambiguous and dropped). Our prompt, with ``k``
  demonstrations (half of each label, alternating negative/positive) before the review::

      리뷰: {demonstration}\\n감정: {label}\\n\\n   (k times)
      리뷰: {review}\\n감정:

  The model's answer is the label, ``" 부정"`` or ``" 긍정"`` (with its leading space), of higher
  total log-probability after the prompt, *calibrated*: less the label's log-probability after
  the same prompt with an empty review (Zhao et al., 2021, "Calibrate before use"), so that a
  model's leaning towards one label word, or towards the last demonstration's label, does not
  pass for an answer; chance is 1/2.
* **Cross-lingual matching**: given a Korean news sentence, pick its English translation among
  ``C`` candidates (the true one and ``C - 1`` translations of other sentences of the set). Each
  candidate is scored by pointwise mutual information,
  ``log P(en | "Korean: {ko}\\nEnglish:") - log P(en | "English:")``: the second term removes how
  likely the English sentence is on its own (short, common sentences would win otherwise); chance
  is 1/C.

Every document starts with the end-of-text token, as in :func:`eeve_lib.method.evaluation.score_texts`,
and only the real tokens' logits enter the softmax. Shown in chapter 05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..runtime import generator

SENTIMENT_LABELS = ("부정", "긍정")  # label 0: negative, 1: positive
SENTIMENT_NAMES = ("negative", "positive")
MATCHING_PROMPT = "Korean: {korean}\nEnglish:"
PRIOR_PROMPT = "English:"


@dataclass(frozen=True)
class SentimentItem:
    """A review and its label (0 negative, 1 positive)."""

    text: str
    label: int


@dataclass(frozen=True)
class MatchingItem:
    """A Korean sentence, English candidates, and the index of its true translation among them."""

    korean: str
    candidates: tuple[str, ...]
    answer: int


def rating_label(rating: int) -> int | None:
    """0 for ratings 1-4, 1 for 9-10, None for the ambiguous 5-8."""
    return 0 if 1 <= rating <= 4 else 1 if 9 <= rating <= 10 else None


def _shuffled(values: Sequence, g: torch.Generator) -> list:
    """``values`` in a random order drawn from ``g`` (never the global random state)."""
    return [values[i] for i in torch.randperm(len(values), generator=g).tolist()]


def _texts_by_label(records: Sequence[tuple[str, int]], max_chars: int, exclude: set[str]) -> tuple[list, list]:
    """Distinct review texts of at most ``max_chars`` characters, negative and positive; a text
    rated both ways ("최고" at 1 and at 10) is dropped."""
    labels: dict[str, set[int]] = {}
    for text, rating in records:
        label = rating_label(rating)
        if label is not None and 0 < len(text) <= max_chars and text not in exclude:
            labels.setdefault(text, set()).add(label)
    pools: tuple[list, list] = ([], [])
    for text, found in labels.items():
        if len(found) == 1:
            pools[found.pop()].append(text)
    return pools


def _alternating(pools: tuple[list, list], per_label: int, g: torch.Generator, what: str) -> list[SentimentItem]:
    """``per_label`` random texts of each label, alternating negative, positive, negative, ..."""
    drawn = []
    for label, pool in enumerate(pools):
        if len(pool) < per_label:
            raise ValueError(f"{what}: only {len(pool)} {SENTIMENT_NAMES[label]} reviews are short enough, "
                             f"{per_label} are needed; raise max_chars or ask for fewer.")
        drawn.append(_shuffled(pool, g)[:per_label])
    return [SentimentItem(text, label) for pair in zip(*drawn) for label, text in enumerate(pair)]


def balanced_sentiment_items(records: Sequence[tuple[str, int]], n_items: int, n_demonstrations: int, seed: int,
                             max_chars: int, demonstration_records: Sequence[tuple[str, int]] | None = None
                             ) -> tuple[list[SentimentItem], list[SentimentItem]]:
    """Evaluation items and demonstrations from ``(review, rating)`` records: ``n // 2`` of each label.

    The demonstrations come from ``demonstration_records`` (the pipeline passes the training split
    and draws the items from the held-out one) or else from ``records``; never is a demonstration
    also an item. Both alternate labels, so the first ``k`` demonstrations are balanced for even ``k``.
    """
    g = generator(seed)
    items = _alternating(_texts_by_label(records, max_chars, set()), n_items // 2, g, "sentiment items")
    pool = _texts_by_label(records if demonstration_records is None else demonstration_records, max_chars,
                           exclude={item.text for item in items})
    return items, _alternating(pool, n_demonstrations // 2, g, "sentiment demonstrations")


def sentiment_prompt(text: str, demonstrations: Sequence[SentimentItem]) -> str:
    """The prompt for one review (see the module docstring); the label follows as ``" 긍정"``/``" 부정"``."""
    shown = "".join(f"리뷰: {d.text}\n감정: {SENTIMENT_LABELS[d.label]}\n\n" for d in demonstrations)
    return f"{shown}리뷰: {text}\n감정:"


def matching_items(korean: Sequence[str], english: Sequence[str], n_items: int, candidates: int, seed: int,
                   max_chars: int) -> list[MatchingItem]:
    """``n_items`` random pairs with both sides at most ``max_chars`` long, each with ``candidates``
    English options in random order.

    The distractors are the translations of other chosen pairs, so every English sentence is also
    the right answer of its own item: a preference for some English sentences cannot help. Pairs
    repeating an earlier Korean or English sentence are skipped (a distractor must be wrong).
    """
    if not 2 <= candidates <= n_items:
        raise ValueError(f"matching needs 2 <= candidates ({candidates}) <= items ({n_items})")
    pairs, seen_korean, seen_english = [], set(), set()
    for ko, en in zip(korean, english):
        if 0 < len(ko) <= max_chars and 0 < len(en) <= max_chars and ko not in seen_korean and en not in seen_english:
            seen_korean.add(ko)
            seen_english.add(en)
            pairs.append((ko, en))
    if len(pairs) < n_items:
        raise ValueError(f"only {len(pairs)} distinct pairs are at most {max_chars} characters long; "
                         f"{n_items} are needed")
    g = generator(seed)
    chosen = _shuffled(pairs, g)[:n_items]
    items = []
    for i, (ko, en) in enumerate(chosen):
        others = [other for _, other in chosen[:i] + chosen[i + 1:]]
        distractors = _shuffled(others, g)[:candidates - 1]
        answer = int(torch.randint(candidates, (1,), generator=g))
        items.append(MatchingItem(ko, tuple(distractors[:answer] + [en] + distractors[answer:]), answer))
    return items


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision for the forward passes when ``dtype`` is bfloat16 (or float16); None or float32: none."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype not in (None, torch.float32))


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """The token ids of each text, without special tokens (the caller adds the end-of-text token)."""
    return tokenizer(texts, add_special_tokens=False).input_ids if texts else []


@torch.no_grad()
def continuation_logprobs(model, tokenizer, pairs: list[tuple[str, str]], *, batch_size: int = 16,
                          dtype: torch.dtype | None = None, vocab_limit: int | None = None) -> list[float]:
    """log P(continuation | prompt) in nats for each ``(prompt, continuation)`` pair.

    Prompt and continuation are tokenised separately and joined as ``[eos] + prompt + continuation``,
    so exactly the continuation's tokens are scored, however the tokenizer would have cut the joined
    text. Sequences of similar length share a batch (right-padded, with an attention mask); the
    model computes logits only for the positions that predict continuation tokens (transformers'
    ``logits_to_keep``: with a real model's vocabulary, logits for every position of a batch of long
    prompts would take gigabytes). The log-softmax runs in float32 over the first ``vocab_limit``
    logits (default: the tokenizer's length); ``dtype`` bfloat16 runs the forward passes under autocast.
    """
    device = next(model.parameters()).device
    vocab_limit = vocab_limit or len(tokenizer)
    bos = tokenizer.eos_token_id
    prompts = [[bos] + ids for ids in _token_ids(tokenizer, [p for p, _ in pairs])]
    continuations = _token_ids(tokenizer, [c for _, c in pairs])
    order = sorted(range(len(pairs)), key=lambda i: len(prompts[i]) + len(continuations[i]))
    totals = [0.0] * len(pairs)
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        sequences = [prompts[i] + continuations[i] for i in rows]
        longest = max(map(len, sequences))
        input_ids = torch.full((len(rows), longest), bos, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        scored = torch.zeros_like(input_ids, dtype=torch.bool)  # where the continuation's tokens are
        for row, (i, ids) in enumerate(zip(rows, sequences)):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            mask[row, :len(ids)] = 1
            scored[row, len(prompts[i]):len(ids)] = True
        first = min(len(prompts[i]) for i in rows) - 1  # the first position whose logits predict a scored token
        with _autocast(device, dtype):
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                           logits_to_keep=longest - first).logits
        logp = torch.log_softmax(logits[:, :-1, :vocab_limit].float(), dim=-1)  # position t predicts token t + 1
        targets = input_ids[:, first + 1:].to(device)
        token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        sums = token_logp.masked_fill(~scored[:, first + 1:].to(device), 0.0).sum(dim=1)
        for i, total in zip(rows, sums.tolist()):
            totals[i] = total
    return totals


def accuracy_with_stderr(correct: Sequence[bool], chance: float) -> dict[str, float]:
    """Accuracy, its standard error sqrt(p(1 - p) / n), n, and the accuracy of guessing."""
    n = len(correct)
    if n == 0:
        raise ValueError("accuracy of no items")
    p = sum(map(bool, correct)) / n
    return {"accuracy": p, "stderr": math.sqrt(p * (1 - p) / n), "n": n, "chance": chance}


def score_sentiment(model, tokenizer, items: Sequence[SentimentItem], demonstrations: Sequence[SentimentItem], *,
                    batch_size: int = 16, dtype: torch.dtype | None = None) -> dict:
    """Accuracy of picking the likelier label after each item's prompt (with all ``demonstrations``),
    calibrated by the labels' log-probabilities after an empty review (module docstring).

    A tie counts as negative. ``labels`` gives, per label, its items, how often the model said it
    and how often it was right: a model that always says one label scores 1/2 and shows it there.
    """
    pairs = [(sentiment_prompt(text, demonstrations), " " + label)
             for text in ["", *(item.text for item in items)] for label in SENTIMENT_LABELS]
    scores = continuation_logprobs(model, tokenizer, pairs, batch_size=batch_size, dtype=dtype)
    leaning = scores[1] - scores[0]  # towards "positive" after an empty review: calibrated away
    predicted = [int(scores[2 * i + 1] - scores[2 * i] > leaning) for i in range(1, len(items) + 1)]
    result: dict = accuracy_with_stderr([p == item.label for p, item in zip(predicted, items)], chance=0.5)
    result["shots"] = len(demonstrations)
    result["labels"] = {
        name: {"items": sum(item.label == label for item in items),
               "predicted": predicted.count(label),
               "correct": sum(p == item.label == label for p, item in zip(predicted, items))}
        for label, name in enumerate(SENTIMENT_NAMES)}
    return result


def score_matching(model, tokenizer, items: Sequence[MatchingItem], *, batch_size: int = 16,
                   dtype: torch.dtype | None = None) -> dict:
    """Accuracy of picking the true translation by pointwise mutual information (module docstring).

    log P(en | "English:") is computed once per distinct English sentence; ties go to the first candidate.
    """
    pairs = [(MATCHING_PROMPT.format(korean=item.korean), " " + en) for item in items for en in item.candidates]
    conditional = iter(continuation_logprobs(model, tokenizer, pairs, batch_size=batch_size, dtype=dtype))
    english = sorted({en for item in items for en in item.candidates})
    alone = continuation_logprobs(model, tokenizer, [(PRIOR_PROMPT, " " + en) for en in english],
                                  batch_size=batch_size, dtype=dtype)
    prior = dict(zip(english, alone))
    correct = []
    for item in items:
        pmi = [next(conditional) - prior[en] for en in item.candidates]
        correct.append(pmi.index(max(pmi)) == item.answer)
    return accuracy_with_stderr(correct, chance=1 / len(items[0].candidates))


__all__ = ["SentimentItem", "MatchingItem", "SENTIMENT_LABELS", "SENTIMENT_NAMES", "rating_label",
           "balanced_sentiment_items", "sentiment_prompt", "matching_items", "continuation_logprobs",
           "accuracy_with_stderr", "score_sentiment", "score_matching"]
