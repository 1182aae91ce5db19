"""Shared fixtures: small configurations of the very same code the chapters run.

``MICRO`` shrinks the tiny profile (a smaller base model, a few steps per stage) so that whole
pipelines run in seconds; ``micro_run_built`` executes every chapter through the runner once per
test session and builds the book from it, and ``micro_run`` is each worker's copy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from eeve_lib.method.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("EEVE_DATA_DIR", str((ROOT.parent / "shared" / "data").resolve()))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per pytest-xdist worker (and in the processes it starts): two workers share
    # two cores, and torch's default of one thread per core would put four threads on two cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

MICRO: dict = {
    "data.max_english_documents": 4000,
    "base_model.tokenizer_vocab_size": 1000,
    "base_model.architecture.hidden_size": 32,
    "base_model.architecture.intermediate_size": 64,
    "base_model.architecture.num_hidden_layers": 2,
    "base_model.architecture.num_attention_heads": 2,
    "base_model.pretrain.steps": 20,
    "base_model.pretrain.batch_size": 4,
    "base_model.pretrain.seq_len": 64,
    "vocabulary.intermediate_vocab_size": 700,
    "training.seq_len": 32,
    "training.batch_size": 4,
    "training.checkpoint_every": 2,
    "training.schedule": [{"stage": s, "steps": 4, "learning_rate": 3.0e-3} for s in STAGES],
    "evaluation.window": 64,
    "evaluation.stride": 32,
    "evaluation.max_korean_chars": 1500,
    "evaluation.max_english_chars": 1500,
    "evaluation.max_new_tokens": 8,
    "ablations.seeds": 2,
    "ablations.english_replay": [0.0, 0.25],
    # one multiple besides the profile's rates: the grid's arms exist, at little cost
    "ablations.learning_rate_scales": [2.0, 4.0],
}


@pytest.fixture(scope="session")
def micro_profile():
    from eeve_lib.pipeline.profiles import load_profile

    return load_profile("tiny", MICRO)


@pytest.fixture(scope="session")
def micro_base(micro_profile, tmp_path_factory):
    """A run directory holding a micro base model (chapter 00's step only)."""
    from eeve_lib.pipeline.base import ensure_base_model

    run_dir = tmp_path_factory.mktemp("micro-base")
    ensure_base_model(micro_profile, run_dir, progress=False)
    return run_dir


@pytest.fixture(scope="session")
def micro_expanded(micro_profile, micro_base):
    """``micro_base`` plus the extended tokenizer (chapters 01-02)."""
    from eeve_lib.pipeline.vocabulary import expand_vocabulary

    expand_vocabulary(micro_profile, micro_base, progress=False)
    return micro_base


def _micro_run_at(root: Path, lock) -> dict:
    import json

    return {"run_dir": root / "runs" / "tiny", "report": json.loads((root / "report-returned.json").read_text()),
            "index": root / "_build" / "html" / "index.html", "root": root, "lock": lock}


@pytest.fixture(scope="session")
def micro_run_built(tmp_path_factory):
    """Every chapter executed through the runner at MICRO settings, and the book built from it.

    Built once per test session: under pytest-xdist by the first worker that asks, behind a file
    lock, in the session's shared temporary folder. A chapter's inputs include its run folder's
    path, so a test that runs the chapters again in this very folder (``--resume``) uses it, holding
    ``lock``; every other test uses its worker's copy (``micro_run``).
    """
    import json

    from filelock import FileLock

    from eeve_lib.book.build import build_book
    from eeve_lib.pipeline.runner import run_book

    shared = os.environ.get("PYTEST_XDIST_WORKER")
    root = (tmp_path_factory.getbasetemp().parent / "micro-run-shared" if shared
            else tmp_path_factory.mktemp("micro-run"))
    lock = FileLock(str(root) + ".lock")
    with lock:
        if not (root / "report-returned.json").is_file():
            shutil.rmtree(root / "runs", ignore_errors=True)
            report = run_book("tiny", run_dir=root / "runs" / "tiny", overrides=MICRO, progress=False)
            build_book("tiny", run_dir=root / "runs" / "tiny", output=root / "_build")
            (root / "report-returned.json").write_text(json.dumps(report))  # in the order the runner gives
    return _micro_run_at(root, lock)


@pytest.fixture(scope="session")
def micro_run(micro_run_built, tmp_path_factory):
    """This worker's copy of ``micro_run_built`` (under pytest-xdist; the run itself otherwise):
    tests may write into it (JupyterLab copies, records) without touching another worker's."""

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return micro_run_built
    root = tmp_path_factory.mktemp("micro-run")
    with micro_run_built["lock"]:
        shutil.copytree(micro_run_built["root"], root, symlinks=True, dirs_exist_ok=True)
    return _micro_run_at(root, None)


def glued(notebook: Path, name: str):
    """The value an executed chapter glued under ``name`` (myst_nb.glue, via papermill's record)."""
    import json

    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        for out in cell.get("outputs", []):
            if out.get("metadata", {}).get("scrapbook", {}).get("name") == name:
                data = out["data"]
                text = data.get("application/papermill.record/text/plain", data.get("text/plain"))
                return eval(text, {"nan": float("nan")})  # noqa: S307 - the repr of a str or number
    raise KeyError(name)


def assert_padding_never_generated(model, tok, prompt: str, new_tokens: int) -> None:
    """Rows beyond the tokenizer are suppressed in generation, even when made the most likely."""
    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    assert rows > len(tok), "the model should have padding rows"
    assert model.generation_config.suppress_tokens == list(range(len(tok), rows))
    with torch.no_grad():
        model.lm_head.bias[len(tok):] = 1e4
    ids = tok(prompt, return_tensors="pt").input_ids
    torch.manual_seed(0)
    out = model.generate(ids, do_sample=True, max_new_tokens=new_tokens, pad_token_id=tok.eos_token_id)
    assert int(out.max()) < len(tok)


def assert_words_cut_by_hand(tokenizer, lines, limit: int = 3000) -> int:
    """Chapter 00's hand rule (``family.tokenize_word``) gives what ``tokenizer`` returns, for each
    distinct word of letters in ``lines`` (up to ``limit``); returns how many words were checked."""
    import unicodedata

    from eeve_lib.method.families import family_of, merge_pairs, tokenizer_json

    family = family_of(tokenizer)
    vocab = tokenizer.get_vocab()
    ranks = {pair: rank for rank, pair in enumerate(merge_pairs(tokenizer_json(tokenizer)["model"]))}
    words = list(dict.fromkeys(w for line in lines for w in line.split()
                               if w.isalpha() and unicodedata.is_normalized("NFC", w)))[:limit]
    for word in words:
        assert family.tokenize_word(word, ranks, vocab) == tokenizer.tokenize(word), word
    return len(words)


def dry_cut_down(last_stage: int) -> dict:
    """full-dry's and solar-dry's shapes with three one-step stages (1, 4, ``last_stage``) on short windows."""
    return {
        "data.max_korean_documents": 12000,
        "training.schedule": [{"stage": 1, "steps": 1, "learning_rate": 1e-4},
                              {"stage": 4, "steps": 1, "learning_rate": 5e-5},
                              {"stage": last_stage, "steps": 1, "learning_rate": 2e-5}],
        "training.seq_len": 32,
        "training.batch_size": 1,
        "evaluation.max_korean_chars": 300,
        "evaluation.max_english_chars": 300,
    }


# The method's chapters; the Results, full-scale and Performance pages read recorded results and
# run in micro_run (tiny) and in make book.
METHOD_CHAPTERS = ["00", "01", "02", "03", "04", "05"]


def run_every_chapter(profile_name: str, run_dir: Path, overrides: dict) -> dict:
    """Chapters 00-05 at ``profile_name`` through the runner, as ``eeve run`` runs them, with their
    assertions on; returns the run's report (every chapter completed)."""
    from eeve_lib.pipeline.runner import run_book

    report = run_book(profile_name, METHOD_CHAPTERS, run_dir=run_dir, overrides=overrides, progress=False)
    failed = {name: r["status"] for name, r in report["chapters"].items() if r["status"] != "completed"}
    assert not failed, failed
    return report


def assert_every_chapter_printed(run: Path) -> None:
    """What the executed chapters of ``run`` printed from their own checks: chapter 04's count of
    the base's rows and its frozen-block check, chapter 05's arms."""
    import json

    base_size = json.loads((run / "model" / "eeve_stage.json").read_text())["extension"]["base_size"]

    def printed(chapter: str) -> str:
        executed = json.loads((run / "executed" / f"{chapter}.ipynb").read_text())
        return "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))

    assert f"number_of_old_tokens = {base_size:,}" in printed("04_seven_stages")
    assert "every block that no stage so far has trained is bit-identical to the base model's: True" in \
        printed("04_seven_stages")
    assert "claims checked: " in printed("05_evaluation")


@contextlib.contextmanager
def removed_afterwards(built: dict):
    """Yield ``built``, a module fixture's run (``built["run"]``); then delete the folder that holds
    it. A stand-in of the larger profiles and its run take gigabytes, and pytest would keep every
    module's to the end of the session: the suite needs one module's worth of disk per worker."""
    try:
        yield built
    finally:
        shutil.rmtree(built["run"].parent, ignore_errors=True)


def dry_run(tmp_path_factory, profile_name: str, overrides: dict) -> dict:
    """A one-layer stand-in of ``profile_name`` (full-dry or solar-dry) run end to end through the
    library: base, vocabulary expansion, the schedule in ``overrides``."""
    from eeve_lib.pipeline.base import ensure_base_model
    from eeve_lib.pipeline.full_dry import prepare_full_dry_base
    from eeve_lib.pipeline.profiles import load_profile
    from eeve_lib.pipeline.training import run_schedule
    from eeve_lib.pipeline.vocabulary import expand_vocabulary

    root = tmp_path_factory.mktemp(profile_name)
    standin = prepare_full_dry_base(root / "standin", layers=1, profile=profile_name)
    profile = load_profile(profile_name, {**overrides, "base_model.local_path": str(standin)})
    run = root / "run"
    ensure_base_model(profile, run, progress=False)
    expansion = expand_vocabulary(profile, run, progress=False)
    result = run_schedule(profile, run, progress=False)
    return {"profile": profile, "run": run, "expansion": expansion, "result": result}


# The chapters on a stand-in cut down further than dry_cut_down: one narrow layer (64 wide), a
# 4,000-token base tokenizer and small corpora, so that every chapter runs in seconds; the
# stand-in keeps its profile's architecture, tokenizer family, padding and 16-bit weights.
NARROW_STANDIN: dict = {
    "data.max_korean_documents": 2000,
    "data.max_english_documents": 2000,
    "base_model.tokenizer_vocab_size": 4000,
    "base_model.architecture.num_hidden_layers": 1,
    "base_model.architecture.hidden_size": 64,
    "base_model.architecture.intermediate_size": 128,
    "base_model.architecture.num_attention_heads": 4,
    "vocabulary.intermediate_vocab_size": 3000,
    "vocabulary.min_frequency": 4,
}


def dry_chapters(tmp_path_factory, profile_name: str, overrides: dict) -> dict:
    """Chapters 00-05 at ``profile_name`` (full-dry or solar-dry) on a narrow stand-in
    (``NARROW_STANDIN``, prepared as ``eeve prepare-full-dry`` prepares one), with their assertions on."""
    from eeve_lib.pipeline.full_dry import prepare_full_dry_base

    root = tmp_path_factory.mktemp(f"{profile_name}-chapters")
    overrides = {**overrides, **NARROW_STANDIN}
    standin = prepare_full_dry_base(root / "standin", profile=profile_name, overrides=overrides)
    overrides["base_model.local_path"] = str(standin)
    run = root / "run"
    return {"run": run, "report": run_every_chapter(profile_name, run, overrides), "overrides": overrides}


def assert_stages_keep_frozen_blocks(run: Path, schedule, base_size: int, rows: int) -> set[str]:
    """Every saved stage of ``run`` has ``rows`` embedding rows and no output bias, and keeps bit
    identical to the base: the base's rows of an embedding it has not trained yet, and the body
    until trained. Compared in float32, which holds bfloat16 exactly. Returns what was trained."""
    import json

    import torch
    from safetensors.torch import load_file

    from eeve_lib.method.stages import trained_so_far

    base = load_file(run / "base" / "model.safetensors")
    # A tied base (SmolLM2) saves one matrix: its output rows are its input rows.
    base_output = base.get("lm_head.weight", base["model.embed_tokens.weight"])
    body = [k for k in base if "embed_tokens" not in k and "lm_head" not in k]
    trained: set[str] = set()
    for stage, trained in trained_so_far(schedule):
        folder = run / "stages" / f"stage{stage.number}"
        s = load_file(folder / "model.safetensors")
        assert json.loads((folder / "config.json").read_text())["vocab_size"] == rows \
            == s["lm_head.weight"].shape[0] == s["model.embed_tokens.weight"].shape[0]
        assert "lm_head.bias" not in s
        if "input" not in trained:
            assert torch.equal(s["model.embed_tokens.weight"][:base_size].float(),
                               base["model.embed_tokens.weight"].float()), stage.number
        if "output" not in trained:
            assert torch.equal(s["lm_head.weight"][:base_size].float(), base_output.float()), stage.number
        if "body" not in trained:
            assert all(torch.equal(s[k].float(), base[k].float()) for k in body), stage.number
    return trained


def assert_offline_run_stops_at_chapter_00(profile_name: str, tmp_path: Path, monkeypatch) -> None:
    """Offline with an empty hub cache, the runner stops in chapter 00 and leaves no base behind."""
    from eeve_lib.pipeline.runner import ChapterFailed, run_book

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ChapterFailed) as e:
        run_book(profile_name, run_dir=tmp_path / "run", progress=False)
    assert "00_base_model" in str(e.value) and "OfflineError" in str(e.value)
    assert not (tmp_path / "run" / "base").exists()


@pytest.fixture
def fake_book(tmp_path, monkeypatch):
    """Point the runner at a folder of fake chapters (in this process)."""
    from eeve_lib.pipeline import runner

    book = tmp_path / "book"
    monkeypatch.setattr(runner, "BOOK_DIR", book)
    monkeypatch.setattr(runner, "chapters_in_order", lambda: sorted(p.stem for p in book.glob("*.ipynb")))
    return book


# Under pytest-xdist (--dist loadfile) files go to the workers in collection order. One file that
# needs the micro run comes first, so that its worker builds it at once; then the long files that
# do not need it, which keep the other worker busy meanwhile instead of waiting for the build.
FIRST_FILES = ["test_browser.py", "test_smol.py", "test_full_dry.py", "test_solar_dry.py",
               "test_sentencepiece_family.py", "test_benchmarks_smoke.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: k for k, name in enumerate(FIRST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST_FILES)))  # stable: the rest keep their order
