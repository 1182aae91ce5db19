"""Device, dtype and random-state handling shared by every step.

Results must not depend on the global random state: every random draw in eeve_lib goes through
a ``torch.Generator`` seeded from the profile, or happens inside :func:`seeded` which restores
the global state afterwards. Every step uses it; the chapters never call it directly.
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch

from .errors import EeveError


def resolve_device(device: str | None) -> torch.device:
    """``auto`` means CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EeveError(f"device {device!r} was asked for, but no CUDA GPU is visible. Use device 'cpu' or 'auto'.")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` means bfloat16 on a GPU that supports it, else float32."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A private generator, independent of the global random state."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with all global RNGs seeded, and restore their previous states afterwards.

    For code we do not own that draws from the global state (model construction in transformers).
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Ask torch for deterministic kernels for the duration of the block."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def describe_hardware() -> dict:
    """Device, CPU and version facts for the status page."""
    import os
    import platform

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info
