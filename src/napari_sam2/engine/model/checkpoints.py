"""Finding, downloading and hashing SAM 2 checkpoint files (no model is built here)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from ..errors import CheckpointCorruptError, CheckpointNotFoundError, HubUnavailableError
from .registry import ModelSpec

CHECKPOINT_DIR_ENV = "NAPARI_SAM2_CHECKPOINT_DIR"


def default_checkpoint_dirs() -> list[Path]:
    """Where we look for official checkpoint files, in order."""
    dirs = []
    env = os.environ.get(CHECKPOINT_DIR_ENV)
    if env:
        dirs.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    dirs += [
        Path.home() / ".cache" / "napari-sam2",
        Path.home() / ".cache" / "sam2",
        Path.cwd() / "checkpoints",
    ]
    return dirs


def find_checkpoint(spec: ModelSpec, checkpoint=None, search_dirs=None) -> Path | None:
    """Resolve a checkpoint file without the network; None when nothing is found.

    ``checkpoint`` may be a file (returned if it exists, else an error) or a directory
    holding the official file name.
    """
    if checkpoint is not None:
        p = Path(checkpoint).expanduser()
        if p.is_dir():
            cand = p / spec.checkpoint_name
            if cand.is_file():
                return cand
            raise CheckpointNotFoundError(_missing_message(spec, [p]))
        if p.is_file():
            return p
        raise CheckpointNotFoundError(
            f"Checkpoint file {str(p)!r} does not exist. " + _how_to_get(spec)
        )
    dirs = list(search_dirs) if search_dirs is not None else default_checkpoint_dirs()
    for d in dirs:
        cand = Path(d) / spec.checkpoint_name
        if cand.is_file():
            return cand
    return _hf_cached(spec)


def _hf_cached(spec: ModelSpec) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        p = try_to_load_from_cache(spec.hf_id, spec.checkpoint_name)
    except Exception:  # noqa: BLE001 - a broken cache is just "not cached"
        return None
    return Path(p) if isinstance(p, str) and Path(p).is_file() else None


def download_checkpoint(spec: ModelSpec) -> Path:
    """Fetch the checkpoint from the Hugging Face hub (needs huggingface_hub + network)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise HubUnavailableError(
            "huggingface_hub is not installed (pip install 'napari-sam2[hub]'). "
            + _how_to_get(spec)
        ) from e
    try:
        path = Path(hf_hub_download(spec.hf_id, spec.checkpoint_name))
    except Exception as e:  # noqa: BLE001 - offline, DNS, 404, auth...
        raise HubUnavailableError(
            f"Could not download {spec.checkpoint_name} from the Hugging Face hub "
            f"({spec.hf_id}): {type(e).__name__}: {e}. " + _how_to_get(spec)
        ) from e
    verify_download(path, spec)
    return path


def verify_download(path, spec: ModelSpec) -> None:
    """Check a downloaded checkpoint against its content hash; remove it when it differs.

    ``hf_hub_download`` writes to a temporary ``.incomplete`` file and renames it when
    complete (atomic: a half-written file never carries the final name).  A large file
    of the hub is stored as ``blobs/<sha256>`` with the name in ``snapshots/`` linking to
    it, so the blob's name is the hash the content must have.
    """
    path = Path(path)
    blob = path.resolve()
    expected = blob.name.lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        return  # not a content-addressed blob: nothing to compare with
    actual = file_sha256(blob)
    if actual == expected:
        return
    for p in {path, blob}:
        with contextlib.suppress(OSError):
            p.unlink()
    raise CheckpointCorruptError(
        f"The downloaded {spec.checkpoint_name} is damaged (SHA-256 {actual[:12]}… instead "
        f"of {expected[:12]}…); it was deleted. Download it again. " + _how_to_get(spec)
    )


def _how_to_get(spec: ModelSpec) -> str:
    return (
        f"Download {spec.checkpoint_name} from {spec.url} (or the Hugging Face repo "
        f"{spec.hf_id}) and pass its path as checkpoint=..., or put it in one of: "
        + ", ".join(str(d) for d in default_checkpoint_dirs())
        + f" (set {CHECKPOINT_DIR_ENV} to add a folder)."
    )


def _missing_message(spec: ModelSpec, dirs) -> str:
    where = ", ".join(str(d) for d in dirs)
    return (
        f"No SAM {spec.version} '{spec.size}' checkpoint ({spec.checkpoint_name}) found in {where}. "
        + _how_to_get(spec)
    )


def resolve_checkpoint(spec: ModelSpec, checkpoint=None, *, allow_download: bool = False) -> Path:
    """Like :func:`find_checkpoint` but raises a helpful error when nothing is found."""
    found = find_checkpoint(spec, checkpoint)
    if found is not None:
        return found
    if allow_download:
        return download_checkpoint(spec)
    raise CheckpointNotFoundError(_missing_message(spec, default_checkpoint_dirs()))


def file_sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
