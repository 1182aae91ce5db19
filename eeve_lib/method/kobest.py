"""Step 11: KoBEST (BoolQ, COPA, HellaSwag, SentiNeg, WiC) as log-likelihood multiple choice.

Each example becomes a context and a few answer strings; the model's answer is the one whose
continuation has the highest total log-probability given the context (``accuracy``); dividing
each total by the answer's characters first gives ``accuracy_norm``. Macro-F1 is reported too, as
KoBEST does. This is the book's own re-derivation of what EleutherAI's lm-evaluation-harness does
with its ``kobest_*`` tasks (lm-eval 0.4.13, ``lm_eval/tasks/kobest``), and it follows the harness
exactly, so that its numbers compare with public leaderboards:

* the contexts are the harness's ``doc_to_text`` and the answers its ``doc_to_choice``; each
  continuation is the harness's target delimiter, one space, followed by the answer:

  - boolq: ``{paragraph} 질문: {question} 답변: `` (ending in a space); answers ``아니오``, ``예``
  - copa: ``{premise} {connector}`` with connector ``" 왜냐하면"`` (원인) or ``" 그래서"`` (결과), so
    two spaces before it, the premise untouched; answers ``alternative_1``, ``alternative_2``
  - hellaswag: ``문장: {context}``; answers ``ending_1`` .. ``ending_4``
  - sentineg: ``문장: {sentence} 긍부정:``; answers ``부정``, ``긍정``
  - wic: ``문장1: {context_1} 문장2: {context_2} 두 문장에서 {word}가 같은 뜻으로 쓰였나?``; answers
    ``아니오``, ``예``

* the pair is encoded as the harness's Hugging Face model encodes it (:func:`encode_pair`):
  whitespace at the end of the context moves to the front of the continuation (BoolQ's context
  ends in a space, so its continuations start with two), the tokenizer encodes context plus
  continuation and the context alone, with its default special tokens, and the continuation is
  the tail of the first beyond the second; at most the model's context length is kept;
* the log-softmax runs over every logit row of the model, padding rows included, as the harness's.

The pipeline also runs the harness itself at ``full`` (:mod:`eeve_lib.pipeline.harness`), and a
test scores a small KoBEST-format fixture with both and gets the same log-likelihoods. At
``full`` the data comes from the hub at the revision pinned in ``data_manifests/full.yaml``; at
``tiny``/``small`` a tiny model cannot answer KoBEST meaningfully, and chapter 05 says so instead
of printing chance-level numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

TASKS = ("boolq", "copa", "hellaswag", "sentineg", "wic")
# The harness's target_delimiter (its default; no kobest task changes it).
TARGET_DELIMITER = " "
# The harness's context length when neither the model's config nor its tokenizer states one.
DEFAULT_CONTEXT_LIMIT = 2048
_TOKENIZER_INFINITY = 1000000000000000019884624838656  # transformers' "no model_max_length"


@dataclass(frozen=True)
class MultipleChoice:
    """One example: a context, its answers (without the delimiter) and the index of the right one."""

    context: str
    choices: tuple[str, ...]
    label: int
    delimiter: str = TARGET_DELIMITER

    @property
    def continuations(self) -> tuple[str, ...]:
        """What is scored after the context: the delimiter, then each answer."""
        return tuple(self.delimiter + c for c in self.choices)


def _boolq(r: dict) -> MultipleChoice:
    return MultipleChoice(f"{r['paragraph']} 질문: {r['question']} 답변: ", ("아니오", "예"), int(r["label"]))


def _copa(r: dict) -> MultipleChoice:
    connector = {"원인": " 왜냐하면", "결과": " 그래서"}[r["question"].strip()]
    return MultipleChoice(f"{r['premise']} {connector}", (r["alternative_1"], r["alternative_2"]), int(r["label"]))


def _hellaswag(r: dict) -> MultipleChoice:
    return MultipleChoice(f"문장: {r['context']}", tuple(r[f"ending_{i}"] for i in range(1, 5)), int(r["label"]))


def _sentineg(r: dict) -> MultipleChoice:
    return MultipleChoice(f"문장: {r['sentence']} 긍부정:", ("부정", "긍정"), int(r["label"]))


def _wic(r: dict) -> MultipleChoice:
    return MultipleChoice(f"문장1: {r['context_1']} 문장2: {r['context_2']} 두 문장에서 {r['word']}가 같은 뜻으로 쓰였나?",
                          ("아니오", "예"), int(r["label"]))


FORMATS: dict[str, Callable[[dict], MultipleChoice]] = {
    "boolq": _boolq, "copa": _copa, "hellaswag": _hellaswag, "sentineg": _sentineg, "wic": _wic}


def to_examples(task: str, records: Iterable[dict]) -> list[MultipleChoice]:
    """KoBEST records (hub field names) as multiple-choice examples, with the harness's prompts."""
    if task not in FORMATS:
        raise ValueError(f"unknown KoBEST task {task!r}; tasks: {', '.join(TASKS)}")
    return [FORMATS[task](r) for r in records]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and of ``continuation`` after it, as the harness's HF model makes them."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation).input_ids
    context_ids = tokenizer(context).input_ids
    return context_ids, whole[len(context_ids):]


