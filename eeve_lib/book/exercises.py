"""Exercises that check themselves: ``check("2.1", answer)`` under an exercise of a chapter.

Every exercise that asks for a number, a name or a small function has a check here. A check
never compares with a stored answer key: it computes the answer from the student's own run (the
run the chapter was set up on by :func:`eeve_lib.book.notebook.setup`, or the ``paths`` given),
through the pipeline's loaders, so a student who changed the settings is checked against what
*their* settings produced. It answers

* ``right``;
* ``off by X`` for a number outside the tolerance (with the sign: positive means too high);
* ``wrong`` for a name, or for a function that gives another result than the run on some input
  (the input is named);
* ``waiting`` while the answer is still ``None`` (how the chapters ship, so that the book runs).

The folded solutions stay under the exercises, for reading. ``tests/test_exercises.py`` feeds every
check a right and a wrong answer on a small run. Shown under the exercises of every chapter.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import EeveError
from ..method.families import family_of
from ..method.stages import STAGES, trainable_counts
from ..pipeline.corpora import load_corpus
from ..pipeline.paths import RunPaths, run_paths
from ..pipeline.profiles import Profile, PROJECT_ROOT, load_profile
from . import notebook
from .resources import phi2_shape, stage_memory_bytes
from .results import is_tuning_arm

RIGHT, WRONG, OFF, WAITING = "right", "wrong", "off", "waiting"


@dataclass(frozen=True)
class Verdict:
    """What a check says: ``verdict`` is right, wrong, off or waiting; ``message`` says it in words."""

    exercise: str
    verdict: str
    message: str
    expected: Any = None  # for the tests; never shown

    def __bool__(self) -> bool:
        return self.verdict == RIGHT

    def __repr__(self) -> str:
        return self.message

    __str__ = __repr__


def _plain(name: str) -> str:
    return name.strip().lower()


@dataclass(frozen=True)
class Exercise:
    """A checkable exercise: its question, what kind of answer, and how the run gives the answer.

    ``kind``: ``number`` (within ``tolerance``, absolute, or ``relative``), ``integer`` (exact),
    ``integers`` (a tuple of exact integers, named by ``parts``), ``name`` (a string, compared after
    ``normalise``) or ``function`` (``answer(*args)`` must equal the run's result for each case).
    ``compute(profile, paths)`` gives the expected value, or for a function the cases
    ``[(args, expected, label)]``.
    """

    id: str
    question: str
    kind: str
    compute: Callable[[Profile, RunPaths], Any]
    tolerance: float = 0.0
    relative: bool = False
    parts: tuple[str, ...] = ()
    normalise: Callable[[str], str] = _plain


EXERCISES: dict[str, Exercise] = {}


def exercise(id: str, question: str, kind: str, **options) -> Callable:
    """Register ``compute`` as the check of exercise ``id``."""
    def register(compute: Callable[[Profile, RunPaths], Any]) -> Callable:
        EXERCISES[id] = Exercise(id, question, kind, compute, **options)
        return compute

    return register


def _run(paths: RunPaths | str | None, profile: Profile | str | None) -> tuple[Profile, RunPaths]:
    """The run to check: the given one, else the chapter's (``notebook.setup``), else ``runs/tiny``."""
    if isinstance(profile, str):
        profile = load_profile(profile)
    if profile is None:
        profile = notebook.current[0] if notebook.current else load_profile("tiny")
    if paths is None:
        paths = notebook.current[1] if notebook.current else run_paths(profile)
    return profile, run_paths(profile, paths)


def check(exercise_id: str, answer: Any = None, paths: RunPaths | str | None = None, *,
          profile: Profile | str | None = None) -> Verdict:
    """Check ``answer`` to exercise ``exercise_id`` against the run (see the module docstring)."""
    if exercise_id not in EXERCISES:
        raise KeyError(f"No check for exercise {exercise_id!r}; checkable exercises: {', '.join(EXERCISES)}.")
    ex = EXERCISES[exercise_id]
    if answer is None:
        return Verdict(ex.id, WAITING, f"{ex.id}: waiting for your answer. {ex.question}")
    prof, run = _run(paths, profile)
    try:
        expected = ex.compute(prof, run)
    except EeveError as e:
        return Verdict(ex.id, WRONG, f"{ex.id}: cannot check yet: {e}")
    verdict, detail = _judge(ex, answer, expected)
    if verdict == RIGHT:
        words = "right" + (f" ({detail})" if detail else "")
    elif verdict == OFF:
        words = detail
    else:
        words = f"wrong: {detail}"
    return Verdict(ex.id, verdict, f"{ex.id}: {words}. Checked against your run in {_shown(run.root)}.", expected)


def _shown(path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def _off_by(answer: float, expected: float, ex: Exercise) -> str | None:
    """None when ``answer`` is within tolerance, else "off by +X (+Y%)"."""
    diff = float(answer) - float(expected)
    allowed = ex.tolerance * (abs(expected) if ex.relative else 1.0)
    if abs(diff) <= allowed:
        return None
    share = f" ({diff / expected:+.1%})" if expected else ""
    number = f"{int(diff):+,}" if float(diff).is_integer() else f"{diff:+.4g}"
    return f"off by {number}{share}"


def _judge(ex: Exercise, answer: Any, expected: Any) -> tuple[str, str]:
    if ex.kind in ("number", "integer"):
        if not _is_number(answer):
            return WRONG, f"expected a number, got {answer!r}"
        off = _off_by(answer, expected, ex)
        return (RIGHT, "") if off is None else (OFF, off)
    if ex.kind == "integers":
        if not isinstance(answer, (tuple, list)) or len(answer) != len(expected) or not all(map(_is_number, answer)):
            return WRONG, f"expected {len(expected)} numbers ({', '.join(ex.parts)}), got {answer!r}"
        offs = [(part, _off_by(a, e, ex)) for part, a, e in zip(ex.parts, answer, expected)]
        if all(off is None for _, off in offs):
            return RIGHT, ""
        return OFF, "; ".join(f"{part}: {off or 'right'}" for part, off in offs)
    if ex.kind == "name":
        if not isinstance(answer, str):
            return WRONG, f"expected a name, got {answer!r}"
        accepted = {ex.normalise(e) for e in (expected if isinstance(expected, (list, tuple, set)) else [expected])}
        return (RIGHT, "") if ex.normalise(answer) in accepted else (WRONG, f"not {answer!r}")
    if ex.kind == "function":
        if not callable(answer):
            return WRONG, f"expected a function, got {answer!r}"
        for args, want, label in expected:
            try:
                got = answer(*args)
            except Exception as e:  # noqa: BLE001 - a student's function may raise anything
                return WRONG, f"for {label} your function raised {type(e).__name__}: {e}"
            if not _same(got, want, ex.tolerance):
                return WRONG, f"for {label} your function gives {got!r}, the run gives {want!r}"
        return RIGHT, f"{len(expected)} cases agree with the run"
    raise ValueError(f"unknown kind of exercise {ex.kind!r}")


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(float(x))


def _same(got: Any, want: Any, tolerance: float) -> bool:
    if isinstance(want, (tuple, list)):
        return isinstance(got, (tuple, list)) and len(got) == len(want) and \
            all(_same(g, w, tolerance) for g, w in zip(got, want))
    if isinstance(want, bool):  # a yes/no answer: its truth value counts
        return not isinstance(got, (tuple, list, dict)) and bool(got) == want
    if isinstance(want, float):
        return _is_number(got) and math.isclose(float(got), want, rel_tol=tolerance, abs_tol=tolerance)
    if isinstance(want, int):
        return _is_number(got) and float(got) == want
    return got == want


# --------------------------------------------------------------------------------------------
# The checks, chapter by chapter


@exercise("0.2", "Set overrides = '{\"base_model.pretrain.steps\": 100}', run the chapter again and answer with "
                 "the final validation loss of the base model, e.g. check(\"0.2\", 6.123).",
          "number", tolerance=1e-3)
def _final_validation_loss(prof: Profile, paths: RunPaths) -> float:
    from ..pipeline.base import base_info  # here, not at the top: it loads torch

    log = base_info(prof, paths).get("log")
    if not log:
        raise EeveError("this run's base model was not pretrained here, so it has no validation loss")
    return float(log["validation_loss"][-1])


def _sample_texts(prof: Profile) -> list[str]:
    texts = list(prof.evaluation.korean_prompts[:1]) + list(prof.evaluation.english_prompts[:1])
    return texts + ["대한민국은 민주공화국이다.", "EEVE 한국어 2.8B, 2024"]


@exercise("0.3", "Write counts(text) returning (characters, UTF-8 bytes, base tokens) of a text, then "
                 "check(\"0.3\", counts).", "function")
def _counts_cases(prof: Profile, paths: RunPaths) -> list:
    from ..pipeline.base import load_base_tokenizer  # here, not at the top: it loads torch

    tok = load_base_tokenizer(prof, paths)
    return [((t,), (len(t), len(t.encode("utf-8")), len(tok(t, add_special_tokens=False).input_ids)), repr(t))
            for t in _sample_texts(prof)]


@exercise("1.1", "Double vocabulary.intermediate_vocab_size with overrides, run the chapter again and answer with "
                 "the number of candidates, e.g. check(\"1.1\", 1234).", "integer")
def _candidate_count(prof: Profile, paths: RunPaths) -> int:
    from ..pipeline.vocabulary import load_candidates  # here, not at the top: it loads torch

    return len(load_candidates(prof, paths))


@exercise("1.3", "Write is_candidate(token), step 2's rule for one token of the intermediate tokenizer "
                 "(in its spelling), then check(\"1.3\", is_candidate).", "function")
def _candidate_cases(prof: Profile, paths: RunPaths) -> list:
    """Tokens of every kind from the run's intermediate tokenizer, each with whether it is a candidate."""
    # here, not at the top: they load torch
    from ..pipeline.base import load_base_tokenizer
    from ..pipeline.vocabulary import load_candidates, load_intermediate_tokenizer

    base = load_base_tokenizer(prof, paths)
    token_text = family_of(base).token_text
    intermediate = load_intermediate_tokenizer(prof, paths)
    vocab = intermediate.get_vocab()
    candidates = set(load_candidates(prof, paths))
    ordered = sorted(vocab, key=vocab.get)
    kinds = {
        "candidate": [t for t in ordered if t in candidates],
        "in the base vocabulary": [t for t in ordered if t in base.get_vocab()],
        "ends inside a character": [t for t in ordered if t not in candidates and token_text(t) is None],
        "whole text without Hangul": [t for t in ordered if t not in candidates and token_text(t)
                                      and t not in base.get_vocab()],
    }
    picked = list(dict.fromkeys(t for tokens in kinds.values() for t in tokens[:3] + tokens[-2:]))
    return [((t,), t in candidates, f"{t!r} ({token_text(t)!r})") for t in picked]


@exercise("2.1", "Raise vocabulary.min_frequency with overrides, run the chapter again and answer with "
                 "(new tokens, iterations), e.g. check(\"2.1\", (300, 3)).",
          "integers", parts=("new tokens", "iterations"))
def _survivors(prof: Profile, paths: RunPaths) -> tuple[int, int]:
    from ..pipeline.vocabulary import load_expansion_summary  # here, not at the top: it loads torch

    summary = load_expansion_summary(prof, paths)
    return int(summary["new_tokens"]), int(summary["iterations"])


@exercise("2.4", "Write passing(threshold) returning how many of the first iteration's candidates a threshold "
                 "keeps (result.first_frequencies), then check(\"2.4\", passing).", "function")
def _passing_cases(prof: Profile, paths: RunPaths) -> list:
    from ..pipeline.vocabulary import load_expansion  # here, not at the top: it loads torch

    result = load_expansion(prof, paths)
    counts = sorted(result.first_frequencies[t] for t in result.initial_candidates)
    thresholds = sorted({1, result.threshold, 2 * result.threshold, counts[len(counts) // 2] if counts else 1,
                         (counts[-1] + 1) if counts else 2})
    return [((t,), sum(c >= t for c in counts), f"threshold {t}") for t in thresholds]


@exercise("3.1", "Set overrides = '{\"embedding_init\": \"random\"}', run the chapter again and answer with the "
                 "extended model's Korean bits per character before training, e.g. check(\"3.1\", 9.87).",
          "number", tolerance=1e-3)
def _initial_korean_bpc(prof: Profile, paths: RunPaths) -> float:
    from ..method.evaluation import cap_characters, score_texts  # here, not at the top: it loads torch
    from ..pipeline.training import initialise_extended_model  # here, not at the top: it loads torch

    model, tok, _, _ = initialise_extended_model(prof, paths)
    korean = cap_characters(load_corpus(prof, "korean").validation, prof.evaluation.max_korean_chars)
    return score_texts(model, tok, korean, window=prof.evaluation.window,
                       stride=prof.evaluation.stride).bits_per_character


@exercise("3.3", "How many rows of the extended model's embedding matrices must generation never produce "
                 "(rows beyond the extended tokenizer)? check(\"3.3\", n)", "integer")
def _padding_rows(prof: Profile, paths: RunPaths) -> int:
    from ..pipeline.training import plan_extension  # here, not at the top: it loads torch

    ext, _, _ = plan_extension(prof, paths)
    return ext.rows - ext.target_size


@exercise("4.1", "Train stages 1, 2 and 6 in a run of your own (mine = notebook.student_paths(P, \"126\"); "
                 "run_schedule(P, mine, schedule=[1, 2, 6])) and answer with the Korean validation loss after "
                 "stage 6: check(\"4.1\", loss, mine).", "number", tolerance=1e-3)
def _short_schedule_loss(prof: Profile, paths: RunPaths) -> float:
    from ..pipeline.training import load_stage_record  # here, not at the top: it loads torch

    record = load_stage_record(prof, paths)
    if record.get("stages") != [1, 2, 6]:
        raise EeveError(f"the final model in {paths.model} was trained with stages {record.get('stages')}, not "
                        f"1, 2 and 6: train them in your own run first, and pass its paths to check")
    return float(record["logs"][-1]["validation"]["korean"][-1])


@exercise("4.2", "Write share(bias) returning the expected share of new tokens per sampled window when "
                 "training.new_token_bias is bias (use data.new_share), then check(\"4.2\", share).",
          "function", tolerance=1e-6)
def _share_cases(prof: Profile, paths: RunPaths) -> list:
    from ..method.sampling import build_training_data  # here, not at the top: it loads torch
    from ..pipeline.training import plan_extension  # here, not at the top: it loads torch
    from ..pipeline.vocabulary import load_target_tokenizer  # here, not at the top: it loads torch

    ext, _, _ = plan_extension(prof, paths)
    data = build_training_data(load_target_tokenizer(prof, paths), load_corpus(prof, "korean").train,
                               prof.training.seq_len, ext.base_size, 0.0)
    return [((bias,), data.expected_new_share(1.0 + bias * data.new_share), f"new_token_bias = {bias}")
            for bias in (0.0, 1.0, prof.training.new_token_bias, 10.0)]


@exercise("4.4", "With the stage selector: how many parameters does stage 5 train in this run? check(\"4.4\", n)",
          "integer")
def _stage5_trainable(prof: Profile, paths: RunPaths) -> int:
    from ..pipeline.training import plan_extension  # here, not at the top: it loads torch

    ext, hidden, body = plan_extension(prof, paths)
    return trainable_counts(STAGES[5], n_base=ext.base_size, n_new=ext.n_new, hidden=hidden,
                            body_params=body)["total"]


def _short_korean_texts(prof: Profile, tok, count: int = 3) -> list[str]:
    """Held-out Korean texts that fit in one scoring window (so no sliding window is needed)."""
    fits = [t for t in load_corpus(prof, "korean").validation[:400]
            if len(t) >= 8 and len(tok(t, add_special_tokens=False).input_ids) + 1 <= prof.evaluation.window]
    return sorted(fits, key=len)[:count]


@exercise("5.1", "Write bits_per_character(model, tokenizer, text) by hand (the end-of-text token first, "
                 "natural-log probabilities over the tokenizer's ids, divided by ln 2 and by the characters), then "
                 "check(\"5.1\", bits_per_character).", "function", tolerance=1e-4)
def _bpc_cases(prof: Profile, paths: RunPaths) -> list:
    from ..method.evaluation import score_texts  # here, not at the top: it loads torch
    from ..pipeline.evaluation import load_model  # here, not at the top: it loads torch

    model, tok = load_model(paths.model)
    model.eval()
    return [((model, tok, t), score_texts(model, tok, [t], window=prof.evaluation.window,
                                          stride=prof.evaluation.stride).bits_per_character, repr(t[:30]))
            for t in _short_korean_texts(prof, tok)]


def _arm_name(name: str) -> str:
    """'schedule:embeddings_only', 'ablation:schedule-embeddings_only@seed1235' or 'embeddings_only'
    -> 'embeddings_only' (seven_stages, no_expansion, 0.5 for replay:0.5)."""
    name = name.strip().lower().removeprefix("ablation:").split("@", 1)[0]
    for sep in (":", "-"):
        name = name.split(sep, 1)[-1]
    return name


@exercise("5.3", "Which arm keeps English best (lowest English bits per character, mean over its seeds)? "
                 "Answer with its name, e.g. check(\"5.3\", \"full_finetune\").", "name", normalise=_arm_name)
def _best_english_arm(prof: Profile, paths: RunPaths) -> str:
    from ..pipeline.evaluation import load_metrics  # here, not at the top: it loads torch

    if not paths.metrics.is_file():
        raise EeveError(f"no scores in {paths.metrics}: run chapter 05 first")

    arms = load_metrics(prof, paths).get("arms", {})
    # the learning-rate grid's arms choose a setting on the tuning split; they are not compared
    means = {arm: a["english_bits_per_character"]["mean"] for arm, a in arms.items() if not is_tuning_arm(arm)}
    if len(means) < 2:
        raise EeveError(f"this run has no ablation arms (ablations.enabled is off at profile {prof.name})")
    return min(means, key=means.get)


@exercise("full.1", "Which stage needs the most memory for phi-2 extended to EEVE-Korean-2.8B? Answer with its "
                    "number, e.g. check(\"full.1\", 3).", "integer")
def _most_memory_stage(prof: Profile, paths: RunPaths) -> int:
    shape = phi2_shape()
    return max(STAGES, key=lambda n: stage_memory_bytes(shape, STAGES[n])["total"])


def _seven_stage_loss(prof: Profile, paths: RunPaths) -> float:
    """4.1's point of comparison in a run of the profile's own schedule: its final Korean loss."""
    from ..pipeline.training import load_stage_record  # here, not at the top: it loads torch

    return float(load_stage_record(prof, paths)["logs"][-1]["validation"]["korean"][-1])


# What a run offers beside an exercise whose own answer needs another run (4.1 trains stages 1, 2
# and 6 in a run of the student's): the same quantity under the profile's settings.
_REFERENCE = {"4.1": ("Korean validation loss after the seven stages", _seven_stage_loss)}


def reference_answers(prof: Profile, paths: RunPaths) -> dict[str, str]:
    """Each exercise's answer in one run (the book's, for the teachers' page), as text.

    An exercise that asks for a changed setting gets the value at the run's own settings, to compare
    the student's against; a function exercise points to its folded solution.
    """
    out = {}
    for ex in EXERCISES.values():
        if ex.kind == "function":
            out[ex.id] = "a function: see the folded solution"
            continue
        label, compute = _REFERENCE.get(ex.id, (None, ex.compute))
        try:
            value = compute(prof, paths)
        except (EeveError, OSError, KeyError) as e:
            out[ex.id] = f"not in this run ({e})"
            continue
        if ex.kind == "integers":
            text = ", ".join(f"{part} {v:,}" for part, v in zip(ex.parts, value))
        elif ex.kind == "integer":
            text = f"{value:,}"
        elif ex.kind == "number":
            text = f"{value:.3f}"
        else:
            text = str(value)
        out[ex.id] = f"{label}: {text}" if label else text
    return out


def checkable(chapter_prefix: str) -> Sequence[str]:
    """The checkable exercises of a chapter ("02", "full")."""
    key = chapter_prefix.lstrip("0") or "0"
    return [i for i in EXERCISES if i.split(".")[0] == key]


__all__ = ["check", "Verdict", "Exercise", "EXERCISES", "checkable", "reference_answers", "RIGHT", "WRONG", "OFF",
           "WAITING"]
