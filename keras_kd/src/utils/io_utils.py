"""Small helpers shared by the modules that write files or show progress.

Private to keras-kd: the cache and the export both write through a hidden
temporary sibling and an atomic rename, and both follow Keras's verbosity.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import List

import numpy as np


def check_verbose(verbose) -> int:
    """Keras's verbosity: "auto" (1), 0, 1 or 2.

    Example:

    >>> check_verbose("auto")
    1
    """
    if verbose == "auto":
        return 1
    if isinstance(verbose, (bool, int, np.integer)) and int(verbose) in (0, 1, 2):
        return int(verbose)
    raise ValueError(
        "`verbose` must be 'auto', 0 (silent), 1 (progress bar) or 2 (one line "
        f"per run). Received: verbose={verbose!r}."
    )


def unique_sibling(path: Path, tag: str) -> Path:
    """A hidden, unused name next to `path` (same file system, so it can be
    renamed onto `path`), unique across processes and threads."""
    return path.with_name(f".{path.name}.{tag}.{os.getpid()}.{secrets.token_hex(6)}")


def check_writable_directory(path: Path) -> List[Path]:
    """Raises a `ValueError` naming `path` unless its directory takes a new file.

    Creates the directory if needed, then creates and removes a probe file
    (permission bits alone do not tell, e.g. for root or a read-only mount).
    Returns the directories it created, deepest first, so that a writer that
    fails later can remove them again (`remove_empty_directories`).

    Example:

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> created = check_writable_directory(root / "a" / "b" / "model.tflite")
    >>> [str(d.relative_to(root)) for d in created]
    ['a/b', 'a']
    >>> remove_empty_directories(created)
    >>> sorted(root.iterdir())
    []
    """
    parent = path.parent
    created = []
    for directory in (parent, *parent.parents):
        if directory.exists() or directory.is_symlink():
            break
        created.append(directory)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = unique_sibling(path, "probe")
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.remove(probe)
    except OSError as error:
        remove_empty_directories(created)
        raise ValueError(
            f"Cannot write to `path`: its directory '{parent}' is not writable "
            f"({error.strerror or error}). Received: path='{path}'."
        ) from error
    return created


def remove_empty_directories(directories: List[Path]) -> None:
    """Removes `directories` (deepest first) while they are empty: what
    `check_writable_directory` created for a write that then failed. One
    that something else has put a file in meanwhile is kept, with its parents."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return
