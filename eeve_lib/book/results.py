"""Tables and comparisons of chapter 05 and the Results page, read from ``eval/metrics.json``.

A difference between two arms is claimed only when their seeds do not overlap
(:func:`separated`): every seed of one arm beats every seed of the other.
"""

from __future__ import annotations

from typing import Any

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


def arm_table(metrics: dict[str, Any]):
    """One row per arm: mean and standard deviation over its seeds, and its training cost."""
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
                     "FLOPs (est.)": f"{cost['flops']['mean']:.2e}",
                     "seconds": round(cost["seconds"]["mean"], 1)}
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
                         for arm in metrics["arms"] if arm != reference}).T


def replay_arms(metrics: dict[str, Any], default_share: float) -> dict[float, str]:
    """English-replay share -> arm: the seven stages at the profile's share, replay:<share> arms."""
    arms = {default_share: "seven_stages"}
    arms |= {float(arm.split(":", 1)[1]): arm for arm in metrics["arms"] if arm.startswith("replay:")}
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


def hangul_share(text: str) -> float:
    """Share of a text's letters that are Hangul (0 for a text without letters)."""
    from ..method.candidates import is_hangul

    letters = [c for c in text if c.isalpha()]
    return sum(map(is_hangul, letters)) / max(1, len(letters))


__all__ = ["model_table", "arm_table", "separated", "comparison_table", "replay_arms", "replay_table",
           "hangul_share"]
