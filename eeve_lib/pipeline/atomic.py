"""Write outputs so that nothing half-written is ever left behind.

Every file and directory under ``runs/`` is written to a temporary sibling first and renamed
into place only when complete: a crash or a bad input leaves the previous state untouched. Every
chapter writes through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _read_umask() -> int:
    mask = os.umask(0o022)  # setting it is the portable way to read it: done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _umask() -> int:
    """The process's umask now (Linux says it in /proc without changing it; elsewhere, at import)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK


def _as_if_created(path: Path, mode: int, umask: int | None = None) -> Path:
    """tempfile makes private files (0600) and folders (0700), and so do writers that make their own
    temporaries (safetensors); an output gets the permissions a plain ``open`` or ``mkdir`` would give
    it, so a shared run or ``results/`` stays readable."""
    os.chmod(path, mode & ~(_umask() if umask is None else umask))
    return path


def _as_if_created_tree(root: Path) -> None:
    """:func:`_as_if_created` for everything a writer left under the folder ``root`` (links untouched)."""
    umask = _umask()
    for written in root.rglob("*"):
        if not written.is_symlink() and (written.is_file() or written.is_dir()):
            _as_if_created(written, 0o777 if written.is_dir() else 0o666, umask)


@contextlib.contextmanager
def file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it becomes ``path`` when the block succeeds
    and is removed otherwise (for writers that want a file name, e.g. safetensors)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = _as_if_created(Path(name), 0o666)
    try:
        yield tmp
        # Again after the writer: one that replaces the file (safetensors' save_file) makes it 0600.
        _as_if_created(tmp, 0o666)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, then rename)."""
    with file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted UTF-8 JSON, atomically."""
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


@contextlib.contextmanager
def directory(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` when the block succeeds.

    On an exception the temporary directory is removed and ``path`` is left as it was.
    With ``replace=False`` an existing ``path`` is an error instead of being replaced.
    """
    path = Path(path)
    if path.exists() and not replace:
        raise FileExistsError(f"{path} exists already; remove it or choose another output directory.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _as_if_created(Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)), 0o777)
    try:
        yield tmp
        _as_if_created_tree(tmp)  # some writers (safetensors, tempfile) make private files and folders too
        if path.exists():
            # Move the old copy aside first so that the rename below never sees a non-empty target.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def model_directory(path: str | os.PathLike, marker_name: str, model, tokenizer, record: dict[str, Any],
                    dtype=None, *, weights_of: str | os.PathLike | None = None,
                    leave_out: tuple[str, ...] = ()) -> Path:
    """Save ``model`` and ``tokenizer`` (Hugging Face folders, safetensors) with ``record`` as
    ``marker_name``, atomically; floating-point tensors are stored as ``dtype`` when given.

    ``weights_of``: a model folder written by this function from these very weights, in the same
    dtype (the last stage's folder, when ``path`` is the final model). Its files are taken instead
    of writing them again: the weights hard-linked (one copy on disk of the run's largest file;
    every write under ``runs/`` replaces files, never rewrites them, so neither copy changes the
    other), copied where the disk cannot link, the small files copied but for its own marker
    (``leave_out``).
    """
    import torch

    stored = str(dtype or torch.float32).removeprefix("torch.")
    if weights_of is not None and json.loads((Path(weights_of) / "config.json").read_text()).get("dtype") != stored:
        weights_of = None  # saved in another dtype (a profile's save_dtype changed since): write them
    with directory(path) as tmp:
        if weights_of is not None:
            source = Path(weights_of)
            for item in sorted(source.iterdir()):
                if item.name in (marker_name, *leave_out) or item.name.startswith(".") or not item.is_file():
                    continue
                if item.suffix == ".safetensors":
                    try:
                        os.link(item, tmp / item.name)
                        continue
                    except OSError:
                        pass
                shutil.copyfile(item, tmp / item.name)
        elif dtype is not None and dtype != torch.float32:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
            model.save_pretrained(tmp, safe_serialization=True, state_dict=state)
            config = json.loads((tmp / "config.json").read_text())
            config["dtype"] = stored
            write_json(tmp / "config.json", config)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        if weights_of is None:
            tokenizer.save_pretrained(tmp)
        write_json(tmp / marker_name, record)
    return Path(path)
