"""Reading what a study's finished stages left in its folder: their records, evaluations and training scalars.

The report and :mod:`.answers` are built from these (and ``results.csv``,
:func:`~synthmed.study.results.read_results`) alone, so they need neither the YAML nor a rerun.
A stage is finished when its folder ``STUDY/stages/<kind>-<hash12>/`` holds ``done.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from synthmed.study.plan import DONE_JSON, STAGE_JSON, STAGES_DIR
from synthmed.study.stages import RESULT_JSON


def finished_stages(out: str | Path) -> list[dict]:
    """``stage.json`` records of the finished stages in ``out`` (with ``folder`` added)."""
    records = []
    root = Path(out) / STAGES_DIR
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name.startswith(".") or not (folder / DONE_JSON).is_file() or not (folder / STAGE_JSON).is_file():
            continue
        record = json.loads((folder / STAGE_JSON).read_text())
        record["folder"] = folder
        records.append(record)
    return records


def evaluations(stages: list[dict]) -> tuple[list[dict], list[dict]]:
    """The finished ``evaluate`` stages' evaluations and labels. One written before evaluations
    recorded their run's settings gets them from the train stage's ``run/run.json`` (and the
    preset from its config)."""
    by_key = {r["key"]: r for r in stages}
    evaluations, labels = [], []
    for record in stages:
        path = record["folder"] / RESULT_JSON
        if record["kind"] != "evaluate" or not path.is_file():
            continue
        evaluation = json.loads(path.read_text())
        train = next((by_key[k] for k in record.get("inputs", []) if by_key.get(k, {}).get("kind") == "train"), None)
        run_json = train["folder"] / "run" / "run.json" if train else None
        if "training" not in evaluation and run_json is not None and run_json.is_file():
            info = json.loads(run_json.read_text())
            training = dict(info.get("training") or {})
            training.setdefault("preset", train["config"].get("preset"))
            evaluation = dict(evaluation, model=info.get("model"), training=training)
        evaluations.append(evaluation)
        labels.append(record["labels"])
    return evaluations, labels


def read_scalars(run_dir: Path) -> dict[str, pd.Series]:
    """A run's TensorBoard scalars: ``{tag: values indexed by step}`` (empty without event files)."""
    events = run_dir / "tensorboard"
    if not events.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 1, "tensors": 1, "histograms": 1})
    acc.Reload()
    out = {}
    for tag in acc.Tags().get("scalars", []):
        points = {e.step: e.value for e in acc.Scalars(tag)}  # a resumed run's later value of a step wins
        out[tag] = pd.Series(points, dtype=float).sort_index()
    return out

