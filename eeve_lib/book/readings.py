"""What a result means, in words: the sentences chapters 04 and 05 glue beside their numbers.

A chapter states a reading only when its run supports it, so each reading is chosen from what the
run measured (a verdict of :func:`eeve_lib.book.results.separated`, a ratio, a share), never
written once for every run. A paragraph that exists only where the profile runs its comparison is
a reading too, with a sentence for the profiles that do not. Readings are plain text, since the
pages show a glued value as it is. ``tests/test_readings.py`` checks each branch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..pipeline.arm import Arm
from .results import ENGLISH_TARGET

LOWER, HIGHER, WITHIN = "lower", "higher", "within the spread"

_EFFICIENCY = {
    LOWER: "at this scale the expansion buys what the paper calls efficiency, more Korean learned "
           "per unit of compute",
    HIGHER: "here training without new tokens learns more Korean for the same compute: the paper's "
            "efficiency is not reproduced at this scale",
    WITHIN: "the two are within the spread of the seeds, so no difference is claimed",
}
_ENGLISH = {
    HIGHER: "the expansion costs English here: its new rows compete in the softmax even where the "
            "text is English, which training without new tokens never does",
    LOWER: "the expansion keeps English better than the baseline here",
    WITHIN: "the difference is within the spread of the seeds",
}


def efficiency(korean_verdict: str) -> str:
    """The seven stages against the no-expansion baseline in Korean, at equal steps x tokens."""
    return _EFFICIENCY[korean_verdict]


def english_against_baseline(english_verdict: str) -> str:
    """The same comparison in English."""
    return _ENGLISH[english_verdict]


def efficiency_summary(korean_verdict: str | None) -> str:
    """The chapter summary's line on efficiency; None when the profile runs no baseline."""
    if korean_verdict is None:
        return "This profile trains no baseline without new tokens, so the paper's efficiency is not tested here"
    if korean_verdict == LOWER:
        return ("At equal compute (optimizer steps × tokens) the expansion reaches lower Korean bits per "
                "character than training the same base on the same Korean text with its own tokenizer, "
                "because the same tokens hold several times as much Korean: the paper's efficiency, "
                "reproduced at this scale")
    return ("At equal compute (optimizer steps × tokens) the expansion does not reach lower Korean bits "
            f"per character than training the same base without new tokens (the seven stages score "
            f"{korean_verdict}), although the same tokens hold several times as much Korean")


def replayed(share: float) -> str:
    """How much English the training windows replay, in words."""
    return f"{share:.0%} of the training windows replayed from English" if share else "no English replay"


def english_summary(worst_ratio: float, share: float) -> str:
    """The summary's line on English: the worst seed's English bits per character over the base's,
    against the book's own target."""
    if worst_ratio <= ENGLISH_TARGET:
        return (f"English stays within {worst_ratio:.3f} times the base's on every seed, inside the target "
                f"of {ENGLISH_TARGET} that this book sets itself, with {replayed(share)}")
    return (f"English ends at up to {worst_ratio:.2f} times the base's (worst seed), outside the target of "
            f"{ENGLISH_TARGET} that this book sets itself: at this profile, {replayed(share)} does not "
            "hold it there")


def training_windows(share: float) -> str:
    """Chapter 04: what the training windows hold, and so what can hold English in place."""
    if share:
        return (f"The training windows are not Korean only: {share:.0%} of them are English, replayed from "
                "the English training split (training.english_replay) to hold English in place once "
                "base rows and the transformer train")
    return ("The training windows are Korean only (training.english_replay is 0): nothing holds English "
            "in place once base rows and the transformer train")


def initialisation(verdicts: Sequence[str]) -> str:
    """The other initialisations against the subword one, in Korean (verdicts of the others)."""
    if verdicts and all(v == HIGHER for v in verdicts):
        return "starting the new rows from their pieces is worth keeping, as the paper argues (chapter 3)"
    return ("in this run the alternatives are not all worse beyond the spread, so the advantage of starting "
            "from the pieces is not shown here")


