"""Tables and comparisons of chapter 05 and the Results page, read from ``eval/metrics.json``.

A difference between two arms is claimed only when their seeds do not overlap
(:func:`separated`): every seed of one arm beats every seed of the other.
"""

from __future__ import annotations

from typing import Any

from ..method.candidates import is_hangul
from ..pipeline.arm import Arm

STAGE_COLUMNS = {"Korean bits/char": ("korean", "bits_per_character"),
                 "uniform guess (Korean)": ("korean", "uniform_bits_per_character"),
                 "English bits/char": ("english", "bits_per_character"),
                 "Korean tokens/char": ("korean", "tokens_per_character")}


def model_table(models: dict[str, Any], names: list[str]):
    """One row per model: Korean and English bits per character, the uniform guess, fertility."""
    import pandas as pd

    return pd.DataFrame({n: {column: models[n][language][metric]
                             for column, (language, metric) in STAGE_COLUMNS.items()}
                         for n in names}).T


def arm_table(metrics: dict[str, Any], wall_seconds: dict[str, Any] | None = None):
    """One row per arm: mean and standard deviation over its seeds, and its training cost (with
    its mean wall-clock seconds where ``wall_seconds`` gives them, per arm)."""
    import pandas as pd

    rows = {}
    for arm, a in metrics["arms"].items():
        ko, en, cost = a["korean_bits_per_character"], a["english_bits_per_character"], a["training"]
        rows[arm] = {"seeds": len(a["seeds"]),
                     "Korean bits/char": f"{ko['mean']:.3f} ± {ko['std']:.3f}",
                     "English bits/char": f"{en['mean']:.3f} ± {en['std']:.3f}",
                     "Korean tokens/char": round(a["korean_tokens_per_character"]["mean"], 3),
                     "steps": round(cost["steps"]["mean"]),
                     "tokens": f"{cost['tokens']['mean']:,.0f}",
                     "FLOPs (est.)": f"{cost['flops']['mean']:.2e}"}
        if wall_seconds is not None:
            rows[arm]["seconds"] = round(wall_seconds[arm]["mean"], 1)
    return pd.DataFrame(rows).T


def separated(metrics: dict[str, Any], a: str, b: str, metric: str = "korean_bits_per_character") -> str:
    """'lower' or 'higher' when every seed of arm ``a`` lies below (above) every seed of arm ``b``,
    else 'within the spread'."""
    x, y = metrics["arms"][a][metric], metrics["arms"][b][metric]
    if x["max"] < y["min"]:
        return "lower"
    if x["min"] > y["max"]:
        return "higher"
    return "within the spread"


def comparison_table(metrics: dict[str, Any], reference: str = "seven_stages"):
    """Each arm against ``reference``, in Korean and in English: lower, higher or within the spread."""
    import pandas as pd

    return pd.DataFrame({arm: {"Korean": separated(metrics, arm, reference),
                               "English": separated(metrics, arm, reference, "english_bits_per_character")}
                         for arm in metrics["arms"] if arm != reference and not is_tuning_arm(arm)}).T


def replay_arms(metrics: dict[str, Any], default_share: float) -> dict[float, str]:
    """English-replay share -> arm: the seven stages at the profile's share, replay:<share> arms."""
    arms = {default_share: "seven_stages"}
    arms |= _numbers(metrics["arms"], "replay")
    return dict(sorted(arms.items()))


def replay_table(metrics: dict[str, Any], default_share: float, base_english: float):
    """The replay sweep: Korean and English (also as a multiple of the base's) per share."""
    import pandas as pd

    rows = {}
    for share, arm in replay_arms(metrics, default_share).items():
        a = metrics["arms"][arm]
        rows[share] = {"arm": arm, "Korean bits/char": a["korean_bits_per_character"]["mean"],
                       "English bits/char": a["english_bits_per_character"]["mean"],
                       "English / base (worst seed)": a["english_bits_per_character"]["max"] / base_english,
                       "English windows seen": a["training"]["english_share_seen"]["mean"]}
    return pd.DataFrame(rows).T.infer_objects().rename_axis("replay share")


