"""The `synthmed` command line: parses options, calls the API, prints. No logic lives here.

Errors the user can fix (:class:`~synthmed.errors.SynthmedError`, and a full disk or a
read-only or forbidden place: ``ENOSPC``, ``EROFS``, ``EACCES``, …) print as one red line naming
the path and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import synthmed
from synthmed.cli_options import Force, JsonSummary
from synthmed.config import PhantomConfig, PrepareConfig, build_config
from synthmed.errors import SynthmedError
from synthmed.progress import console
from synthmed.cli_generator import generator_app
from synthmed.cli_metrics import metrics_app
from synthmed.cli_segment import segment_app
from synthmed.cli_classify import classify_app
from synthmed.cli_progression import progression_app
from synthmed.cli_evaluate import evaluate_app, export_command
from synthmed.cli_study import study_app

app = typer.Typer(
    help="synthmed: synthetic medical images with tumour masks — make, prepare and inspect data; "
    "train generators; measure fidelity, utility and privacy; train robust classifiers; predict disease progression.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Datasets: write the built-in phantom, prepare stores, inspect them.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(generator_app, name="generator")
app.add_typer(segment_app, name="segment")
app.add_typer(classify_app, name="classify")
app.add_typer(progression_app, name="progression")
app.add_typer(metrics_app, name="metrics")
app.add_typer(evaluate_app, name="evaluate")
app.command("export")(export_command)
app.add_typer(study_app, name="study")

def _whole_option_names() -> None:
    """Make typer's help tables keep option names and types whole: only the help text wraps.

    Rich shrinks every column of typer's options table when the terminal is narrow, cutting
    long names (``--tumour-free-fra…`` at 80 columns); marking all but the last (help)
    column ``no_wrap`` makes the help column give way instead (folding a word too long for it).
    """
    import typer.rich_utils
    from rich.table import Table

    from rich.columns import Columns
    from rich.text import Text

    class WholeNamesTable(Table):
        def add_row(self, *renderables, **kwargs):  # noqa: ANN002, ANN003, ANN202
            super().add_row(*renderables, **kwargs)
            for column in self.columns[:-1]:
                column.no_wrap = True
            help_cell = renderables[-1] if renderables else None
            for item in help_cell.renderables if isinstance(help_cell, Columns) else [help_cell]:
                if isinstance(item, Text):
                    item.overflow = "fold"  # a word longer than the help column folds, not cut

    typer.rich_utils.Table = WholeNamesTable  # type: ignore[misc]


_whole_option_names()
_state = {"debug": False}
stdout = Console(soft_wrap=True)  # results go to stdout; progress and errors to stderr (`console`)


def _version(value: bool) -> None:
    if value:
        stdout.print(f"synthmed {synthmed.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


@data_app.command("phantom")
def data_phantom(
    out: Annotated[Path, typer.Argument(help="Folder to write (BraTS 2021 layout).")],
    cases: Annotated[Optional[int], typer.Option(help="Number of cases (default 4).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 0,
    shape: Annotated[tuple[int, int, int], typer.Option(help="Grid as D H W voxels (axial slices, rows, columns); files are W×H×D like BraTS's 240×240×155.")] = (155, 240, 240),
    tumour_free_fraction: Annotated[Optional[float], typer.Option(help="Share of cases without a tumour (default 0).", show_default=False)] = None,
    longitudinal: Annotated[bool, typer.Option("--longitudinal", help="Write a longitudinal cohort: --subjects followed over --visits, the tumour growing between visits, and longitudinal.csv.")] = False,
    subjects: Annotated[Optional[int], typer.Option(help="Longitudinal: number of subjects.", show_default=False)] = None,
    visits: Annotated[Optional[int], typer.Option(help="Longitudinal: visits per subject, the first the baseline.", show_default=False)] = None,
    interval_months: Annotated[Optional[float], typer.Option(help="Longitudinal: months between visits (default 12).", show_default=False)] = None,
    onset_fraction: Annotated[Optional[float], typer.Option(help="Longitudinal: share of subjects whose first visit is tumour-free (default 0).", show_default=False)] = None,
    fast_fraction: Annotated[Optional[float], typer.Option(help="Longitudinal: share of fast progressors (default 0.4).", show_default=False)] = None,
    cue_strength: Annotated[Optional[float], typer.Option(help="Longitudinal: how much the baseline tumour's composition shows the growth class, in [0, 1] (default 0.7; 0: not at all, the negative control; 1: fast and slow compositions separated).", show_default=False)] = None,
    workers: Annotated[int, typer.Option(help="Processes writing cases (longitudinal: subjects) in parallel.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    force: Force = False,
) -> None:
    """Write a BraTS-like phantom dataset built from the MNI152 template: four MR sequences
    (T1, T1ce, T2, FLAIR) and a tumour mask (necrotic core, enhancing rim, edema) per case, 1 mm.
    With --longitudinal, a cohort: each subject keeps its anatomy over its visits while its
    tumour grows (slow or fast progressors); longitudinal.csv lists the visits."""
    cohort = {"--subjects": subjects, "--visits": visits, "--interval-months": interval_months,
              "--onset-fraction": onset_fraction, "--fast-fraction": fast_fraction, "--cue-strength": cue_strength}
    if not longitudinal:
        given = [name for name, value in cohort.items() if value is not None]
        if given:
            raise SynthmedError(f"{', '.join(given)}: only with --longitudinal")
        from synthmed.data.phantom import write_phantom

        config = build_config(PhantomConfig, cases=4 if cases is None else cases, seed=seed, shape=shape,
                              tumour_free_fraction=0.0 if tumour_free_fraction is None else tumour_free_fraction,
                              workers=workers)
        ids = write_phantom(out, **config.model_dump(), overwrite=overwrite, force=force)
        stdout.print(f"wrote {len(ids)} phantom cases to {escape(str(out))}")
        return
    missing = [name for name in ("--subjects", "--visits") if cohort[name] is None]
    if missing:
        raise SynthmedError(f"--longitudinal needs {' and '.join(missing)} (a cohort of --subjects N followed over "
                            "--visits V)")
    crossed = [name for name, value in (("--cases", cases), ("--tumour-free-fraction", tumour_free_fraction))
               if value is not None]
    if crossed:
        raise SynthmedError(f"{', '.join(crossed)}: not with --longitudinal (a cohort has --subjects × --visits "
                            "cases; --onset-fraction makes first visits tumour-free)")
    from synthmed.config import LongitudinalPhantomConfig
    from synthmed.data.phantom import write_longitudinal_phantom

    options = {name.lstrip("-").replace("-", "_"): value for name, value in cohort.items() if value is not None}
    config = build_config(LongitudinalPhantomConfig, seed=seed, shape=shape, workers=workers, **options)
    records = write_longitudinal_phantom(out, **config.model_dump(), overwrite=overwrite, force=force)
    fast = len({r.subject_id for r in records if r.progressor})
    stdout.print(f"wrote {len(records)} visits of {config.subjects} phantom subjects ({fast} fast progressors) to "
                 f"{escape(str(out))}; visits listed in {escape(str(out / 'longitudinal.csv'))}")


@data_app.command("prepare")
def data_prepare(
    src: Annotated[Path, typer.Argument(help="Dataset folder (BraTS, MSD Task01, nnU-Net raw) or CSV manifest.")],
    store: Annotated[Path, typer.Argument(help="Store folder to write (a Zarr group).")],
    dims: Annotated[int, typer.Option(help="2: axial slices; 3: whole volumes.")] = 2,
    size: Annotated[int, typer.Option(help="Output side: S×S slices or S³ volumes.")] = 128,
    test_fraction: Annotated[float, typer.Option(help="Share of subjects held out for testing (subject-level split; at least one subject when above 0; 0: no test split).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes preparing cases in parallel.")] = 1,
    layout: Annotated[str, typer.Option(help="auto, brats, msd, nnunet or csv.")] = "auto",
    skip_bad: Annotated[bool, typer.Option(help="Skip bad cases (listed in the store's provenance) instead of stopping.")] = False,
    min_brain_fraction: Annotated[float, typer.Option(help="2D: keep axial slices more than this share brain.")] = 0.15,
    slices: Annotated[str, typer.Option(help="2D: brain (every slice more than --min-brain-fraction brain), centre (one slice per case, at its subject's tumour-centre axial position), or auto (centre for longitudinal data: a manifest with subject_id or months).")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace STORE if it exists.")] = False,
    force: Force = False,
) -> None:
    """Turn a labelled dataset into a training-ready store: subject-level split, per-volume
    intensity normalisation in the brain, 2D slices or 3D volumes resized to SIZE."""
    from synthmed.data.prepare import prepare

    config = build_config(PrepareConfig, dims=dims, size=size, test_fraction=test_fraction, seed=seed,
                          workers=workers, layout=layout, skip_bad=skip_bad, min_brain_fraction=min_brain_fraction,
                          slices=slices)
    result = prepare(src, store, config, overwrite=overwrite, force=force)
    _print_prepare(result)


def _print_prepare(result) -> None:  # noqa: ANN001 - PrepareResult, imported lazily
    stdout.print(
        f"wrote {escape(str(result.store.path))}: {len(result.store)} samples "
        f"({result.samples['train']} train from {result.cases['train']} cases, "
        f"{result.samples['test']} test from {result.cases['test']} cases), layout {result.layout}"
    )
    if result.longitudinal:
        stdout.print(f"subjects: {result.subjects['train']} train, {result.subjects['test']} test "
                     "(each subject's visits in one split)")
    if result.skipped:
        table = Table(title=f"skipped {len(result.skipped)} cases", title_justify="left")
        table.add_column("case")
        table.add_column("reason")
        for item in result.skipped:
            table.add_row(escape(item["case"]), escape(item["reason"]))
        stdout.print(table)


@data_app.command("inspect")
def data_inspect(
    store: Annotated[Path, typer.Argument(help="Store folder.")],
    out: Annotated[Optional[Path], typer.Option(help="PNG grid to write [default: STORE-samples.png beside the store].")] = None,
    samples: Annotated[int, typer.Option(help="Rows in the grid.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed choosing the samples shown.")] = 0,
    as_json: JsonSummary = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the PNG grid if it exists.")] = False,
) -> None:
    """Summarise a store (samples per split, label balance, intensities) and write a PNG grid
    of samples: each channel and the tumour mask over FLAIR."""
    from synthmed.data.inspect import render_grid, summarize
    from synthmed.data.store import Store
    from synthmed.outputs import PNG_FILE, guard_output

    grid = guard_output(out or store.with_name(f"{store.name}-samples.png"), [store], kind=PNG_FILE,
                        overwrite=overwrite)
    opened = Store.open(store)
    summary = summarize(opened)
    png = render_grid(opened, grid, n=samples, seed=seed)
    summary["grid"] = str(png)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    kind = "synthetic" if summary["synthetic"] else "real"
    stdout.print(f"[bold]{escape(summary['path'])}[/]: {summary['samples']} {kind} {summary['dims']}D samples "
                 f"of shape {summary['sample_shape']}, channels {', '.join(summary['channels'])}")
    table = Table("split", "cases", "samples", title_justify="left")
    for split, counts in summary["splits"].items():
        table.add_row(split, str(counts["cases"]), str(counts["samples"]))
    stdout.print(table)
    labels = ", ".join(f"{name} {100 * frac:.2f}%" for name, frac in summary["label_fraction"].items())
    stdout.print(f"label voxels: {labels}")
    for name, stats in summary["intensity"].items():
        stdout.print(f"{name}: min {stats['min']:.3f}, mean {stats['mean']:.3f}, max {stats['max']:.3f}")
    if summary["skipped"]:
        stdout.print(f"[yellow]{len(summary['skipped'])} cases were skipped when preparing (see store.json)")
    stdout.print(f"sample grid: {escape(summary['grid'])}")


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Argument(help="Study folder of the demo.")] = Path("synthmed-demo"),
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show each stage's progress bars.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace another study's results.csv and report in OUT.")] = False,
    smoke: Annotated[bool, typer.Option(help="Cut every step count to a few: checks the whole pipeline in about a "
                                        "minute; its numbers mean nothing.")] = False,
) -> None:
    """Run the offline demo study (about 10 minutes on a 2-core CPU): 16 phantom patients at 32 px →
    diffusion, ProGAN and StyleGAN 2 (laptop presets) → U-Net on real, synthetic and
    synthetic+real data → fidelity and memorization → OUT/report.html.
    Finished stages are reused: a second run returns in seconds."""
    from synthmed.cli_study import StagePrinter
    from synthmed.demo import run_demo

    printer = StagePrinter(console)
    outcome = run_demo(out, progress=progress, on_stage=printer.on_stage, on_plan=printer.on_plan, overwrite=overwrite,
                       smoke=smoke)
    stdout.print(f"ran {len(outcome.executed)} of {len(outcome.plan)} stages; results: {escape(str(outcome.results))}")
    stdout.print(f"report: {escape(str(outcome.report))}")


def main() -> None:
    """Console entry point: runs the app and turns user errors into one red line, exit 2;
    SIGINT / SIGTERM into one line naming the command that resumes, exit 130 / 143."""
    from synthmed.interrupts import Interrupted, handle_signals, resume_hint

    try:
        with handle_signals():
            app()
    except SynthmedError as exc:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        sys.exit(exc.exit_code)
    except (Interrupted, KeyboardInterrupt) as exc:
        console.print(f"[yellow]{escape(resume_hint(sys.argv[1:]))}[/]", soft_wrap=True, highlight=False)
        sys.exit(getattr(exc, "exit_code", 130))
    except OSError as exc:  # a full disk or a read-only or forbidden place not caught closer to the write
        from synthmed.errors import file_system_error

        error = file_system_error(exc)
        if error is None or _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True, highlight=False)
        sys.exit(error.exit_code)
