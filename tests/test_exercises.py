"""Exercises that check themselves: every check gets a right and a wrong answer on a micro run.

The right answers are computed here from the run's files (or by the folded solutions' code), not
by the checks' own functions, so a check that reads the wrong number fails. Also: every check
is called from a chapter and every chapter's check names an exercise; a chapter opened with other
settings writes to a student's run directory and leaves the book's run alone; the live controls
of chapters 02 and 04 redraw.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest

from eeve_lib.book.exercises import EXERCISES, OFF, RIGHT, WAITING, WRONG, check
from tests.conftest import MICRO

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"


def _chapter_checks() -> dict[str, list[str]]:
    """Exercise ids of the check(...) calls in each notebook's code cells."""
    found = {}
    for path in sorted(BOOK.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        found[path.stem] = re.findall(r"""\bcheck\(\s*["']([^"']+)["']""", code)
    return found


def test_every_check_is_called_from_a_chapter_and_every_call_has_a_check():
    calls = [i for ids in _chapter_checks().values() for i in ids]
    assert sorted(calls) == sorted(EXERCISES), "each checkable exercise is checked once, in its chapter"
    for chapter, ids in _chapter_checks().items():
        prefix = chapter.split("_")[0].lstrip("0") or "0"
        assert all(i.split(".")[0] in (prefix, "full") for i in ids), (chapter, ids)


def test_exercise_text_names_its_check():
    """The exercise list of each chapter names check("<id>", ...) for every checkable exercise."""
    for path in sorted(BOOK.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        for i in _chapter_checks()[path.stem]:
            assert f'check("{i}"' in prose, (path.stem, i)


@pytest.mark.parametrize("exercise", list(EXERCISES))
def test_no_answer_yet_says_waiting(exercise):
    verdict = check(exercise, None)
    assert verdict.verdict == WAITING and not verdict and exercise in str(verdict)


# --------------------------------------------------------------------------------------------
# Right and wrong answers on the micro run (every chapter executed by the runner)


@pytest.fixture(scope="module")
def run(micro_run, micro_profile):
    return {"profile": micro_profile, "dir": micro_run["run_dir"], "root": micro_run["root"]}


def _check(run, exercise, answer, paths=None):
    return check(exercise, answer, paths or run["dir"], profile=run["profile"])


def _right_and_wrong(run, exercise, right, wrong, *, wrong_verdict=OFF, paths=None):
    good = _check(run, exercise, right, paths)
    assert good.verdict == RIGHT and good, str(good)
    assert "right" in str(good)
    bad = _check(run, exercise, wrong, paths)
    assert bad.verdict == wrong_verdict and not bad, str(bad)
    return good, bad


def test_0_2_final_validation_loss(run):
    log = json.loads((run["dir"] / "base" / "eeve_base.json").read_text())["log"]
    loss = log["validation_loss"][-1]
    _, bad = _right_and_wrong(run, "0.2", round(loss, 3), loss + 0.25)
    assert "off by +0.25" in str(bad)


def test_0_3_counts_function(run):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run["dir"] / "base")

    def counts(text):  # the folded solution
        return len(text), len(text.encode()), len(tok(text, add_special_tokens=False).input_ids)

    def counts_wrong(text):  # characters for bytes
        return len(text), len(text), len(tok(text, add_special_tokens=False).input_ids)

    _, bad = _right_and_wrong(run, "0.3", counts, counts_wrong, wrong_verdict=WRONG)
    assert "your function gives" in str(bad)


def test_1_1_candidates(run):
    n = len(json.loads((run["dir"] / "intermediate" / "candidates.json").read_text())["candidates"])
    _, bad = _right_and_wrong(run, "1.1", n, n - 3)
    assert "off by -3" in str(bad)


def test_1_3_is_candidate_function(run):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from eeve_lib.method.candidates import contains_hangul
    from eeve_lib.method.families import family_of

    base = AutoTokenizer.from_pretrained(run["dir"] / "base")
    token_text = family_of(base).token_text
    intermediate = Tokenizer.from_file(str(run["dir"] / "intermediate" / "intermediate_tokenizer.json"))
    special = {t.content for t in intermediate.get_added_tokens_decoder().values()}
    base_vocab = base.get_vocab()

    def is_candidate(token):  # the folded solution
        text = token_text(token)
        return token not in base_vocab and token not in special and text is not None and contains_hangul(text)

    good, bad = _right_and_wrong(run, "1.3", is_candidate, lambda token: True, wrong_verdict=WRONG)
    assert "cases agree" in str(good) and "your function gives True" in str(bad)
    cases = EXERCISES["1.3"].compute(run["profile"], run["dir"])
    assert {want for _, want, _ in cases} == {True, False} and len(cases) >= 8


def test_2_1_survivors_and_iterations(run):
    summary = json.loads((run["dir"] / "tokenizer" / "expansion.json").read_text())
    right = (summary["new_tokens"], summary["iterations"])
    _, bad = _right_and_wrong(run, "2.1", right, (right[0] + 5, right[1]))
    assert "new tokens: off by +5" in str(bad) and "iterations: right" in str(bad)
    assert _check(run, "2.1", right[0]).verdict == WRONG  # one number where two are asked for


def test_2_4_passing_function(run):
    details = json.loads((run["dir"] / "tokenizer" / "expansion_details.json").read_text())
    counts = [details["first_frequencies"][t] for t in details["initial_candidates"]]

    def passing(threshold):  # the folded solution
        return sum(c >= threshold for c in counts)

    _right_and_wrong(run, "2.4", passing, lambda threshold: len(counts), wrong_verdict=WRONG)


def test_3_1_bits_per_character_before_training(run):
    from eeve_lib.method.evaluation import cap_characters, score_texts
    from eeve_lib.pipeline.corpora import load_corpus
    from eeve_lib.pipeline.training import initialise_extended_model

    p = run["profile"]
    model, tok, _, _ = initialise_extended_model(p, run["dir"])
    texts = cap_characters(load_corpus(p, "korean").validation, p.evaluation.max_korean_chars)
    bpc = score_texts(model, tok, texts, window=p.evaluation.window, stride=p.evaluation.stride).bits_per_character
    _right_and_wrong(run, "3.1", round(bpc, 3), bpc * 1.1)


def test_3_3_rows_generation_avoids(run):
    from transformers import AutoConfig, AutoTokenizer

    folder = run["dir"] / "stages" / "stage1"
    rows = AutoConfig.from_pretrained(folder).vocab_size
    n = rows - len(AutoTokenizer.from_pretrained(folder))
    _right_and_wrong(run, "3.3", n, n + 64)


def test_4_1_a_schedule_of_ones_own(run, monkeypatch, capsys):
    from eeve_lib.book import notebook
    from eeve_lib.pipeline.training import run_schedule

    monkeypatch.setenv("EEVE_RUNS_DIR", str(run["dir"].parent))  # the micro run is the book's run here
    book_model = (run["dir"] / "model" / "model.safetensors").read_bytes()
    mine = notebook.student_paths(run["profile"], "126")
    assert mine.root == run["dir"].parent / "tiny-126" and "left as it is" in capsys.readouterr().out
    result = run_schedule(run["profile"], mine, schedule=[1, 2, 6], progress=False)
    loss = result.logs[-1].validation["korean"][-1]
    _right_and_wrong(run, "4.1", loss, loss - 0.5, paths=mine)
    against_the_book = _check(run, "4.1", loss)  # the book's run trained all seven stages
    assert against_the_book.verdict == WRONG and "cannot check yet" in str(against_the_book)
    assert (run["dir"] / "model" / "model.safetensors").read_bytes() == book_model


def test_4_2_share_function(run):
    from transformers import AutoTokenizer

    from eeve_lib.method.sampling import build_training_data
    from eeve_lib.pipeline.corpora import load_corpus

    p = run["profile"]
    base_size = json.loads((run["dir"] / "tokenizer" / "expansion.json").read_text())["base_size"]
    data = build_training_data(AutoTokenizer.from_pretrained(run["dir"] / "tokenizer"),
                               load_corpus(p, "korean").train, p.training.seq_len, base_size, 3.0)

    def share(bias):  # the folded solution
        return data.expected_new_share(1 + bias * data.new_share)

    _right_and_wrong(run, "4.2", share, lambda bias: data.expected_new_share(), wrong_verdict=WRONG)


def test_4_4_stage_5_trainable_parameters(run):
    from transformers import AutoConfig

    summary = json.loads((run["dir"] / "tokenizer" / "expansion.json").read_text())
    n_base, n_new = summary["base_size"], summary["final_size"] - summary["base_size"]
    hidden = AutoConfig.from_pretrained(run["dir"] / "base").hidden_size
    n = n_new * hidden + (n_base + n_new) * (hidden + 1)  # new input rows; every output row and its bias
    _, bad = _right_and_wrong(run, "4.4", n, n - n_new * hidden)
    assert f"off by -{n_new * hidden:,}" in str(bad)


def test_5_1_bits_per_character_by_hand(run):
    import torch

    def bits_per_character(model, tokenizer, text):  # the folded solution
        ids = [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1, : len(tokenizer)].float()
        logp = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])
        return -float(logp.sum()) / math.log(2) / len(text)

    def per_token(model, tokenizer, text):  # divides by tokens instead of characters
        n = len(tokenizer(text, add_special_tokens=False).input_ids)
        return bits_per_character(model, tokenizer, text) * len(text) / n

    good, _ = _right_and_wrong(run, "5.1", bits_per_character, per_token, wrong_verdict=WRONG)
    assert "cases agree" in str(good)


