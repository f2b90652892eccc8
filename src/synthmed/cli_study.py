"""``synthmed study …``: plan and run a whole study from one YAML file (parses, calls
:mod:`synthmed.study`, prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from synthmed.study.executor_registry import executor_names, executor_summaries

study_app = typer.Typer(help="Studies: the whole grid (data × generators × segmenters × train sets × augmentation "
                        "× seeds, and optionally classifiers) from one YAML file, resumably.", no_args_is_help=True)
stdout = Console(soft_wrap=True)  # like synthmed.cli: results on stdout, unwrapped
# The study file and folder of plan and run.
StudyFile = Annotated[Path, typer.Argument(metavar="STUDY.yaml", help="The study file.")]
StudyFolder = Annotated[Optional[Path], typer.Option(help="Study folder (default: the YAML's stem next to it).")]


def _out_dir(spec_path: Path, out: Path | None) -> Path:
    """Default output: the YAML's stem next to it (``study.yaml`` → ``study/``)."""
    return out if out is not None else spec_path.with_suffix("")


def _describe(stage) -> str:  # noqa: ANN001
    """A stage's labels, short: ``ddpm unet synthetic+real aug seed=0 real=0.5`` (``subjects=0.25``
    on the pre-training curve); a ``prepare`` stage, the root of its dataset's stages, says which."""
    labels = stage.labels
    keys = ("dataset",) if stage.kind == "prepare" else ("generator", "features", "segmenter", "classifier", "mode",
                                                          "train_set")
    parts = [str(labels[k]) for k in keys if labels.get(k)]
    if "augmentation" in labels:
        parts.append("aug" if labels["augmentation"] else "no-aug")
    if "seed" in labels:
        parts.append(f"seed={labels['seed']}")
    if labels.get("train_set") == "synthetic+real" and labels.get("real_fraction") is not None:
        parts.append(f"real={labels['real_fraction']}")
    if labels.get("subject_fraction", 1.0) != 1.0:
        parts.append(f"subjects={labels['subject_fraction']}")
    return " ".join(parts)


@study_app.command("plan")
def study_plan(
    spec_path: StudyFile,
    out: StudyFolder = None,
) -> None:
    """Print the study's stages as a tree (each with its inputs) and their status: done, done by
    older synthmed code (kept), or pending; and which finished stages a changed dataset replaced."""
    from synthmed.study import load_spec, make_plan

    spec = load_spec(spec_path)
    folder = _out_dir(spec_path, out)
    plan = make_plan(spec, out=folder)
    status = plan.status(folder)
    older = plan.older_code(folder)
    tree = Tree(f"[bold]{escape(spec.name)}[/] → {escape(str(folder))}")
    nodes: dict[str, Tree] = {}
    for key, stage in plan.stages.items():
        mark = "[green]done[/]" if status[key] == "done" else "[yellow]pending[/]"
        if key in older:
            mark = "[green]done[/] [yellow](older code)[/]"
        text = f"{stage.name} {mark} {escape(_describe(stage))}"
        parent = nodes.get(stage.inputs[-1]) if stage.inputs else None
        if stage.kind in ("evaluate", "classify_eval", "progression_eval"):  # under the run it scores
            parent = nodes.get(stage.inputs[0])
        nodes[key] = (parent or tree).add(text)
    Console(soft_wrap=True, width=max(stdout.width, 160)).print(tree)  # deep lines are not cropped
    counts = Table(title="stages")
    for column in ("kind", "done", "pending"):
        counts.add_column(column)
    for kind in dict.fromkeys(s.kind for s in plan.stages.values()):
        keys = [s.key for s in plan.by_kind(kind)]
        done = sum(status[k] == "done" for k in keys)
        counts.add_row(kind, str(done), str(len(keys) - done))
    stdout.print(counts)
    for problem in plan.problems:
        stdout.print(f"[yellow]warning:[/] {escape(problem)} (the prepare stage will fail until it is fixed)")
    for name in plan.superseded_prepares(folder):
        stdout.print(f"[yellow]the dataset changed[/] since stage {name} was made from it: its stages are planned "
                     "anew (pending above); the old ones stay in stages/ until you delete them")
    if older:
        from synthmed.study.plan import code_version

        stdout.print(f"[yellow]{len(older)} finished stages were made by other synthmed code[/] (not "
                     f"{code_version()['code']}); they are kept and not rerun: delete a stage's folder under "
                     "stages/ to rerun it")


