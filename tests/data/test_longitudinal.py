"""Longitudinal data: the phantom cohort (same anatomy, growing tumour), longitudinal.csv, and
subjects and months carried through ``data prepare`` (manifest columns, subject-level split,
one tumour-centre slice per visit).

Small grids keep it fast: ``SHAPE`` (40, 48, 48) is the phantom's 240 × 240 × 155 mm field of
view at ~4–5 mm.
"""

from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from cli_inprocess import invoke as cli
from synthmed.config import LongitudinalPhantomConfig, PrepareConfig
from synthmed.data.grades import GRADE_BINS, grade_of_label
from synthmed.data.layouts import discover_cases
from synthmed.data.phantom import (
    LONGITUDINAL_COLUMNS,
    phantom_case,
    phantom_visits,
    subject_growth,
    write_longitudinal_phantom,
)
from synthmed.data.phantom import cue as cue_model
from synthmed.data.phantom import growth as growth_model
from synthmed.data.phantom.draws import case_streams, draw_tumour
from synthmed.data.phantom.longitudinal import INTERVAL_MONTHS, subject_tumour
from synthmed.data.phantom.template import mni_template
from synthmed.data.prepare import prepare, split_cases
from synthmed.data.preprocess import tumour_centre_slice
from synthmed.errors import DataError, SynthmedError

SHAPE = (40, 48, 48)
CROSS = ndimage.generate_binary_structure(3, 1)


def _visits(subject: int, **options):
    options = {"seed": 1, "visits": 4, "shape": SHAPE, **options}
    return list(phantom_visits(subject, **options))


def test_a_subject_keeps_its_anatomy_contrast_and_tumour_site_across_visits():
    # onset: the first visit is tumour-free; the strongest cue changes the tumour's composition only
    visits = _visits(0, visits=3, tissues=True, onset_fraction=1.0, cue_strength=1.0)
    assert not visits[0].case.label.any() and all(v.case.label.any() for v in visits[1:])
    brains = [v.tissues.brain for v in visits]
    assert all(np.array_equal(brains[0], b) for b in brains[1:]), "the brain mask changed between visits"
    # the subject is cross-sectional case 0 followed in time: the same warp (mass effect included)
    assert np.array_equal(brains[0], (phantom_case(0, seed=1, shape=SHAPE).images > 0).any(axis=0))
    # GM / WM / CSF fractions are the same (to float rounding) away from every visit's tumour and its
    # partial-volume rim
    tumour = ndimage.binary_dilation(visits[-1].case.label > 0, np.ones((3, 3, 3), bool), iterations=3)
    for v in visits[1:]:
        np.testing.assert_allclose(v.tissues.fractions[:3][:, ~tumour], visits[0].tissues.fractions[:3][:, ~tumour],
                                   rtol=0, atol=1e-6)
    # fresh noise at every visit, on the same contrasts
    away = brains[0] & ~tumour
    first, last = visits[0].case.images[:, away], visits[-1].case.images[:, away]
    assert not np.array_equal(first, last)
    assert np.allclose(first.mean(axis=1), last.mean(axis=1), rtol=0.01)
    # the tumour grows about one centre: every visit's core holds the first tumour visit's centre
    centre = np.array(ndimage.center_of_mass(np.isin(visits[1].case.label, (1, 3))))
    for v in visits[2:]:
        core = np.isin(v.case.label, (1, 3))
        assert np.linalg.norm(np.array(ndimage.center_of_mass(core)) - centre) < 1.5
        assert core[tuple(np.round(centre).astype(int))]
    assert {v.record.centre_slice for v in visits} == {tumour_centre_slice(visits[1].case.label)}


@pytest.mark.parametrize("subject, cue", [(0, cue_model.CUE_STRENGTH), (1, cue_model.CUE_STRENGTH), (2, 0.0),
                                          (3, 1.0)])
