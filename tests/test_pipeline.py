"""The whole book at MICRO settings through the runner: layout, results, report, build, bad input."""

import json
import os

import pytest

from eeve_lib.method.stages import STAGES
import torch
from safetensors.torch import load_file

from eeve_lib.errors import EeveError
from eeve_lib.pipeline.runner import ChapterFailed, chapters_in_order, run_book
from tests.conftest import MICRO


def test_run_layout_is_stable(micro_run):
    run = micro_run["run_dir"]
    for path in ["base", "tokenizer", "model", "eval/metrics.json", "report.json"] + \
            [f"stages/stage{n}" for n in STAGES]:
        assert (run / path).exists(), path
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for folder in [run / "model"] + [run / "stages" / f"stage{n}" for n in STAGES]:
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False)
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        assert model.config.vocab_size == model.get_input_embeddings().weight.shape[0] >= len(tok)


def test_stages_preserve_the_base_models_parameters(micro_run):
    run = micro_run["run_dir"]
    base = load_file(run / "base" / "model.safetensors")
    n = json.loads((run / "tokenizer" / "expansion.json").read_text())["base_size"]
    for stage in STAGES:
        s = load_file(run / "stages" / f"stage{stage}" / "model.safetensors")
        body_equal = all(torch.equal(base[k], s[k]) for k in base if "embed_tokens" not in k and "lm_head" not in k)
        input_equal = torch.equal(base["model.embed_tokens.weight"][:n], s["model.embed_tokens.weight"][:n])
        output_equal = torch.equal(base["lm_head.weight"][:n], s["lm_head.weight"][:n]) and \
            torch.equal(base["lm_head.bias"][:n], s["lm_head.bias"][:n])
        if stage <= 5:
            assert body_equal and input_equal, stage
        if stage <= 3:
            assert output_equal, stage
        if stage >= 6:
            assert not body_equal, stage


def test_metrics_hold_every_model_and_korean_improves(micro_run):
    metrics = json.loads((micro_run["run_dir"] / "eval" / "metrics.json").read_text())
    models = metrics["models"]
    arms = ["schedule-full_finetune", "schedule-embeddings_only", "init-mean_resizing", "init-random",
            "stage6-lora", "baseline-no_expansion", "baseline-equal_text", "replay-0", "replay-0.25"]
    seeds = [1234 + k for k in range(MICRO["ablations.seeds"])]
    expected = {"base", "extended", "final"} | {f"stage{n}" for n in STAGES} | {
        f"ablation:{arm}" for arm in arms} | {f"ablation:{arm}@seed{s}" for arm in arms + ["seven_stages"]
                                              for s in seeds[1:]}
    # the learning-rate grid, trained at the profile's seed only, to choose rates on the tuning split
    from eeve_lib.pipeline.profiles import load_profile

    scales, own = MICRO["ablations.learning_rate_scales"], load_profile("tiny").ablations.baseline_lr_scale
    grid = [f"lr-{x:g}" for x in scales] + [f"baseline_lr-{x:g}" for x in sorted({1.0, *scales} - {own})]
    expected |= {f"ablation:{arm}" for arm in grid}
    assert expected <= set(models)
    # every arm at every seed, summarised with its spread and its training cost
    assert set(metrics["arms"]) == {"seven_stages"} | {a.replace("-", ":", 1) for a in arms + grid}
    for arm, a in metrics["arms"].items():
        trained_at = seeds[:1] if arm.replace(":", "-", 1) in grid else seeds
        assert a["seeds"] == trained_at, arm
        assert "tuning" in a, arm  # every arm is also scored on the tuning split
        k = a["korean_bits_per_character"]
        assert k["min"] <= k["mean"] <= k["max"] and len(k["values"]) == len(trained_at), arm
    # equal compute: every arm but the equal-text baseline has the same steps and tokens
    steps = {arm: a["training"]["steps"]["mean"] for arm, a in metrics["arms"].items()}
    equal_text = steps.pop("baseline:equal_text")
    assert len(set(steps.values())) == 1, steps
    # equal text: the Korean windows' steps grow by the tokens the base tokenizer spends more on
    # Korean, the English windows' stay as they are, and English keeps its number of windows
    from eeve_lib.pipeline.training import korean_token_ratio

    profile = load_profile("tiny", MICRO)
    ratio, replay = korean_token_ratio(profile, micro_run["run_dir"]), profile.training.english_replay
    exact = steps["seven_stages"] * ((1 - replay) * ratio + replay)
    # each stage of the baseline's schedule rounds its own steps
    assert ratio > 2 and abs(equal_text - exact) <= 0.5 * len(profile.training.schedule), (ratio, equal_text)
    # as many English windows as the seven stages draw, within four binomial deviations
    share = metrics["arms"]["baseline:equal_text"]["training"]["english_share_seen"]["mean"]
    windows = equal_text * profile.training.batch_size
    english_windows = replay * steps["seven_stages"] * profile.training.batch_size
    deviation = (english_windows * (1 - english_windows / windows)) ** 0.5
    assert abs(share * windows - english_windows) < 4 * deviation, (share, windows, english_windows)
    for name, m in models.items():
        for language in ("korean", "english"):
            assert m[language]["bits_per_character"] > 0 and m[language]["tokens_per_character"] > 0, name
    assert models["final"]["korean"]["bits_per_character"] < models["base"]["korean"]["bits_per_character"]
    assert models["final"]["korean"]["tokens_per_character"] < models["base"]["korean"]["tokens_per_character"]


