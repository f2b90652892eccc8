"""Plan: stage keys are stable and change only where the spec changed."""

from __future__ import annotations

from synthmed.study import build_spec, make_plan

SPEC = {"name": "t", "data": {"phantom": {"cases": 3, "shape": [32, 48, 48]}, "size": 16},
        "generators": [{"name": "ddpm", "steps": 2}, {"name": "progan", "steps": 2}],
        "segmenters": [{"name": "unet", "steps": 2}], "train_sets": ["real", "synthetic", "synthetic+real"],
        "augmentation": [True, False], "seeds": [0, 1], "real_fractions": [0.25, 0.75]}


def _keys(values: dict) -> dict[str, str]:
    """stage description → key; the description is the stage's labels and kind (unique per stage)."""
    plan = make_plan(build_spec(values))
    return {f"{s.kind}:{sorted(s.labels.items(), key=str)}": s.key for s in plan.stages.values()}


def test_grid_size_and_dependency_order() -> None:
    plan = make_plan(build_spec(SPEC))
    kinds = [s.kind for s in plan.stages.values()]
    # per generator: fit, sample, fidelity, memorization; trains: real 4 + synthetic 2·4 + mixed 2·2·4
    assert kinds.count("prepare") == 1 and kinds.count("fit") == 2 and kinds.count("fidelity") == 2
    assert kinds.count("train") == 4 + 8 + 16 == kinds.count("evaluate")
    seen: set[str] = set()
    for stage in plan.stages.values():
        assert set(stage.inputs) <= seen  # inputs come first
        seen.add(stage.key)
    assert len({s.name for s in plan.stages.values()}) == len(plan)


def test_same_spec_same_keys() -> None:
    assert _keys(SPEC) == _keys(dict(SPEC))
    assert _keys(SPEC) == _keys({**SPEC, "name": "renamed"})  # the name is a label, not content


def test_changing_one_generator_changes_only_its_downstream_stages() -> None:
    before = _keys(SPEC)
    changed = {**SPEC, "generators": [{"name": "ddpm", "steps": 2}, {"name": "progan", "steps": 2, "preset": "small"}]}
    after = _keys(changed)
    assert before.keys() == after.keys()
    differ = {d for d in before if before[d] != after[d]}
    assert differ  # progan's fit, sample, fidelity, memorization, trains and evaluations
    for description in before:
        kind = description.split(":")[0]
        downstream = "'generator', 'progan'" in description
        assert (description in differ) == downstream, description
        if downstream:
            assert kind in ("fit", "sample", "fidelity", "memorization", "train", "evaluate")


def test_changing_the_data_changes_everything_and_segmenter_steps_only_trainings() -> None:
    before = _keys(SPEC)
    data = _keys({**SPEC, "data": {**SPEC["data"], "size": 32}})
    assert all(before[d] != data[d] for d in before)
    seg = _keys({**SPEC, "segmenters": [{"name": "unet", "steps": 3}]})
    for description in before:
        assert (before[description] != seg[description]) == description.startswith(("train:", "evaluate:"))


def test_pretraining_curve_reuses_the_synthetic_runs_and_the_full_real_run() -> None:
    base = make_plan(build_spec(SPEC))
    plan = make_plan(build_spec({**SPEC, "pretraining": {"subject_fractions": [0.5, 1.0]}}))
    assert set(base.stages) <= set(plan.stages)  # the grid's stages are untouched
    new = [s for s in plan.stages.values() if s.key not in base.stages]
    trains = [s for s in new if s.kind == "train"]
    # per augmentation × seed: real on half the subjects, pretrained per generator at 0.5 and 1
    assert len(trains) == 4 * (1 + 2 * 2) == len(new) - len(trains)
    synthetic = {s.key for s in plan.by_kind("train") if s.config["train_set"] == "synthetic"}
    for stage in trains:
        if stage.config["train_set"] == "pretrained":
            assert stage.inputs[1] in synthetic and plan.stages[stage.inputs[1]].labels["seed"] == stage.labels["seed"]
        else:
            assert stage.config["subject_fraction"] == 0.5
    # without synthetic in train_sets the pre-training runs are added (and evaluated) all the same
    only_real = make_plan(build_spec({**SPEC, "train_sets": ["real"], "pretraining": {"subject_fractions": [0.5]}}))
    assert {s.config["train_set"] for s in only_real.by_kind("train")} == {"real", "synthetic", "pretrained"}


