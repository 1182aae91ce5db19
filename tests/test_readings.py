"""Each reading the chapters glue says what its numbers say, in every branch (eeve_lib.book.readings)."""

import pytest

from eeve_lib.book import readings
from eeve_lib.book.results import ENGLISH_TARGET

VERDICTS = (readings.LOWER, readings.HIGHER, readings.WITHIN)


def test_efficiency_claims_the_paper_only_when_the_expansion_is_lower():
    assert "efficiency" in readings.efficiency(readings.LOWER) and "not" not in readings.efficiency(readings.LOWER)
    assert "not reproduced" in readings.efficiency(readings.HIGHER)
    assert "no difference is claimed" in readings.efficiency(readings.WITHIN)
    assert "reproduced at this scale" in readings.efficiency_summary(readings.LOWER)
    for verdict in (readings.HIGHER, readings.WITHIN):
        summary = readings.efficiency_summary(verdict)
        assert "does not reach lower" in summary and verdict in summary
    assert "not tested" in readings.efficiency_summary(None)


@pytest.mark.parametrize("verdict", VERDICTS)
def test_every_verdict_has_a_reading(verdict):
    assert readings.efficiency(verdict) and readings.english_against_baseline(verdict)


def test_english_summary_states_the_target_met_or_missed_with_the_measured_ratio():
    met = readings.english_summary(1.031, 0.5)
    assert "within 1.031" in met and "inside the target" in met and "50% of the training windows" in met
    missed = readings.english_summary(1.094, 0.25)
    assert "1.09" in missed and "outside the target" in missed and "does not hold" in missed
    assert "no English replay" in readings.english_summary(1.3, 0.0)
    assert "inside" in readings.english_summary(ENGLISH_TARGET, 0.5)


def test_training_windows_say_whether_english_is_replayed():
    assert "50% of them are English" in readings.training_windows(0.5)
    assert "Korean only" in readings.training_windows(0) and "nothing holds English" in readings.training_windows(0)


def test_initialisation_and_schedule_readings_follow_the_verdicts():
    assert "worth keeping" in readings.initialisation([readings.HIGHER, readings.HIGHER])
    assert "not shown" in readings.initialisation([readings.HIGHER, readings.WITHIN])
    assert "not shown" in readings.initialisation([])
    assert "pays off" in readings.schedule([readings.HIGHER, readings.HIGHER])
    assert "does better" in readings.schedule([readings.LOWER, readings.WITHIN])
    assert "no one-stage arm is worse" in readings.schedule([readings.WITHIN])


def test_no_bound_of_zero_percent_and_no_clause_said_twice():
    assert readings.hangul_in_english(0.0) == "none of the letters it writes there is Hangul"
    assert "at most 12%" in readings.hangul_in_english(0.12)
    both = readings.uniform_comparison({"base": "better than uniform", "extended": "better than uniform"})
    assert both == "both models score better than that guess"
    apart = readings.uniform_comparison({"base": "better than uniform", "extended": "worse than uniform"})
    assert "base model scores better" in apart and "extended model worse" in apart
    assert readings.flops_direction(2.0, 1.0) == "more" and readings.flops_direction(1.0, 2.0) == "fewer"


def _arm(ko, en, tpc, flops, steps=100, tokens=12800):
    spread = lambda xs: {"mean": sum(xs) / len(xs), "std": 0.01, "values": xs, "min": min(xs), "max": max(xs)}
    return {"korean_bits_per_character": spread(ko), "english_bits_per_character": spread(en),
            "korean_tokens_per_character": spread(tpc),
            "training": {"steps": spread([steps]), "tokens": spread([tokens]), "flops": spread([flops])}}


def test_the_equal_compute_paragraph_follows_its_arms_and_verdicts():
    seven, plain = _arm([5.2, 5.3], [2.2, 2.21], [0.6, 0.6], 9e11), _arm([8.2, 8.3], [2.1, 2.11], [2.4, 2.4], 8e11)
    text = readings.equal_compute(seven, plain, readings.LOWER, readings.HIGHER, wall_time_ratio=40 / 30)
    assert "100 optimizer steps on 12,800 tokens" in text and "not equal FLOPs" in text
    assert "spends fewer estimated FLOPs (0.89 times" in text and "4.0 times as much Korean" in text
    assert "(0.89 times the seven stages') and 1.33 times their wall time." in text
    untimed = readings.equal_compute(seven, plain, readings.LOWER, readings.HIGHER)
    assert "(0.89 times the seven stages'). Under the base tokenizer" in untimed
    assert "5.25 ± 0.01" in text and "8.25 ± 0.01" in text and "what the paper calls efficiency" in text
    assert "costs English here" in text and "nan" not in text
    refuted = readings.equal_compute(seven, plain, readings.HIGHER, readings.WITHIN)
    assert "not reproduced" in refuted and "within the spread" in refuted
    assert "trains no baseline without new tokens" in readings.equal_compute(seven, None, None, None)


