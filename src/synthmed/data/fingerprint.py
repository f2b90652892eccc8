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

**Source hash** (:func:`source_hash`): SHA-256 over the files ``prepare`` would read (as the
layout reader lists them) — case id, path relative to the dataset and SHA-256 of the bytes —
with an optional cache of file digests keyed by size and modification time, so a rerun reads
file metadata only and a changed file is hashed again (``benchmarks/source_hash.py``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: The hash function of every fingerprint.
HASH = "sha256"
_BLOCK = 1 << 20


def file_digest(path: str | Path, digest: "hashlib._Hash | None" = None) -> str:
    """Hex digest of one file's bytes, read in 1 MiB blocks (memory stays flat): SHA-256, or
    the fresh hash object ``digest`` (e.g. ``hashlib.blake2b(digest_size=32)``)."""
    digest = hashlib.new(HASH) if digest is None else digest
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


# ----------------------------------------------------------------------------- source datasets

#: A file modified less than this many seconds ago is hashed again next time (its time may not
#: yet tell a later change of the same size apart: file-system time granularity).
RECENT_S = 2.0


def source_files(src: str | Path, layout: str = "auto") -> list[tuple[str, Path]]:
    """``(case id, file)`` for every file ``prepare`` would read from the dataset at ``src``
    (each case's channel and label files, as its layout reader finds them), plus the dataset's
    own description (the CSV manifest, or ``dataset.json`` as ``""``), sorted.

    Raises:
        DataError: the dataset cannot be listed (as ``prepare`` would raise).
    """
    from synthmed.data.layouts import detect_layout, discover_cases

    src = Path(src)
    layout = detect_layout(src) if layout == "auto" else layout
    files = [(source.id, path) for source in discover_cases(src, layout) for path in source.files()]
    for meta in ([src] if src.is_file() else [src / "dataset.json"]):
        if meta.is_file():
            files.append(("", meta))
    return sorted(files, key=lambda item: (item[0], str(item[1])))


def source_hash(src: str | Path, layout: str = "auto", *, cache: str | Path | None = None) -> str:
    """Content hash of a source dataset: SHA-256 over each of :func:`source_files`' case id,
    path (relative to ``src``) and SHA-256 of its bytes — so editing a label file, adding or
    deleting a case or renaming one changes it, and touching a file or moving the dataset
    does not.

    With ``cache`` (a JSON file), a file whose absolute path, size and modification time
    (ns) are as recorded reuses its recorded digest: a rerun reads only file metadata, and a
    changed file is hashed again. Entries of other datasets' files are kept (one cache serves
    a study's datasets); those of deleted files are dropped. The cache is rewritten (atomically) when it changed and
    its folder exists.

    Raises:
        DataError: the dataset cannot be listed.
    """
    import json
    import time

    from synthmed.atomic import atomic_file

    src = Path(src)
    base = src.parent if src.is_file() else src
    known: dict[str, list] = {}
    if cache is not None and Path(cache).is_file():
        try:
            known = json.loads(Path(cache).read_text())
        except (OSError, ValueError):
            known = {}
    files = [(case, path, str(path.resolve())) for case, path in source_files(src, layout)]
    listed = {key for _, _, key in files}
    # one cache serves every dataset of a study: keep the entries of files other datasets list
    fresh: dict[str, list] = {k: v for k, v in known.items() if k not in listed and os.path.lexists(k)}
    total = hashlib.new(HASH)
    now = time.time()
    for case, path, key in files:
        st = path.stat()
        entry = known.get(key)
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == [st.st_size, st.st_mtime_ns]:
            digest = entry[2]
        else:
            digest = file_digest(path)
        if now - st.st_mtime_ns / 1e9 > RECENT_S:
            fresh[key] = [st.st_size, st.st_mtime_ns, digest]
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:  # a CSV manifest may point outside its folder
            rel = key
        total.update(f"{case}\0{rel}\0{digest}\n".encode())
    if cache is not None and fresh != known and Path(cache).parent.is_dir():
        with atomic_file(cache) as tmp:
            tmp.write_text(json.dumps(fresh) + "\n")
    return f"{HASH}:{total.hexdigest()}"
