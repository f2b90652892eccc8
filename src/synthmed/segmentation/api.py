"""The functions behind ``synthmed segment train`` and ``segment eval`` (the CLI only parses).

Run directory of a segmenter (the :mod:`synthmed.training.run` layout)::

    RUN/
      run.json      kind "segmenter"; model (network config); training (steps, lr, aug, …, pretrain, preset);
                    data (the training-set description: kind real | synthetic | synthetic+real | mix,
                    stores, counts, real_fraction, budget, subject_fraction); seed; versions
      state.json    last and best checkpoint
      checkpoints/  step_*/model.safetensors, best/ (highest validation Dice)
      pretrain/     with --pretrain STORE: the pre-training run (same layout): kind "segmenter" (supervised,
                    on the store's images and masks) or "segmenter-ssl" (--pretrain-mode ssl: images only,
                    :mod:`synthmed.segmentation.ssl`)
      eval/         <test-store-name>.json and .csv written by evaluate_run
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthmed.atomic import atomic_file
from synthmed.config import build_config
from synthmed.data.store import ImageDataset, Store
from synthmed.errors import DataError, SynthmedError
from synthmed.generators.common import open_training_run
from synthmed.metrics.overlap import OVERLAP_METRICS, OverlapAccumulator
from synthmed.outputs import CSV_FILE, JSON_FILE, OutputKind, guard_output, run_directory
from synthmed.segmentation.config import PRESETS, SegmentModelConfig, SegmentTrainConfig
from synthmed.segmentation.data import TrainingSet, build_training_set, check_compatible
from synthmed.segmentation.networks import build_network
from synthmed.segmentation.regions import REGION_NAMES, logits_to_labels
from synthmed.segmentation.ssl import SSL_KIND, InpaintingTask, PretextOptions, pretext_config, pretext_images
from synthmed.segmentation.task import SegmentationTask
from synthmed.training.data import batch_stream
from synthmed.training.fabric import FabricOptions, make_fabric
from synthmed.training.loop import LoopOptions, train
from synthmed.training.run import RUN_JSON, read_run
from synthmed.training.weights import load_run_network, run_weights

KIND = "segmenter"
PRETRAIN_DIR = "pretrain"
#: ``--pretrain-mode``: ``supervised`` (images and masks, the segmentation loss) or ``ssl``
#: (images only, :mod:`~synthmed.segmentation.ssl`'s pretext task).
PRETRAIN_MODES = ("supervised", "ssl")


def resolve_configs(model: str, preset: str, model_overrides: Mapping[str, Any] = {},
                    train_overrides: Mapping[str, Any] = {}) -> tuple[SegmentModelConfig, SegmentTrainConfig]:
    """The preset's configs for network ``model`` with the non-``None`` overrides applied.

    Raises:
        SynthmedError: unknown preset or network, or a bad override (naming the field).
    """
    if preset not in PRESETS:
        raise SynthmedError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if model not in ("unet", "swin"):
        raise SynthmedError(f"--model must be unet or swin, got {model!r}")
    base = getattr(PRESETS[preset], model).model_dump()
    base.update({k: v for k, v in model_overrides.items() if v is not None})
    config = build_config(SegmentModelConfig, "model options", **base)
    tvalues = PRESETS[preset].train.model_dump()
    tvalues.update({k: v for k, v in train_overrides.items() if v is not None})
    return config, build_config(SegmentTrainConfig, "training options", **tvalues)


def config_for(config: SegmentModelConfig, store: Store) -> SegmentModelConfig:
    """``config`` completed with ``store``'s dims, channels and spatial shape.

    Raises:
        SynthmedError: the store's samples do not fit the network (e.g. sides not divisible).
    """
    values = config.model_dump()
    values.update(spatial_dims=store.dims, in_channels=store.sample_shape[0], image_shape=tuple(store.spatial_shape))
    return build_config(SegmentModelConfig, f"{store.path}: {store.dims}D samples of shape {list(store.sample_shape)} "
                        f"do not fit the {config.network}", **values)


def _open_stores(paths: Sequence[str | Path]) -> list[Store]:
    return [Store.open(p) for p in paths]


def train_segmenter(
    out: str | Path,
    train_stores: Sequence[str | Path],
    *,
    model: str = "unet",
    preset: str = "tiny",
    real_fraction: float | None = None,
    budget: int | None = None,
    subject_fraction: float = 1.0,
    pretrain: str | Path | None = None,
    pretrain_steps: int | None = None,
    pretrain_mode: str = "supervised",
    model_overrides: Mapping[str, Any] = {},
    train_overrides: Mapping[str, Any] = {},
    seed: int = 0,
    fabric: FabricOptions = FabricOptions(),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> int | None:
    """Train a segmenter on ``train_stores`` into the run directory ``out``.

    Args:
        out: the run directory.
        train_stores: one or more stores (real and/or synthetic); see
            :func:`~synthmed.segmentation.data.build_training_set` for how they combine.
        model: ``unet`` or ``swin``.
        preset: ``tiny``, ``small`` or ``paper``.
        real_fraction, budget: fixed-budget real:synthetic proportion.
        subject_fraction: share of real training subjects kept (scarce-data curve).
        pretrain: a finished segmenter run (its weights initialise this run) or a store
            (pre-trained first, into ``out/pretrain``, for ``pretrain_steps`` steps, default
            the run's steps, with the same network and settings; resumed with the run).
        pretrain_mode: how a ``pretrain`` store is pre-trained on: ``supervised`` (its images
            and masks, the segmentation loss; all weights transfer) or ``ssl`` (its images only,
            the masks never read: :mod:`~synthmed.segmentation.ssl`'s denoising in-painting;
            everything but the head transfers). A finished run is used as it is
            (``supervised``; ``ssl`` with a run is an error).
        model_overrides, train_overrides: CLI options (``None`` = preset value).
        seed: run seed (initialisation, data order, augmentation, validation split).
        fabric: device, processes, precision.
        resume, overwrite: see :func:`~synthmed.training.run.open_run`.

    Returns:
        The final step (``None`` on DDP ranks other than 0).

    Raises:
        SynthmedError: bad options, stores that do not match each other, the pre-training
            source (or ``ssl`` without a store), or the run being resumed; an existing ``out``
            without ``resume``/``overwrite``.
    """
    if pretrain_mode not in PRETRAIN_MODES:
        raise SynthmedError(f"--pretrain-mode must be {' or '.join(PRETRAIN_MODES)}, got {pretrain_mode!r}")
    if pretrain_mode == "ssl" and pretrain is None:
        raise SynthmedError("--pretrain-mode ssl needs --pretrain STORE: the store whose images to pre-train on")
    out = guard_output(out, [*train_stores, pretrain], kind=run_directory("segmenter run", [KIND]), overwrite=overwrite,
                       resume=resume)
    config, tc = resolve_configs(model, preset, model_overrides, train_overrides)
    stores = _open_stores(train_stores)
    if not stores:
        raise SynthmedError("give at least one training store (--train STORE)")
    config = config_for(config, stores[0])
    pre_store, pre_run = _pretrain_source(pretrain, config, stores)
    if pretrain_mode == "ssl" and pre_run is not None:
        raise SynthmedError(f"--pretrain {pre_run} is a finished segmenter run, whose weights are used as they are; "
                            "--pretrain-mode ssl pre-trains on the images of a --pretrain STORE instead")
    if resume and (out / RUN_JSON).is_file():
        seed = int(read_run(out).get("seed", seed))  # a resumed run keeps its seed, hence its split and mix
    data = build_training_set(stores, seed=seed, val_fraction=tc.val_fraction, real_fraction=real_fraction,
                              budget=budget, subject_fraction=subject_fraction)
    # the pre-training data too is set up before the run is opened: a bad store leaves nothing behind
    pre_images = pretext_images(pre_store) if pre_store is not None and pretrain_mode == "ssl" else None
    pre_data = build_training_set([pre_store], seed=seed, val_fraction=tc.val_fraction) \
        if pre_store is not None and pre_images is None else None
    fab = make_fabric(fabric)
    pre_info = None if pretrain is None else {"source": str(pretrain), "kind": "store" if pre_store else "run",
                                               "mode": pretrain_mode,
                                               "steps": (pretrain_steps or tc.steps) if pre_store else None}
    training = dict(tc.model_dump(mode="json"), pretrain=pre_info, preset=preset)
    run = open_training_run(out, fab, kind=KIND, model=config.model_dump(mode="json"), training=training,
                            seed=seed, data=data.description, resume=resume, overwrite=overwrite)
    seed = int(run.info["seed"])
    init, body_only = None, False
    pre_tc = tc.model_copy(update={"steps": pretrain_steps or tc.steps})
    try:
        if pre_images is not None:
            init, body_only = _pretrain_ssl(out / PRETRAIN_DIR, fab, config, pre_tc, pre_images, seed, progress), True
        elif pre_data is not None:
            init = _pretrain_supervised(out / PRETRAIN_DIR, fab, config, pre_tc, pre_data, seed, progress)
        elif pre_run is not None:
            init = run_weights(pre_run, KIND)[0]
    except BaseException:
        run.close()  # the fine-tuning run was opened (its lock taken) before pre-training
        raise
    task = SegmentationTask(config, tc, seed, val=data.val, init_weights=init, init_body_only=body_only)
    final = _fit(run, fab, task, data.train, tc, len(data.val) > 0, progress, f"{config.network} {out.name}")
    return final if fab.is_global_zero else None


def _pretrain_supervised(pre_dir: Path, fab, config: SegmentModelConfig, tc: SegmentTrainConfig, data: TrainingSet,
                         seed: int, progress: bool) -> Path:
    """Supervised pre-training on the store's training set ``data`` into ``pre_dir`` (resumed if
    it exists); its weights file (the best checkpoint by validation Dice, if it validated)."""
    pre = open_training_run(pre_dir, fab, kind=KIND, model=config.model_dump(mode="json"),
                            training=tc.model_dump(mode="json"), seed=seed, data=data.description,
                            resume=(pre_dir / RUN_JSON).is_file(), overwrite=False)
    task = SegmentationTask(config, tc, int(pre.info["seed"]), val=data.val)
    _fit(pre, fab, task, data.train, tc, len(data.val) > 0, progress, f"pretrain {pre_dir.parent.name}")
    return run_weights(pre_dir, KIND)[0]


def _pretrain_ssl(pre_dir: Path, fab, config: SegmentModelConfig, tc: SegmentTrainConfig,
                  pre_images: tuple[ImageDataset, dict[str, Any]], seed: int, progress: bool) -> Path:
    """Self-supervised pre-training on a store's images (:func:`~synthmed.segmentation.ssl.pretext_images`)
    into ``pre_dir`` (resumed if it exists); its last weights file (the pretext task has no validation)."""
    images, description = pre_images
    options = PretextOptions()
    pre = open_training_run(pre_dir, fab, kind=SSL_KIND, model=pretext_config(config).model_dump(mode="json"),
                            training=dict(tc.model_dump(mode="json"), pretext=asdict(options)), seed=seed,
                            data=description, resume=(pre_dir / RUN_JSON).is_file(), overwrite=False)
    task = InpaintingTask(config, tc, int(pre.info["seed"]), options)
    _fit(pre, fab, task, images, tc, False, progress, f"pretrain (ssl) {pre_dir.parent.name}")
    return run_weights(pre_dir, SSL_KIND)[0]


def _pretrain_source(pretrain: str | Path | None, config: SegmentModelConfig,
                     stores: Sequence[Store]) -> tuple[Store | None, Path | None]:
    """``(store, None)`` or ``(None, run_dir)`` for ``--pretrain``, checked against the network."""
    if pretrain is None:
        return None, None
    path = Path(pretrain)
    if (path / RUN_JSON).is_file():
        info = read_run(path)
        if info.get("kind") != KIND:
            raise SynthmedError(f"--pretrain {path}: a {info.get('kind')!r} run, not a segmenter run")
        if info.get("model") != config.model_dump(mode="json"):
            raise SynthmedError(f"--pretrain {path}: its network ({info.get('model', {}).get('network')}, "
                                f"{info.get('model', {}).get('image_shape')}) differs from this run's; "
                                "use the same --model, --preset and sample shape")
        return None, path
    try:
        store = Store.open(path)
    except DataError:
        raise SynthmedError(f"--pretrain {path}: neither a segmenter run ({RUN_JSON}) nor a store") from None
    check_compatible([stores[0], store])
    return store, None


def _fit(run, fab, task: SegmentationTask, dataset: torch.utils.data.Dataset, tc: SegmentTrainConfig,
         has_val: bool, progress: bool, description: str) -> int:
    """Train ``task`` in ``run`` on batches of ``dataset`` (validating, and keeping the best
    checkpoint by Dice, when ``has_val``)."""
    seed = int(run.info["seed"])

    def batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return batch_stream(dataset, tc.batch, seed=seed, start_step=start, rank=fab.global_rank,
                            world_size=fab.world_size, num_workers=tc.num_workers,
                            pin_memory=fab.device.type == "cuda")

    loop = LoopOptions(steps=tc.steps, checkpoint_every=tc.checkpoint_every, log_every=tc.log_every,
                       validate_every=(tc.validate_every or tc.steps) if has_val else 0,
                       monitor="dice" if has_val else None, mode="max",
                       progress=progress and fab.is_global_zero, description=description)
    return train(task, fab, run, batches, loop)


# ----------------------------------------------------------------------------- evaluation


def load_segmenter(run_dir: str | Path, *, checkpoint: str = "auto", device: str = "auto"
                   ) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """The trained network of a run, in eval mode on ``device``.

    Returns:
        ``(network, run_info, checkpoint_info)`` with ``checkpoint_info = {"name", "step"}``.

    Raises:
        SynthmedError: a missing run, not a segmenter run, or no checkpoint.
    """
    def build(info: Mapping[str, Any]) -> torch.nn.Module:
        return build_network(build_config(SegmentModelConfig, f"{run_dir}: bad model config", **info["model"]))

    return load_run_network(run_dir, KIND, build, checkpoint=checkpoint, device=device)


@torch.no_grad()
def predict_labels(network: torch.nn.Module, images: np.ndarray | torch.Tensor, *, batch: int = 16) -> np.ndarray:
    """Canonical uint8 labels ``[N, *spatial]`` predicted for float images ``[N, C, *spatial]`` (in batches)."""
    device = next(network.parameters()).device
    images = torch.as_tensor(images)
    out = [logits_to_labels(network(images[i : i + batch].to(device))).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, *images.shape[2:]), np.uint8)


def case_volumes(store: Store, split: str = "test") -> Iterator[tuple[str, np.ndarray, tuple[float, float, float]]]:
    """``(case_id, sample indices, spacing)`` of each case of ``split``, in order of first appearance.

    2D stores: the indices of the case's stored slices sorted by their ``slice`` column — the
    case's evaluation volume is the stack of these slices in that order (slices dropped when
    the store was prepared are not part of it), with spacing ``(spacing_z, spacing_y,
    spacing_x)`` of the first slice. 3D stores: the case's sample(s).
    """
    idx = store.indices(split)
    rows = store.samples.iloc[idx]
    for case, group in rows.groupby("case_id", sort=False):
        order = np.argsort(group["slice"].to_numpy(), kind="stable")
        members = group.index.to_numpy()[order]
        first = group.iloc[int(order[0])]
        spacing = tuple(float(first[c]) if np.isfinite(first[c]) else float(s)
                        for c, s in zip(("spacing_z", "spacing_y", "spacing_x"), store.spacing))
        yield str(case), members.astype(np.int64), spacing  # type: ignore[misc]


def evaluate_run(run_dir: str | Path, test_store: str | Path, *, checkpoint: str = "auto", device: str = "auto",
                 batch: int = 16, write: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Score a segmenter on the real test patients of ``test_store``: per case Dice, HD95, HD95-max on WT, TC, ET.

    A row is a *case* — one scan: a cross-sectional patient, or one visit of a longitudinal
    subject — and names its patient (``subject_id``, the store's; a cross-sectional store's
    case id). ``mean`` and ``sd`` are over the rows (``n``); ``subjects`` counts the distinct
    patients.

    Each test case is predicted whole: a 3D model on its volume (a case id with several
    volumes in the store is scored once per volume, as ``<case>#<k>``); a 2D model slice by slice,
    the predicted slices stacked back in ``slice`` order into the case's evaluation volume
    (:func:`case_volumes`: the stack of the case's *stored* slices; the reference volume is
    the stack of their labels; HD95's "one mask empty" value is the diagonal of that stacked
    volume's extent, ``(n_slices·spacing_z, H·spacing_y, W·spacing_x)``). Metrics follow
    :mod:`synthmed.metrics.overlap` (in mm from the samples' spacing; ``hd95`` pools both
    directions' surface distances as medpy does, ``hd95_max`` is the larger directed 95th
    percentile as in MONAI).

    Returns (and with ``write`` saves as ``RUN/eval/<store name>.json`` plus a per-case ``.csv``)::

        {"run", "test_store", "checkpoint": {"name", "step"}, "network", "aug", "seed",
         "train_set": {...run.json data...}, "model": {...}, "training": {...run.json training...}, "dims", "n",
         "mean": {"WT": {"dice", "hd95", "hd95_max"}, "TC": …, "ET": …}, "sd": {…}, "subjects",
         "cases": [{"case_id", "subject_id", "WT": {"dice", "hd95", "hd95_max"}, …}, …]}

    With ``write``, existing evaluation files of this store are replaced only with ``overwrite``.

    Raises:
        SynthmedError: a missing run, no checkpoint, a store whose dims, channels or shape
            differ from the run's, or a store without test cases; with ``write``, see
            :func:`~synthmed.outputs.guard_output` (checked first).
    """
    run_dir = Path(run_dir)
    if write:
        for name, kind in eval_files(run_dir, test_store).items():
            guard_output(name, [test_store], kind=kind, overwrite=overwrite)
    net, info, ckpt = load_segmenter(run_dir, checkpoint=checkpoint, device=device)
    store = Store.open(test_store)
    model = info["model"]
    if store.dims != model["spatial_dims"] or store.sample_shape[0] != model["in_channels"] or \
            list(store.spatial_shape) != list(model["image_shape"]):
        raise SynthmedError(f"{store.path}: {store.dims}D samples of shape {list(store.sample_shape)}; the run was "
                            f"trained on {model['spatial_dims']}D samples of shape "
                            f"{[model['in_channels'], *model['image_shape']]}")
    trained_channels = info.get("data", {}).get("channels")
    if trained_channels and trained_channels != list(store.channels):
        raise SynthmedError(f"{store.path}: channels {list(store.channels)} differ from the training "
                            f"store's {trained_channels}")
    if "test" not in store.splits:
        raise SynthmedError(f"{store.path}: the test split is empty (splits: {list(store.splits)}); "
                            "evaluate on a prepared real store with --test-fraction > 0")
    acc = OverlapAccumulator()
    subjects: list[str] = []  # the patient of each row of acc
    for case, members, spacing in case_volumes(store, "test"):
        images, ref = store.read(members)
        pred = predict_labels(net, images, batch=batch)
        subject = str(store.subject_ids(members[:1])[0])
        if store.dims == 2:
            acc.update(pred, ref, spacing, case)  # stacked slices: [n_slices, H, W]
            subjects.append(subject)
        else:
            for k in range(len(members)):
                acc.update(pred[k], ref[k], spacing, case if len(members) == 1 else f"{case}#{k}")
                subjects.append(subject)
    scores = acc.compute()
    scores["cases"] = [{"case_id": row["case_id"], "subject_id": subject, **row}
                       for row, subject in zip(scores["cases"], subjects)]
    scores["subjects"] = len(set(subjects))
    result = {"run": str(run_dir.resolve()), "test_store": str(store.path.resolve()), "checkpoint": ckpt,
              "network": model["network"], "aug": bool(info["training"].get("aug")), "seed": int(info["seed"]),
              "train_set": info.get("data", {}), "model": model, "training": info["training"], "dims": store.dims,
              "regions": list(REGION_NAMES), **scores}
    if write:
        json_file, csv_file = eval_files(run_dir, test_store)
        with atomic_file(json_file) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        with atomic_file(csv_file) as tmp:
            tmp.write_text(cases_csv(result))
    return result


