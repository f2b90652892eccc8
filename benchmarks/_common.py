"""Pieces shared by the benchmark scripts (not a benchmark: `make bench` skips ``_*.py``).

- :func:`write_result`: the JSON every script writes to ``benchmarks/results/``;
- :func:`synthmed`: a ``synthmed`` command in a child process at one thread;
- :func:`time_stage`: a stage of a benchmark, its wall time recorded;
- :func:`peak_rss_mib`: this process's peak resident memory (for measurements in a fresh child);
- :func:`random_store`: a 2D store of smooth noise with blob masks;
- :func:`timed`, :func:`full_loop`, :func:`bare_loop`, :func:`loop_rates`: a training loop's
  overhead measured against a bare loop stepping the same task on preloaded tensors. Each
  step's start time is recorded; a step's cost is the interval to the next step's start (for
  the full loop it includes fetching and moving the batch, seeding, logging and the progress
  bar); samples/s = batch / median interval (the median resists bursts of load from other
  processes; mean-based rates are reported too).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from synthmed.data.store import Store, StoreWriter
from synthmed.training import FabricOptions, LoopOptions, StepContext, StepRandom, batch_stream, make_fabric, open_run, train

RESULTS = Path(__file__).parent / "results"

TaskT = TypeVar("TaskT", bound=type)
R = TypeVar("R")


def write_result(out: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON to ``out`` (creating its folder) and print it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    out.write_text(text + "\n")
    print(text)


def synthmed(*args: str, quiet: bool = True, threads: int = 1) -> None:
    """Run a ``synthmed`` command in a child process (``threads`` threads), failing loudly."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, "-m", "synthmed", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL if quiet else None)


def time_stage(seconds: dict[str, float], name: str, fn: Callable[..., R], *args: Any) -> R:
    """``fn(*args)``, its wall time (s, one decimal) recorded in ``seconds[name]``."""
    start = time.perf_counter()
    out = fn(*args)
    seconds[name] = round(time.perf_counter() - start, 1)
    return out


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_store(path: Path, *, n: int, side: int, seed: int = 0, slices_per_case: int = 1) -> Store:
    """``n`` 4×side×side samples (smooth noise in [0, 1], blob masks with all three tumour
    labels), ``slices_per_case`` consecutive samples per case id, all in split ``train``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side), indexing="ij")
    with StoreWriter(path, dims=2, channels=("t1", "t1ce", "t2", "flair"), sample_shape=(4, side, side),
                     spacing=(1, 1, 1), normalisation={}, provenance={"benchmark": True}, synthetic=False) as writer:
        for start in range(0, n, 64):
            m = min(64, n - start)
            cy, cx = rng.uniform(-0.5, 0.5, (2, m, 1, 1))
            r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
            labels = np.select([r < 0.15, r < 0.3, r < 0.45], [1, 3, 2], 0).astype(np.uint8)
            images = np.clip(0.5 + 0.3 * np.cos(4 * r)[:, None] + 0.05 * rng.standard_normal((m, 4, side, side)), 0, 1)
            rows = [{"case_id": f"c{i // slices_per_case}", "slice": i % slices_per_case, "split": "train",
                     "source": "benchmark"} for i in range(start, start + m)]
            writer.append(images.astype(np.float32), labels, rows)
    return writer.store


def timed(task_cls: TaskT) -> TaskT:
    """A subclass of the training task ``task_cls`` that records when each step starts and
    when the last one ends; ``intervals()`` gives the step costs without the warm-up step."""

    class Timed(task_cls):  # type: ignore[misc, valid-type]
        def training_step(self, batch, ctx):  # noqa: ANN001
            self.__dict__.setdefault("starts", []).append(time.perf_counter())
            out = super().training_step(batch, ctx)
            self.end = time.perf_counter()
            return out

        def intervals(self) -> list[float]:
            return [b - a for a, b in zip(self.starts, self.starts[1:] + [self.end])][1:]

    return Timed  # type: ignore[return-value]


def full_loop(task: Any, dataset: torch.utils.data.Dataset, batch: int, run: Path, steps: int,
              progress: bool) -> list[float]:
    """Step costs of ``synthmed.training.train`` (a timed task) over a batch stream of ``dataset``."""
    fabric = make_fabric(FabricOptions(device="cpu"))
    opened = open_run(run, kind="bench", model={}, training={}, seed=0, overwrite=True)
    options = LoopOptions(steps=steps, checkpoint_every=10**9, log_every=10, progress=progress, description="full loop")
    train(task, fabric, opened, lambda s: batch_stream(dataset, batch, seed=0, start_step=s), options)
    return task.intervals()


def bare_loop(task: Any, store: Store, batch: int, steps: int) -> list[float]:
    """Step costs of a plain ``for`` loop calling the (timed) task's ``training_step`` on
    ``steps`` batches of ``store`` preloaded in memory."""
    fabric = make_fabric(FabricOptions(device="cpu"))
    task.setup(fabric)
    images, labels = store.read(slice(0, batch * steps))
    batches = [(torch.from_numpy(images[i : i + batch]), torch.from_numpy(labels[i : i + batch]))
               for i in range(0, len(images), batch)]
    for step, pair in enumerate(batches):
        task.training_step(pair, StepContext(step, StepRandom(0, step), fabric))
    return task.intervals()


def loop_rates(full: Sequence[float], bare: Sequence[float], batch: int, target: float) -> dict[str, Any]:
    """samples/s of both loops (median and mean based), their ratio, the target and verdict."""
    full_rate, bare_rate = batch / statistics.median(full), batch / statistics.median(bare)
    ratio = full_rate / bare_rate
    return {
        "full_loop_samples_per_s": round(full_rate, 2), "bare_loop_samples_per_s": round(bare_rate, 2),
        "mean_based": {"full_loop_samples_per_s": round(batch * len(full) / sum(full), 2),
                       "bare_loop_samples_per_s": round(batch * len(bare) / sum(bare), 2)},
        "ratio": round(ratio, 3), "target": target, "meets_target": ratio >= target,
    }
