"""Chapter 03's step: growing the matrices and initialising the new rows."""

import pytest
import torch

from eeve_lib.method.base_model import build_phi_config
from eeve_lib.pipeline.base import load_base
from eeve_lib.method.embedding_init import PADDING_BIAS, extend_model, plan_rows
from eeve_lib.pipeline.training import initialise_extended_model
from eeve_lib.errors import TokenizerError
from eeve_lib.pipeline.profiles import load_profile
from eeve_lib.pipeline.vocabulary import load_target_tokenizer
from tests.conftest import MICRO


@pytest.fixture(scope="module")
def pair(micro_expanded):
    base_model, base_tok = load_base("tiny", micro_expanded)
    return base_model, base_tok, load_target_tokenizer("tiny", micro_expanded)


def fresh_base(micro_expanded, sentinel: float | None = None):
    model, _ = load_base("tiny", micro_expanded)
    if sentinel is not None:
        _, tok = load_base("tiny", micro_expanded)
        with torch.no_grad():  # mark the padding rows so leftover values would show
            model.get_input_embeddings().weight[len(tok):] = sentinel
            model.lm_head.weight[len(tok):] = sentinel
            model.lm_head.bias[len(tok):] = sentinel
    return model


def test_old_rows_bit_identical_and_new_rows_follow_their_formula(micro_expanded, pair):
    base_model, base_tok, target_tok = pair
    model = fresh_base(micro_expanded, sentinel=1234.5)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out, old_bias = model.lm_head.weight.detach().clone(), model.lm_head.bias.detach().clone()
    ext = extend_model(model, base_tok, target_tok, "subword_mean", seed=0, pad_to_multiple_of=64)
    w_in, w_out, bias = model.get_input_embeddings().weight, model.lm_head.weight, model.lm_head.bias
    n = ext.base_size
    assert torch.equal(w_in[:n], old_in[:n]) and torch.equal(w_out[:n], old_out[:n]) and torch.equal(bias[:n], old_bias[:n])
    # base padding rows that still are padding stay bit-identical too
    keep = range(ext.target_size, ext.base_rows)
    assert all(torch.equal(w_in[i], old_in[i]) for i in keep)
    for token_id, pieces in zip(ext.new_ids, ext.pieces):
        assert pieces == base_tok.convert_tokens_to_ids(
            [p.value for p in base_tok.backend_tokenizer.model.tokenize(target_tok.convert_ids_to_tokens(token_id))])
        assert torch.equal(w_in[token_id], old_in[pieces].float().mean(0).to(w_in.dtype))
        assert torch.equal(w_out[token_id], old_out[pieces[0]])
        assert torch.equal(bias[token_id], old_bias[pieces[0]])
        assert not torch.any(w_in[token_id] == 1234.5)  # no padding leftovers in a new token's row


def test_padded_layout_and_config(micro_expanded, pair):
    _, base_tok, target_tok = pair
    model = fresh_base(micro_expanded)
    base_rows = model.get_input_embeddings().weight.shape[0]
    ext = extend_model(model, base_tok, target_tok, pad_to_multiple_of=64)
    assert ext.base_size == len(base_tok) < base_rows, "the micro base must have padding rows for this test"
    assert ext.rows == plan_rows(base_rows, len(target_tok), 64) and ext.rows % 64 == 0 and ext.rows >= len(target_tok)
    assert model.config.vocab_size == ext.rows == model.lm_head.weight.shape[0] == model.get_input_embeddings().weight.shape[0]
    fresh = range(max(base_rows, ext.target_size), ext.rows)
    assert all(float(model.lm_head.bias[i]) == PADDING_BIAS for i in fresh)
    assert model.generation_config.suppress_tokens == list(range(ext.target_size, ext.rows))
    assert not model.config.tie_word_embeddings


def test_no_growth_when_the_padding_has_room():
    assert plan_rows(51200, 50295 + 100, 64) == 51200
    assert plan_rows(51200, 59000, 64) == 59008


@pytest.mark.parametrize("untie", [False, True])
def test_tied_embeddings_stay_tied_unless_untied(micro_expanded, pair, untie):
    from transformers import PhiForCausalLM

    _, base_tok, target_tok = pair
    config = build_phi_config({"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "tie_word_embeddings": True}, len(base_tok) + 8,
                              base_tok.eos_token_id)
    torch.manual_seed(0)
    model = PhiForCausalLM(config)
    model.tie_weights()
    assert model.lm_head.weight is model.get_input_embeddings().weight
    shared = model.lm_head.weight.detach().clone()
    ext = extend_model(model, base_tok, target_tok, untie=untie)
    same = model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert same != untie and ext.tied != untie and ext.untied == untie
    n = len(base_tok)
    assert torch.equal(model.lm_head.weight[:n], shared[:n])  # untied: an exact copy of the base rows


@pytest.mark.parametrize("method", ["mean_resizing", "random"])
def test_alternative_inits_are_seeded_and_leave_the_global_rng_alone(micro_expanded, pair, method):
    _, base_tok, target_tok = pair
    a, b = fresh_base(micro_expanded), fresh_base(micro_expanded)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    ext = extend_model(a, base_tok, target_tok, method, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    torch.rand(100)
    extend_model(b, base_tok, target_tok, method, seed=3)
    new = list(ext.new_ids)
    assert torch.equal(a.get_input_embeddings().weight[new], b.get_input_embeddings().weight[new])
    assert torch.isfinite(a.get_input_embeddings().weight[new]).all()


def test_mismatched_tokenizer_and_model(micro_expanded, pair):
    _, base_tok, target_tok = pair
    with pytest.raises(TokenizerError, match="does not extend this base tokenizer"):
        extend_model(fresh_base(micro_expanded), target_tok, base_tok)
    from transformers import PhiForCausalLM

    small = PhiForCausalLM(build_phi_config({"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                             "num_attention_heads": 2}, 100, 0))
    with pytest.raises(TokenizerError, match="do not belong together"):
        extend_model(small, base_tok, target_tok)


def test_initialise_extended_model_uses_the_profile(micro_expanded):
    profile = load_profile("tiny", MICRO)
    model, tok, base_tok, ext = initialise_extended_model(profile, micro_expanded)
    assert ext.method == "subword_mean" and len(tok) == ext.target_size and model.config.vocab_size == ext.rows
