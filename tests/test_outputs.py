"""The output guard of every writing command (synthmed.outputs.guard_output), as a user meets it.

One table, one row per (command, case); every row must be refused with one red line and exit
2, before any work, and leave every file as it was:

- ``same``: OUT is an input;  ``inside``: OUT is inside an input;  ``contains``: OUT contains an
  input — all three with ``--overwrite``, which must not matter;
- ``exists``: OUT exists, no ``--overwrite``;
- ``unrelated``: ``--overwrite`` on a folder (or file) that is not this command's own output.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli_inprocess import invoke as cli

FAST = ["--no-progress"]


@dataclass
class World:
    """Tiny real inputs, each alone in its own project folder (``proj_*``) beside a notes file."""

    root: Path
    ph: Path  # phantom dataset
    st: Path  # real store (prepared from ph)
    run: Path  # generator run
    syn: Path  # synthetic store sampled from run
    seg: Path  # segmenter run, evaluated on st (seg/eval/st.json)
    spec: Path  # study file whose data.path is ph
    junk: Path  # a folder of unrelated files

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every file and folder under root."""
        out = {}
        for base, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = Path(base) / name
                stat = path.lstat()
                out[str(path.relative_to(self.root))] = (stat.st_size if path.is_file() else 0, stat.st_mtime_ns)
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from synthmed.config import PrepareConfig, build_config
    from synthmed.data.phantom import write_phantom
    from synthmed.data.prepare import prepare
    from synthmed.generators.api import sample_run, train_generator
    from synthmed.evaluate import audit, audit_path
    from synthmed.data.store import Store
    from synthmed.segmentation import evaluate_run, train_segmenter

    root = tmp_path_factory.mktemp("guard")
    dirs = {name: root / f"proj_{name}" for name in ("ph", "st", "run", "syn", "seg", "study")}
    for d in dirs.values():
        d.mkdir()
        (d / "notes.txt").write_text("the user's own file\n")
    w = World(root, dirs["ph"] / "ph", dirs["st"] / "st", dirs["run"] / "run", dirs["syn"] / "syn",
              dirs["seg"] / "seg", dirs["study"] / "study.yaml", root / "junk")
    write_phantom(w.ph, cases=2, seed=0, shape=(24, 24, 24), progress=False)
    prepare(w.ph, w.st, build_config(PrepareConfig, size=16, test_fraction=0.5), progress=False)
    train_generator(w.st, w.run, train_overrides={"steps": 1}, model_overrides={"train_timesteps": 100},
                    progress=False)
    sample_run(w.run, w.syn, n=4, steps=2, device="cpu", progress=False)
    train_segmenter(w.seg, [w.st], train_overrides={"steps": 1}, progress=False)
    evaluate_run(w.seg, w.st, device="cpu")
    audit(Store.open(w.syn), Store.open(w.st)).save(audit_path(w.syn))
    w.spec.write_text(f"name: guard\ndata: {{path: {w.ph}, size: 16}}\ngenerators: [{{name: ddpm, steps: 1}}]\n"
                      "segmenters: [{name: unet, steps: 1}]\ntrain_sets: [real]\n")
    w.junk.mkdir()
    (w.junk / "thesis.tex").write_text("months of work\n")
    (w.junk / "sub").mkdir()
    (w.junk / "sub" / "data.bin").write_bytes(b"\x00" * 10)
    (root / "existing.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
    (root / "letter.png").write_text("not a PNG at all\n")
    (root / "notes-samples.png").write_text("not a PNG either\n")
    other = root / "other_study"
    (other / "stages").mkdir(parents=True)
    (other / "results.csv").write_text("study,dataset,generator,segmenter,train_set,augmentation,seed,"
                                       "real_fraction,subject_fraction,metric,region,value\n"
                                       "other,ph,ddpm,unet,real,False,0,1,1,dice,WT,0.9\n")
    (other / "report.md").write_text("# other\n")
    return w


Args = Callable[[World], list[str]]


def _rows() -> list[tuple[str, Args, str]]:
    """(id, argv from the world, phrase the error must contain)."""
    s, ow = str, "--overwrite"
    same, inside, contains = "input", "input", "input"
    exists, unrelated = "already exists", "replaces only"
    rows: list[tuple[str, Args, str]] = [
        # data phantom OUT (no inputs)
        ("phantom-exists", lambda w: ["data", "phantom", s(w.ph)], exists),
        ("phantom-unrelated", lambda w: ["data", "phantom", s(w.junk), ow], unrelated),
        ("phantom-unrelated-store", lambda w: ["data", "phantom", s(w.st), ow], unrelated),
        # data prepare SRC STORE
        ("prepare-same", lambda w: ["data", "prepare", s(w.ph), s(w.ph), ow], same),
        ("prepare-inside", lambda w: ["data", "prepare", s(w.ph), s(w.ph / "store"), ow], inside),
        ("prepare-contains", lambda w: ["data", "prepare", s(w.ph), s(w.ph.parent), ow], contains),
        ("prepare-contains-dot", lambda w: ["data", "prepare", s(w.ph), s(w.root), ow], contains),
        ("prepare-exists", lambda w: ["data", "prepare", s(w.ph), s(w.st)], exists),
        ("prepare-unrelated", lambda w: ["data", "prepare", s(w.ph), s(w.junk), ow], unrelated),
        ("prepare-unrelated-run", lambda w: ["data", "prepare", s(w.ph), s(w.run), ow], unrelated),
        # data inspect STORE --out PNG
        ("inspect-same", lambda w: ["data", "inspect", s(w.st), "--out", s(w.st), ow], same),
        ("inspect-inside", lambda w: ["data", "inspect", s(w.st), "--out", s(w.st / "grid.png"), ow], inside),
        ("inspect-contains", lambda w: ["data", "inspect", s(w.st), "--out", s(w.st.parent), ow], contains),
        ("inspect-exists", lambda w: ["data", "inspect", s(w.st), "--out", s(w.root / "existing.png")], exists),
        ("inspect-unrelated", lambda w: ["data", "inspect", s(w.st), "--out", s(w.junk), ow], unrelated),
        ("inspect-unrelated-file", lambda w: ["data", "inspect", s(w.st), "--out", s(w.root / "letter.png"), ow],
         unrelated),
        # generator train STORE RUN
        ("train-same", lambda w: ["generator", "train", s(w.st), s(w.st), ow, *FAST], same),
        ("train-inside", lambda w: ["generator", "train", s(w.st), s(w.st / "run"), ow, *FAST], inside),
        ("train-contains", lambda w: ["generator", "train", s(w.st), s(w.st.parent), ow, *FAST], contains),
        ("train-resume-same", lambda w: ["generator", "train", s(w.st), s(w.st), "--resume", *FAST], same),
        ("train-exists", lambda w: ["generator", "train", s(w.st), s(w.run), *FAST], exists),
        ("train-unrelated", lambda w: ["generator", "train", s(w.st), s(w.junk), ow, *FAST], unrelated),
        ("train-unrelated-store", lambda w: ["generator", "train", s(w.st), s(w.syn), ow, *FAST], unrelated),
        # generator sample RUN OUT
        ("sample-same", lambda w: ["generator", "sample", s(w.run), s(w.run), ow, *FAST], same),
        ("sample-inside", lambda w: ["generator", "sample", s(w.run), s(w.run / "syn"), ow, *FAST], inside),
        ("sample-contains", lambda w: ["generator", "sample", s(w.run), s(w.run.parent), ow, *FAST], contains),
        ("sample-exists", lambda w: ["generator", "sample", s(w.run), s(w.syn), *FAST], exists),
        ("sample-unrelated", lambda w: ["generator", "sample", s(w.run), s(w.junk), ow, *FAST], unrelated),
        ("sample-unrelated-run", lambda w: ["generator", "sample", s(w.run), s(w.seg), ow, *FAST], unrelated),
        ("sample-export-unrelated", lambda w: ["generator", "sample", s(w.run), s(w.root / "notes"), "--format",
                                               "png", ow, *FAST], unrelated),  # notes-samples.png is text
        # export STORE OUT
        ("export-same", lambda w: ["export", s(w.st), s(w.st), ow, *FAST], same),
        ("export-inside", lambda w: ["export", s(w.st), s(w.st / "nifti"), ow, *FAST], inside),
        ("export-contains", lambda w: ["export", s(w.st), s(w.st.parent), ow, *FAST], contains),
        ("export-audit-same", lambda w: ["export", s(w.syn), s(w.syn.parent / "syn-memorization.json"),
                                         "--format", "png", ow, *FAST], same),
        ("export-exists", lambda w: ["export", s(w.st), s(w.ph), *FAST], exists),
        ("export-unrelated", lambda w: ["export", s(w.st), s(w.junk), ow, *FAST], unrelated),
        ("export-unrelated-nnunet", lambda w: ["export", s(w.st), s(w.junk), "--format", "nnunet", ow, *FAST],
         unrelated),
        ("export-unrelated-png", lambda w: ["export", s(w.st), s(w.root / "letter.png"), "--format", "png", ow,
                                            *FAST], unrelated),
        # segment train OUT --train STORE
        ("segtrain-same", lambda w: ["segment", "train", s(w.st), "--train", s(w.st), ow, *FAST], same),
        ("segtrain-inside", lambda w: ["segment", "train", s(w.st / "seg"), "--train", s(w.st), ow, *FAST], inside),
        ("segtrain-contains", lambda w: ["segment", "train", s(w.st.parent), "--train", s(w.st), ow, *FAST],
         contains),
        ("segtrain-exists", lambda w: ["segment", "train", s(w.seg), "--train", s(w.st), *FAST], exists),
        ("segtrain-unrelated", lambda w: ["segment", "train", s(w.junk), "--train", s(w.st), ow, *FAST], unrelated),
        ("segtrain-unrelated-gan", lambda w: ["segment", "train", s(w.run), "--train", s(w.st), ow, *FAST],
         unrelated),
        # segment eval RUN --test STORE → RUN/eval/<store>.json, .csv
        ("segeval-exists", lambda w: ["segment", "eval", s(w.seg), "--test", s(w.st), "--device", "cpu"], exists),
        # evaluate memorization --train T --synthetic S --out AUDIT
        ("memo-same", lambda w: ["evaluate", "memorization", "--train", s(w.st), "--synthetic", s(w.syn),
                                 "--out", s(w.st), ow, "--device", "cpu"], same),
        ("memo-inside", lambda w: ["evaluate", "memorization", "--train", s(w.st), "--synthetic", s(w.syn),
                                   "--out", s(w.syn / "audit.json"), ow, "--device", "cpu"], inside),
        ("memo-contains", lambda w: ["evaluate", "memorization", "--train", s(w.st), "--synthetic", s(w.syn),
                                     "--out", s(w.syn.parent), ow, "--device", "cpu"], contains),
        ("memo-exists", lambda w: ["evaluate", "memorization", "--train", s(w.st), "--synthetic", s(w.syn),
                                   "--device", "cpu"], exists),
        ("memo-unrelated", lambda w: ["evaluate", "memorization", "--train", s(w.st), "--synthetic", s(w.syn),
                                      "--out", s(w.junk), ow, "--device", "cpu"], unrelated),
        # study run STUDY.yaml --out DIR (data.path = ph)
        ("study-same", lambda w: ["study", "run", s(w.spec), "--out", s(w.ph), ow, "--no-progress"], same),
        ("study-inside", lambda w: ["study", "run", s(w.spec), "--out", s(w.ph / "study"), ow, "--no-progress"],
         inside),
        ("study-contains", lambda w: ["study", "run", s(w.spec), "--out", s(w.spec.parent), ow, "--no-progress"],
         contains),
        ("study-exists", lambda w: ["study", "run", s(w.spec), "--out", s(w.root / "other_study"), "--no-progress"],
         "--overwrite"),
        ("study-unrelated", lambda w: ["study", "run", s(w.spec), "--out", s(w.junk), ow, "--no-progress"],
         "not a study folder"),
        ("demo-unrelated", lambda w: ["demo", s(w.junk), "--no-progress"], "not a study folder"),
    ]
    return rows


ROWS = _rows()


@pytest.mark.parametrize("args, phrase", [(a, p) for _, a, p in ROWS], ids=[i for i, _, _ in ROWS])
def test_every_writing_command_refuses_before_any_work(world, monkeypatch, capsys, args, phrase):
    before = world.snapshot()
    code, _, err = cli(monkeypatch, capsys, *args(world))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error:"), err[-2000:]
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in err
    assert world.snapshot() == before  # nothing written, nothing deleted (no temporaries either)


def test_symlink_to_an_input_is_the_input(world, tmp_path, monkeypatch, capsys):
    link = tmp_path / "link"
    link.symlink_to(world.ph, target_is_directory=True)
    before = world.snapshot()
    code, _, err = cli(monkeypatch, capsys, "data", "prepare", str(world.ph), str(link), "--overwrite")
    assert code == 2 and "input" in err
    assert world.snapshot() == before and link.is_symlink()


def test_overwrite_replaces_the_commands_own_output(world, tmp_path, monkeypatch, capsys):
    """--overwrite still works on what the command wrote itself: a store, a PNG, a run."""
    store = tmp_path / "st"
    assert cli(monkeypatch, capsys, "data", "prepare", str(world.ph), str(store), "--size", "16")[0] == 0
    first = (store / "store.json").stat().st_ino
    code, _, err = cli(monkeypatch, capsys, "data", "prepare", str(world.ph), str(store), "--size", "16",
                       "--overwrite")
    assert code == 0, err
    assert (store / "store.json").stat().st_ino != first  # a new store in its place
    png = tmp_path / "grid.png"
    assert cli(monkeypatch, capsys, "data", "inspect", str(store), "--out", str(png))[0] == 0
    assert cli(monkeypatch, capsys, "data", "inspect", str(store), "--out", str(png))[0] == 2
    assert cli(monkeypatch, capsys, "data", "inspect", str(store), "--out", str(png), "--overwrite")[0] == 0
    run = tmp_path / "run"
    args = ["generator", "train", str(store), str(run), "--steps", "1", "--train-timesteps", "100", "--device", "cpu",
            "--no-progress"]
    assert cli(monkeypatch, capsys, *args)[0] == 0
    code, _, err = cli(monkeypatch, capsys, *args, "--overwrite")
    assert code == 0, err
    assert (run / "run.json").is_file() and not list(run.glob(".*-tmp-*"))


def test_an_empty_folder_is_free(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    code, _, err = cli(monkeypatch, capsys, "data", "prepare", str(world.ph), str(out), "--size", "16")
    assert code == 0, err
    assert (out / "store.json").is_file()


def test_a_study_folder_is_continued_and_another_studys_results_need_overwrite(tmp_path):
    from synthmed.errors import OutputExistsError
    from synthmed.study import load_spec
    from synthmed.study.run import guard_study

    spec_file = tmp_path / "mine.yaml"
    spec_file.write_text("name: mine\ndata: {phantom: {cases: 3, shape: [32, 48, 48]}, size: 16}\n"
                         "generators: [{name: ddpm, steps: 1}]\nsegmenters: [{name: unet, steps: 1}]\n")
    spec = load_spec(spec_file)
    folder = tmp_path / "study"
    (folder / "stages").mkdir(parents=True)
    guard_study(spec, folder)  # a study folder without results: continued
    (folder / "results.csv").write_text("study,metric,value\nmine,dice,0.5\n")
    guard_study(spec, folder)  # its own results: continued, refreshed without --overwrite
    (folder / "results.csv").write_text("study,metric,value\ntheirs,dice,0.5\n")
    with pytest.raises(OutputExistsError, match="results of study 'theirs'.*--overwrite"):
        guard_study(spec, folder)
    guard_study(spec, folder, overwrite=True)


def test_a_study_of_several_datasets_guards_every_dataset_folder(tmp_path):
    from synthmed.outputs import OutputIsInputError
    from synthmed.study import load_spec
    from synthmed.study.run import guard_study

    for year in ("a", "b"):
        (tmp_path / year).mkdir()
    spec_file = tmp_path / "two.yaml"
    spec_file.write_text("datasets: [{name: A, path: a}, {name: B, path: b}]\ntrain_sets: [real]\n"
                         "segmenters: [{name: unet, steps: 1}]\n")
    spec = load_spec(spec_file)
    guard_study(spec, tmp_path / "study")
    with pytest.raises(OutputIsInputError):
        guard_study(spec, tmp_path / "b" / "study")


def test_dot_containing_the_input(world, monkeypatch, capsys):
    """`data prepare proj_ph/ph . --overwrite` from the folder above: refused, not a traceback."""
    monkeypatch.chdir(world.ph.parent)
    before = world.snapshot()
    code, _, err = cli(monkeypatch, capsys, "data", "prepare", "ph", ".", "--overwrite")
    assert code == 2 and "contains the input ph" in err and "Traceback" not in err
    assert world.snapshot() == before


def test_a_classifier_run_with_its_saliency_outputs_may_be_overwritten(tmp_path):
    """``classify saliency`` writes ``RUN/saliency/``: the run is still the command's own output."""
    from synthmed.outputs import guard_output, run_directory

    run = tmp_path / "run"
    (run / "saliency").mkdir(parents=True)
    (run / "run.json").write_text('{"kind": "classifier"}')
    (run / "saliency" / "test_gradient.json").write_text("{}")
    assert guard_output(run, kind=run_directory("classifier run", ["classifier"]), overwrite=True) == run