ENGLISH_TARGET = 1.05  # ours: English bits per character at most 5% above the base's, on every seed


def is_tuning_arm(arm: str) -> bool:
    """An arm that exists to choose a setting on the tuning split: shown in its own table, never compared."""
    return Arm(arm).is_tuning


def _numbers(arms, kind: str) -> dict[float, str]:
    """The arms of one numeric kind by their number: {0.25: "replay:0.25", ...}."""
    return {a.number: str(a) for a in map(Arm, arms) if a.kind == kind}


def _tuning_point(metrics: dict[str, Any], arm: str, first_seed_only: bool) -> dict[str, float] | None:
    """An arm on the tuning split: mean Korean and worst-seed English bits per character (of the
    profile's seed alone with ``first_seed_only``, the seed every point of a learning-rate grid shares)."""
    tuning = metrics["arms"].get(arm, {}).get("tuning")
    if tuning is None:
        return None
    ko, en = tuning["korean_bits_per_character"]["values"], tuning["english_bits_per_character"]["values"]
    if first_seed_only:
        ko, en = ko[:1], en[:1]
    return {"korean": sum(ko) / len(ko), "english": max(en)}


def pick(points: dict[float, dict[str, float]], base_english: float) -> float:
    """The rule every setting is chosen by (ours): the lowest Korean bits per character among the
    values that keep English within ENGLISH_TARGET times the base's; if none does, the lowest English."""
    kept = {x: p for x, p in points.items() if p["english"] / base_english <= ENGLISH_TARGET}
    if kept:
        return min(kept, key=lambda x: kept[x]["korean"])
    return min(points, key=lambda x: points[x]["english"])


def tuning_choices(metrics: dict[str, Any], english_replay: float, baseline_lr_scale: float = 1.0
                   ) -> dict[str, dict[str, Any]]:
    """What the tuning split picks for each swept setting, beside what the profile uses.

    ``english_replay`` is the profile's share (the seven stages' arm), ``baseline_lr_scale`` the
    no-expansion baseline's learning-rate multiple. Each entry: ``grid`` (value -> Korean and
    worst English on the tuning split, and English over the base's), ``picked``, ``profile``.
    Settings without a sweep, or a run without a tuning split, are absent.
    """
    base = metrics["models"]["base"].get("tuning")
    if base is None:
        return {}
    base_english = base["english"]["bits_per_character"]
    arms = metrics["arms"]
    grids = {
        "English-replay share": (english_replay, False, {english_replay: "seven_stages"} | _numbers(arms, "replay")),
        "seven stages' learning-rate multiple": (1.0, True, {1.0: "seven_stages"} | _numbers(arms, "lr")),
        "no-expansion baseline's learning-rate multiple": (
            baseline_lr_scale, True, _numbers(arms, "baseline_lr") | {baseline_lr_scale: "baseline:no_expansion"}),
    }
    out = {}
    for setting, (profile_value, first_seed_only, grid) in grids.items():
        points = {x: _tuning_point(metrics, arm, first_seed_only) for x, arm in sorted(grid.items())}
        if len(points) < 2 or any(p is None for p in points.values()):
            continue
        for point in points.values():
            point["english / base"] = point["english"] / base_english
        out[setting] = {"grid": points, "picked": pick(points, base_english), "profile": profile_value,
                        "seeds": "the profile's seed" if first_seed_only else "every seed"}
    return out


def tuning_table(choices: dict[str, dict[str, Any]]):
    """One row per swept value: its Korean and English on the tuning split, and which value was picked."""
    import pandas as pd

    rows = []
    for setting, c in choices.items():
        for value, p in c["grid"].items():
            rows.append({"setting": setting, "value": value, "Korean bits/char": p["korean"],
                         "English / base (worst)": p["english / base"],
                         "picked on tuning split": "yes" if value == c["picked"] else "",
                         "the profile's": "yes" if value == c["profile"] else ""})
    return pd.DataFrame(rows).set_index(["setting", "value"]) if rows else pd.DataFrame()