def eval_files(run_dir: str | Path, test_store: str | Path) -> dict[Path, OutputKind]:
    """The files ``evaluate_run`` writes: ``RUN/eval/<store name>.json`` and ``.csv`` (in that order)."""
    stem = Path(run_dir) / "eval" / Path(test_store).name
    return {stem.with_name(stem.name + ".json"): JSON_FILE, stem.with_name(stem.name + ".csv"): CSV_FILE}


def cases_csv(result: Mapping[str, Any]) -> str:
    """Per-case table: ``case_id, WT_dice, WT_hd95, WT_hd95_max, TC_dice, …`` (one row per case)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    regions = result.get("regions", list(REGION_NAMES))
    writer.writerow(["case_id", *[f"{r}_{m}" for r in regions for m in OVERLAP_METRICS]])
    for case in result["cases"]:
        writer.writerow([case["case_id"], *[f"{case[r][m]:.6f}" for r in regions for m in OVERLAP_METRICS]])
    return buf.getvalue()


def relative_dice(eval_synthetic: Mapping[str, Any] | str | Path, eval_real: Mapping[str, Any] | str | Path
                  ) -> dict[str, float]:
    """Relative Dice = mean Dice(synthetic-trained) / mean Dice(real-trained), per region.

    The evaluations (dicts from :func:`evaluate_run`, or their JSON files) must be matched:
    the reference trained on real data only and equal to the compared run in everything but
    the training data — test store, checkpoint, network and preset, steps, augmentation, seed,
    share of real subjects, training settings (:mod:`synthmed.study.analysis`, which the study
    report uses too).

    Returns:
        ``{"WT": …, "TC": …, "ET": …, "mean": mean of the three}`` (``nan`` where the real
        run's Dice is 0).

    Raises:
        SynthmedError: the runs do not match (naming what differs), or the reference was not
            trained on real data only.
    """
    from synthmed.study.analysis import relative_dice as matched_relative_dice

    return matched_relative_dice(eval_synthetic, eval_real)