def test_5_3_best_arm_for_english(run):
    from eeve_lib.book.results import is_tuning_arm

    arms = json.loads((run["dir"] / "eval" / "metrics.json").read_text())["arms"]
    # the arms the exercise compares: the learning-rate grid's choose a setting, and are left out
    means = {arm: a["english_bits_per_character"]["mean"] for arm, a in arms.items() if not is_tuning_arm(arm)}
    assert len(means) < len(arms)
    best, other = min(means, key=means.get), max(means, key=means.get)
    short = best.split(":", 1)[-1]  # 'schedule:embeddings_only' -> 'embeddings_only'
    _right_and_wrong(run, "5.3", short, other.split(":", 1)[-1], wrong_verdict=WRONG)
    assert _check(run, "5.3", best).verdict == RIGHT and _check(run, "5.3", f" {short.upper()} ").verdict == RIGHT


def test_full_1_stage_with_the_most_memory(run):
    from eeve_lib.book.resources import full_profile_stage_table

    rows = full_profile_stage_table()
    stage = max(rows, key=lambda r: r["memory floor (GiB)"])["stage"]
    _right_and_wrong(run, "full.1", stage, 1 if stage != 1 else 2)


def test_a_wrong_kind_of_answer_is_wrong_not_an_error(run):
    assert _check(run, "1.1", "many").verdict == WRONG
    assert _check(run, "0.3", 3).verdict == WRONG
    assert _check(run, "0.3", lambda text: 1 / 0).verdict == WRONG


