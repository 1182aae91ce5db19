"""The verdicts of the Results page and chapter 05 (supports, refutes, leaves open) on generated runs,
and tying: untying copies exactly, a tied model stays tied through a stage and trains the union
of the stage's rows."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eeve_lib.book.results import OPEN, REFUTES, SUPPORTS, claims_sentence, paper_claims
from eeve_lib.method.evaluation import mean_and_spread


def run(seven, baseline, finetune=(5.0,), base_ko=6.0, english=(2.05,), base_en=2.0, tpc=(0.5, 2.0),
        matching=None):
    """A metrics.json of the shape evaluate_run writes, with the given per-seed values."""
    def arm(ko, en=None, match=None):
        row = {"korean_bits_per_character": mean_and_spread(list(ko)),
               "english_bits_per_character": mean_and_spread(list(en or [base_en] * len(ko)))}
        if match is not None:
            row["matching_accuracy"] = mean_and_spread(list(match))
        return row

    models = {"base": {"korean": {"bits_per_character": base_ko, "tokens_per_character": tpc[1]},
                       "english": {"bits_per_character": base_en}},
              "final": {"korean": {"bits_per_character": seven[0], "tokens_per_character": tpc[0]},
                        "english": {"bits_per_character": english[0]}}}
    arms = {"seven_stages": arm(seven, english, matching and matching[0]),
            "baseline:no_expansion": arm(baseline, None, matching and matching[1]),
            "schedule:full_finetune": arm(finetune)}
    if matching is not None:
        models["base"]["matching"] = {"accuracy": 0.4, "stderr": matching[2], "n": 100, "chance": 0.25}
    return {"models": models, "arms": arms}


def verdicts(metrics):
    return {c["claim"].split(" (")[0].split(",")[0]: c["verdict"] for c in paper_claims(metrics)}


def test_beyond_the_spread_supports_and_within_it_leaves_open():
    v = verdicts(run(seven=(4.0, 4.1), baseline=(5.0, 5.2)))
    assert v["Korean better than training without new tokens"] == SUPPORTS
    assert v["Korean modelled better than by the base"] == SUPPORTS
    assert v["fewer tokens per Korean character"] == SUPPORTS
    v = verdicts(run(seven=(4.0, 5.1), baseline=(5.0, 5.2)))
    assert v["Korean better than training without new tokens"] == OPEN
    v = verdicts(run(seven=(5.5, 5.6), baseline=(5.0, 5.2)))
    assert v["Korean better than training without new tokens"] == REFUTES


def test_one_seed_is_never_claimed_from():
    v = verdicts(run(seven=(4.0,), baseline=(9.0,), english=(2.0,)))
    assert v["Korean better than training without new tokens"] == OPEN
    assert v["the seven stages beat one stage of full fine-tuning"] == OPEN


def test_english_is_kept_only_when_every_seed_is_within_the_target():
    assert verdicts(run((4, 4), (5, 5), english=(2.08, 2.09)))["English kept"] == SUPPORTS
    assert verdicts(run((4, 4), (5, 5), english=(2.08, 2.2)))["English kept"] == OPEN
    assert verdicts(run((4, 4), (5, 5), english=(2.2, 2.3)))["English kept"] == REFUTES


def test_an_accuracy_gap_within_twice_the_standard_error_is_left_open():
    close = run((4, 4), (5, 5), matching=((0.50, 0.52), (0.44, 0.45), 0.05))
    assert verdicts(close)["knowledge carried from English: Korean-English matching above the no-expansion " \
                           "baseline"] == OPEN
    far = run((4, 4), (5, 5), matching=((0.70, 0.72), (0.44, 0.45), 0.05))
    assert verdicts(far)["knowledge carried from English: Korean-English matching above the no-expansion "
                         "baseline"] == SUPPORTS


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1, 10), min_size=1, max_size=4), st.lists(st.floats(1, 10), min_size=1, max_size=4))
def test_swapping_the_arms_swaps_supports_and_refutes(a, b):
    forward = verdicts(run(tuple(a), tuple(b)))["Korean better than training without new tokens"]
    backward = verdicts(run(tuple(b), tuple(a)))["Korean better than training without new tokens"]
    assert {forward, backward} in ({SUPPORTS, REFUTES}, {OPEN})


def test_the_sentence_names_every_claim_once():
    claims = paper_claims(run((4, 4.1), (5, 5.1)))
    sentence = claims_sentence(claims)
    assert sentence.startswith("supports") and f"of the {len(claims)} claims" in sentence
    assert all(sentence.count(c["claim"]) == 1 for c in claims)


# --- tying ---------------------------------------------------------------------------------------


@pytest.fixture
def tied_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    return model


def test_untying_copies_exactly_and_computes_the_same(tied_llama):
    from eeve_lib.method.embedding_init import is_tied, untie_embeddings

    ids = torch.randint(0, 40, (2, 7))
    before = tied_llama(input_ids=ids).logits
    assert untie_embeddings(tied_llama) and not is_tied(tied_llama)
    assert torch.equal(tied_llama.lm_head.weight, tied_llama.model.embed_tokens.weight)
    assert not tied_llama.config.tie_word_embeddings
    assert torch.equal(tied_llama(input_ids=ids).logits, before)
    assert not untie_embeddings(tied_llama)  # nothing left to untie


@pytest.mark.parametrize("number", range(1, 8))
def test_a_tied_stage_trains_the_union_of_its_rows_and_stays_tied(tied_llama, number):
    from eeve_lib.method.embedding_init import Extension, is_tied
    from eeve_lib.method.row_split import install_stage, merge_stage
    from eeve_lib.method.stages import STAGES, as_tied

    ext = Extension(base_size=30, target_size=36, base_rows=30, rows=40, method="subword_mean", tied=True)
    before = tied_llama.model.embed_tokens.weight.detach().clone()
    trainable = install_stage(tied_llama, STAGES[number], ext)
    optimizer = torch.optim.SGD([p for _, p in trainable], lr=0.1) if trainable else None
    loss = tied_llama(input_ids=torch.randint(0, 36, (2, 9))).logits.square().mean()
    if optimizer:
        loss.backward()
        optimizer.step()
    merge_stage(tied_llama)
    after = tied_llama.model.embed_tokens.weight.detach()
    assert is_tied(tied_llama) and torch.equal(after[36:], before[36:])  # padding never trains
    rows = as_tied(STAGES[number]).input_rows
    assert torch.equal(after[:30], before[:30]) == (rows != "all")
    assert torch.equal(after[30:36], before[30:36]) == (rows == "none")
