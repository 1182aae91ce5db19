"""Cache keys come from one table (pipeline/steps.py): each computed once per process, each corpus
read once, and a warm resume that changes nothing recomputes nothing."""

from __future__ import annotations

import collections

import pytest

from conftest import MICRO
from eeve_lib.pipeline import cache, corpora, steps
from eeve_lib.pipeline.paths import run_paths
from eeve_lib.pipeline.profiles import load_profile


@pytest.fixture
def counted(monkeypatch):
    """Fresh memories, and every key hashed and every corpus file checksummed, counted."""
    monkeypatch.setattr(steps, "_REMEMBERED", {})
    monkeypatch.setattr(steps, "COMPUTED", {})
    monkeypatch.setattr(corpora, "_MEMO", {})
    monkeypatch.setattr(corpora, "CORPUS_READS", {})
    hashed, checksummed = collections.Counter(), collections.Counter()
    step_key, entry_checksum = cache.step_key, corpora.entry_checksum

    def counting_step_key(step, **kwargs):
        key = step_key(step, **kwargs)
        hashed[key] += 1
        return key

    def counting_checksum(entry):
        checksummed[entry.name] += 1
        return entry_checksum(entry)

    monkeypatch.setattr(cache, "step_key", counting_step_key)
    monkeypatch.setattr(corpora, "entry_checksum", counting_checksum)
    return {"hashed": hashed, "checksummed": checksummed}


def test_every_step_names_real_modules_and_known_upstream_steps():
    for name, step in steps.STEPS.items():
        assert steps.code_modules(name), name
        assert set(step.upstream) <= set(steps.STEPS) - {name}


def test_a_warm_schedule_computes_each_key_once_and_reads_each_corpus_once(micro_run, counted):
    from eeve_lib.pipeline.evaluation import score_model
    from eeve_lib.pipeline.training import run_schedule

    profile, run_dir = load_profile("tiny", MICRO), micro_run["run_dir"]
    result = run_schedule(profile, run_dir, progress=False)
    score_model(profile, "final", run_paths(profile, run_dir).model, run_dir)
    assert len(result.logs) == len(profile.training.schedule)
    assert counted["hashed"] and set(counted["hashed"].values()) == {1}, counted["hashed"]
    assert steps.COMPUTED["stages"] == len(profile.training.schedule)
    assert steps.COMPUTED["vocabulary"] == steps.COMPUTED["candidates"] == 1
    assert all(n <= 1 for n in corpora.CORPUS_READS.values()), corpora.CORPUS_READS
    assert all(n <= 1 for n in counted["checksummed"].values()), counted["checksummed"]


def test_a_warm_resume_that_changes_nothing_recomputes_nothing(micro_run_built, counted, capsys):
    from eeve_lib.pipeline.runner import run_book

    with micro_run_built["lock"]:  # the folder the chapters ran in, which other workers' tests share
        run_book("tiny", run_dir=micro_run_built["run_dir"], overrides=MICRO, resume=True, progress=True)
    out = capsys.readouterr().out
    assert out.count("unchanged, skipped") == len(micro_run_built["report"]["chapters"]), out
    assert not counted["hashed"] and not steps.COMPUTED
    assert all(n <= 1 for n in counted["checksummed"].values()), counted["checksummed"]


def test_a_changed_corpus_file_is_read_again(tmp_path, monkeypatch, counted):
    """The memory of a corpus holds only while its files are the ones it was read from."""
    import os

    profile = load_profile("tiny")
    first = corpora.load_corpus(profile, "english")
    assert corpora.load_corpus(profile, "english") is first
    _, files = corpora.entry_files(corpora._language_entries(profile, "english")[0])
    st = files[0].stat()
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    try:
        assert corpora.load_corpus(profile, "english") is not first
    finally:
        os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert corpora.CORPUS_READS["english"] == 2