def test_the_executed_chapters_show_the_checks_waiting(run):
    """The book's chapters run their check cells headless: each prints that it waits for an answer."""
    for chapter, ids in _chapter_checks().items():
        executed = run["dir"] / "executed" / f"{chapter}.ipynb"
        if not executed.is_file():
            continue
        text = json.dumps(json.loads(executed.read_text())["cells"], ensure_ascii=False)
        for i in ids:
            assert f"{i}: waiting for your answer" in text, (chapter, i)


# --------------------------------------------------------------------------------------------
# Where a chapter opened by hand writes


@pytest.fixture()
def book_run(tmp_path, monkeypatch):
    """A stand-in book run (runs/tiny with a marker and a base folder) under a private EEVE_RUNS_DIR."""
    from eeve_lib.pipeline import atomic
    from eeve_lib.pipeline.paths import RUN_MARKER

    monkeypatch.setenv("EEVE_RUNS_DIR", str(tmp_path))
    book = tmp_path / "tiny"
    (book / "base").mkdir(parents=True)
    atomic.write_json(book / RUN_MARKER, {"eeve_run_directory": 1, "profile": "tiny"})
    (book / "base" / "weights.bin").write_bytes(b"book weights")
    return book


def test_default_settings_use_the_books_run(book_run):
    from eeve_lib.book import notebook

    _, paths = notebook.setup("tiny")
    assert paths.root == book_run and notebook.current[1] == paths
    _, paths = notebook.setup("tiny", overrides='{"vocabulary.min_frequency": %d}'
                              % notebook.current[0].vocabulary.min_frequency)  # the same value: the same run
    assert paths.root == book_run