def test_pretraining_curve_ssl_arm_pretrains_on_the_samples_beside_the_supervised_arm() -> None:
    curve = {"subject_fractions": [0.5, 1.0]}
    supervised = make_plan(build_spec({**SPEC, "pretraining": curve}))
    assert build_spec({**SPEC, "pretraining": curve}).pretraining.modes == ["supervised"]  # the default
    both = make_plan(build_spec({**SPEC, "pretraining": {**curve, "modes": ["supervised", "ssl", "ssl"]}}))
    assert set(supervised.stages) <= set(both.stages)  # the supervised arm's stages are untouched
    trains = [s for s in both.stages.values() if s.kind == "train" and s.key not in supervised.stages]
    # per augmentation × seed: an ssl run per generator at 0.5 and 1, each evaluated
    assert len(trains) == 4 * 2 * 2 and len(both) - len(supervised) == 2 * len(trains)
    samples = {s.key: s for s in both.by_kind("sample")}
    for stage in trains:
        assert stage.config["train_set"] == stage.labels["train_set"] == "pretrained-ssl"
        assert stage.inputs[0] == both.by_kind("prepare")[0].key and stage.inputs[1] in samples
        assert samples[stage.inputs[1]].labels["generator"] == stage.labels["generator"]
        assert stage.config["pretrain_steps"] == 2 and stage.labels["real_fraction"] == 1.0  # the segmenter's steps
    assert {s.labels["subject_fraction"] for s in trains} == {0.5, 1.0}
    # ssl alone adds no synthetic train stage, finetune_steps sets the fine-tuning's steps only
    only = make_plan(build_spec({**SPEC, "train_sets": ["real"],
                                 "pretraining": {"subject_fractions": [0.5], "modes": ["ssl"], "finetune_steps": 3}}))
    assert {s.config["train_set"] for s in only.by_kind("train")} == {"real", "pretrained-ssl"}
    ssl = [s for s in only.by_kind("train") if s.config["train_set"] == "pretrained-ssl"]
    assert {(s.config["train_overrides"]["steps"], s.config["pretrain_steps"]) for s in ssl} == {(3, 2)}


def test_two_datasets_plan_both_grids_sharing_no_stage() -> None:
    a = {**SPEC["data"], "name": "A"}
    b = {**SPEC["data"], "name": "B", "phantom": {**SPEC["data"]["phantom"], "seed": 1}}
    rest = {k: v for k, v in SPEC.items() if k != "data"}
    two = make_plan(build_spec({**rest, "datasets": [a, b]}))
    one = {name: make_plan(build_spec({**SPEC, "data": d})) for name, d in (("A", a), ("B", b))}
    # each dataset's grid is the one-dataset study's, stage for stage; no stage is in both
    assert set(two.stages) == set(one["A"].stages) | set(one["B"].stages)
    assert not set(one["A"].stages) & set(one["B"].stages) and len(two) == 2 * len(one["A"])
    seen: set[str] = set()
    for key, stage in two.stages.items():
        dataset = "A" if key in one["A"].stages else "B"
        assert stage.labels["dataset"] == dataset
        assert all(two.stages[i].labels["dataset"] == dataset for i in stage.inputs)
        assert set(stage.inputs) <= seen
        seen.add(key)
    assert [s.labels["dataset"] for s in two.by_kind("prepare")] == ["A", "B"]
    # a `data:` study and a one-entry `datasets:` list plan the same stages (a study can switch form)
    assert set(make_plan(build_spec({**rest, "datasets": [a]})).stages) == set(one["A"].stages)