@study_app.command("run")
def study_run(
    spec_path: StudyFile,
    out: StudyFolder = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show each stage's progress bars "
                                           "(local executor with one worker only).")] = True,
    executor: Annotated[Optional[str], typer.Option(
        "--executor", metavar="|".join(executor_names()),
        help=f"Where stages run, overriding the study file's executor.kind: {executor_summaries()}.")] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, help="Stages at a time, overriding executor.workers: local, N > 1 runs a pool of N "
                                 "processes (each with cores/N torch threads, no progress bars); ray, at most N "
                                 "tasks in flight.")] = None,
    address: Annotated[Optional[str], typer.Option(
        "--address", help="Join the running Ray cluster at ADDR (e.g. auto, or ray://head:10001; implies "
                          "--executor ray); without it the ray executor starts a local cluster.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the results.csv and report of another study in the "
                                                 "folder (its finished stages are kept); not needed to continue "
                                                 "this study.")] = False,
) -> None:
    """Run every pending stage in dependency order (finished ones are skipped; a killed study
    resumes at the stage it was in), then write results.csv and the report (report.md, report.html).

    Stages run one at a time in this process unless the study file's executor section, or the
    options below, say otherwise; the results do not depend on how the stages ran."""
    from synthmed.config import build_config
    from synthmed.progress import console
    from synthmed.study import ExecutorSpec, load_spec, run_study

    spec = load_spec(spec_path)
    folder = _out_dir(spec_path, out)
    overrides = {name: value for name, value in (("kind", executor), ("workers", workers), ("address", address))
                 if value is not None}
    if address is not None and executor is None:
        overrides["kind"] = "ray"
    runner = build_config(ExecutorSpec, "options", **{**spec.executor.model_dump(), **overrides})
    printer = StagePrinter(console)
    outcome = run_study(spec, folder, progress=progress, on_stage=printer.on_stage, on_plan=printer.on_plan,
                        executor=runner, overwrite=overwrite, inputs=[spec_path])
    stdout.print(f"ran {len(outcome.executed)} of {len(outcome.plan)} stages; results: "
                 f"{escape(str(outcome.results))}; report: {escape(str(outcome.report))}")


class StagePrinter:
    """``run_study``'s ``on_plan`` and ``on_stage`` callbacks: prints ``stage i/N kind labels`` as
    each stage starts (N from the plan the study made; nothing is planned twice)."""

    def __init__(self, console) -> None:  # noqa: ANN001
        self.console, self.n, self.total = console, 0, 0

    def on_plan(self, plan) -> None:  # noqa: ANN001
        self.total = len(plan)

    def on_stage(self, stage, event: str) -> None:  # noqa: ANN001
        if event in ("start", "skip"):
            self.n += 1
        if event == "start":
            self.console.print(f"[bold]stage {self.n}/{self.total}[/] {stage.name} {escape(_describe(stage))}",
                               soft_wrap=True)


@study_app.command("report")
def study_report(
    study: Annotated[Path, typer.Argument(metavar="STUDY", help="The study folder (or its YAML: its stem's folder).")],
) -> None:
    """(Re)build STUDY/report.md and a self-contained STUDY/report.html from the finished stages and results.csv."""
    from synthmed.errors import SynthmedError
    from synthmed.locks import FolderLock
    from synthmed.study import STAGES_DIR, write_report

    folder = _out_dir(study, None) if study.suffix in (".yaml", ".yml") else study
    if not (folder / STAGES_DIR).is_dir():
        raise SynthmedError(f"{folder}: not a study folder (no {STAGES_DIR}/ inside); run `synthmed study run` first")
    with FolderLock(folder, "study folder"):
        md, page = write_report(folder, force=True)
    stdout.print(f"report: {escape(str(page))} and {escape(str(md))}")