def test_other_settings_use_a_students_run_started_from_the_books(book_run, capsys):
    from eeve_lib.book import notebook

    _, paths = notebook.setup("tiny", overrides={"embedding_init": "random"})
    student = book_run.parent / "tiny-student"
    assert paths.root == student and (student / ".eeve-run").is_file()
    out = capsys.readouterr().out
    assert "tiny-student" in out and "left as it is" in out and "base" in out
    copied = student / "base" / "weights.bin"
    assert copied.read_bytes() == b"book weights"
    assert os.stat(copied).st_ino == os.stat(book_run / "base" / "weights.bin").st_ino  # a hard link
    # A step that runs in the student's run replaces its files; the book's stay as they were.
    from eeve_lib.pipeline import atomic

    atomic.write_bytes(copied, b"student weights")
    assert (book_run / "base" / "weights.bin").read_bytes() == b"book weights"
    # The next chapter with other settings reuses the student's run as it is.
    _, again = notebook.setup("tiny", seed=7)
    assert again.root == student and copied.read_bytes() == b"student weights"


def test_a_chapter_lands_where_eeve_run_would_run_its_settings(book_run, tmp_path):
    """One rule: an explicit run_dir is never redirected; a device alone keeps the book's run; other
    settings go to the student's run, for a chapter opened by hand and for ``eeve run`` alike."""
    from eeve_lib.book import notebook
    from eeve_lib.pipeline.profiles import load_profile
    from eeve_lib.pipeline.runner import settings_run_dir

    _, paths = notebook.setup("tiny", run_dir=str(tmp_path / "mine"), overrides=MICRO)
    assert paths.root == (tmp_path / "mine").resolve()
    _, paths = notebook.setup("tiny", device="cpu")  # eeve run --device cpu: the book's run
    assert paths.root == book_run and settings_run_dir("tiny", load_profile("tiny", {"device": "cpu"})) is None
    assert not (book_run.parent / "tiny-student").exists()
    _, paths = notebook.setup("tiny", overrides=MICRO)
    runner_home = settings_run_dir("tiny", load_profile("tiny", MICRO), progress=False)
    assert paths.root == runner_home == book_run.parent / "tiny-student"


def test_a_student_run_name_is_one_word(book_run):
    from eeve_lib.book import notebook
    from eeve_lib.pipeline.profiles import load_profile

    with pytest.raises(ValueError):
        notebook.student_paths(load_profile("tiny"), "../elsewhere")
    assert notebook.student_paths(load_profile("tiny"), "lab2").root == book_run.parent / "tiny-lab2"


# --------------------------------------------------------------------------------------------
# The live controls, outside a notebook (no frontend: the displays go to stdout)


def test_threshold_slider_recomputes_the_kept_candidates(capsys):
    import matplotlib

    matplotlib.use("Agg")
    from eeve_lib.book import explore

    counts = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89]
    slider = explore.threshold_explorer(counts, 8)
    assert slider.value == 8 and 8 in slider.options and slider.options[0] == 1 and slider.options[-1] > 89
    assert "threshold 8: 6 of 10 candidates" in capsys.readouterr().out
    slider.figure()  # the figure, shown once, is redrawn with every move from now on
    slider.value = max(o for o in slider.options if o <= 34)
    assert f"threshold {slider.value}: " in capsys.readouterr().out
    assert explore.kept_summary(__import__("numpy").asarray(counts), 90).startswith("threshold 90: 0 of 10")


def test_stage_selector_redraws_each_stage(capsys):
    import matplotlib

    matplotlib.use("Agg")
    from eeve_lib.book import explore
    from eeve_lib.method.stages import STAGES, trainable_counts

    sizes = dict(n_base=1000, n_new=300, hidden=32, body_params=5000)
    selector = explore.stage_explorer(STAGES, n_padding=24, **sizes)
    assert selector.value == 1 and list(selector.options) == [(str(n), n) for n in STAGES]
    for n in STAGES:
        selector.value = n
        assert f"stage {n}: {trainable_counts(STAGES[n], **sizes)['total']:,} trainable" in capsys.readouterr().out
