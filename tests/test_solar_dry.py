"""SOLAR-10.7B's path without the hub: a cut-down solar-dry run, and full-solar failing fast offline."""

import time
import unicodedata

import pytest
import torch

from eeve_lib.errors import OfflineError
from eeve_lib.pipeline import hub
from eeve_lib.pipeline.profiles import load_profile
from tests.conftest import (
    glued,
    assert_every_chapter_printed,
    assert_offline_run_stops_at_chapter_00,
    assert_stages_keep_frozen_blocks,
    dry_chapters,
    dry_cut_down,
    removed_afterwards,
    dry_run,
)

# stage 7 rather than full-dry's 6: the body trains, the embeddings stay, and AdamW over SOLAR's
# 4096-wide embeddings and its 14336-wide MLP together would not leave room for the rest of the suite
CUT_DOWN = dry_cut_down(last_stage=7)


@pytest.fixture(scope="module")
def solar_dry(tmp_path_factory):
    """solar-dry with one layer and three one-step stages, end to end through the library."""
    with removed_afterwards(dry_run(tmp_path_factory, "solar-dry", CUT_DOWN)) as run:
        yield run


# A learning rate far too high, so that training raises the Korean loss of the random stand-in:
# the case where `make solar-dry` once failed in chapter 04.
RISING = {"training.schedule": [{"stage": s, "steps": 2, "learning_rate": 0.5} for s in (1, 4, 7)]}


@pytest.fixture(scope="module")
def solar_dry_chapters(tmp_path_factory):
    """Chapters 00-05 at solar-dry on a narrow one-layer stand-in, with their assertions on."""
    return dry_chapters(tmp_path_factory, "solar-dry",
                        {**CUT_DOWN, **RISING, "base_model.architecture.num_key_value_heads": 2})


def test_every_chapter_runs_on_a_narrow_standin(solar_dry_chapters):
    assert_every_chapter_printed(solar_dry_chapters["run"])


def test_a_random_stand_in_whose_korean_loss_rises_runs_every_chapter(solar_dry_chapters):
    """Chapter 04 says the loss rose and why (random weights) instead of asserting it fell."""
    chapter_04 = solar_dry_chapters["run"] / "executed" / "04_seven_stages.ipynb"
    assert glued(chapter_04, "ko_direction") == "rose"
    assert "random weights" in glued(chapter_04, "ko_check")


def test_the_standin_has_solars_shape(solar_dry):
    from transformers import AutoConfig, AutoTokenizer

    from eeve_lib.method.families import family_of

    config = AutoConfig.from_pretrained(solar_dry["run"] / "base")
    tok = AutoTokenizer.from_pretrained(solar_dry["run"] / "base")
    assert config.model_type == "llama" and not config.tie_word_embeddings
    assert (config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.intermediate_size) == \
        (4096, 32, 8, 14336)
    assert len(tok) == 32000 == config.vocab_size, "SOLAR-10.7B's 32,000 rows are not padded"
    assert family_of(tok).name == "SentencePiece BPE"
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 258]) == ["<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]


def test_new_ids_start_after_the_last_row_and_the_matrices_grow(solar_dry):
    ext = solar_dry["result"].extension
    assert ext.base_size == ext.base_rows == 32000
    assert ext.target_size > ext.base_rows and ext.rows % 64 == 0 and ext.rows - ext.target_size < 64


def test_every_new_row_holds_its_own_initialisation(solar_dry):
    from eeve_lib.pipeline.base import load_base
    from eeve_lib.pipeline.training import initialise_extended_model

    profile, run = solar_dry["profile"], solar_dry["run"]
    base, _ = load_base(profile, run)
    model, _, _, ext = initialise_extended_model(profile, run)
    old_in, old_out = base.get_input_embeddings().weight, base.lm_head.weight
    new_in, new_out = model.get_input_embeddings().weight, model.lm_head.weight
    assert model.lm_head.bias is None
    assert model.config.vocab_size == new_in.shape[0] == new_out.shape[0] == ext.rows
    assert torch.equal(new_in[:ext.base_size], old_in) and torch.equal(new_out[:ext.base_size], old_out)
    for i, pieces in zip(ext.new_ids, ext.pieces):
        assert torch.equal(new_out[i], old_out[pieces[0]])
        assert torch.equal(new_in[i], old_in[pieces].float().mean(0))


def test_stages_saved_in_bfloat16_keep_frozen_blocks_exact(solar_dry):
    from safetensors.torch import load_file

    run, profile, ext = solar_dry["run"], solar_dry["profile"], solar_dry["result"].extension
    for b in profile.training.schedule:
        saved = load_file(run / "stages" / f"stage{b.stage}" / "model.safetensors")
        assert saved["model.embed_tokens.weight"].dtype == torch.bfloat16, b.stage
    trained = assert_stages_keep_frozen_blocks(run, profile.training.schedule, ext.base_size, ext.rows)
    assert trained == {"output", "body"}


def test_the_extended_tokenizer_keeps_its_guarantees(solar_dry):
    from eeve_lib.method.candidates import contains_hangul
    from eeve_lib.method.frequency_loop import fertility
    from eeve_lib.method.target_tokenizer import unreachable_in_isolation
    from eeve_lib.pipeline.base import load_base_tokenizer
    from eeve_lib.pipeline.corpora import load_corpus
    from eeve_lib.pipeline.vocabulary import load_target_tokenizer

    profile, run = solar_dry["profile"], solar_dry["run"]
    base, target = load_base_tokenizer(profile, run), load_target_tokenizer(profile, run)
    korean = load_corpus(profile, "korean").validation
    english = load_corpus(profile, "english").validation[:3000]
    assert not unreachable_in_isolation(solar_dry["expansion"].target)
    assert fertility(target, korean) <= 0.6 * fertility(base, korean)
    assert all(target.decode(target(t, add_special_tokens=False).input_ids) == unicodedata.normalize("NFC", t)
               for t in korean + english)
    assert all(target(t).input_ids == base(t).input_ids for t in english if not contains_hangul(t))


def test_full_solar_offline_fails_fast_naming_the_download(tmp_path, monkeypatch):
    from eeve_lib.pipeline.base import ensure_base_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hub.hub_reachable.cache_clear()
    started = time.time()
    with pytest.raises(OfflineError) as e:
        ensure_base_model(load_profile("full-solar"), tmp_path / "run", progress=False)
    assert time.time() - started < 10
    assert "hf download upstage/SOLAR-10.7B-v1.0 --revision" in str(e.value)
    assert not (tmp_path / "run" / "base").exists()
    hub.hub_reachable.cache_clear()


def test_full_solar_offline_through_the_runner_stops_at_chapter_00(tmp_path, monkeypatch):
    assert_offline_run_stops_at_chapter_00("full-solar", tmp_path, monkeypatch)