def schedule(verdicts: Sequence[str]) -> str:
    """The one-stage schedules against the seven stages, in Korean (verdicts of the one-stage arms)."""
    if verdicts and all(v == HIGHER for v in verdicts):
        return "Every one-stage arm is worse than the seven stages beyond the spread: here the schedule pays off"
    beaten = "a one-stage arm does better" if LOWER in verdicts else "no one-stage arm is worse beyond the spread"
    return (f"At this scale and budget the seven-stage schedule does not beat the simplest alternatives: "
            f"{beaten}. The paper's schedule is designed for a 2.8B- or 10.7B-parameter model whose English "
            "is worth far more to protect; whether the stages pay off there is a question for the full "
            "profile")


def hangul_in_english(share: float) -> str:
    """How much Hangul the final model writes after English prompts."""
    if share == 0:
        return "none of the letters it writes there is Hangul"
    return f"at most {share:.0%} of the letters it writes there are Hangul"


def uniform_comparison(versus: Mapping[str, str]) -> str:
    """Chapter 03: the base and the extended model against the uniform guess, in one clause
    (``versus`` maps each model to "better than uniform" or "worse than uniform")."""
    if versus["base"] == versus["extended"]:
        return f"both models score {versus['base'].replace('uniform', 'that guess')}"
    return f"the base model scores {versus['base']}, the extended model {versus['extended']}"


def flops_direction(baseline_flops: float, seven_stages_flops: float) -> str:
    return "more" if baseline_flops > seven_stages_flops else "fewer"


def replay_sweep(table, default_share: float, base_korean: float, checked: bool, tuned: bool = False) -> str:
    """Chapter 05's paragraph on the English-replay sweep. ``table`` is
    :func:`eeve_lib.book.results.replay_table` (one row per share, in order); ``checked`` says
    whether the chapter's cell asserts the trend (three seeds or more); ``tuned`` whether the
    share was chosen on the tuning split."""
    if len(table) < 2:
        return ("This profile runs no English-replay sweep (ablations.english_replay), so what replay "
                "does to English is not measured here")
    korean, english = table["Korean bits/char"], table["English bits/char"]
    worst = table["English / base (worst seed)"]
    if korean.is_monotonic_increasing and english.is_monotonic_decreasing:
        trend = ("Replaying English is a trade: as its share grows, Korean bits per character rise and "
                 "English bits per character fall, at every step of the sweep")
        trend += " (the cell checks both)" if checked else f" (in the means of {len(table)} shares)"
    else:
        trend = ("Across the sweep the Korean and English bits per character do not move in opposite "
                 "directions at every step, so no trade is claimed")
    target = "inside" if worst.loc[default_share] <= ENGLISH_TARGET else "outside"
    return (f"{trend}. Without replay the worst seed's English is {worst.iloc[0]:.2f} times the base's. "
            f"The profile's share, {default_share:.2f}, leaves the worst seed's English at "
            f"{worst.loc[default_share]:.3f} times the base's, {target} the target of {ENGLISH_TARGET} "
            f"that this book sets itself, with Korean at {korean.loc[default_share]:.2f} bits per "
            f"character against the base's {base_korean:.2f}. The replay, its share and the lower "
            "learning rates of stages 4 to 7 are our choices for this scale, not the paper's; "
            + ("the share was chosen on the tuning split (next section), so this sweep, on the validation "
               "split, measures it on text that no choice saw" if tuned else
               "the share was picked from a sweep like this one, on this same held-out text, so this sweep "
               "flatters it"))