def test_tumour_grows_monotonically_and_stays_nested(subject, cue):
    visits = _visits(subject, seed=2, fast_fraction=0.5, cue_strength=cue)
    labels = [v.case.label for v in visits]
    counts = [np.count_nonzero(label) for label in labels]
    assert counts == sorted(counts) and counts[0] > 0
    for before, after in zip(labels, labels[1:]):
        assert not ((before > 0) & (after == 0)).any(), "a WT voxel vanished"
        assert not (np.isin(before, (1, 3)) & ~np.isin(after, (1, 3))).any(), "a core voxel vanished"
    for label in labels:
        assert set(np.unique(label)) == {0, 1, 2, 3}
        core = np.isin(label, (1, 3))
        assert not (ndimage.binary_dilation(label == 1, CROSS) & ~core).any()  # NCR wrapped in the core
        assert ndimage.label(label > 0)[1] == 1
    spacing_ml = np.prod(visits[0].case.spacing) / 1000.0
    assert [v.record.wt_ml for v in visits] == pytest.approx([c * spacing_ml for c in counts], abs=1e-4)
    if visits[0].record.progressor:
        assert counts[-1] > 5 * counts[0], "a fast progressor barely grew"


def test_growth_draws_follow_the_mixture_and_ignore_the_onset_share():
    draws = [subject_growth(s, seed=4, onset_fraction=0.0) for s in range(200)]
    fast = [g for g in draws if g.fast]
    assert 0.3 < len(fast) / len(draws) < 0.5  # FAST_FRACTION 0.4
    for g in draws:
        low, high = growth_model.FAST_RATE if g.fast else growth_model.SLOW_RATE
        assert low <= g.rate <= high and not g.onset
        assert growth_model.BASELINE_ML[0] <= g.baseline_ml <= growth_model.BASELINE_ML[1]
        assert g.nominal_ml(0) == g.baseline_ml
        assert g.nominal_ml(10) == pytest.approx(min(g.baseline_ml * math.exp(10 * g.rate), growth_model.MAX_ML))
    assert draws[0].nominal_ml(1e4) == growth_model.MAX_ML
    onset = [subject_growth(s, seed=4, onset_fraction=1.0) for s in range(200)]
    assert all(g.onset for g in onset)
    assert [(g.fast, g.baseline_ml, g.rate) for g in onset] == [(g.fast, g.baseline_ml, g.rate) for g in draws]
    with pytest.raises(SynthmedError, match="onset_fraction"):
        subject_growth(0, seed=0, onset_fraction=1.5)


def test_fast_progressors_cross_two_grades_over_36_months_and_slow_ones_do_not():
    """The calibration on a 2 mm grid: 4 visits 12 months apart, grades on the tumour-centre slice."""
    jumps = {0: [], 1: []}
    for subject in range(8):
        records = [v.record for v in _visits(subject, seed=5, shape=(78, 120, 120), fast_fraction=0.5)]
        assert [r.months for r in records] == [0.0, 12.0, 24.0, 36.0]
        jumps[records[0].progressor].append(records[-1].grade - records[0].grade)
    assert jumps[0] and jumps[1], "the seed should give both classes"
    assert min(jumps[1]) >= 2 and max(jumps[0]) < 2, jumps


def test_at_cue_strength_0_the_baseline_does_not_depend_on_the_growth_class():
    """The negative control: the tumour is cross-sectional case i's, and the baseline image is the same
    array whether the subject is drawn fast or slow (its V0 is drawn whatever the class)."""
    for subject in range(3):
        drawn = draw_tumour(case_streams(subject, 3)[2], mni_template().sites_mm)
        for fast in (False, True):
            spec = subject_tumour(subject, seed=3, fast=fast, cue_strength=0.0)[1]
            assert (spec.r_core, spec.r_necrosis, spec.r_mass) == (drawn.r_core, drawn.r_necrosis, drawn.r_mass)
            assert np.array_equal(spec.necrosis_offset, drawn.necrosis_offset)
        slow, fast = (next(phantom_visits(subject, seed=3, visits=3, shape=SHAPE, fast_fraction=f, cue_strength=0.0))
                      for f in (0.0, 1.0))
        assert not slow.record.progressor and fast.record.progressor
        assert np.array_equal(slow.case.images, fast.case.images) and np.array_equal(slow.case.label, fast.case.label)
        cued = next(phantom_visits(subject, seed=3, visits=3, shape=SHAPE, fast_fraction=1.0))
        assert not np.array_equal(cued.case.label, fast.case.label), "the default cue changed nothing"