def test_the_replay_paragraph_claims_a_trade_only_where_the_sweep_shows_one():
    import pandas as pd

    def table(korean, english, worst):
        return pd.DataFrame({"Korean bits/char": korean, "English bits/char": english,
                             "English / base (worst seed)": worst}, index=[0.0, 0.25, 0.5])

    trade = readings.replay_sweep(table([4.9, 5.1, 5.3], [2.5, 2.3, 2.2], [1.2, 1.08, 1.03]), 0.5, 9.0, True)
    assert "a trade" in trade and "(the cell checks both)" in trade and "1.20 times" in trade
    assert "1.030 times the base's, inside the target" in trade and "5.30 bits per character" in trade
    unchecked = readings.replay_sweep(table([4.9, 5.1, 5.3], [2.5, 2.3, 2.2], [1.2, 1.08, 1.03]), 0.25, 9.0, False)
    assert "in the means of 3 shares" in unchecked and "1.080 times the base's, outside the target" in unchecked
    mixed = readings.replay_sweep(table([4.9, 5.4, 5.3], [2.5, 2.3, 2.2], [1.2, 1.08, 1.03]), 0.5, 9.0, True)
    assert "no trade is claimed" in mixed and "checks both" not in mixed
    assert "no English-replay sweep" in readings.replay_sweep(table([5.0], [2.2], [1.0])[:1], 0.0, 9.0, False)


def test_the_results_headline_on_every_recorded_run():
    import json

    import matplotlib

    matplotlib.use("Agg")
    from eeve_lib.book import plots
    from eeve_lib.book.results import headline_points, headline_verdict, paper_claims
    from eeve_lib.pipeline.paths import results_root

    runs = {}
    for path in sorted(results_root().glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        points = {p["arm"]: p for p in headline_points(metrics)}
        seven, base = metrics["arms"]["seven_stages"], metrics["models"]["base"]
        ratio = seven["korean_bits_per_character"]["mean"] / base["korean"]["bits_per_character"]
        assert abs(points["seven_stages"]["korean"]["mean"] - ratio) < 1e-12
        assert points["seven_stages"]["korean"]["min"] <= ratio <= points["seven_stages"]["korean"]["max"]
        verdict, claims = headline_verdict(metrics), paper_claims(metrics)
        assert set(verdict) == {"Korean", "English", "tokens"}
        english = next(c for c in claims if c["claim"].startswith("English kept"))
        assert english["verdict"] in verdict["English"] and english["evidence"] in verdict["English"]
        runs[path.parent.name] = list(points.values())
    assert runs, "no recorded run under results/"
    assert plots.headline(runs).axes[0].get_xlabel() == "Korean bits per character / base's"


def test_the_equal_text_sentence_states_the_extra_steps_and_its_verdict():
    seven, plain = _arm([5.2, 5.3], [2.2, 2.21], [0.6, 0.6], 9e11), _arm([8.2, 8.3], [2.1, 2.11], [2.4, 2.4], 8e11)
    same_text = _arm([4.9, 5.0], [2.1, 2.11], [2.4, 2.4], 3e12, steps=400)
    text = readings.equal_compute(seven, plain, readings.LOWER, readings.HIGHER, same_text, readings.HIGHER)
    assert "On equal text instead" in text and "4.0 times their optimizer steps (400)" in text
    assert "4.95 ± 0.01" in text and "learns more Korean, at 4.0 times the steps" in text
    assert "On equal text" not in readings.equal_compute(seven, plain, readings.LOWER, readings.HIGHER)


def test_verdicts_are_listed_once_each():
    listed = readings.verdicts_listed({"init:mean_resizing": "within the spread", "init:random": "within the spread"})
    assert listed == "within the spread (mean_resizing, random)"
    assert readings.verdicts_listed({"schedule:a": "higher", "schedule:b": "lower"}) == "higher (a); lower (b)"
    assert readings.verdicts_listed({}) == "not run"


def test_the_kobest_comparison_is_named_reproduced_only_where_a_run_scored_it():
    assert readings.kobest_reproduction([], ["full", "full-solar"]).startswith("not reproduced here")
    assert "full and full-solar profiles" in readings.kobest_reproduction([], ["full", "full-solar"])
    assert "no profile scores it" in readings.kobest_reproduction([], [])
    assert readings.kobest_reproduction(["full"], ["full"]).startswith("scored here by full")


def test_the_base_models_korean_is_described_by_what_it_saw():
    seen = readings.korean_in_base(0.03, 12_345, 9.1, 6.2, 8.3, True)
    assert "fell from 9.10 to 6.20" in seen and "below the uniform guess" in seen and "phi-2 does" in seen
    rose = readings.korean_in_base(0.03, 12_345, 6.2, 9.1, 8.3, True)
    assert "rose from 6.20 to 9.10" in rose and "above" in rose and "phi-2" not in rose
    assert "too few" in readings.korean_in_base(0.001, 50, 9.1, 9.0, 8.3, False)
    assert "random stand-in" in readings.korean_in_base(0.0, 0, None, None, 8.3, False, True)
    none = readings.korean_in_base(0.0, 0, None, None, 8.3, False)
    assert "nan" not in none and "saw no Korean here" in none
