"""Chapter 05's ablation arms at every seed, side by side on the cores of one machine.

An arm at one seed is a job: train it (:func:`eeve_lib.pipeline.training.run_ablation`), then
score its final model (:func:`eeve_lib.pipeline.evaluation.score_model`). Both steps are cached
by key, so a job whose outputs are current costs nothing. The seven stages at a seed and the arms
that start from their stages 1-5 (``stage6:*``) form one job, in that order, so those stages are
trained once per seed.

``ablations.workers`` > 1 runs jobs in that many processes (``spawn``: a forked torch can hang),
each with one torch thread: small models use one core far better than two, so two jobs side by
side finish in about half the time of one after the other. Every job computes the same thing
whatever the number of workers, so ``workers`` is outside every cache key.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from .arm import EQUAL_TEXT, MAIN_ARM, ablation_arms, learning_rate_arms
from .evaluation import score_model
from .paths import run_paths
from .profiles import Profile
from .training import arm_paths, arm_seeds, run_ablation


def jobs(profile: Profile) -> list[tuple[int, list[str]]]:
    """``(seed, arms)`` per job: the seven stages with the stage-6 arms, every other arm alone; the
    arms of ``ablations.one_seed`` and of the learning-rate grid at the profile's seed only."""
    arms = ablation_arms(profile)
    single = set(profile.ablations.one_seed) | set(learning_rate_arms(profile))
    out = []
    for k, seed in enumerate(arm_seeds(profile)):
        first = [a for a in arms if a == MAIN_ARM or a.kind == "stage6"]
        if first:
            out.append((seed, first))
        out += [(seed, [a]) for a in arms if a not in first and (k == 0 or a not in single)]
    return out


def longest_first(todo: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
    """Jobs in the order to hand them to the workers: the equal-text baseline first (it trains the
    most steps), then jobs of several arms, then the rest, each group in its own order. Two
    workers finish together when the long jobs do not come last."""
    return sorted(todo, key=lambda job: 2 if EQUAL_TEXT in job[1] else 1 if len(job[1]) > 1 else 0, reverse=True)


def _model_name(profile: Profile, arm: str, seed: int, run_dir) -> str:
    paths = run_paths(profile, run_dir)
    where = arm_paths(profile, arm, seed, run_dir)
    return "final" if where.root == paths.root else f"ablation:{where.root.name}"


def run_job(profile: Profile, run_dir, seed: int, arms: list[str], threads: int | None = None
            ) -> list[dict[str, Any]]:
    """Train and score ``arms`` at ``seed`` in this process; returns one summary per arm."""
    if threads:  # a worker process: one torch thread, no library chatter
        import torch
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()

        torch.set_num_threads(threads)
    out = []
    for arm in arms:
        result = run_ablation(profile, arm, run_dir, progress=False, seed=seed)
        name = _model_name(profile, arm, seed, run_dir)
        where = arm_paths(profile, arm, seed, run_dir)
        scores = score_model(profile, name, where.model, run_dir)
        out.append({"arm": arm, "seed": seed, "model": name, "korean_bits_per_character":
                    scores["korean"]["bits_per_character"], "english_bits_per_character":
                    scores["english"]["bits_per_character"], "stages": len(result.logs)})
    return out


def run_arms(profile: Profile, run_dir=None, *, progress: bool = True) -> list[dict[str, Any]]:
    """Every arm of ``ablations`` at every seed (chapter 05); returns one summary per arm and seed."""
    from tqdm import tqdm

    todo = jobs(profile)
    workers = profile.ablations.workers or os.cpu_count() or 1
    workers = min(workers, len(todo)) if todo else 1
    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(todo), desc=f"ablation arms x seeds ({workers} processes)", disable=not progress)
    if workers <= 1:
        for seed, arms in todo:
            results += run_job(profile, run_dir, seed, arms)
            bar.update()
    else:
        import multiprocessing

        root = str(run_paths(profile, run_dir).root)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_job, profile, root, seed, arms, 1) for seed, arms in longest_first(todo)]
            for future in as_completed(futures):
                results += future.result()
                bar.update()
    bar.close()
    return sorted(results, key=lambda r: (r["arm"], r["seed"]))


__all__ = ["jobs", "longest_first", "run_job", "run_arms"]