def test_cue_moves_the_composition_by_class_and_separates_it_at_strength_1():
    draws = {s: subject_growth(s, seed=4, onset_fraction=0.0).fast for s in range(60)}
    for strength in (0.5, 1.0):
        shares = {fast: [] for fast in (False, True)}
        for s, fast in draws.items():
            drawn, spec = subject_tumour(s, seed=4, fast=fast, cue_strength=strength)
            shares[fast].append((spec.core_share, spec.necrosis_share))
            # only the core changes: size, site, shape, noise and mass effect are the drawn tumour's
            assert (spec.r_whole, spec.r_mass, spec.seed, spec.max_stretch) == (drawn.r_whole, drawn.r_mass,
                                                                               drawn.seed, drawn.max_stretch)
            assert spec.r_core == pytest.approx(spec.r_whole * spec.core_share ** (1 / 3))
        fast, slow = np.array(shares[True]), np.array(shares[False])
        assert fast[:, 0].mean() > slow[:, 0].mean() and fast[:, 1].mean() > slow[:, 1].mean()
    # strength 1: the class ranges
    assert cue_model.FAST_CORE_SHARE[0] <= fast[:, 0].min() and fast[:, 0].max() <= cue_model.FAST_CORE_SHARE[1]
    assert cue_model.SLOW_CORE_SHARE[0] <= slow[:, 0].min() and slow[:, 0].max() <= cue_model.SLOW_CORE_SHARE[1]
    assert cue_model.SLOW_CORE_SHARE[1] < cue_model.FAST_CORE_SHARE[0]


def test_at_cue_strength_1_every_fast_baseline_has_a_larger_core_share_than_every_slow_one():
    """On the drawn masks (2 mm grid): core (NCR + ET) and ET voxels per WT voxel of each baseline."""
    shares = {0: [], 1: []}
    for subject in range(10):
        visit = next(phantom_visits(subject, seed=0, visits=1, shape=(78, 120, 120), fast_fraction=0.5,
                                    cue_strength=1.0))
        label = visit.case.label
        wt = np.count_nonzero(label)
        shares[visit.record.progressor].append((np.isin(label, (1, 3)).sum() / wt, (label == 3).sum() / wt))
    fast, slow = np.array(shares[1]), np.array(shares[0])
    assert len(fast) and len(slow), "the seed should give both classes"
    assert fast[:, 0].min() > slow[:, 0].max(), shares
    assert fast[:, 1].mean() > slow[:, 1].mean(), shares


def test_visit_arguments_are_checked():
    with pytest.raises(SynthmedError, match="--visits"):
        _visits(0, visits=0)
    with pytest.raises(SynthmedError, match="--interval-months"):
        _visits(0, interval_months=0.0)
    with pytest.raises(SynthmedError, match="non-negative"):
        _visits(-1)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(SynthmedError, match="--cue-strength must be in"):
            _visits(0, cue_strength=bad)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort") / "cohort"
    records = write_longitudinal_phantom(out, subjects=4, visits=3, seed=3, shape=SHAPE, interval_months=6.0,
                                         onset_fraction=0.5, progress=False)
    return out, records


def _seg(out, case):
    img = nib.load(out / case / f"{case}_seg.nii.gz")
    return np.asarray(img.dataobj).transpose(2, 1, 0), img


