"""Step 11: KoBEST (BoolQ, COPA, HellaSwag, SentiNeg, WiC) as log-likelihood multiple choice.

Each example becomes a context and a few continuations; the model's answer is the continuation
with the highest total log-probability given the context (``length_normalised`` divides by the
continuation's characters instead). Accuracy and macro-F1 are reported, as KoBEST does. At
``full`` the pipeline reads the data from the hub at the revision pinned in
``data_manifests/full.yaml``; the scorer itself is tested offline on small fixtures. At ``tiny``/``small`` a tiny model cannot
answer KoBEST meaningfully, and chapter 05 says so instead of printing chance-level numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

TASKS = ("boolq", "copa", "hellaswag", "sentineg", "wic")


@dataclass(frozen=True)
class MultipleChoice:
    """One example: a context, its continuations and the index of the right one."""

    context: str
    choices: tuple[str, ...]
    label: int


def _boolq(r: dict) -> MultipleChoice:
    return MultipleChoice(f"{r['paragraph']} 질문: {r['question']}\n답변:", (" 아니오", " 예"), int(r["label"]))


def _copa(r: dict) -> MultipleChoice:
    connector = {"원인": " 왜냐하면", "결과": " 그래서"}[r["question"].strip()]
    premise = r["premise"].strip().rstrip(".")
    return MultipleChoice(premise + connector, (" " + r["alternative_1"], " " + r["alternative_2"]), int(r["label"]))


def _hellaswag(r: dict) -> MultipleChoice:
    return MultipleChoice(r["context"], tuple(" " + r[f"ending_{i}"] for i in range(1, 5)), int(r["label"]))


def _sentineg(r: dict) -> MultipleChoice:
    return MultipleChoice(f"문장: {r['sentence']} 긍부정:", (" 부정", " 긍정"), int(r["label"]))


def _wic(r: dict) -> MultipleChoice:
    return MultipleChoice(f"문장1: {r['context_1']} 문장2: {r['context_2']} 두 문장에서 {r['word']}가 같은 뜻으로 쓰였나?",
                          (" 아니오", " 예"), int(r["label"]))


FORMATS: dict[str, Callable[[dict], MultipleChoice]] = {
    "boolq": _boolq, "copa": _copa, "hellaswag": _hellaswag, "sentineg": _sentineg, "wic": _wic}


def to_examples(task: str, records: Iterable[dict]) -> list[MultipleChoice]:
    """KoBEST records (hub field names) as multiple-choice examples."""
    if task not in FORMATS:
        raise ValueError(f"unknown KoBEST task {task!r}; tasks: {', '.join(TASKS)}")
    return [FORMATS[task](r) for r in records]


@torch.no_grad()
def choice_logprobs(model, tokenizer, example: MultipleChoice, vocab_limit: int | None = None) -> list[float]:
    """Total log-probability of each continuation given the context."""
    device = next(model.parameters()).device
    vocab_limit = vocab_limit or len(tokenizer)
    context = [tokenizer.eos_token_id] + tokenizer(example.context, add_special_tokens=False).input_ids
    scores = []
    for choice in example.choices:
        cont = tokenizer(choice, add_special_tokens=False).input_ids
        ids = torch.tensor([context + cont], device=device)
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :, :vocab_limit].float(), dim=-1)
        positions = torch.arange(len(context) - 1, len(context) + len(cont) - 1, device=device)
        scores.append(float(logp[positions, torch.tensor(cont, device=device)].sum()))
    return scores


def macro_f1(labels: Sequence[int], predictions: Sequence[int]) -> float:
    classes = sorted(set(labels) | set(predictions))
    f1s = []
    for c in classes:
        tp = sum(1 for y, p in zip(labels, predictions) if y == c and p == c)
        fp = sum(1 for y, p in zip(labels, predictions) if y != c and p == c)
        fn = sum(1 for y, p in zip(labels, predictions) if y == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s) if f1s else 0.0


def score_task(model, tokenizer, examples: Sequence[MultipleChoice], length_normalised: bool = False,
               vocab_limit: int | None = None) -> dict[str, Any]:
    """Accuracy and macro-F1 of the highest-likelihood choice on ``examples``."""
    predictions, labels = [], []
    for ex in examples:
        scores = choice_logprobs(model, tokenizer, ex, vocab_limit)
        if length_normalised:
            scores = [s / max(1, len(c)) for s, c in zip(scores, ex.choices)]
        predictions.append(max(range(len(scores)), key=scores.__getitem__))
        labels.append(ex.label)
    n = len(examples)
    return {"examples": n, "accuracy": sum(p == y for p, y in zip(predictions, labels)) / n if n else float("nan"),
            "macro_f1": macro_f1(labels, predictions), "chance": sum(1 / len(ex.choices) for ex in examples) / n
            if n else float("nan")}


def evaluate_kobest(models: dict, examples: dict[str, Sequence[MultipleChoice]]) -> dict[str, dict]:
    """Score ``{name: (model, tokenizer)}`` on every task of ``{task: examples}`` (chapter 05 at ``full``)."""
    results: dict[str, dict] = {name: {} for name in models}
    for task, task_examples in examples.items():
        for name, (model, tokenizer) in models.items():
            results[name][task] = score_task(model, tokenizer, task_examples)
    return results
