"""The pipeline's step 11: score every model of a run and write ``runs/<profile>/eval/metrics.json``.

Finds the run's models (base, each stage, the final model, the ablation arms), scores them with
the method's bits per character (:mod:`eeve_lib.method.evaluation`) on the held-out splits, on
the local tasks of :mod:`eeve_lib.method.tasks` (NSMC sentiment, Korean-English matching) when the
profile asks for them and, at ``full``, on KoBEST from the hub. Shown in chapter 05.
"""

from __future__ import annotations

import gzip
import json
import unicodedata
from pathlib import Path
from typing import Any

import torch

from ..errors import CorpusError, ProfileError
from ..method.evaluation import cap_characters, mean_and_spread, score_texts, uniform_bits_per_character
from ..method.kobest import TASKS, evaluate_kobest, to_examples
from ..method.tasks import balanced_sentiment_items, matching_items, score_matching, score_sentiment
from . import atomic, cache, steps
from .arm import MAIN_ARM, Arm
from .corpora import is_validation, load_corpus, load_manifest, load_parallel
from .harness import evaluate_kobest_harness, kobest_data_files
from .hub import hub_reachable, resolve_snapshot
from .paths import MARKERS, SEED_SUFFIX, run_paths
from .sources import entry_files, verify_entry
from .training import initialise_extended_model
from .vocabulary import vocabulary_key


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


    pattern = (entry.data_files or "{task}/test/*.parquet").format(task=task)
    snapshot = resolve_snapshot(entry.dataset, entry.revision, repo_type="dataset", include=pattern,
                                what=f"KoBEST {task}")
    ds = datasets.load_dataset("parquet", data_files=f"{snapshot}/{pattern}", split="train")
    records = list(ds)
    return records[:limit] if limit else records


def resolved_revision(entry) -> str | None:
    """The commit a branch revision (``refs/convert/parquet``) resolves to, when the hub is reachable."""
    if not hub_reachable():
        return None
    from huggingface_hub import HfApi

    return HfApi().dataset_info(entry.dataset, revision=entry.revision).sha


# What a score record holds: the reported (validation) split and, where the profile has one, the
# tuning split. Part of the scores' key, so that scores from before a split was added are not reused.
SCORED_SPLITS = ("validation", "tuning")


def _validation_texts(profile) -> tuple[list[str], list[str]]:
    """The reported held-out text: the validation splits, capped to the profile's characters."""
    ev = profile.evaluation
    return (cap_characters(load_corpus(profile, "korean").validation, ev.max_korean_chars),
            cap_characters(load_corpus(profile, "english").validation, ev.max_english_chars))


def _tuning_texts(profile) -> tuple[list[str], list[str]] | None:
    """The text settings are chosen on (the tuning splits, capped alike); None without a tuning split."""
    if not profile.data.tuning_fraction:
        return None
    ev = profile.evaluation
    return (cap_characters(load_corpus(profile, "korean").tuning, ev.max_korean_chars),
            cap_characters(load_corpus(profile, "english").tuning, ev.max_english_chars))