SUPPORTS, REFUTES, OPEN = "supports", "refutes", "leaves open"


def _arm_values(metrics: dict[str, Any], arm: str, metric: str, shots: str | None = None) -> list[float] | None:
    a = metrics["arms"].get(arm, {}).get(metric)
    if a is not None and shots is not None:
        a = a.get(shots)
    return None if a is None else list(a["values"])


def _between_arms(metrics: dict[str, Any], arm: str, other: str, metric: str, *, higher_is_better: bool,
                  shots: str | None = None, stderr: float = 0.0) -> tuple[str, str]:
    """Verdict and evidence for "``arm`` beats ``other``": beyond the seeds' spread (every seed of one
    past every seed of the other, with two seeds or more each) and, for accuracies, beyond twice
    the items' standard error (``stderr``); else it is left open."""
    x, y = _arm_values(metrics, arm, metric, shots), _arm_values(metrics, other, metric, shots)
    if x is None or y is None:
        return OPEN, "not run"
    evidence = f"{sum(x) / len(x):.3f} against {sum(y) / len(y):.3f} (seeds: {len(x)} and {len(y)})"
    if min(len(x), len(y)) < 2:
        return OPEN, evidence + "; one seed is shown, never claimed from"
    gap = sum(x) / len(x) - sum(y) / len(y)
    if abs(gap) <= 2 * stderr:
        return OPEN, evidence + f"; within twice the items' standard error ({stderr:.3f})"
    better = min(x) > max(y) if higher_is_better else max(x) < min(y)
    worse = max(x) < min(y) if higher_is_better else min(x) > max(y)
    return (SUPPORTS if better else REFUTES if worse else OPEN), evidence + (
        "" if better or worse else "; within the spread of the seeds")


