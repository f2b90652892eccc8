"""Content fingerprints: of a store (what the privacy gate binds an audit to) and of a source
dataset (what a study's ``prepare`` stage is keyed by).

**Store hash** (:func:`store_hash`): SHA-256 over every file of the store folder — the
``image`` and ``label`` chunk files and array metadata, ``samples.csv`` (so the splits are
part of it), ``store.json`` (so the provenance is too) and the group's ``zarr.json`` — in
sorted order of their relative paths, each contributing its relative path, its size and its
bytes. It depends on the content only: not on where the store is, its file times or the
current directory. Hidden files (names starting with ``.``, e.g. ``.DS_Store``) are not
part of a store and are skipped. Cost: one read of the store's compressed bytes (SHA-256 runs
at about 1.6 GB/s per core here; ``benchmarks/memorization.py`` measures it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: The hash function of every fingerprint.
HASH = "sha256"
_BLOCK = 1 << 20


def file_digest(path: str | Path) -> str:
    """SHA-256 hex of one file's bytes, read in 1 MiB blocks (memory stays flat)."""
    digest = hashlib.new(HASH)
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(_BLOCK)
        view = memoryview(buffer)
        while True:
            got = handle.readinto(buffer)
            if not got:
                break
            digest.update(view[:got])
    return digest.hexdigest()


def _visible_files(root: Path) -> list[Path]:
    """Regular files under ``root`` (recursively, symlinked files followed), hidden names skipped, sorted."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(folder) / n for n in names if not n.startswith(".")]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def store_hash(path: str | Path) -> str:
    """The content hash of the store folder ``path`` (see the module docstring): ``"sha256:<hex>"``.

    Raises:
        FileNotFoundError: ``path`` is not a folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such store folder")
    total = hashlib.new(HASH)
    for file in _visible_files(root):
        rel = file.relative_to(root).as_posix()
        total.update(f"{rel}\0{file.stat().st_size}\0{file_digest(file)}\n".encode())
    return f"{HASH}:{total.hexdigest()}"
