"""Executors by name: a study's ``executor.kind`` names one of the executors registered here.

A new executor is one module with a class that has ``from_spec(spec, *, progress)`` and
``run(plan, out, callback)`` (:class:`~synthmed.study.executors.Executor`), and one entry in
:data:`_REGISTRY` (or a :func:`register` call); the spec's validation, the CLI's
``--executor`` and :func:`~synthmed.study.executors.make_executor` take their names from here.
"""

from __future__ import annotations

from synthmed.lazy_classes import Registered, describe, load_class

#: name → ``("module:Class", summary)``, in the order the names are listed; imported lazily (Ray only when used).
_REGISTRY: dict[str, Registered] = {
    "local": Registered("synthmed.study.executor_local:LocalExecutor", "this machine"),
    "ray": Registered("synthmed.study.executor_ray:RayExecutor",
                      "each stage a Ray task; the study folder must be on a filesystem every node shares"),
}


def register(name: str, target: str, summary: str = "") -> None:
    """Register ``"package.module:Class"`` as the executor ``name``."""
    _REGISTRY[name] = Registered(target, summary)


def executor_names() -> tuple[str, ...]:
    """Registered executor names, in registration order (the default, ``local``, first)."""
    return tuple(_REGISTRY)


def executor_summaries() -> str:
    """Every registered executor with its summary, for ``--help``."""
    return describe(_REGISTRY, executor_names())


def executor_class(name: str) -> type:
    """The class registered as ``name``.

    Raises:
        SynthmedError: unknown name (the message lists the known ones).
    """
    return load_class(_REGISTRY, "executor", name)