def test_one_encoder_per_dataset_feeds_every_domain_fidelity_stage() -> None:
    """All generators of a dataset are scored in one feature space: one ``encoder`` stage per
    dataset (keyed by the real store's stage, its steps and seed) that every domain fidelity
    stage of that dataset takes as an input."""
    values = {**SPEC, "fidelity": ["domain", "radimagenet"], "fidelity_weights": {"radimagenet": "rad.pt"}}
    plan = make_plan(build_spec(values))
    prepare = {s.labels["dataset"]: s for s in plan.by_kind("prepare")}
    encoders = {s.labels["dataset"]: s for s in plan.by_kind("encoder")}
    assert len(plan.by_kind("encoder")) == len(encoders) == len(prepare) and encoders.keys() == prepare.keys()
    for dataset, encoder in encoders.items():
        assert encoder.inputs == (prepare[dataset].key,)
        assert encoder.config == {"steps": 500, "seed": 0}
    fidelity = plan.by_kind("fidelity")
    assert len(fidelity) == 4
    for stage in fidelity:
        uses = [k for k in stage.inputs if plan.stages[k].kind == "encoder"]
        assert uses == ([encoders[stage.labels["dataset"]].key] if stage.labels["features"] == "domain" else [])
    order = list(plan.stages)
    assert all(order.index(encoders[s.labels["dataset"]].key) < order.index(s.key) for s in fidelity
               if s.labels["features"] == "domain")
    key = next(iter(encoders.values())).key
    other_generators = {**values, "generators": [{"name": "ddpm", "steps": 3}]}
    assert make_plan(build_spec(other_generators)).by_kind("encoder")[0].key == key
    for change in ({"encoder_steps": 7}, {"encoder_seed": 1}, {"data": {**SPEC["data"], "size": 32}}):
        assert make_plan(build_spec({**values, **change})).by_kind("encoder")[0].key != key, change


CLASSIFIERS = {**SPEC, "classifiers": [{"task": "presence", "steps": 3}, {"task": "grade", "modes": ["adversarial"],
                                                                         "train_sets": ["real"], "seeds": [5]}]}


def test_classifiers_plan_a_run_and_an_evaluation_per_train_set_seed_and_mode() -> None:
    base = make_plan(build_spec(SPEC))
    plan = make_plan(build_spec(CLASSIFIERS))
    assert set(base.stages) <= set(plan.stages)  # the rest of the grid is untouched
    assert {s.kind for s in plan.stages.values() if s.key not in base.stages} == {"classify", "classify_eval"}
    runs = plan.by_kind("classify")
    # presence: (real + 2 synthetic + 2 synthetic+real, all of both stores) × seeds 0, 1 × standard, dual-bn;
    # grade: real × seed 5 × adversarial
    assert len(runs) == 5 * 2 * 2 + 1 == len(plan.by_kind("classify_eval"))
    prep = plan.by_kind("prepare")[0]
    samples = {s.labels["generator"]: s.key for s in plan.by_kind("sample")}
    for run in runs:
        labels, config = run.labels, run.config
        assert config["train_set"] == labels["train_set"] and config["seed"] == labels["seed"]
        assert config["mode"] == labels["mode"] and config["task"] == labels["task"]
        expected = (prep.key,) if labels["train_set"] == "real" else (prep.key, samples[labels["generator"]])
        assert run.inputs == expected
        assert labels["real_fraction"] == {"real": 1.0, "synthetic": 0.0, "synthetic+real": None}[labels["train_set"]]
    presence = [r for r in runs if r.labels["task"] == "presence"]
    assert {r.labels["classifier"] for r in presence} == {"presence-resnet18"}
    assert {r.config["train_overrides"]["steps"] for r in presence} == {3}
    assert {(r.labels["mode"], r.labels["seed"]) for r in presence} == {(m, s) for m in ("standard", "dual-bn")
                                                                        for s in (0, 1)}
    (grade,) = [r for r in runs if r.labels["task"] == "grade"]
    assert grade.labels == {"dataset": "phantom", "classifier": "grade-resnet18", "task": "grade", "mode": "adversarial",
                            "generator": "", "train_set": "real", "seed": 5, "real_fraction": 1.0,
                            "subject_fraction": 1.0}
    by_key = {r.key: r for r in runs}
    for evaluation in plan.by_kind("classify_eval"):
        assert evaluation.inputs == (evaluation.inputs[0], prep.key) and evaluation.inputs[0] in by_key
        assert evaluation.labels == by_key[evaluation.inputs[0]].labels
        assert evaluation.config["eps"] == [0.0, 0.005] and evaluation.config["saliency"] == "gradient"
    order = list(plan.stages)
    assert all(order.index(k) < order.index(s.key) for s in plan.stages.values() for k in s.inputs)


def test_a_classifier_change_replans_only_its_own_stages() -> None:
    before = _keys(CLASSIFIERS)
    first = CLASSIFIERS["classifiers"][0]
    for change, kinds in (({"steps": 4}, ("classify", "classify_eval")), ({"eval_eps": [0, 0.01]}, ("classify_eval",)),
                          ({"saliency": "gradcam"}, ("classify_eval",)), ({"label": "p"}, ())):
        after = _keys({**CLASSIFIERS, "classifiers": [{**first, **change}, CLASSIFIERS["classifiers"][1]]})
        if change == {"label": "p"}:  # a label is not content: the same keys
            assert sorted(after.values()) == sorted(before.values())
            continue
        assert before.keys() == after.keys()
        for description, key in before.items():
            ours = "'classifier', 'presence-resnet18'" in description and description.startswith(kinds)
            assert (after[description] != key) == ours, (change, description)