def load_sentiment_records(profile) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``(review, rating)`` of the manifest entry ``evaluation.sentiment.entry``: (held out, trained on).

    The entry is a TSV (gzip or not) with ``rating`` and ``review`` columns. Each review is read as
    the Korean corpus reads it (stripped, NFC), so :func:`is_validation` puts it on the same side of
    the split: the held-out reviews were never trained on.
    """
    name = profile.evaluation.sentiment.entry
    manifest = load_manifest(profile.data.manifest)
    if name not in manifest:
        raise CorpusError(f"evaluation.sentiment.entry: manifest {profile.data.manifest!r} has no entry {name!r}. "
                          f"Its entries: {', '.join(manifest)}.")
    verify_entry(manifest[name])
    held_out, trained = [], []
    for path in entry_files(manifest[name])[1]:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as stream:
            header = next(stream, b"").decode("utf-8").rstrip("\r\n").split("\t")
            if "rating" not in header or "review" not in header:
                raise CorpusError(f"{path}: the header ({', '.join(header)}) lacks a 'rating' or a 'review' column.")
            rating, review = header.index("rating"), header.index("review")
            for raw in stream:
                cells = raw.decode("utf-8").rstrip("\r\n").split("\t")
                text = unicodedata.normalize("NFC", cells[review].strip())
                if text:
                    split = held_out if is_validation(text, profile.data.validation_fraction) else trained
                    split.append((text, int(cells[rating])))
    return held_out, trained


def task_data(profile) -> dict[str, Any]:
    """The items of the profile's local tasks, drawn once (seeded by the profile's seed) for all models.

    ``sentiment``: (held-out items, demonstrations from the training split, as many as the most
    shots); ``matching``: the matching items from the parallel corpus. Empty without the settings.
    """
    ev, out = profile.evaluation, {}
    if ev.sentiment is not None:
        s = ev.sentiment
        held_out, trained = load_sentiment_records(profile)
        out["sentiment"] = balanced_sentiment_items(held_out, s.items, max(s.shots), profile.seed, s.max_chars,
                                                    demonstration_records=trained)
    if ev.matching is not None:
        pairs = load_parallel(profile)
        if pairs is None:
            raise ProfileError("evaluation.matching needs a parallel corpus: set data.parallel in the profile.")
        m = ev.matching
        out["matching"] = matching_items(*pairs, m.items, m.candidates, profile.seed, m.max_chars)
    return out


def _scores(model, tok, korean: list[str], english: list[str], ev, tasks: dict[str, Any] | None = None,
            tuning: tuple[list[str], list[str]] | None = None) -> dict[str, Any]:
    """Bits per character (with the uniform guess) and fertility of one model on both languages, and
    its accuracy on the local tasks in ``tasks`` (see :func:`task_data`); with ``tuning`` texts,
    also its bits per character there (under ``"tuning"``, kept apart from the reported scores)."""
    dtype = torch.bfloat16 if ev.dtype == "bfloat16" else None
    scores: dict[str, Any] = {"tokenizer_size": len(tok), "parameters": sum(p.numel() for p in model.parameters())}
    for language, texts in (("korean", korean), ("english", english)):
        result = score_texts(model, tok, texts, window=ev.window, stride=ev.stride, dtype=dtype).as_dict()
        result["uniform_bits_per_character"] = uniform_bits_per_character(result["tokens_per_character"], len(tok))
        scores[language] = result
    if tuning is not None:
        scores["tuning"] = {language: {"bits_per_character": score_texts(
            model, tok, texts, window=ev.window, stride=ev.stride, dtype=dtype).bits_per_character}
            for language, texts in zip(("korean", "english"), tuning)}
    tasks = tasks or {}
    if "sentiment" in tasks:
        items, demonstrations = tasks["sentiment"]
        scores["sentiment"] = {f"shots_{k}": score_sentiment(model, tok, items, demonstrations[:k], dtype=dtype)
                               for k in ev.sentiment.shots}
    if "matching" in tasks:
        scores["matching"] = score_matching(model, tok, tasks["matching"], dtype=dtype)
    return scores


def score_key(profile, model_dir: Path) -> str | None:
    """The key of a model's scores: its own step key, the evaluation settings and the data; None
    for a folder without a marker (never cached)."""
    for marker in (MARKERS["stage"], MARKERS["base"]):
        record = cache.read_marker(model_dir / marker)
        if record is not None and record.get("key"):
            return steps.key("scores", profile, extra={"model": record["key"], "splits": SCORED_SPLITS})
    return None


def score_model(profile, name: str, path: Path, run_dir=None, texts: tuple[list[str], list[str]] | None = None,
                *, tasks: dict[str, Any] | None = None, tuning: tuple[list[str], list[str]] | None = None
                ) -> dict[str, Any]:
    """One model's Korean and English scores on the held-out splits, reused while its key matches.

    ``texts`` (validation), ``tuning`` and ``tasks`` (:func:`task_data`) are read from the data
    when not given.
    """
    paths = run_paths(profile, run_dir)
    key = score_key(profile, path)
    where = paths.score(name)
    cached = cache.cached(where, key) if key else None
    if cached is not None:
        return cached["scores"]
    ev = profile.evaluation
    korean, english = texts or _validation_texts(profile)
    tasks = task_data(profile) if tasks is None else tasks
    tuning = tuning or _tuning_texts(profile)
    model, tok = load_model(path)
    scores = {"path": str(path.relative_to(paths.root)), **_scores(model, tok, korean, english, ev, tasks, tuning)}
    if key:
        atomic.write_json(where, {"key": key, "scores": scores})
    return scores


def score_extended(profile, run_dir=None, texts: tuple[list[str], list[str]] | None = None, *,
                   tasks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The extended model before any training (step 9's output), scored like the saved models.

    Not saved as a folder (it is the base model plus initialised rows, rebuilt in seconds); its
    scores are cached under the key of the vocabulary, the initialisation and the seed.
    """
    paths = run_paths(profile, run_dir)
    key = steps.key("scores", profile, run_dir,
                    sections=("evaluation", "data", "embedding_init", "tied_embeddings", "seed"),
                    extra={"extended": vocabulary_key(profile, run_dir), "splits": SCORED_SPLITS})
    where = paths.score("extended")
    cached = cache.cached(where, key)
    if cached is not None:
        return cached["scores"]
    ev = profile.evaluation
    korean, english = texts or _validation_texts(profile)
    tasks = task_data(profile) if tasks is None else tasks
    model, tok, _, _ = initialise_extended_model(profile, run_dir)
    scores = {"path": None, **_scores(model, tok, korean, english, ev, tasks, _tuning_texts(profile))}
    atomic.write_json(where, {"key": key, "scores": scores})
    return scores