def test_report_and_executed_notebooks(micro_run):
    run, report = micro_run["run_dir"], micro_run["report"]
    assert list(report["chapters"]) == chapters_in_order()
    for name, record in report["chapters"].items():
        assert record["status"] == "completed" and record["wall_seconds"] > 0 and record["peak_memory_mb"] > 0
        notebook = json.loads((run / record["executed"]).read_text())
        errors = [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (name, errors[:1])
        assert any("parameters" in c["metadata"].get("tags", []) for c in notebook["cells"])
        assert (run / record["log"]).is_file()
    assert report["packages"]["torch"].startswith("2.13") and report["data"] and "commit" in report["git"]


def test_built_book_has_every_chapter_with_figures_and_the_status_page(micro_run):
    html = micro_run["index"].parent
    for chapter in chapters_in_order():
        page = (html / "book" / f"{chapter}.html").read_text()
        assert "How this page was computed" in page, chapter
        if chapter[:2].isdigit():  # the method chapters have figures; the full-scale page has tables
            assert "<img" in page, chapter
    status = (html / "book" / "status.html").read_text()
    assert "Reproducibility status" in status and all(c in status for c in chapters_in_order())


def test_resume_reruns_nothing(micro_run_built):
    with micro_run_built["lock"]:  # the folder the chapters ran in, which other workers' tests share
        report = run_book("tiny", run_dir=micro_run_built["run_dir"], overrides=MICRO, resume=True, progress=False)
    assert all(r["status"] == "completed" for r in report["chapters"].values())
    finished = {c: r["finished_at"] for c, r in micro_run_built["report"]["chapters"].items()}
    assert {c: r["finished_at"] for c, r in report["chapters"].items()} == finished


def test_unknown_chapter_and_missing_earlier_chapters(tmp_path):
    with pytest.raises(EeveError, match="Unknown chapter '09'.*00_base_model"):
        run_book("tiny", chapters=["09"], run_dir=tmp_path, overrides=MICRO, progress=False)
    with pytest.raises(EeveError, match="needs the earlier chapters.*00_base_model"):
        run_book("tiny", chapters=["03"], run_dir=tmp_path, overrides=MICRO, progress=False)


def test_a_failing_chapter_names_chapter_cell_and_log_and_keeps_completed_ones(micro_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(micro_run["run_dir"], run)
    shutil.rmtree(run / "model")
    shutil.rmtree(run / "stages")
    bad = {**MICRO, "training.seq_len": 10**6}  # chapter 04 cannot cut a single window
    with pytest.raises(ChapterFailed) as e:
        run_book("tiny", chapters=["04"], run_dir=run, overrides=bad, progress=False)
    message = str(e.value)
    assert "04_seven_stages" in message and "in cell" in message and "TrainingError" in message
    assert "04_seven_stages.log" in message
    report = json.loads((run / "report.json").read_text())
    assert report["chapters"]["04_seven_stages"]["status"] == "failed"
    assert report["chapters"]["03_embedding_init"]["status"] == "completed"
    assert not (run / "stages").exists()


def test_build_warns_about_a_run_from_another_commit(micro_run, tmp_path):
    import shutil

    from eeve_lib.book.build import stage_sources

    run = tmp_path / "run"
    shutil.copytree(micro_run["run_dir"], run, ignore=shutil.ignore_patterns("stages", "ablations", "model"))
    report = json.loads((run / "report.json").read_text())
    report["git"]["commit"] = "0" * 40
    (run / "report.json").write_text(json.dumps(report))
    with pytest.warns(UserWarning, match="produced at commit 000000000000"):
        stage = stage_sources("tiny", run, tmp_path / "src")
    assert "produced at commit 000000000000" in (stage / "book" / "status.md").read_text()


def test_build_without_a_run_says_what_to_do(tmp_path):
    from eeve_lib.book.build import build_book

    with pytest.raises(EeveError, match="eeve run --profile tiny"):
        build_book("tiny", run_dir=tmp_path / "nothing", output=tmp_path / "out")


def test_a_dead_kernel_is_reported_as_such(tmp_path):
    from nbclient.exceptions import DeadKernelError

    from eeve_lib.pipeline.runner import _describe_failure

    message = _describe_failure(DeadKernelError("Kernel died"), "04_seven_stages", tmp_path / "04.log",
                                tmp_path / "04.failed.ipynb")
    assert "kernel died (out of memory" in message and "04.log" in message and "--resume" in message


def test_atomic_outputs_get_the_permissions_of_a_plain_write(tmp_path):
    """tempfile's private 0600/0700 must not leak into runs/ or results/ (shared machines, classes)."""
    import stat

    from eeve_lib.pipeline import atomic

    mask = os.umask(0o022)
    os.umask(mask)
    plain_file, plain_dir = tmp_path / "plain.txt", tmp_path / "plain"
    plain_file.write_text("x")
    plain_dir.mkdir()
    written = atomic.write_json(tmp_path / "metrics.json", {"a": 1})
    with atomic.directory(tmp_path / "model") as folder:
        (folder / "weights").write_bytes(b"w")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(written) == mode(plain_file) == 0o666 & ~mask
    assert mode(tmp_path / "model") == mode(plain_dir) == 0o777 & ~mask