PROGRESSION = {"name": "p", "data": {"phantom": {"shape": [24, 32, 32], "longitudinal": {"subjects": 6, "visits": 3}},
                                     "size": 32},
               "generators": [{"name": "stylegan2", "steps": 2}, {"name": "ddpm", "steps": 2}], "train_sets": ["real"],
               "fidelity": [], "seeds": [0, 1],
               "classifiers": [{"task": "grade", "modes": ["standard", "dual-bn"], "steps": 3}],
               "progression": {"generator": "stylegan2", "classifier": "grade-resnet18", "steps": 4, "k": 2}}


def test_progression_plans_a_fit_on_the_generator_and_grade_classifier_and_an_evaluation() -> None:
    plan = make_plan(build_spec(PROGRESSION))
    without = make_plan(build_spec({k: v for k, v in PROGRESSION.items() if k != "progression"}))
    added = [s for s in plan.stages.values() if s.key not in without.stages]
    assert [s.kind for s in added] == ["progression_fit", "progression_eval"]  # its classify stage is the grid's
    fit, evaluation = added
    prep = plan.by_kind("prepare")[0]
    (gen,) = [s for s in plan.by_kind("fit") if s.labels["generator"] == "stylegan2"]
    (grade,) = [s for s in plan.by_kind("classify") if (s.labels["mode"], s.labels["seed"]) == ("standard", 0)]
    assert fit.inputs == (prep.key, gen.key, grade.key) and evaluation.inputs == (fit.key, prep.key)
    assert fit.config == {"projection": {"space": "w", "steps": 4, "seed": 0}}
    assert evaluation.config["k"] == 2 and evaluation.config["months"] is None and evaluation.config["baseline"]
    assert fit.labels == evaluation.labels == {"dataset": "phantom", "generator": "stylegan2", "seed": 0,
                                               "classifier": "grade-resnet18", "task": "grade", "mode": "standard"}
    order = list(plan.stages)
    assert all(order.index(k) < order.index(s.key) for s in plan.stages.values() for k in s.inputs)
    # the prepare stage writes the cohort; a cross-sectional phantom's config is as before cohorts existed
    assert plan.by_kind("prepare")[0].config["phantom"]["longitudinal"]["subjects"] == 6
    assert "cases" not in prep.config["phantom"]
    assert "longitudinal" not in make_plan(build_spec(SPEC)).by_kind("prepare")[0].config["phantom"]


def test_an_inline_grade_classifier_is_one_classify_stage_shared_with_an_equal_classifiers_entry() -> None:
    inline = {**PROGRESSION, "classifiers": [],
              "progression": {**PROGRESSION["progression"], "classifier": {"steps": 3}}}
    plan = make_plan(build_spec(inline))
    (grade,) = plan.by_kind("classify")
    assert grade.config["task"] == "grade" and grade.config["train_set"] == "real"
    assert grade.config["train_overrides"] == {"steps": 3} and grade.labels["classifier"] == "grade-resnet18"
    assert plan.by_kind("progression_fit")[0].inputs[-1] == grade.key and not plan.by_kind("classify_eval")
    listed = make_plan(build_spec(PROGRESSION))
    assert grade.key in listed.stages  # the classifiers entry's standard, seed 0 run
    no_risk = make_plan(build_spec({**inline, "progression": {"generator": "stylegan2"}}))
    assert not no_risk.by_kind("classify") and len(no_risk.by_kind("progression_fit")[0].inputs) == 2


def test_a_progression_change_replans_only_its_own_stages() -> None:
    before = _keys(PROGRESSION)
    for change, kinds in (({"steps": 5}, ("progression_fit", "progression_eval")), ({"space": "wplus"},
                          ("progression_fit", "progression_eval")), ({"k": 3}, ("progression_eval",)),
                          ({"months": 12}, ("progression_eval",))):
        after = _keys({**PROGRESSION, "progression": {**PROGRESSION["progression"], **change}})
        assert before.keys() == after.keys()
        for description, key in before.items():
            assert (after[description] != key) == description.startswith(kinds), (change, description)