def parallel_fertility(profile, run_dir=None) -> dict[str, Any] | None:
    """Tokens per character on both sides of the profile's parallel corpus (the same content in
    Korean and English), under the base and the extended tokenizer; None without one."""
    from transformers import AutoTokenizer


    pairs = load_parallel(profile)
    paths = run_paths(profile, run_dir)
    if pairs is None or not paths.tokenizer.is_dir():
        return None
    tokenizers = {"base": AutoTokenizer.from_pretrained(paths.base, trust_remote_code=False),
                  "extended": AutoTokenizer.from_pretrained(paths.tokenizer, trust_remote_code=False)}
    out: dict[str, Any] = {"corpus": profile.data.parallel, "pairs": len(pairs[0])}
    for language, lines in zip(("korean", "english"), pairs):
        characters = sum(map(len, lines))
        out[language] = {"characters": characters}
        for name, tok in tokenizers.items():
            tokens = sum(len(ids) for ids in tok(list(lines), add_special_tokens=False).input_ids)
            out[language][name] = {"tokens": tokens, "tokens_per_character": tokens / characters}
    return out


def arm_of(model_name: str) -> tuple[Arm, int | None] | None:
    """``(arm, seed)`` of a model name in metrics.json (seed None: the profile's); None for base
    and stages. ``final`` is the seven stages; ``ablation:init-random@seed1235`` is init:random."""
    if model_name == "final":
        return MAIN_ARM, None
    if not model_name.startswith("ablation:"):
        return None
    folder = model_name.removeprefix("ablation:")
    folder, _, seed = folder.partition(SEED_SUFFIX)
    return Arm.from_folder(folder), int(seed) if seed else None


def _stage_logs(path: Path) -> list[dict[str, Any]]:
    return (cache.read_marker(path / MARKERS["model"]) or {}).get("logs", [])


def _training_cost(path: Path) -> dict[str, float]:
    """Optimizer steps, tokens and estimated FLOPs of a trained model's stages. No wall time: it
    differs from run to run, and metrics.json holds only what the same commit computes again
    byte for byte (:func:`arm_wall_seconds` reads the time)."""
    logs = _stage_logs(path)
    return {"steps": sum(log["steps"] for log in logs), "tokens": sum(log["tokens"] for log in logs),
            "flops": sum(log.get("flops", 0.0) for log in logs),
            "english_share_seen": (sum(log.get("english_share_seen", 0.0) * log["steps"] for log in logs)
                                   / max(1, sum(log["steps"] for log in logs)))}


def summarise_arms(profile, models: dict[str, Any], run_dir=None) -> dict[str, Any]:
    """Each arm's scores over its seeds (mean and spread), and its training cost (chapter 05)."""
    paths = run_paths(profile, run_dir)
    grouped: dict[str, list[tuple[int, str]]] = {}
    for name in models:
        found = arm_of(name)
        if found is not None:
            arm, seed = found
            grouped.setdefault(arm, []).append((profile.seed if seed is None else seed, name))
    out: dict[str, Any] = {}
    for arm, members in grouped.items():
        members.sort()
        row: dict[str, Any] = {"seeds": [s for s, _ in members], "models": [n for _, n in members]}
        for language in ("korean", "english"):
            for metric in ("bits_per_character", "tokens_per_character"):
                row[f"{language}_{metric}"] = mean_and_spread(
                    [models[n][language][metric] for _, n in members])
        scored = [models[n] for _, n in members]
        if all("sentiment" in s for s in scored):
            row["sentiment_accuracy"] = {shots: mean_and_spread([s["sentiment"][shots]["accuracy"] for s in scored])
                                         for shots in scored[0]["sentiment"]}
        if all("matching" in s for s in scored):
            row["matching_accuracy"] = mean_and_spread([s["matching"]["accuracy"] for s in scored])
        if all("tuning" in s for s in scored):
            row["tuning"] = {f"{language}_bits_per_character": mean_and_spread(
                [s["tuning"][language]["bits_per_character"] for s in scored]) for language in ("korean", "english")}
        costs = [_training_cost(paths.root / models[n]["path"]) for _, n in members]
        row["training"] = {k: mean_and_spread([c[k] for c in costs]) for k in costs[0]}
        out[arm] = row
    return out