def tuning_paragraph(choices: Mapping[str, Mapping], tuning_fraction: float) -> str:
    """Chapter 05: how the profile's settings were chosen, and whether the tuning split agrees.
    ``choices`` is :func:`eeve_lib.book.results.tuning_choices`."""
    if not tuning_fraction:
        return ("This profile holds out no tuning split (data.tuning_fraction is 0): its English-replay share "
                "and learning rates are our choices, made by hand or from short runs scored on the same "
                "held-out text this chapter reports, so its numbers may flatter those settings slightly")
    if not choices:
        return (f"This profile holds out a tuning split ({tuning_fraction:.0%} of the documents) but sweeps no "
                "setting on it, so its settings are ours, fixed before the run; every number above is "
                "measured on the validation split")
    agree = [s for s, c in choices.items() if c["picked"] == c["profile"]]
    differ = [s for s, c in choices.items() if c["picked"] != c["profile"]]
    parts = []
    if agree:
        parts.append(f"the profile uses the value the tuning split picks for the {_listed(agree)}")
    for setting in differ:
        c = choices[setting]
        parts.append(f"for the {setting} the tuning split picks {c['picked']:g} where the profile uses "
                     f"{c['profile']:g}")
    edges = [s for s, c in choices.items() if len(c["grid"]) > 2 and c["picked"] in (min(c["grid"]), max(c["grid"]))]
    if edges:
        parts.append(f"the pick for the {_listed(edges)} lies at the edge of its grid, so a wider grid "
                     "might pick further out")
    return (f"Each setting is chosen on the tuning split ({tuning_fraction:.0%} of the documents, apart from "
            f"both the training and the validation split) by one rule of ours: the lowest Korean bits per "
            f"character among the values that keep English within {ENGLISH_TARGET} times the base's. "
            + "; ".join(parts)[0].upper() + "; ".join(parts)[1:]
            + ". The other numbers of this chapter are measured on the validation split, which no choice saw")


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", the ".join(items[:-1]) + " and the " + items[-1]


def _arm_mean(arm: Mapping, key: str, sub: str = "mean") -> float:
    return (arm["training"] if key in arm["training"] else arm)[key][sub]


def equal_compute(seven_stages: Mapping | None, baseline: Mapping | None, korean_verdict: str | None,
                  english_verdict: str | None, equal_text: Mapping | None = None,
                  equal_text_verdict: str | None = None, wall_time_ratio: float | None = None) -> str:
    """Chapter 05's paragraph on the seven stages against the no-expansion baseline, from the two
    arms of ``metrics.json`` and their verdicts (:func:`eeve_lib.book.results.separated`), and, where
    the profile runs it, the baseline on equal text (``baseline:equal_text``). ``wall_time_ratio``:
    the baseline's wall-clock seconds over the seven stages', where the run measured them."""
    if seven_stages is None or baseline is None:
        return ("This profile trains no baseline without new tokens (ablations.baselines), so the expansion is not "
                "compared here with training the base on the same Korean text without new tokens")
    eeve, plain, tpc = seven_stages, baseline, "korean_tokens_per_character"
    flops = _arm_mean(plain, "flops") / _arm_mean(eeve, "flops")
    ko, en = "korean_bits_per_character", "english_bits_per_character"
    return (
        f"Both arms ran {_arm_mean(eeve, 'steps'):,.0f} optimizer steps on {_arm_mean(eeve, 'tokens'):,.0f} "
        "tokens (the cell checks that they are equal): equal compute in this chapter means equal optimizer "
        "steps × tokens per step, not equal FLOPs. The FLOPs differ in two ways that pull against each "
        "other: the baseline trains every parameter at every step, where the first stages train only "
        "embedding rows, while the seven stages score every token over the larger, extended vocabulary. "
        f"Here the baseline spends {flops_direction(flops, 1.0)} estimated FLOPs ({flops:.2f} times the "
        f"seven stages')"
        + ("" if wall_time_ratio is None else f" and {wall_time_ratio:.2f} times their wall time") +
        ". Under the base tokenizer Korean costs "
        f"{_arm_mean(plain, tpc):.2f} tokens per character, under the extended one "
        f"{_arm_mean(eeve, tpc):.2f}: the same tokens hold {_arm_mean(plain, tpc) / _arm_mean(eeve, tpc):.1f} "
        "times as much Korean text for the seven stages. At equal compute the seven stages reach "
        f"{_arm_mean(eeve, ko):.2f} ± {_arm_mean(eeve, ko, 'std'):.2f} Korean bits per character (mean ± "
        "standard deviation over the seeds; lower is better) against the baseline's "
        f"{_arm_mean(plain, ko):.2f} ± {_arm_mean(plain, ko, 'std'):.2f}: {korean_verdict} for the seven "
        f"stages, every seed against every seed, so {efficiency(korean_verdict)}. In English the seven "
        f"stages score {_arm_mean(eeve, en):.3f} and the baseline {_arm_mean(plain, en):.3f} "
        f"({english_verdict} for the seven stages): {english_against_baseline(english_verdict)}"
        + ("" if equal_text is None else _equal_text(eeve, equal_text, equal_text_verdict)))


