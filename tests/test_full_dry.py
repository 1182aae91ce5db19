"""The full-scale path without the hub: a cut-down full-dry run, and full failing fast offline."""

import time

import pytest
import torch

from eeve_lib.pipeline import hub
from eeve_lib.pipeline.corpora import load_corpus
from eeve_lib.errors import OfflineError
from eeve_lib.pipeline.profiles import load_profile
from tests.conftest import (
    assert_every_chapter_printed,
    assert_offline_run_stops_at_chapter_00,
    assert_padding_never_generated,
    dry_chapters,
    dry_cut_down,
    dry_run,
    removed_afterwards,
)

CUT_DOWN = dry_cut_down(last_stage=6)


@pytest.fixture(scope="module")
def full_dry(tmp_path_factory):
    """full-dry with one layer and three one-step stages, end to end through the library."""
    with removed_afterwards(dry_run(tmp_path_factory, "full-dry",
                                    {**CUT_DOWN, "base_model.architecture.num_hidden_layers": 1})) as run:
        yield run


@pytest.fixture(scope="module")
def full_dry_chapters(tmp_path_factory):
    """Chapters 00-05 at full-dry on a narrow one-layer stand-in, with their assertions on."""
    return dry_chapters(tmp_path_factory, "full-dry", CUT_DOWN)


def test_every_chapter_runs_on_a_narrow_standin(full_dry_chapters):
    assert_every_chapter_printed(full_dry_chapters["run"])


def test_the_standin_has_phi2s_shape(full_dry):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(full_dry["run"] / "base")
    tok = AutoTokenizer.from_pretrained(full_dry["run"] / "base")
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (2560, 32, 10240)
    assert len(tok) == 50295 and config.vocab_size == 51200 and not config.tie_word_embeddings


def test_new_ids_run_through_the_padding_rows_and_beyond(full_dry):
    ext = full_dry["result"].extension
    assert ext.base_size == 50295 and ext.base_rows == 51200
    assert ext.target_size > ext.base_rows, "the new ids must go through the padding rows and beyond"
    assert ext.rows % 64 == 0 and ext.rows - ext.target_size < 64


def test_every_new_row_holds_its_own_initialisation(full_dry):
    from eeve_lib.pipeline.base import load_base
    from eeve_lib.pipeline.training import initialise_extended_model

    profile, run = full_dry["profile"], full_dry["run"]
    base, base_tok = load_base(profile, run)
    model, tok, _, ext = initialise_extended_model(profile, run)
    old_in, old_out = base.get_input_embeddings().weight, base.lm_head.weight
    new_in, new_out = model.get_input_embeddings().weight, model.lm_head.weight
    assert model.config.vocab_size == new_in.shape[0] == new_out.shape[0] == ext.rows
    for i, pieces in zip(ext.new_ids, ext.pieces):
        assert torch.equal(new_in[i], old_in[pieces].float().mean(0))
        assert torch.equal(new_out[i], old_out[pieces[0]])
        if i < ext.base_rows:  # a former padding row: its leftover values must be gone
            assert not torch.equal(new_in[i], old_in[i])


def test_stages_saved_in_bfloat16_keep_frozen_rows_exact(full_dry):
    from safetensors.torch import load_file

    run = full_dry["run"]
    base = load_file(run / "base" / "model.safetensors")
    n = full_dry["result"].extension.base_size
    for stage in (1, 4):
        s = load_file(run / "stages" / f"stage{stage}" / "model.safetensors")
        assert s["model.embed_tokens.weight"].dtype == torch.bfloat16
        assert torch.equal(s["model.embed_tokens.weight"][:n], base["model.embed_tokens.weight"][:n])
        assert all(torch.equal(s[k], base[k]) for k in base if "embed_tokens" not in k and "lm_head" not in k)


def test_the_base_copy_keeps_the_standins_16_bit_weights(full_dry):
    """Loaded in float32 to train, saved back in the checkpoint's bfloat16: bit for bit the stand-in."""
    from safetensors.torch import load_file

    standin = load_file(full_dry["run"].parent / "standin" / "model.safetensors")
    base = load_file(full_dry["run"] / "base" / "model.safetensors")
    assert base.keys() == standin.keys()
    assert all(base[k].dtype == torch.bfloat16 and torch.equal(base[k], standin[k]) for k in standin)


def test_the_final_model_is_the_last_stages_weights_on_disk_once(full_dry):
    import json
    import os

    from eeve_lib.pipeline.evaluation import load_model

    run = full_dry["run"]
    assert os.path.samefile(run / "model" / "model.safetensors", run / "stages" / "stage6" / "model.safetensors")
    record = json.loads((run / "model" / "eeve_stage.json").read_text())
    assert record["stages"] == [1, 4, 6] and "stage" not in record, "the model's own marker, not the stage's"
    model, tok = load_model(run / "model")
    assert model.config.vocab_size == full_dry["result"].extension.rows and len(tok) > 50295


def test_rows_beyond_the_tokenizer_are_never_generated(full_dry):
    from eeve_lib.pipeline.evaluation import load_model

    model, tok = load_model(full_dry["run"] / "model")
    assert_padding_never_generated(model, tok, "이 영화 정말", 12)


def test_full_offline_fails_fast_naming_the_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hub.hub_reachable.cache_clear()
    started = time.time()
    with pytest.raises(OfflineError) as e:
        load_corpus(load_profile("full"), "korean")
    assert time.time() - started < 10
    assert "hf download wikimedia/wikipedia --repo-type dataset --revision b04c8d1" in str(e.value)
    hub.hub_reachable.cache_clear()


def test_full_offline_through_the_runner_stops_at_chapter_00(tmp_path, monkeypatch):
    assert_offline_run_stops_at_chapter_00("full", tmp_path, monkeypatch)
