"""The pipeline's step 11: score every model of a run and write ``runs/<profile>/eval/metrics.json``.

Finds the run's models (base, each stage, the final model, the ablation arms), scores them with
the method's bits per character (:mod:`eeve_lib.method.evaluation`) on the held-out splits and,
at ``full``, on KoBEST from the hub. Shown in chapter 05.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..method.evaluation import cap_characters, score_texts
from ..method.kobest import TASKS, evaluate_kobest, to_examples
from . import atomic
from .corpora import load_corpus, load_manifest
from .paths import run_paths


def load_model(path: str | Path, dtype=torch.float32):
    """A saved model directory and its tokenizer, with the ``Auto*`` classes (remote code off)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=False),
            AutoTokenizer.from_pretrained(path, trust_remote_code=False))


def model_directories(profile, run_dir=None) -> dict[str, Path]:
    """Every model of a run that chapter 05 scores: base, stage1..7, final and ablation arms."""
    paths = run_paths(profile, run_dir)
    found: dict[str, Path] = {"base": paths.base}
    for b in profile.training.schedule:
        if paths.stage(b.stage).is_dir():
            found[f"stage{b.stage}"] = paths.stage(b.stage)
    if paths.model.is_dir():
        found["final"] = paths.model
    if paths.ablations.is_dir():
        for arm in sorted(paths.ablations.iterdir()):
            arm_paths = paths.ablation(arm.name)
            if arm_paths.model.is_dir():
                found[f"ablation:{arm.name}"] = arm_paths.model
    return found


def load_kobest(task: str, entry, limit: int | None = None) -> list[dict]:
    """KoBEST records of ``task`` from the hub at the manifest entry's revision (``full`` only).

    Offline, the local Hugging Face cache is used, or a clear error names the download command.
    """
    import datasets

    from .hub import resolve_snapshot

    pattern = (entry.data_files or "{task}/test/*.parquet").format(task=task)
    snapshot = resolve_snapshot(entry.dataset, entry.revision, repo_type="dataset", include=pattern,
                                what=f"KoBEST {task}")
    ds = datasets.load_dataset("parquet", data_files=f"{snapshot}/{pattern}", split="train")
    records = list(ds)
    return records[:limit] if limit else records


def resolved_revision(entry) -> str | None:
    """The commit a branch revision (``refs/convert/parquet``) resolves to, when the hub is reachable."""
    from .hub import hub_reachable

    if not hub_reachable():
        return None
    from huggingface_hub import HfApi

    return HfApi().dataset_info(entry.dataset, revision=entry.revision).sha


def evaluate_run(profile, run_dir=None, *, progress: bool = True) -> dict[str, Any]:
    """Score every model of a run on held-out Korean and English; write ``eval/metrics.json`` (chapter 05)."""
    from tqdm import tqdm

    paths = run_paths(profile, run_dir)
    ev = profile.evaluation
    korean = cap_characters(load_corpus(profile, "korean").validation, ev.max_korean_chars)
    english = cap_characters(load_corpus(profile, "english").validation, ev.max_english_chars)
    results: dict[str, Any] = {}
    for name, path in tqdm(model_directories(profile, run_dir).items(), desc="scoring models", disable=not progress):
        model, tok = load_model(path)
        ko = score_texts(model, tok, korean, window=ev.window, stride=ev.stride)
        en = score_texts(model, tok, english, window=ev.window, stride=ev.stride)
        results[name] = {"path": str(path.relative_to(paths.root)), "tokenizer_size": len(tok),
                         "korean": ko.as_dict(), "english": en.as_dict()}
    if ev.kobest:
        entry = load_manifest(profile.data.manifest)["kobest"]
        chosen = {name: load_model(path) for name, path in model_directories(profile, run_dir).items()
                  if name in ("base", "final")}
        examples = {task: to_examples(task, load_kobest(task, entry, ev.kobest_limit)) for task in TASKS}
        kobest = {"dataset": entry.dataset, "revision": entry.revision, "resolved_commit": resolved_revision(entry),
                  "results": evaluate_kobest(chosen, examples)}
    metrics = {
        "profile": profile.name,
        "data": {"korean_validation_documents": len(korean), "english_validation_documents": len(english),
                 "korean_characters": sum(map(len, korean)), "english_characters": sum(map(len, english))},
        "models": results,
    }
    if ev.kobest:
        metrics["kobest"] = kobest["results"]
        metrics["kobest_data"] = {k: v for k, v in kobest.items() if k != "results"}
    atomic.write_json(paths.metrics, metrics)
    return metrics


def load_metrics(profile, run_dir=None) -> dict[str, Any]:
    """``runs/<profile>/eval/metrics.json``."""
    return json.loads(run_paths(profile, run_dir).metrics.read_text())


__all__ = ["evaluate_run", "load_metrics", "load_model", "model_directories", "load_kobest", "resolved_revision"]