def context_limit(model, tokenizer) -> int:
    """Tokens the model sees at most: its config's length, else the tokenizer's, else 2048 (the harness's rule)."""
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if value is not None:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit != _TOKENIZER_INFINITY:
        return int(limit)
    return DEFAULT_CONTEXT_LIMIT


@torch.no_grad()
def choice_logprobs(model, tokenizer, example: MultipleChoice, vocab_limit: int | None = None) -> list[float]:
    """Total log-probability of each continuation given the context.

    ``vocab_limit`` drops logit rows beyond it from the softmax; the default keeps them all, as the
    harness does.
    """
    device = next(model.parameters()).device
    limit = context_limit(model, tokenizer)
    scores = []
    for continuation in example.continuations:
        context_ids, cont = encode_pair(tokenizer, example.context, continuation)
        ids = (context_ids + cont)[-(limit + 1):][:-1]
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, -len(cont):]
        if vocab_limit is not None:
            logits = logits[:, :vocab_limit]
        logp = torch.log_softmax(logits.float(), dim=-1)
        scores.append(float(logp.gather(1, torch.tensor(cont, device=device)[:, None]).sum()))
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


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # the first of ties, as numpy's argmax


def score_task(model, tokenizer, examples: Sequence[MultipleChoice], vocab_limit: int | None = None) -> dict[str, Any]:
    """Accuracy (summed log-likelihood), length-normalised accuracy and macro-F1 on ``examples``."""
    predictions, normalised, labels = [], [], []
    for ex in examples:
        scores = choice_logprobs(model, tokenizer, ex, vocab_limit)
        predictions.append(_argmax(scores))
        normalised.append(_argmax([s / len(c) for s, c in zip(scores, ex.choices)]))
        labels.append(ex.label)
    n = len(examples)
    return {"examples": n,
            "accuracy": sum(p == y for p, y in zip(predictions, labels)) / n if n else float("nan"),
            "accuracy_norm": sum(p == y for p, y in zip(normalised, labels)) / n if n else float("nan"),
            "macro_f1": macro_f1(labels, predictions),
            "chance": sum(1 / len(ex.choices) for ex in examples) / n if n else float("nan")}


def evaluate_kobest(models: dict, examples: dict[str, Sequence[MultipleChoice]]) -> dict[str, dict]:
    """Score ``{name: (model, tokenizer)}`` on every task of ``{task: examples}`` (chapter 05 at ``full``)."""
    results: dict[str, dict] = {name: {} for name in models}
    for task, task_examples in examples.items():
        for name, (model, tokenizer) in models.items():
            results[name][task] = score_task(model, tokenizer, task_examples)
    return results
