"""Hugging Face hub access that fails fast, and says what to download, when offline.

``full`` reads microsoft/phi-2, Korean web text and KoBEST from the hub at pinned revisions.
Without a network the hub client retries for tens of seconds before giving up; here we check
first (``HF_HUB_OFFLINE`` or a short connection probe) and then look only in the local cache.
Shown in the chapter "Run the full-scale version".
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from functools import lru_cache

from ..errors import OfflineError


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when ``HF_HUB_OFFLINE`` is unset and the hub endpoint accepts a TCP connection."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urllib.parse.urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _download_hint(repo_id: str, revision: str, repo_type: str, include: str | None) -> str:
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    inc = f" --include '{include}'" if include else ""
    return (
        f"On a machine with network access run\n"
        f"    hf download {repo_id}{kind} --revision {revision}{inc}\n"
        f"(older clients: huggingface-cli download ...), then copy the Hugging Face cache "
        f"(~/.cache/huggingface/hub, or $HF_HOME/hub) to this machine, or point HF_HOME at it, "
        f"and run again with HF_HUB_OFFLINE=1."
    )


def resolve_snapshot(repo_id: str, revision: str, *, repo_type: str = "model",
                     include: str | None = None, what: str = "") -> str:
    """Return a local snapshot directory of ``repo_id`` at ``revision``, downloading if online.

    Offline, only the local cache is consulted, and a missing snapshot raises
    :class:`OfflineError` naming the exact download command. Used by ``base_model.load_base``
    at ``full`` and by the KoBEST loader.
    """
    from huggingface_hub import snapshot_download

    patterns = [include] if include else None
    try:
        return snapshot_download(repo_id, revision=revision, repo_type=repo_type,
                                 allow_patterns=patterns, local_files_only=True)
    except Exception:
        pass
    if not hub_reachable():
        label = what or repo_id
        raise OfflineError(
            f"{label} ({repo_type} {repo_id} at revision {revision}) is needed but the Hugging Face "
            f"hub cannot be reached (offline, or HF_HUB_OFFLINE=1) and it is not in the local cache.\n"
            + _download_hint(repo_id, revision, repo_type, include)
        )
    return snapshot_download(repo_id, revision=revision, repo_type=repo_type, allow_patterns=patterns)
