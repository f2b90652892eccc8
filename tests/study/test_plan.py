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
