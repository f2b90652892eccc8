"""Study spec: YAML loading, defaults and validation errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthmed.errors import SynthmedError
from synthmed.study import build_spec, load_spec

BASE = {"data": {"phantom": {"cases": 3, "shape": [32, 48, 48]}, "size": 16},
        "generators": [{"name": "ddpm"}], "segmenters": [{"name": "unet"}]}


def _with(**changes):
    return {**BASE, **changes}


def test_loads_yaml_and_resolves_relative_data_path(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("name: s\ndata: {path: data/brats}\nsegmenters: [{name: swin}]\n"
                                     "train_sets: [real]\n")
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.data.path == str((tmp_path / "data/brats").resolve())
    assert spec.segmenters[0].name == "swin" and spec.train_sets == ["real"]


def test_demo_example_is_valid() -> None:
    spec = load_spec(Path(__file__).parents[2] / "examples" / "demo.yaml")
    assert [g.name for g in spec.generators] == ["ddpm", "progan", "stylegan2"]
    assert {g.preset for g in spec.generators} == {s.preset for s in spec.segmenters} == {"laptop"}


def test_paper_example_plans_the_whole_grid_for_both_years() -> None:
    from synthmed.study import make_plan

    spec = load_spec(Path(__file__).parents[2] / "examples" / "brats.yaml")
    assert {g.preset for g in spec.generators} == {s.preset for s in spec.segmenters} == {"paper"}
    assert [g.name for g in spec.generators] == ["progan", "stylegan1", "stylegan2", "stylegan3", "ddpm"]
    assert [(d.label, Path(str(d.path)).name) for d in spec.data_sections()] == [
        ("BraTS2020", "MICCAI_BraTS2020_TrainingData"), ("BraTS2021", "BraTS2021_Training_Data")]
    plan = make_plan(spec)
    runs = len(spec.segmenters) * len(spec.augmentation) * len(spec.seeds)
    g, sweep, curve = len(spec.generators), len(spec.real_fractions), spec.pretraining.subject_fractions
    per_run = 1 + g + g * sweep + sum(f < 1 for f in curve) + g * len(curve)
    for year in ("BraTS2020", "BraTS2021"):  # each year its own whole grid
        stages = [s for s in plan.stages.values() if s.labels["dataset"] == year]
        trains = [s for s in stages if s.kind == "train"]
        assert len(trains) == runs * per_run == len([s for s in stages if s.kind == "evaluate"])
        assert len([s for s in stages if s.kind == "fit"]) == g
        assert len([s for s in stages if s.kind == "prepare"]) == 1
    assert len(plan.by_kind("train")) == 2 * runs * per_run and spec.executor.kind == "ray"


@pytest.mark.parametrize("values, words", [
    (_with(generators=[{"name": "vae"}]), ["generators.0.name", "ddpm", "progan", "stylegan2"]),
    (_with(segmenters=[{"name": "resnet"}]), ["segmenters.0.name", "unet", "swin"]),
    (_with(train_sets=["fake"]), ["train_sets.0", "real", "synthetic+real"]),
    (_with(fidelity=["clip"]), ["fidelity.0", "domain", "radimagenet", "inception"]),
    (_with(executor={"kind": "slurm"}), ["executor.kind", "local"]),
    (_with(real_fractions=[1.5]), ["real_fractions", "[0, 1]"]),
    (_with(pretraining={"subject_fractions": [0.0]}), ["pretraining.subject_fractions", "(0, 1]"]),
    (_with(pretraining={"subject_fractions": [0.5], "modes": ["contrastive"]}),
     ["pretraining.modes.0", "supervised", "ssl"]),
    (_with(pretraining={"subject_fractions": [0.5], "modes": []}), ["pretraining.modes", "at least 1"]),
    (_with(generators=[], train_sets=["real"], pretraining={"subject_fractions": [0.5]}),
     ["pretraining needs at least one generator"]),
    (_with(data={"size": 16}), ["data", "exactly one of path", "phantom"]),
    (_with(generators=[{"name": "ddpm", "preset": "huge"}]), ["generators.0.preset", "tiny", "small", "paper"]),
    (_with(generators=[], train_sets=["synthetic"]), ["at least one generator"]),
    (_with(colour="red"), ["colour", "Extra inputs"]),
])
def test_validation_error_names_the_field_and_allowed_values(values: dict, words: list[str]) -> None:
    with pytest.raises(SynthmedError) as info:
        build_spec(values, "demo.yaml")
    message = str(info.value)
    assert message.startswith("demo.yaml: ")
    for word in words:
        assert word in message


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SynthmedError, match="no such study file"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed\n")
    with pytest.raises(SynthmedError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")


TWO = {k: v for k, v in BASE.items() if k != "data"} | {"datasets": [
    {"name": "A", "phantom": {"cases": 3, "shape": [32, 48, 48]}, "size": 16},
    {"name": "B", "phantom": {"cases": 3, "shape": [32, 48, 48], "seed": 1}, "size": 16}]}


def test_datasets_list_is_accepted_and_each_relative_path_resolved(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("datasets:\n  - {name: BraTS2020, path: data/a}\n"
                                     "  - {name: BraTS2021, path: /elsewhere/b}\ntrain_sets: [real]\n")
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.data is None
    assert [(d.label, d.path) for d in spec.data_sections()] == [
        ("BraTS2020", str((tmp_path / "data/a").resolve())), ("BraTS2021", "/elsewhere/b")]
    assert [d.label for d in build_spec(TWO).data_sections()] == ["A", "B"]
    assert build_spec(BASE).data_sections() == [build_spec(BASE).data]


@pytest.mark.parametrize("values, words", [
    (TWO | {"data": BASE["data"]}, ["data", "datasets", "exactly one"]),
    ({k: v for k, v in BASE.items() if k != "data"}, ["data", "datasets", "exactly one"]),
    (TWO | {"datasets": []}, ["datasets", "at least 1"]),
    (TWO | {"datasets": [TWO["datasets"][0], {k: v for k, v in TWO["datasets"][1].items() if k != "name"}]},
     ["datasets.1.name", "a name"]),
    (TWO | {"datasets": [TWO["datasets"][0], TWO["datasets"][1] | {"name": "A"}]}, ["datasets.1.name", "'A'"]),
    (TWO | {"datasets": [TWO["datasets"][0], TWO["datasets"][0] | {"name": "C"}]}, ["datasets.1", "datasets.0"]),
    (TWO | {"datasets": [TWO["datasets"][0], {"name": "C", "size": 16}]}, ["datasets.1", "exactly one of path", "phantom"]),
])
def test_datasets_errors_name_the_field(values: dict, words: list[str]) -> None:
    with pytest.raises(SynthmedError) as info:
        build_spec(values, "study.yaml")
    message = str(info.value)
    assert message.startswith("study.yaml: ")
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("values, words", [
    (_with(generators=[{"name": "ddpm", "train_overrides": {"lrr": 1e-3}}]),
     ["generators.0.train_overrides.lrr: Extra inputs are not permitted"]),
    (_with(generators=[{"name": "progan"}, {"name": "ddpm", "model_overrides": {"schedule": "cubic"}}]),
     ["generators.1.model_overrides.schedule:", "linear", "cosine"]),
    (_with(segmenters=[{"name": "unet", "train_overrides": {"checkpoint_every": 0}}]),
     ["segmenters.0.train_overrides.checkpoint_every: Input should be greater than or equal to 1 (got 0)"]),
    (_with(segmenters=[{"name": "unet", "model_overrides": {"model": 1, "source": 2}}]),
     ["segmenters.0.model_overrides.model:", "segmenters.0.model_overrides.source:"]),
])
def test_bad_overrides_are_refused_at_plan_time_with_their_yaml_path(tmp_path, values, words) -> None:
    import yaml

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(SynthmedError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and all(w in message for w in words), message


def test_good_overrides_pass() -> None:
    spec = build_spec(_with(generators=[{"name": "ddpm", "train_overrides": {"lr": 1e-3, "checkpoint_every": 5},
                                         "model_overrides": {"schedule": "cosine"}}],
                            segmenters=[{"name": "unet", "train_overrides": {"aug": False}}]))
    assert spec.generators[0].train_overrides["lr"] == 1e-3


def test_a_spec_without_overrides_validates_without_loading_torch() -> None:
    """`study plan` stays quick: override checks load a model's code only where there are overrides."""
    import subprocess
    import sys

    code = ("import sys; from synthmed.study import DEMO_SPEC, load_spec; load_spec(DEMO_SPEC); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


CLASSIFIED = {**BASE, "train_sets": ["real", "synthetic"], "seeds": [0, 1]}


def _classifier(**fields) -> dict:
    return {**CLASSIFIED, "classifiers": [{"task": "presence", **fields}]}


def test_classifiers_default_to_the_study_train_sets_and_seeds_and_get_unique_labels() -> None:
    spec = build_spec({**CLASSIFIED, "classifiers": [{"task": "presence"}, {"task": "presence", "modes": ["adversarial"]},
                                                     {"task": "grade", "model": "densenet121", "label": "g",
                                                      "train_sets": ["real"], "seeds": [3], "eval_eps": [0.01, 0, 0.01],
                                                      "saliency": None, "steps": 5, "eps": 0.002}]})
    first, _, third = spec.classifiers
    assert first.modes == ["standard", "dual-bn"] and first.train_sets is None and first.seeds is None
    assert first.eval_eps == [0.0, 0.005] and first.saliency == "gradient" and first.preset == "tiny"
    assert third.eval_eps == [0.0, 0.01] and third.saliency is None
    assert third.training_overrides() == {"steps": 5, "eps": 0.002}
    assert spec.classifier_labels() == ["presence-resnet18", "presence-resnet18-2", "g"]
    assert build_spec(BASE).classifiers == []  # optional


@pytest.mark.parametrize("fields, words", [
    ({"modes": ["standard", "robust"]}, ["classifiers.0.modes.1", "'standard', 'adversarial' or 'dual-bn'", "robust"]),
    ({"task": "segmentation"}, ["classifiers.0.task", "'presence', 'regions' or 'grade'"]),
    ({"model": "vgg16"}, ["classifiers.0.model", "resnet18"]),
    ({"modes": []}, ["classifiers.0.modes", "at least 1"]),
    ({"modes": ["dual-bn", "dual-bn"]}, ["classifiers.0.modes", "'dual-bn' is given twice"]),
    ({"eval_eps": [0, -0.01]}, ["classifiers.0.eval_eps", ">= 0"]),
    ({"saliency": "lime"}, ["classifiers.0.saliency", "gradcam"]),
    ({"preset": "huge"}, ["classifiers.0.preset", "tiny"]),
    ({"train_sets": ["fake"]}, ["classifiers.0.train_sets.0", "synthetic+real"]),
    ({"seeds": []}, ["classifiers.0.seeds", "at least 1"]),
    ({"model_overrides": {"mode": "adversarial"}}, ["classifiers.0.model_overrides", "mode is not an override"]),
    ({"colour": "red"}, ["classifiers.0.colour", "Extra inputs"]),
])
def test_classifier_errors_name_the_field(fields: dict, words: list[str]) -> None:
    with pytest.raises(SynthmedError) as info:
        build_spec(_classifier(**fields), "study.yaml")
    message = str(info.value)
    assert message.startswith("study.yaml: ") and all(w in message for w in words), message


def test_classifier_train_sets_and_3d_phantom_without_tumour_free_cases_are_refused() -> None:
    with pytest.raises(SynthmedError, match=r"classifiers\.0\.train_sets: synthetic .* need at least one generator"):
        build_spec({**BASE, "generators": [], "train_sets": ["real"], "classifiers": [{"train_sets": ["synthetic"]}]})
    volumes = {"phantom": {"cases": 3, "shape": [32, 48, 48]}, "size": 16, "dims": 3}
    with pytest.raises(SynthmedError, match=r"classifiers\.0\.task grade cannot be learnt from dataset phantom: "
                                            r"its 3D phantom volumes all hold a tumour .*tumour_free_fraction > 0"):
        build_spec({**BASE, "data": volumes, "classifiers": [{"task": "grade"}]})
    with_negatives = {**volumes, "phantom": {**volumes["phantom"], "tumour_free_fraction": 0.5}}
    assert build_spec({**BASE, "data": with_negatives, "classifiers": [{"task": "presence"}]}).classifiers
    slices = {**volumes, "dims": 2}  # 2D slices: the slices without tumour are the negatives
    assert build_spec({**BASE, "data": slices, "classifiers": [{"task": "presence"}]}).classifiers


@pytest.mark.parametrize("fields, words", [
    ({"train_overrides": {"lrr": 1e-3}}, ["classifiers.0.train_overrides.lrr: Extra inputs are not permitted"]),
    ({"model_overrides": {"width": 0}}, ["classifiers.0.model_overrides.width: Input should be greater than 0"]),
    ({"train_overrides": {"norm": "l1"}}, ["classifiers.0.train_overrides.norm", "'linf' or 'l2'"]),
])
def test_bad_classifier_overrides_are_refused_with_their_yaml_path(tmp_path, fields, words) -> None:
    import yaml

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_classifier(**fields)))
    with pytest.raises(SynthmedError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and all(w in message for w in words), message
    assert build_spec(_classifier(train_overrides={"norm": "l2", "batch": 4}, model_overrides={"width": 0.25}))


def test_a_spec_with_classifiers_but_no_overrides_validates_without_loading_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from synthmed.study import build_spec; build_spec({'data': {'phantom': {'cases': 3}}, "
            "'train_sets': ['real'], 'classifiers': [{'task': 'regions', 'modes': ['adversarial']}]}); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


COHORT = {"phantom": {"shape": [24, 32, 32], "longitudinal": {"subjects": 6, "visits": 3}}, "size": 32}
PROGRESSED = {"data": COHORT, "generators": [{"name": "stylegan2"}, {"name": "ddpm"}], "train_sets": ["real"],
              "classifiers": [{"task": "grade", "modes": ["dual-bn", "standard"], "seeds": [4, 2]},
                              {"task": "presence"}],
              "progression": {"generator": "stylegan2", "classifier": "grade-resnet18"}}


def _progression(**fields) -> dict:
    return {**PROGRESSED, "progression": {**PROGRESSED["progression"], **fields}}


def test_a_longitudinal_phantom_and_the_progression_defaults() -> None:
    spec = build_spec(PROGRESSED)
    cohort = spec.data.phantom.longitudinal
    assert (cohort.subjects, cohort.visits, cohort.interval_months, cohort.onset_fraction) == (6, 3, 12.0, 0.0)
    assert not spec.data.cross_sectional_phantom and build_spec(BASE).data.cross_sectional_phantom
    prog = spec.progression
    assert (prog.space, prog.steps, prog.k, prog.months, prog.metric, prog.baseline) == ("w", None, 3, None,
                                                                                          "cosine", True)
    assert prog.projection() == {"space": "w", "seed": 0}  # the rest: ProjectionConfig's defaults
    assert spec.progression_classifier()[::2] == ("grade-resnet18", "standard")  # standard when trained so
    assert spec.progression_classifier()[3] == 4  # its first seed
    inline = build_spec(_progression(classifier={"steps": 3, "mode": "adversarial", "seed": 7}))
    label, clf, mode, seed = inline.progression_classifier()
    assert (label, clf.task, clf.train_sets, mode, seed) == ("grade-resnet18", "grade", ["real"], "adversarial", 7)
    assert clf.training_overrides() == {"steps": 3}
    assert build_spec(_progression(classifier=None)).progression_classifier() is None
    assert build_spec(BASE).progression is None  # optional


@pytest.mark.parametrize("values, words", [
    (_progression(generator="gan"), ["progression.generator 'gan' is not a generator of the study",
                                     "labels: stylegan2, ddpm"]),
    (_progression(generator="ddpm"), ["progression.generator 'ddpm' is a ddpm", "style space",
                                      "stylegan1, stylegan2, stylegan3"]),
    (_progression(classifier="presence-resnet18"), ["progression.classifier 'presence-resnet18' is a presence "
                                                    "classifier", "task grade"]),
    (_progression(classifier="nope"), ["progression.classifier 'nope' is not a classifier of the study",
                                       "grade-resnet18, presence-resnet18"]),
    ({**_progression(), "classifiers": [{"task": "grade", "train_sets": ["synthetic"]}]},
     ["progression.classifier 'grade-resnet18' is not trained on the real train set"]),
    ({**_progression(), "data": {"phantom": {"cases": 3, "shape": [24, 32, 32]}, "size": 32}},
     ["progression needs longitudinal data: dataset phantom is a cross-sectional phantom", "phantom.longitudinal"]),
    ({**_progression(), "data": {**COHORT, "dims": 3, "phantom": {**COHORT["phantom"], "longitudinal": {
        "onset_fraction": 0.5}}}}, ["progression needs 2D data", "dims 3"]),
    ({**_progression(), "data": {**COHORT, "dims": 3}}, ["classifiers.0.task grade cannot be learnt",
                                                          "set phantom.longitudinal.onset_fraction > 0"]),
    (_progression(space="z"), ["progression.space", "'w' or 'wplus'"]),
    (_progression(k=0), ["progression.k", "greater than or equal to 1"]),
    (_progression(metric="manhattan"), ["progression.metric", "'cosine' or 'euclidean'"]),
    (_progression(months=-1), ["progression.months", "greater than or equal to 0"]),
    (_progression(classifier={"mode": "robust"}), ["progression.classifier", "'standard', 'adversarial' or 'dual-bn'"]),
    (_progression(classifier={"model_overrides": {"task": "presence"}}), ["task is not an override"]),
    ({**PROGRESSED, "progression": {"classifier": "grade-resnet18"}}, ["progression.generator", "Field required"]),
    ({**PROGRESSED, "data": {**COHORT, "phantom": {**COHORT["phantom"], "cases": 4}}},
     ["data.phantom", "cases is not used by a longitudinal phantom: give longitudinal.subjects"]),
    ({**PROGRESSED, "data": {**COHORT, "phantom": {**COHORT["phantom"], "tumour_free_fraction": 0.5}}},
     ["data.phantom", "give longitudinal.onset_fraction"]),
    ({**PROGRESSED, "data": {**COHORT, "phantom": {**COHORT["phantom"], "longitudinal": {"visits": 1}}}},
     ["data.phantom.longitudinal.visits", "greater than or equal to 2"]),
])
def test_progression_errors_name_the_field(values: dict, words: list[str]) -> None:
    with pytest.raises(SynthmedError) as info:
        build_spec(values, "study.yaml")
    message = str(info.value)
    assert message.startswith("study.yaml: ") and all(w in message for w in words), message


def test_bad_inline_grade_classifier_overrides_are_refused_with_their_yaml_path() -> None:
    with pytest.raises(SynthmedError, match=r"progression\.classifier\.train_overrides\.lrr: Extra inputs"):
        build_spec(_progression(classifier={"train_overrides": {"lrr": 1}}), "study.yaml")