def arm_wall_seconds(profile, metrics: dict[str, Any], run_dir=None) -> dict[str, dict[str, Any]]:
    """Each arm of ``metrics`` with the wall-clock seconds its stages took, mean and spread over
    its seeds, from the stage logs beside its models (this machine's time, not a score)."""
    root = run_paths(profile, run_dir).root
    seconds = {arm: [sum(log["steps"] * log.get("seconds_per_step", 0.0)
                         for log in _stage_logs(root / metrics["models"][name]["path"]))
                     for name in a["models"]]
               for arm, a in metrics["arms"].items()}
    return {arm: mean_and_spread(values) for arm, values in seconds.items()}


def evaluate_run(profile, run_dir=None, *, progress: bool = True) -> dict[str, Any]:
    """Score every model of a run on held-out Korean and English; write ``eval/metrics.json`` (chapter 05).

    Each model's scores are reused while its key matches (``eval/scores/``); ``arms`` holds each
    ablation arm's mean and spread over its seeds, with its training cost. The local tasks' items
    are drawn once, so that every model answers the same questions.
    """
    from tqdm import tqdm

    paths = run_paths(profile, run_dir)
    ev = profile.evaluation
    texts, tuning = _validation_texts(profile), _tuning_texts(profile)
    korean, english = texts
    tasks = task_data(profile)
    results: dict[str, Any] = {}
    for name, path in tqdm(model_directories(profile, run_dir).items(), desc="scoring models", disable=not progress):
        # The stages in between are followed by bits per character; the tasks score the models
        # that chapter 05 compares (base, extended, final, every arm).
        results[name] = score_model(profile, name, path, run_dir, texts,
                                    tasks={} if name.startswith("stage") else tasks, tuning=tuning)
        if name == "base" and paths.expansion_summary.is_file():
            results["extended"] = score_extended(profile, run_dir, texts, tasks=tasks)
    if ev.kobest:
        entry = load_manifest(profile.data.manifest)["kobest"]
        chosen = {name: load_model(path) for name, path in model_directories(profile, run_dir).items()
                  if name in ("base", "final")}
        examples = {task: to_examples(task, load_kobest(task, entry, ev.kobest_limit)) for task in TASKS}
        kobest = {"dataset": entry.dataset, "revision": entry.revision, "resolved_commit": resolved_revision(entry),
                  "results": evaluate_kobest(chosen, examples)}
        # The same models through EleutherAI's lm-evaluation-harness (its kobest_* tasks), on the same
        # pinned files: numbers that compare with public leaderboards.

        chosen_dirs = {n: p for n, p in model_directories(profile, run_dir).items() if n in ("base", "final")}
        harness = evaluate_kobest_harness(chosen_dirs, TASKS, ev.kobest_limit,
                                          dataset_override=kobest_data_files(entry), device=profile.device)
    parallel = parallel_fertility(profile, run_dir)
    metrics = {
        "profile": profile.name,
        "data": {"korean_validation_documents": len(korean), "english_validation_documents": len(english),
                 "korean_characters": sum(map(len, korean)), "english_characters": sum(map(len, english)),
                 **({"korean_tuning_characters": sum(map(len, tuning[0])),
                     "english_tuning_characters": sum(map(len, tuning[1]))} if tuning else {}),
                 **({"sentiment_items": len(tasks["sentiment"][0]),
                     "sentiment_demonstrations": len(tasks["sentiment"][1])} if "sentiment" in tasks else {}),
                 **({"matching_items": len(tasks["matching"])} if "matching" in tasks else {})},
        "models": results,
        "arms": summarise_arms(profile, results, run_dir),
    }
    if parallel is not None:
        metrics["parallel"] = parallel
    if ev.kobest:
        metrics["kobest"] = kobest["results"]
        metrics["kobest_data"] = {k: v for k, v in kobest.items() if k != "results"}
        metrics["kobest_harness"] = harness
    atomic.write_json(paths.metrics, metrics)
    return metrics


def load_metrics(profile, run_dir=None) -> dict[str, Any]:
    """``runs/<profile>/eval/metrics.json``."""
    return json.loads(run_paths(profile, run_dir).metrics.read_text())


__all__ = ["evaluate_run", "arm_wall_seconds", "score_model", "score_extended", "summarise_arms", "arm_of",
           "parallel_fertility", "load_metrics", "load_model", "model_directories", "load_kobest", "resolved_revision",
           "load_sentiment_records", "task_data"]