def test_cohort_files_and_longitudinal_csv(cohort):
    out, records = cohort
    ids = [f"phantom-{s:04d}-v{v:02d}" for s in range(4) for v in range(3)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*ids, "longitudinal.csv", "phantom.json"])
    with (out / "longitudinal.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [*LONGITUDINAL_COLUMNS, "t1", "t1ce", "t2", "flair", "label"]
    assert [r["case_id"] for r in rows] == ids == [r.case_id for r in records]
    onset = set()
    for row, record in zip(rows, records):
        subject, visit = int(row["subject_id"][-4:]), int(row["visit"])
        assert row["subject_id"] == f"phantom-{subject:04d}" and row["case_id"].endswith(f"-v{visit:02d}")
        assert float(row["months"]) == 6.0 * visit
        growth = subject_growth(subject, seed=3, onset_fraction=0.5)
        assert int(row["progressor"]) == int(growth.fast)
        seg, img = _seg(out, row["case_id"])
        assert img.shape == SHAPE[::-1] and set(np.unique(seg)) <= {0, 1, 2, 4}
        assert (out / row["t1"]).is_file() and (out / row["label"]).samefile(out / row["case_id"] / f"{row['case_id']}_seg.nii.gz")
        voxel_ml = np.prod(img.header.get_zooms()[:3]) / 1000.0
        assert float(row["wt_ml"]) == pytest.approx(np.count_nonzero(seg) * voxel_ml, abs=1e-4)
        centre = int(row["centre_slice"])
        assert int(row["grade"]) == grade_of_label(seg[centre])
        if growth.onset and visit == 0:
            assert float(row["wt_ml"]) == 0 and int(row["grade"]) == 0
            onset.add(row["subject_id"])
        assert float(row["wt_ml"]) == record.wt_ml and int(row["grade"]) == record.grade
    assert 0 < len(onset) < 4, "the seed should give onset and non-onset subjects"
    # the same arrays as phantom_visits
    visit = list(phantom_visits(2, seed=3, visits=3, shape=SHAPE, interval_months=6.0, onset_fraction=0.5))[1]
    assert np.array_equal(_seg(out, visit.case.id)[0], np.array([0, 1, 2, 4])[visit.case.label])
    record = json.loads((out / "phantom.json").read_text())
    assert record["subjects"] == 4 and record["visits"] == 3 and record["interval_months"] == 6.0
    assert record["onset_subjects"] == sorted(onset) and record["manifest"] == "longitudinal.csv"
    assert record["growth"]["fast_rate_per_month"] == list(growth_model.FAST_RATE)
    assert record["cue"]["strength"] == cue_model.CUE_STRENGTH
    assert record["cue"]["fast"]["core_share"] == list(cue_model.FAST_CORE_SHARE)


def test_cohort_overwrite_and_bad_arguments(tmp_path):
    out = tmp_path / "c"
    write_longitudinal_phantom(out, subjects=1, visits=1, seed=0, shape=(32, 32, 32), progress=False)
    first = (out / "phantom.json").stat().st_ino
    write_longitudinal_phantom(out, subjects=1, visits=1, seed=0, shape=(32, 32, 32), overwrite=True, progress=False)
    assert (out / "phantom.json").stat().st_ino != first  # the phantom kind recognises a cohort
    for bad in ({"subjects": 0}, {"visits": 0}, {"interval_months": -1.0}, {"fast_fraction": 2.0},
                {"cue_strength": 1.01}):
        options = {"subjects": 1, "visits": 1, **bad}
        with pytest.raises(SynthmedError):
            write_longitudinal_phantom(tmp_path / "bad", seed=0, shape=(32, 32, 32), progress=False, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_prepared_cohort_has_one_centre_slice_per_visit_split_by_subject(cohort, tmp_path):
    out, records = cohort
    result = prepare(out, tmp_path / "s", PrepareConfig(size=16, test_fraction=0.5), progress=False)
    store = result.store
    assert result.layout == "csv" and result.longitudinal and result.subjects == {"train": 2, "test": 2}
    table = store.samples
    assert len(store) == len(records) and list(table["case_id"]) == [r.case_id for r in records]
    assert list(table["subject_id"]) == [r.subject_id for r in records]
    assert list(table["visit"]) == [r.visit for r in records] and list(table["months"]) == [r.months for r in records]
    assert list(table["slice"]) == [r.centre_slice for r in records]
    assert (table.groupby("subject_id")["split"].nunique() == 1).all()
    assert set(table["split"]) == {"train", "test"}
    provenance = store.meta["provenance"]
    assert provenance["slices"] == "centre" and provenance["subjects"] == {"train": 2, "test": 2}
    assert provenance["centre_slices"] == {r.subject_id: r.centre_slice for r in records}
    _, labels = store.read(slice(0, len(store)))
    wt = (labels > 0).reshape(len(store), -1).sum(axis=1)
    for subject in table["subject_id"].unique():
        rows = np.flatnonzero(table["subject_id"] == subject)
        assert (np.diff(wt[rows]) >= 0).all(), "the stored tumour shrank"
    brain = prepare(out, tmp_path / "b", PrepareConfig(size=16, slices="brain"), progress=False).store
    assert len(brain) > len(store) and set(brain.samples["subject_id"]) == set(table["subject_id"])
    with pytest.raises(SynthmedError, match="--dims 2"):
        prepare(out, tmp_path / "v", PrepareConfig(dims=3, size=16, slices="centre"), progress=False)
    assert not (tmp_path / "v").exists()


def test_a_prepared_cohort_validates_on_subjects_it_does_not_train_on(cohort, tmp_path):
    """The training set of a prepared cohort (3 training subjects of 3 visits) holds out whole
    subjects for validation, whatever the seed: no visit of a validation subject is trained on."""
    from synthmed.segmentation import build_training_set

    store = prepare(cohort[0], tmp_path / "s", PrepareConfig(size=16, test_fraction=0.25), progress=False).store
    subject_of = store.samples["subject_id"].to_numpy()
    for seed in range(4):
        ts = build_training_set([store], seed=seed, val_fraction=0.34)
        train = {s for part in ts.train.parts for s in subject_of[part.indices]}
        val = {s for part in ts.val.parts for s in subject_of[part.indices]}
        assert len(train) == 2 and len(val) == 1 and not train & val, (seed, train, val)
        assert len(ts.train) + len(ts.val) == 9  # every visit of the 3 training subjects, one slice each


def _manifest(tmp_path, kit, rows):
    """A CSV manifest of the conftest phantoms; ``rows`` are ``(case, phantom index, subject, months)``."""
    root = tmp_path / "byo"
    lines = [["case_id", "t1", "t1ce", "t2", "flair", "label", "Subject_ID", "months"]]
    for case, index, subject, months in rows:
        p = kit.make_phantom(index)
        for name in kit.CHANNELS:
            kit.write_nifti(root / f"{case}_{name}.nii.gz", p.images[name])
        kit.write_nifti(root / f"{case}_seg.nii.gz", kit.TO_BRATS[p.label])
        lines.append([case, *(f"{case}_{n}.nii.gz" for n in kit.CHANNELS), f"{case}_seg.nii.gz", subject, months])
    path = root / "cases.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(lines)
    return path


def test_manifest_subjects_and_months_round_trip_into_the_store(tmp_path, kit):
    rows = [("a2", 1, "A", "14.5"), ("a1", 0, "A", "0"), ("b1", 2, "B", "3"), ("b2", 1, "B", ""),
            ("c1", 0, "C", "0"), ("lone", 2, "", "")]
    manifest = _manifest(tmp_path, kit, rows)
    sources = {s.id: s for s in discover_cases(manifest)}
    assert sources["a2"].subject == "A" and sources["a2"].months == 14.5
    assert sources["b2"].months is None and sources["lone"].subject is None and sources["lone"].subject_id == "lone"
    store = prepare(manifest, tmp_path / "s", PrepareConfig(size=8, test_fraction=0.5, slices="brain"),
                    progress=False).store
    table = store.samples.drop_duplicates("case_id").set_index("case_id")
    assert table.loc["a1", "subject_id"] == "A" and table.loc["lone", "subject_id"] == "lone"
    assert table.loc["a1", "visit"] == 0 and table.loc["a2", "visit"] == 1  # ranked by months
    assert table.loc["b1", "visit"] == 0 and table.loc["b2", "visit"] == 1  # unknown months last
    assert table.loc["a2", "months"] == 14.5 and math.isnan(table.loc["b2", "months"])
    assert (store.samples.groupby("subject_id")["split"].nunique() == 1).all()
    assert store.samples["visit"].dtype == np.int64 and store.samples["months"].dtype == np.float64
    reopened = pd.read_csv(tmp_path / "s" / "samples.csv")
    assert {"subject_id", "visit", "months"} <= set(reopened.columns)
    # 2D 'auto' for a manifest with subjects: one slice per case, at the subject's earliest tumour's centre
    centre = prepare(manifest, tmp_path / "c", PrepareConfig(size=8), progress=False).store
    assert len(centre) == len(rows)
    expected = tumour_centre_slice(kit.make_phantom(0).label)
    assert centre.samples.set_index("case_id").loc[["a1", "a2"], "slice"].tolist() == [expected, expected]


def test_manifest_months_must_be_numbers(tmp_path, kit):
    manifest = _manifest(tmp_path, kit, [("a1", 0, "A", "soon")])
    with pytest.raises(DataError, match="line 2: months must be a number of months >= 0"):
        discover_cases(manifest)
    manifest = _manifest(tmp_path, kit, [("a1", 0, "A", "-3")])
    with pytest.raises(DataError, match="months"):
        discover_cases(manifest)


def test_split_is_by_subject():
    cases = [f"s{s}-v{v}" for s in range(10) for v in range(3)]
    subjects = {c: c.split("-")[0] for c in cases}
    split = split_cases(cases, 0.3, seed=1, subjects=subjects)
    assert sorted(split) == sorted(cases)
    by_subject = {}
    for case, part in split.items():
        by_subject.setdefault(subjects[case], set()).add(part)
    assert all(len(parts) == 1 for parts in by_subject.values()), "a subject in both splits"
    assert sum(parts == {"test"} for parts in by_subject.values()) == 3
    assert split == split_cases(list(reversed(cases)), 0.3, seed=1, subjects=subjects)
    ids = [f"case{i}" for i in range(10)]  # one case per subject: the same split as without subjects
    assert split_cases(ids, 0.3, seed=4, subjects={i: i for i in ids}) == split_cases(ids, 0.3, seed=4)


def test_grade_bins_are_shared_with_the_classifier():
    from synthmed.classify import targets

    assert targets.GRADE_BINS is GRADE_BINS
    import torch

    fractions = np.array([0.0, 1e-4, 0.007, 0.0071, 0.014, 0.02])
    labels = torch.zeros(len(fractions), 10000, dtype=torch.uint8)
    for i, f in enumerate(fractions):
        labels[i, : int(round(f * 10000))] = 1
    assert targets.grade_of(labels).tolist() == [grade_of_label(label.numpy()) for label in labels] == [0, 1, 1, 2, 2, 3]


def test_cli_config_defaults_match_the_phantom():
    config = LongitudinalPhantomConfig(subjects=1, visits=1)
    assert config.fast_fraction == growth_model.FAST_FRACTION and config.interval_months == INTERVAL_MONTHS
    assert config.cue_strength == cue_model.CUE_STRENGTH


def test_cli_cohort_end_to_end(monkeypatch, capsys, tmp_path):
    out, store = tmp_path / "cohort", tmp_path / "store"
    code, stdout, err = cli(monkeypatch, capsys, "data", "phantom", str(out), "--longitudinal", "--subjects", "3",
                            "--visits", "2", "--interval-months", "9", "--shape", "32", "32", "32", "--cue-strength", "0.25")
    assert code == 0, err
    assert "wrote 6 visits of 3 phantom subjects" in stdout and (out / "longitudinal.csv").is_file()
    assert json.loads((out / "phantom.json").read_text())["cue"]["strength"] == 0.25
    code, stdout, err = cli(monkeypatch, capsys, "data", "prepare", str(out), str(store), "--size", "16",
                            "--test-fraction", "0.34")
    assert code == 0, err
    assert "subjects: 2 train, 1 test" in " ".join(stdout.split())
    table = pd.read_csv(store / "samples.csv")
    assert len(table) == 6 and table["months"].tolist() == [0.0, 9.0] * 3


@pytest.mark.parametrize("args, message", [
    (["--longitudinal", "--visits", "3"], "--longitudinal needs --subjects"),
    (["--longitudinal"], "--longitudinal needs --subjects and --visits"),
    (["--longitudinal", "--subjects", "2", "--visits", "0"], "--visits"),
    (["--longitudinal", "--subjects", "2", "--visits", "2", "--interval-months", "0"], "--interval-months"),
    (["--longitudinal", "--subjects", "2", "--visits", "2", "--cases", "3"], "--cases: not with --longitudinal"),
    (["--subjects", "2"], "--subjects: only with --longitudinal"),
    (["--longitudinal", "--subjects", "2", "--visits", "2", "--cue-strength", "1.5"], "--cue-strength"),
    (["--longitudinal", "--subjects", "2", "--visits", "2", "--cue-strength", "-0.2"], "--cue-strength"),
    (["--cue-strength", "0.5"], "--cue-strength: only with --longitudinal"),
])
def test_cli_cohort_errors_are_one_line_and_exit_2(monkeypatch, capsys, tmp_path, args, message):
    out = tmp_path / "cohort"
    code, _, err = cli(monkeypatch, capsys, "data", "phantom", str(out), "--shape", "32", "32", "32", *args)
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
    assert not out.exists()
