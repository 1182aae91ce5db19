"""KoBEST through EleutherAI's lm-evaluation-harness, so that ``full`` numbers compare with public ones.

Runs lm-eval **0.4.13** (the ``eval`` extra: ``pip install -e '.[eval]'``; ``make setup`` installs
it through ``dev``) on a run's saved model directories with the harness's own task configs
``kobest_boolq``, ``kobest_copa``, ``kobest_hellaswag``, ``kobest_sentineg`` and ``kobest_wic``
(task version 1.0 each), zero-shot, on the test split, as public leaderboards score KoBEST. The
model is the harness's ``HFLM`` over the saved folder (``pretrained=<path>``, causal,
``trust_remote_code=False``). Reported per task: ``accuracy`` (the harness's ``acc``: the answer
with the highest summed log-likelihood) with its standard error, ``accuracy_norm`` (``acc_norm``,
divided by the answer's characters) where the task reports it (``kobest_hellaswag``), and
``macro_f1`` (``f1``), with the lm-eval version and each task's version.

The data is the harness's own (``skt/kobest_v1`` from the hub, at whatever revision the hub
serves) unless ``dataset_override`` names local files. Then each task's config is a YAML file
whose ``include:`` is the harness's own and which replaces only ``dataset_path``,
``dataset_name`` and ``dataset_kwargs.data_files`` (the harness's documented way to read local
data), and drops the train and validation splits, which zero-shot scoring never reads: prompts,
answers and metrics stay the harness's. Pass the files of the manifest's pinned revision
(:func:`kobest_data_files`), the records ``load_kobest`` gives the book's own scorer, and both
score the same items.

The book's own scorer (:mod:`eeve_lib.method.kobest`) re-derives the same numbers with the same
prompts; ``tests/test_harness.py`` scores a KoBEST-format fixture with both.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import EeveError
from ..method.kobest import TASKS
from ..runtime import resolve_device, seeded
from .hub import resolve_snapshot

LM_EVAL_VERSION = "0.4.13"
HARNESS_TASKS = {task: f"kobest_{task}" for task in TASKS}
_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def require_lm_eval():
    """The ``lm_eval`` package, or an error that says how to install it."""
    try:
        import lm_eval
    except ImportError as e:
        raise EeveError(
            f"KoBEST through lm-evaluation-harness (evaluation.kobest at profile full) needs lm-eval "
            f"{LM_EVAL_VERSION}, which is not installed. Install it with: pip install -e '.[eval]' "
            f"(make setup installs it).") from e
    if lm_eval.__version__ != LM_EVAL_VERSION:
        warnings.warn(f"lm-eval {lm_eval.__version__} is installed; eeve-book's KoBEST prompts were checked against "
                      f"{LM_EVAL_VERSION} (requirements/lock.txt pins it).", stacklevel=2)
    return lm_eval


def kobest_data_files(entry, tasks: Sequence[str] = TASKS) -> dict[str, str]:
    """Each task's test files at the manifest entry's revision: the records ``load_kobest`` reads."""
    files = {}
    for task in tasks:
        pattern = (entry.data_files or "{task}/test/*.parquet").format(task=task)
        snapshot = resolve_snapshot(entry.dataset, entry.revision, repo_type="dataset", include=pattern,
                                    what=f"KoBEST {task}")
        files[task] = f"{snapshot}/{pattern}"
    return files


def _files(value) -> str | list[str]:
    """A file, glob or list of them, as strings (what ``datasets`` takes as ``data_files``)."""
    return str(value) if isinstance(value, (str, Path)) else [str(f) for f in value]


def _data_format(files: str | list[str]) -> str:
    first = files if isinstance(files, str) else files[0]
    for suffix, fmt in _FORMATS.items():
        if first.endswith(suffix):
            return fmt
    raise EeveError(f"KoBEST data files {first!r}: expected Parquet, JSON Lines, JSON or CSV "
                    f"({', '.join(_FORMATS)}).")


def _task_folder(folder: Path, tasks: Sequence[str], dataset_override: Mapping[str, Any] | None) -> Path:
    """The folder of task configs the harness indexes: its own, or derived ones that read local files."""
    import yaml

    lm_eval = require_lm_eval()
    own = Path(lm_eval.__file__).parent / "tasks" / "kobest"
    if dataset_override is None:
        return own
    missing = [t for t in tasks if t not in dataset_override]
    if missing:
        raise EeveError(f"dataset_override has no files for KoBEST task(s) {', '.join(missing)}.")
    for task in tasks:
        files = _files(dataset_override[task])
        config = {"include": str(own / f"{HARNESS_TASKS[task]}.yaml"), "task": HARNESS_TASKS[task],
                  "dataset_path": _data_format(files), "dataset_name": None,
                  "dataset_kwargs": {"data_files": {"test": files}},
                  "training_split": None, "validation_split": None, "test_split": "test"}
        (folder / f"{HARNESS_TASKS[task]}.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return folder


class _DropMetricLookup(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "not found in the evaluate library" not in record.getMessage()


@contextlib.contextmanager
def _no_metric_downloads():
    """Keep the ``evaluate`` library from fetching ``f1`` from the hub while the harness builds its tasks.

    The kobest tasks list ``f1`` with ``hf_evaluate: true``, so building a task asks ``evaluate``
    for its ``f1`` module (a hub download, retried for seconds when offline). A multiple-choice
    task never calls it: it aggregates (gold, prediction) pairs with the task's own
    ``macro_f1_score``. So the lookup is made to fail at once, and its error line is dropped.
    """
    import evaluate.config

    before, evaluate.config.HF_EVALUATE_OFFLINE = evaluate.config.HF_EVALUATE_OFFLINE, True
    registry_log, drop = logging.getLogger("lm_eval.api.registry"), _DropMetricLookup()
    registry_log.addFilter(drop)
    try:
        yield
    finally:
        evaluate.config.HF_EVALUATE_OFFLINE = before
        registry_log.removeFilter(drop)


def run_harness(model_path: str | Path, tasks: Sequence[str] = TASKS, limit: int | None = None,
                dataset_override: Mapping[str, Any] | None = None, *, device: str | None = "auto",
                dtype: str = "float32", batch_size: int = 8, log_samples: bool = False) -> dict[str, Any]:
    """lm-eval's ``simple_evaluate`` output for one saved model on the KoBEST tasks (``log_samples``: per item)."""
    lm_eval = require_lm_eval()
    unknown = [t for t in tasks if t not in HARNESS_TASKS]
    if unknown:
        raise EeveError(f"unknown KoBEST task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="eeve-kobest-") as tmp, seeded(0), _no_metric_downloads():
        manager = TaskManager(include_path=str(_task_folder(Path(tmp), tasks, dataset_override)),
                              include_defaults=False)
        model = HFLM(pretrained=str(model_path), backend="causal", trust_remote_code=False, dtype=dtype,
                     device=str(resolve_device(device)), batch_size=batch_size)
        return lm_eval.simple_evaluate(model=model, tasks=[HARNESS_TASKS[t] for t in tasks], num_fewshot=0,
                                       limit=limit, task_manager=manager, log_samples=log_samples)


def _summary(results: dict[str, Any], task: str) -> dict[str, Any]:
    name = HARNESS_TASKS[task]
    metrics = results["results"][name]
    out = {"examples": results["n-samples"][name]["effective"], "accuracy": metrics["acc,none"],
           "accuracy_stderr": metrics.get("acc_stderr,none")}
    if "acc_norm,none" in metrics:
        out["accuracy_norm"] = metrics["acc_norm,none"]
        out["accuracy_norm_stderr"] = metrics.get("acc_norm_stderr,none")
    out["macro_f1"] = metrics.get("f1,none")
    return {k: (None if v == "N/A" else v) for k, v in out.items()}


def evaluate_kobest_harness(models: Mapping[str, str | Path], tasks: Sequence[str] = TASKS,
                            limit: int | None = None, dataset_override: Mapping[str, Any] | None = None,
                            **options) -> dict[str, Any]:
    """Score ``{name: saved model folder}`` on KoBEST with lm-evaluation-harness (chapter 05 at ``full``).

    ``limit``: the first items of each task, as ``load_kobest`` takes them. ``dataset_override``:
    ``{task: file, glob or list of files}`` (Parquet or JSON Lines, the hub's columns) instead of the
    harness's hub dataset; :func:`kobest_data_files` gives the manifest's pinned files. ``options``
    go to :func:`run_harness` (``device``, ``dtype``, ``batch_size``). Returns the lm-eval version, each
    task's harness name, version and data, and ``results[name][task]``: ``examples``, ``accuracy``,
    ``accuracy_stderr``, ``accuracy_norm`` (HellaSwag), ``macro_f1``.
    """
    lm_eval = require_lm_eval()
    results: dict[str, dict] = {}
    versions: dict[str, Any] = {}
    for name, path in models.items():
        out = run_harness(path, tasks, limit, dataset_override, **options)
        results[name] = {task: _summary(out, task) for task in tasks}
        versions = out["versions"]
    return {
        "lm_eval_version": lm_eval.__version__,
        "num_fewshot": 0,
        "limit": limit,
        "tasks": {task: {"harness_task": HARNESS_TASKS[task], "version": versions.get(HARNESS_TASKS[task]),
                         "split": "test",
                         "data": "skt/kobest_v1 (the harness's default)" if dataset_override is None
                         else _files(dataset_override[task])}
                  for task in tasks},
        "results": results,
    }


__all__ = ["LM_EVAL_VERSION", "HARNESS_TASKS", "evaluate_kobest_harness", "kobest_data_files", "require_lm_eval",
           "run_harness"]
