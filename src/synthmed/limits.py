"""Limits before work: what a command will need in memory and on disk, estimated from its shapes
and counts and checked against this machine before anything is computed.

Each estimate is a round figure meant to tell "cannot possibly fit" from "may fit": it counts
what the command must hold at once (one case or batch per worker) and what it must write
(compressed, at a compression ratio measured on phantom data, so a store of noisier data
needs more). A command refuses when its estimate exceeds the memory available now
(``MemAvailable``) or the free space of the output's file system, with the estimate in the
message; ``force=True`` (``--force``) goes ahead anyway.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from synthmed.errors import SynthmedError

#: Peak bytes per voxel of synthesising one phantom case (measured: 49 at 155×240×240).
PHANTOM_BYTES_PER_VOXEL = 40
#: Bytes per voxel of a phantom case on disk (4 int16 images + uint8 label, gzip: measured 1.0–1.2).
PHANTOM_DISK_PER_VOXEL = 0.8
#: Peak bytes per source voxel of reading and cutting one case in ``prepare`` (float32
#: channels, label, normalised copy, resampling).
PREPARE_BYTES_PER_VOXEL = 40
#: Compressed / raw bytes of a store's arrays (measured 0.30 on a prepared phantom store).
STORE_COMPRESSION = 0.25
#: Share of a volume's axial slices a 2D store keeps (those with enough brain), a low guess.
SLICES_KEPT = 0.4


class ResourceError(SynthmedError):
    """A command would need more memory or disk than this machine has (``--force`` to try anyway)."""


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` of ``/proc/meminfo``; else free physical pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**62  # unknown: do not refuse


def free_disk(path: str | Path) -> int:
    """Free bytes of the file system that ``path`` (or its nearest existing parent) is on."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return 2**62


def human(n: float) -> str:
    """``1234567`` → ``"1.2 MB"`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


@dataclass(frozen=True)
class Estimate:
    """What a command needs: ``memory`` and ``disk`` in bytes, and how each was estimated."""

    memory: float
    disk: float
    memory_how: str
    disk_how: str


def check(command: str, estimate: Estimate, out: str | Path, *, force: bool = False) -> None:
    """Refuse ``estimate`` if it exceeds this machine's available memory or ``out``'s free disk.

    Raises:
        ResourceError: one line with the estimate, what is available and ``--force``.
    """
    if force:
        return
    memory, disk = available_memory(), free_disk(out)
    if estimate.memory > memory:
        raise ResourceError(f"{command}: needs about {human(estimate.memory)} of memory ({estimate.memory_how}) but "
                            f"{human(memory)} is available; pass --force to try anyway")
    if estimate.disk > disk:
        raise ResourceError(f"{command}: needs about {human(estimate.disk)} of disk ({estimate.disk_how}) but "
                            f"{out} has {human(disk)} free; pass --force to try anyway")


def phantom_estimate(cases: int, shape: Sequence[int], workers: int) -> Estimate:
    """``data phantom``: one case per worker in memory; every case on disk."""
    voxels = math.prod(int(s) for s in shape)
    dims = "×".join(str(int(s)) for s in shape)
    at_once = max(1, min(int(workers), int(cases)))
    return Estimate(PHANTOM_BYTES_PER_VOXEL * voxels * at_once, PHANTOM_DISK_PER_VOXEL * voxels * cases,
                    f"{at_once} case(s) of {dims} voxels at once, ~{PHANTOM_BYTES_PER_VOXEL} bytes a voxel",
                    f"{cases} cases of {dims} voxels, ~{PHANTOM_DISK_PER_VOXEL} bytes a voxel compressed")


def store_bytes(n: int, sample_shape: Sequence[int]) -> float:
    """Raw bytes of ``n`` samples (float32 image ``sample_shape`` + uint8 label) in a store."""
    spatial = math.prod(int(s) for s in sample_shape[1:])
    return float(n) * spatial * (4 * int(sample_shape[0]) + 1)


def prepare_estimate(cases: int, source_shape: Sequence[int], dims: int, size: int, in_flight: int) -> Estimate:
    """``data prepare``: ``in_flight`` source cases plus one store chunk (at least one sample) in
    memory; the samples of every case on disk (2D: :data:`SLICES_KEPT` of the axial slices)."""
    voxels = math.prod(int(s) for s in source_shape[:3])
    sample = (4, *(int(size),) * dims)
    per_case = 1 if dims == 3 else max(1, int(SLICES_KEPT * int(source_shape[0]) if len(source_shape) else 1))
    chunk = max(store_bytes(1, sample), 8 * 2**20)
    src = "×".join(str(int(s)) for s in source_shape[:3])
    return Estimate(PREPARE_BYTES_PER_VOXEL * voxels * in_flight + 2 * chunk,
                    STORE_COMPRESSION * store_bytes(cases * per_case, sample),
                    f"{in_flight} case(s) of {src} voxels in flight and a store chunk of {human(chunk)}",
                    f"{cases * per_case} samples of {list(sample)}, compressed to ~{STORE_COMPRESSION:g}")


def sample_estimate(n: int, batch: int, sample_shape: Sequence[int]) -> Estimate:
    """``generator sample``: a few copies of one batch in memory (the network's own memory not
    counted); ``n`` samples on disk."""
    return Estimate(4 * store_bytes(min(batch, n), sample_shape) + 2 * max(store_bytes(1, sample_shape), 8 * 2**20),
                    STORE_COMPRESSION * store_bytes(n, sample_shape),
                    f"batches of {min(batch, n)} samples of {list(sample_shape)}",
                    f"{n} samples of {list(sample_shape)}, compressed to ~{STORE_COMPRESSION:g}")