def paper_claims(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """What a run says about each of the paper's claims: supports, refutes or leaves open, with the evidence.

    The claims are the paper's (efficient, effective, English kept, the staged schedule, knowledge
    from English); the tests and thresholds are ours: bits per character on held-out text, the
    English target of 1.05 times the base's on every seed, and between arms a difference beyond
    the seeds' spread (and beyond twice the standard error for task accuracies).
    """
    models, base = metrics["models"], metrics["models"]["base"]
    out = []

    def claim(name, verdict, evidence):
        out.append({"claim": name, "verdict": verdict, "evidence": evidence})

    ext_tpc, base_tpc = models["final"]["korean"]["tokens_per_character"], base["korean"]["tokens_per_character"]
    claim("fewer tokens per Korean character", SUPPORTS if ext_tpc < base_tpc else REFUTES,
          f"{ext_tpc:.3f} against the base tokenizer's {base_tpc:.3f} ({ext_tpc / base_tpc:.2f}x)")
    korean = _arm_values(metrics, "seven_stages", "korean_bits_per_character") or \
        [models["final"]["korean"]["bits_per_character"]]
    base_ko = base["korean"]["bits_per_character"]
    claim("Korean modelled better than by the base", SUPPORTS if max(korean) < base_ko else
          REFUTES if min(korean) > base_ko else OPEN,
          f"seven stages {min(korean):.3f}-{max(korean):.3f} bits per character, base {base_ko:.3f}")
    claim("Korean better than training without new tokens, at equal steps x tokens",
          *_between_arms(metrics, "seven_stages", "baseline:no_expansion", "korean_bits_per_character",
                         higher_is_better=False))
    english = _arm_values(metrics, "seven_stages", "english_bits_per_character") or \
        [models["final"]["english"]["bits_per_character"]]
    ratios = [e / base["english"]["bits_per_character"] for e in english]
    claim(f"English kept (ours: within {ENGLISH_TARGET}x the base's on every seed)",
          SUPPORTS if max(ratios) <= ENGLISH_TARGET else REFUTES if min(ratios) > ENGLISH_TARGET else OPEN,
          "English / base: " + ", ".join(f"{r:.3f}" for r in ratios))
    claim("the seven stages beat one stage of full fine-tuning (Korean)",
          *_between_arms(metrics, "seven_stages", "schedule:full_finetune", "korean_bits_per_character",
                         higher_is_better=False))
    if "matching" in base:
        stderr = base["matching"]["stderr"]
        claim("knowledge carried from English: Korean-English matching above the no-expansion baseline",
              *_between_arms(metrics, "seven_stages", "baseline:no_expansion", "matching_accuracy",
                             higher_is_better=True, stderr=stderr))
    if "sentiment" in base:
        shots = max(base["sentiment"], key=lambda k: int(k.split("_")[1]))
        stderr = base["sentiment"][shots]["stderr"]
        claim(f"Korean task (NSMC sentiment, {shots.split('_')[1]}-shot) above the no-expansion baseline",
              *_between_arms(metrics, "seven_stages", "baseline:no_expansion", "sentiment_accuracy",
                             higher_is_better=True, shots=shots, stderr=stderr))
    return out


def claims_sentence(claims: list[dict[str, str]]) -> str:
    """What a run says of the claims, as a predicate: "supports 3 of the 7 claims (...), refutes ..."."""
    def named(verdict):
        return [c["claim"] for c in claims if c["verdict"] == verdict]

    parts = [f"{verb} {len(n)} ({'; '.join(n)})" for verb, n in
             (("supports", named(SUPPORTS)), ("refutes", named(REFUTES))) if n]
    if named(OPEN):
        parts.append(f"leaves {len(named(OPEN))} open ({'; '.join(named(OPEN))})")
    parts[0] = parts[0].replace(" (", f" of the {len(claims)} claims (", 1)
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def headline_points(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Every arm of a run as its Korean and English bits per character relative to the base model's
    (1 is the base; below 1 is better): mean, lowest and highest seed of each."""
    base = metrics["models"]["base"]
    points = []
    for arm, a in metrics.get("arms", {}).items():
        if is_tuning_arm(arm):
            continue
        point = {"arm": arm, "seeds": len(a["korean_bits_per_character"]["values"])}
        for language in ("korean", "english"):
            x, reference = a[f"{language}_bits_per_character"], base[language]["bits_per_character"]
            point[language] = {k: x[k] / reference for k in ("mean", "min", "max")}
        points.append(point)
    return points


def headline_verdict(metrics: dict[str, Any]) -> dict[str, str]:
    """Three lines on a run, each from :func:`paper_claims`: Korean, English and tokens."""
    claims = {c["claim"].split(" (")[0].split(",")[0]: c for c in paper_claims(metrics)}
    models, base = metrics["models"], metrics["models"]["base"]
    korean = claims["Korean modelled better than by the base"]
    against = claims["Korean better than training without new tokens"]
    english = claims["English kept"]
    tokens = models["final"]["korean"]["tokens_per_character"] / base["korean"]["tokens_per_character"]
    return {
        "Korean": (f"better than the base: {korean['verdict']} ({korean['evidence']}); better than training "
                   f"without new tokens: {against['verdict']} ({against['evidence']})"),
        "English": f"kept within {ENGLISH_TARGET} times the base's: {english['verdict']} ({english['evidence']})",
        "tokens": f"Korean takes {tokens:.2f} times the base tokenizer's tokens per character",
    }


def hangul_share(text: str) -> float:
    """Share of a text's letters that are Hangul (0 for a text without letters)."""
    letters = [c for c in text if c.isalpha()]
    return sum(map(is_hangul, letters)) / max(1, len(letters))


__all__ = ["model_table", "arm_table", "separated", "comparison_table", "replay_arms", "replay_table",
           "hangul_share", "paper_claims", "claims_sentence", "headline_points", "headline_verdict",
           "ENGLISH_TARGET", "tuning_choices", "tuning_table", "pick", "is_tuning_arm"]
