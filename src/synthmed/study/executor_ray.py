"""The Ray executor: each pending stage of a study is a Ray task on a cluster.

A stage is submitted as soon as its inputs are done (:func:`~synthmed.study.scheduler.run_concurrently`,
the loop the local process pool shares) and declares the CPUs and GPUs it needs, so Ray packs
stages onto nodes by their resources. One training spread over several GPUs or nodes is not
Ray's job: it stays Fabric/DDP inside its stage.

Conventions:

- **Shared filesystem.** Every node reads its inputs from, and writes its stage folder into,
  the study folder, which must therefore be on a filesystem all nodes mount at the same path
  (NFS, Lustre, a cloud file store). After each task the driver checks that the stage's
  ``done.json`` is there, and raises a :class:`~synthmed.errors.SynthmedError` saying so if not.
- **Resources.** Every stage takes 1 CPU. When the study's ``device`` is ``cuda``, or ``auto``
  and the cluster has GPUs, ``fit``, ``train``, ``classify`` and ``progression_fit`` take 1 GPU
  and ``encoder``, ``sample``, ``fidelity``, ``evaluate``, ``classify_eval`` and
  ``progression_eval`` (which run a small or trained network on the same device) take half of
  one; ``prepare`` and ``memorization`` run on CPUs. A task that asks for no GPU sees none (Ray hides them), so a
  stage on ``device: cuda`` must ask for one. ``executor.resources`` overrides both per kind.
- **Retries.** A failed task is retried ``retries`` times (``max_retries`` with
  ``retry_exceptions=True``); stage folders are atomic, so a retry starts clean.
- **Cluster.** ``address`` joins an existing cluster (``ray start --head`` elsewhere, or
  ``auto``); without one a local cluster is started for the run and shut down after it. A
  driver already connected (``ray.init`` called by the caller) is used as it is and left so.
- Workers import :mod:`synthmed` from their own environment (install it on every node); the
  driver's ``sys.path`` is appended to each worker's, so stage functions defined in modules
  only the driver's path reaches (tests, notebooks' helper modules) still unpickle.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from synthmed.errors import SynthmedError
from synthmed.study.plan import Plan, Stage
from synthmed.study.scheduler import Callback, run_concurrently
from synthmed.study.stage_run import run_stage_in_worker
from synthmed.study.stages import STAGE_FUNCTIONS, StageFn

if TYPE_CHECKING:
    from synthmed.study.spec import ExecutorSpec

#: GPUs a stage kind takes when the study uses GPUs (kinds not listed take none).
GPU_SHARE = {"fit": 1.0, "train": 1.0, "classify": 1.0, "progression_fit": 1.0, "encoder": 0.5, "sample": 0.5,
             "fidelity": 0.5, "evaluate": 0.5, "classify_eval": 0.5, "progression_eval": 0.5}


def import_ray() -> ModuleType:
    """``import ray``, or a :class:`SynthmedError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SynthmedError("the ray executor needs Ray, which is not installed: pip install 'synthmed[ray]'") from None
    return ray


def _ray_stage(plan: Plan, out: str, key: str, threads: int, functions: bytes | None,
               driver_path: list[str]) -> float:
    """The body of a stage's Ray task (see :func:`~synthmed.study.stage_run.run_stage_in_worker`)."""
    import pickle

    sys.path.extend(p for p in driver_path if p not in sys.path)
    return run_stage_in_worker(plan, out, key, threads, pickle.loads(functions) if functions else None)


def stage_resources(kind: str, *, gpus: bool, overrides: dict[str, dict[str, float]] | None = None
                    ) -> dict[str, float]:
    """``{"cpus": …, "gpus": …}`` a stage of ``kind`` declares; ``gpus`` says whether the study
    uses GPUs (see the module docstring); ``overrides`` is ``executor.resources``."""
    resources = {"cpus": 1.0, "gpus": GPU_SHARE.get(kind, 0.0) if gpus else 0.0}
    resources.update((overrides or {}).get(kind, {}))
    return resources


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast on a ``HOST:PORT`` address nothing listens on (``ray.init`` would retry for
    minutes); ``auto`` and ``ray://`` addresses are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise SynthmedError(f"no Ray cluster answers at {address} ({exc}); start one with `ray start --head` "
                            "or give its address (the head node's HOST:6379, or auto on a cluster node)") from None


@dataclass
class _RayLauncher:
    """Submits stages as Ray tasks and waits on their ObjectRefs."""

    ray: Any
    task: Any
    plan_ref: Any
    out: str
    functions: bytes | None
    gpus: bool
    retries: int
    overrides: dict[str, dict[str, float]]

    def submit(self, stage: Stage) -> Any:
        res = stage_resources(stage.kind, gpus=self.gpus, overrides=self.overrides)
        return self.task.options(num_cpus=res["cpus"], num_gpus=res["gpus"], max_retries=self.retries,
                                 retry_exceptions=True, name=stage.name).remote(
            self.plan_ref, self.out, stage.key, max(1, int(res["cpus"])), self.functions, list(sys.path))

    def wait(self, handles: Any) -> list[tuple[Any, BaseException | None]]:
        ready, _ = self.ray.wait(list(handles), num_returns=1)
        ended: list[tuple[Any, BaseException | None]] = []
        for ref in ready:
            try:
                self.ray.get(ref)
                ended.append((ref, None))
            except Exception as exc:  # noqa: BLE001 - a stage's own error (RayTaskError is also its class)
                ended.append((ref, exc))
        return ended


@dataclass
class RayExecutor:
    """Runs each pending stage as a Ray task (see the module docstring for the conventions).

    Args:
        address: a running cluster to join (``ray.init(address=…)``, e.g. ``auto`` or
            ``ray://head:10001``); None starts a local one for the run.
        workers: at most this many stages in flight (None: as many as the resources allow).
        retries: times a failed task is retried.
        resources: per stage kind, ``{"cpus": n, "gpus": n}`` replacing the defaults.
        num_cpus: CPUs of a local cluster this executor starts (None: all of this machine's).
        functions: stage functions by kind (tests pass fakes); must be picklable.
    """

    address: str | None = None
    workers: int | None = None
    retries: int = 2
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    num_cpus: int | None = None
    functions: dict[str, StageFn] = field(default_factory=lambda: dict(STAGE_FUNCTIONS))

    def __post_init__(self) -> None:
        import_ray()  # fail now, before any stage, when Ray is missing
        if self.retries < 0:
            raise SynthmedError(f"executor.retries must be at least 0, got {self.retries}")

    @classmethod
    def from_spec(cls, spec: ExecutorSpec, *, progress: bool = True) -> RayExecutor:
        """The executor of a study's ``executor`` section (``address``, ``workers``, ``retries``,
        ``resources``); tasks show no progress bars, whatever ``progress`` says."""
        return cls(address=spec.address, workers=spec.workers, retries=spec.retries,
                   resources={k: dict(v) for k, v in spec.resources.items()})

    def run(self, plan: Plan, out: str | Path, callback: Callback | None = None) -> list[Stage]:
        """Run every pending stage of ``plan`` into ``out`` on the cluster; return the stages
        executed.

        Raises:
            SynthmedError: the cluster cannot be reached, or a stage's folder did not appear in
                ``out`` (not on a filesystem the nodes share).
            a stage's error after its retries (wrapped by Ray as ``RayTaskError``, which is also
                an instance of the stage's exception class), once the stages in flight end.
        """
        ray = import_ray()
        out = Path(out).resolve()
        started = self._connect(ray)
        try:
            gpus = plan.spec.device == "cuda" or (plan.spec.device == "auto"
                                                  and ray.cluster_resources().get("GPU", 0) > 0)
            custom = None if self.functions == STAGE_FUNCTIONS else ray.cloudpickle.dumps(self.functions)
            launcher = _RayLauncher(ray, ray.remote(_ray_stage), ray.put(plan), str(out), custom, gpus,
                                    self.retries, self.resources)
            return run_concurrently(plan, out, launcher, limit=self.workers, callback=callback)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: ModuleType) -> bool:
        """Connect to the cluster; True when this call started the connection (to close after)."""
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False}
        if self.address is not None:
            _check_reachable(self.address)
            options = {"address": self.address, "logging_level": logging.WARNING}
        elif self.num_cpus is not None:
            options["num_cpus"] = self.num_cpus
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
            raise SynthmedError(f"cannot start or join {where}: {exc}") from None
        return True
