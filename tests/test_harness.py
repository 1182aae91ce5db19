"""KoBEST through lm-evaluation-harness (lm-eval 0.4.13) and through the book's own scorer agree.

A KoBEST-format fixture (``tests/fixtures/kobest``: five items per task, written for these tests,
the hub's columns) is scored by the harness's own ``kobest_*`` task configs, pointed at the local
files, and by :mod:`eeve_lib.method.kobest`, on a tiny randomly initialised model of each base
family (phi with a byte-level BPE and padding rows; Llama with a SentencePiece-style BPE that
prepends ``<s>``), saved as the pipeline saves its models. Both must build the same prompts, the
same log-likelihood for every choice of every item, and so the same accuracies. Offline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from eeve_lib.errors import EeveError
from eeve_lib.method.kobest import TASKS, choice_logprobs, score_task, to_examples

pytest.importorskip("lm_eval", reason="lm-eval is installed by make setup (the dev extra)")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kobest"
DATA = {task: FIXTURES / f"{task}.jsonl" for task in TASKS}


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No hub: the environment variables, and the flags that the libraries read from them at import."""
    import datasets.config
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
        yield


def records(task: str) -> list[dict]:
    return [json.loads(line) for line in DATA[task].read_text(encoding="utf-8").splitlines() if line.strip()]


def fixture_texts() -> list[str]:
    return [v for task in TASKS for r in records(task) for v in r.values() if isinstance(v, str)]


def build_model(family: str, folder: Path) -> Path:
    """A tiny random model of ``family`` with a tokenizer trained on the fixture, saved to ``folder``."""
    from eeve_lib.method.base_model import build_config, new_model, padded_rows
    from eeve_lib.method.families.byte_level import train_byte_level_bpe
    from eeve_lib.method.families.sentencepiece_bpe import train_sentencepiece_bpe
    from eeve_lib.runtime import seeded

    architecture = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "max_position_embeddings": 512}
    if family == "phi":
        tok = train_byte_level_bpe(fixture_texts(), vocab_size=400, added_tokens=8)
    else:
        tok = train_sentencepiece_bpe(fixture_texts(), vocab_size=700)
        architecture["num_key_value_heads"] = 1
    config = build_config(family, architecture, padded_rows(len(tok), 64), tok.bos_token_id, tok.eos_token_id)
    with seeded(7):
        model = new_model(family, config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["phi", "llama"])
def scored(request, tmp_path_factory):
    """One model, scored on every task by the harness (per item) and loaded for the book's scorer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eeve_lib.pipeline.harness import run_harness

    folder = build_model(request.param, tmp_path_factory.mktemp(f"kobest-{request.param}"))
    harness = run_harness(folder, TASKS, dataset_override=DATA, device="cpu", batch_size=4, log_samples=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    return {"family": request.param, "folder": folder, "harness": harness, "model": model, "tokenizer": tok}


@pytest.mark.parametrize("task", TASKS)
def test_same_prompts_as_the_harness(scored, task):
    samples = sorted(scored["harness"]["samples"][f"kobest_{task}"], key=lambda s: s["doc_id"])
    examples = to_examples(task, records(task))
    assert len(samples) == len(examples) == 5
    for sample, ex in zip(samples, examples):
        assert [tuple(a) for a in sample["arguments"]] == [(ex.context, c) for c in ex.continuations]
        # the gold answer: its index, or (COPA's doc_to_target) its text
        assert sample["target"] in (ex.label, ex.choices[ex.label])


@pytest.mark.parametrize("task", TASKS)
def test_same_loglikelihoods_and_accuracies_as_the_harness(scored, task):
    name = f"kobest_{task}"
    model, tok = scored["model"], scored["tokenizer"]
    examples = to_examples(task, records(task))
    samples = sorted(scored["harness"]["samples"][name], key=lambda s: s["doc_id"])
    for sample, ex in zip(samples, examples):
        theirs = [float(ll) for ll, _ in sample["filtered_resps"]]
        assert choice_logprobs(model, tok, ex) == pytest.approx(theirs, abs=1e-4), (task, sample["doc_id"])
    ours = score_task(model, tok, examples)
    metrics = scored["harness"]["results"][name]
    assert ours["accuracy"] == pytest.approx(metrics["acc,none"])
    assert ours["macro_f1"] == pytest.approx(metrics["f1,none"])
    if "acc_norm,none" in metrics:
        assert ours["accuracy_norm"] == pytest.approx(metrics["acc_norm,none"])
    assert ("acc_norm,none" in metrics) == (task == "hellaswag")
    assert scored["harness"]["versions"][name] == 1.0


@pytest.mark.parametrize("scored", ["phi"], indirect=True)  # one family is enough for the summary
def test_evaluate_kobest_harness_summary(scored):
    """The pipeline's entry point: versions, data and the same accuracies; ``limit`` takes the first items."""
    from eeve_lib.pipeline.harness import LM_EVAL_VERSION, evaluate_kobest_harness

    out = evaluate_kobest_harness({"final": scored["folder"]}, ("copa", "hellaswag"), limit=3,
                                  dataset_override=DATA, device="cpu")
    assert out["lm_eval_version"] == LM_EVAL_VERSION == "0.4.13"
    assert out["tasks"]["copa"] == {"harness_task": "kobest_copa", "version": 1.0, "split": "test",
                                    "data": str(DATA["copa"])}
    for task in ("copa", "hellaswag"):
        got = out["results"]["final"][task]
        ours = score_task(scored["model"], scored["tokenizer"], to_examples(task, records(task)[:3]))
        assert got["examples"] == 3
        assert got["accuracy"] == pytest.approx(ours["accuracy"])
        assert got["macro_f1"] == pytest.approx(ours["macro_f1"])
        assert ("accuracy_norm" in got) == (task == "hellaswag")
        if task == "hellaswag":
            assert got["accuracy_norm"] == pytest.approx(ours["accuracy_norm"])


def test_a_clear_error_without_lm_eval(monkeypatch):
    from eeve_lib.pipeline.harness import evaluate_kobest_harness

    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(EeveError, match=r"pip install -e '\.\[eval\]'"):
        evaluate_kobest_harness({"final": "unused"}, TASKS)
