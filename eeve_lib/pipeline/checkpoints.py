"""Resumable training checkpoints as safetensors plus JSON: loading one never runs code.

A checkpoint (``train/stage<N>/checkpoint.safetensors``) holds the trainable tensors, the
optimizer's state and the RNG state of a stage in progress, with its key, step and loss log. The
tensors are stored as safetensors; everything else (key, step, log, the optimizer's param-group
hyperparameters and non-tensor state) is JSON in the file's metadata, with a small tagging for
what JSON lacks (tuples, integer keys, tensors by name). Loading reads only tensors and JSON, so a
crafted file can at worst be refused. Pickles (``torch.save`` files, such as the ``checkpoint.pt``
of earlier versions of eeve) are never loaded: they are refused with a message saying what to
delete. Used by the pipeline's stage training (:mod:`eeve_lib.pipeline.training`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import TrainingError
from . import atomic

FORMAT = "eeve-checkpoint-1"
_META_KEY = "eeve_checkpoint"
# What torch.save writes: a zip archive (current format) or a bare pickle (protocol 2 and later).
_PICKLE_STARTS = (b"PK\x03\x04", b"\x80")


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor], storages: set) -> Any:
    """``value`` as JSON, its tensors moved to ``tensors`` under their path."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in storages and t.numel():  # safetensors refuses tensors that share memory
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        tensors[path] = t
        return {"__tensor__": path}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}/{i}", tensors, storages) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}/{i}", tensors, storages) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__dict__": {k: _encode(v, f"{path}/{k}", tensors, storages) for k, v in value.items()}}
        if all(isinstance(k, int) for k in value):
            return {"__intdict__": [[k, _encode(v, f"{path}/{k}", tensors, storages)] for k, v in value.items()]}
    elif value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TrainingError(f"checkpoint: cannot store {type(value).__name__} at {path}; this is a bug in eeve.")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _decode(v, tensors) for k, v in value["__dict__"].items()}
        if "__intdict__" in value:
            return {int(k): _decode(v, tensors) for k, v in value["__intdict__"]}
        raise ValueError(f"unknown entry {sorted(value)[:3]}")
    return value


def save_checkpoint(path: str | os.PathLike, *, key: str, step: int, trainable: dict[str, torch.Tensor],
                    optimizer: dict[str, Any], log: dict[str, Any], rng: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (temporary file, then rename); ``optimizer`` is a state_dict."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    payload = {"key": key, "step": step, "trainable": trainable, "optimizer": optimizer, "log": log, "rng": rng}
    meta = {"format": FORMAT, "state": _encode(payload, "s", tensors, set())}
    from safetensors.torch import save_file

    with atomic.file(path) as tmp:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(meta)})
    return path


def _refuse(path: Path, why: str) -> TrainingError:
    return TrainingError(
        f"{path} {why}. Delete it (the stage then restarts from its beginning), or start the run afresh "
        f"(the same eeve run command, with --fresh added).")


def _is_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4).startswith(_PICKLE_STARTS)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (key, step, trainable, optimizer, log, rng), or None if there is none.

    Raises :class:`TrainingError` naming the file for a pickle, a legacy ``checkpoint.pt`` beside
    it, or anything that is not a checkpoint eeve wrote; nothing in the file is ever executed.
    """
    path = Path(path)
    legacy = path.with_suffix(".pt")
    if legacy != path and legacy.exists():
        raise _refuse(legacy, "is a checkpoint in the pickle format of earlier versions of eeve, which is never "
                              "loaded because loading a pickle can run arbitrary code")
    if not path.exists():
        return None
    try:
        if _is_pickle(path):
            raise _refuse(path, "is a pickle (torch.save) file, which eeve never loads because loading a pickle "
                                "can run arbitrary code")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {}).get(_META_KEY, "null"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise _refuse(path, "is not a checkpoint written by this version of eeve")
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        state = _decode(meta["state"], tensors)
        if not isinstance(state, dict) or not {"key", "step", "trainable", "optimizer", "log", "rng"} <= set(state):
            raise ValueError("entries are missing")
        return state
    except TrainingError:
        raise
    except Exception as e:  # noqa: BLE001 - any damage to the file is the same refusal
        raise _refuse(path, f"cannot be read as a checkpoint ({type(e).__name__}: {e})") from None