def _equal_text(eeve: Mapping, plain: Mapping, verdict: str | None) -> str:
    ko = "korean_bits_per_character"
    steps = _arm_mean(plain, "steps") / _arm_mean(eeve, "steps")
    reading = {LOWER: "the expansion still learns more Korean from the same text",
               HIGHER: "given the same text, training without new tokens learns more Korean, at "
                       f"{steps:.1f} times the steps",
               WITHIN: "the difference is within the spread of the seeds"}[verdict]
    return (f". On equal text instead, the same Korean characters and English windows as the seven stages "
            f"read, the baseline "
            f"needs {steps:.1f} times their optimizer steps ({_arm_mean(plain, 'steps'):,.0f}) and reaches "
            f"{_arm_mean(plain, ko):.2f} ± {_arm_mean(plain, ko, 'std'):.2f} Korean bits per character: "
            f"{verdict} for the seven stages, so {reading}")


def verdicts_listed(verdicts: Mapping[str, str]) -> str:
    """Arms grouped by their verdict, each verdict said once: {"init:random": "higher",
    "init:mean_resizing": "higher"} -> "higher (mean_resizing, random)"; "not run" when empty."""
    groups: dict[str, list[str]] = {}
    for arm, verdict in verdicts.items():
        groups.setdefault(verdict, []).append(Arm(arm).value or arm)
    return "; ".join(f"{verdict} ({', '.join(sorted(arms))})" for verdict, arms in groups.items()) or "not run"


def kobest_reproduction(scored: Sequence[str], profiles_that_score: Sequence[str]) -> str:
    """The Results page: whether any run shown reproduces the paper's KoBEST evaluation."""
    if scored:
        return f"scored here by {', '.join(scored)}, in the tables of chapter 5 of those runs"
    where = (f"the {' and '.join(profiles_that_score)} profile{'s' if len(profiles_that_score) > 1 else ''} "
             "score it, on GPUs, and no run of them is recorded" if profiles_that_score else
             "no profile scores it")
    return f"not reproduced here: no run on this page scored KoBEST ({where})"


def korean_in_base(token_share: float, tokens: int, first: float | None, final: float | None, uniform: float,
                   enough: bool, random_stand_in: bool = False) -> str:
    """Chapter 00: how much Korean the base model saw in its pretraining here, and what it did."""
    if random_stand_in:
        return ("This base is a random stand-in with the real model's shapes: it has seen no text at all, "
                "Korean or English, and its losses say nothing about a language")
    if not tokens or first is None or final is None:
        return ("This base model saw no Korean here: it was pretrained elsewhere, on its own data, or "
                "base_model.korean_share is 0, so what it knows of Korean is not measured in this chapter")
    moved = "fell" if final < first else "rose"
    text = (f"Here {token_share:.1%} of the pretraining tokens were Korean ({tokens:,} tokens), and the "
            f"held-out Korean loss {moved} from {first:.2f} to {final:.2f} nats per token, "
            f"{'below' if final < uniform else 'above'} the uniform guess ({uniform:.2f})")
    if not enough:
        return text + "; the Korean windows are too few to claim anything from that"
    if final < first and final < uniform:
        return text + ": a base that knows a little Korean, in bytes, as phi-2 does"
    return text

