"""``classify saliency``: saliency maps of one or more classifier runs, scored against the tumour masks.

For every tumour-bearing test sample (WT non-empty; saliency scores are undefined on an empty
mask), each run's map of the chosen method (:mod:`synthmed.classify.saliency`, through Captum)
explains the logit of ``target`` (default the task's first output: ``tumour``, ``NCR`` or
``grade>=1``) with the network on its clean batch norm. The maps are scored against the WT mask
dilated by ``dilation`` voxels (:mod:`synthmed.metrics.saliency`): the share of positive
saliency mass inside it, the pointing game and the voxel-wise AUROC. Each score is the mean
over samples, with a percentile bootstrap interval over test subjects (the store's
``subject_id``, :func:`~synthmed.classify.samples.test_samples`: a longitudinal subject's
visits are drawn together; a cross-sectional store's case ids).

Runs compared must take the same samples (dims, channels, shape); the gallery shows, for the
largest-tumour slice or volume of each of the first ``gallery_samples`` test subjects, the
image, its mask and each run's map side by side.

Files (with ``write``): ``<out>.png`` (the gallery) and ``<out>.json`` (the result); ``out``
defaults to ``RUN/saliency/<store>_<method>`` of the first run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthmed.atomic import atomic_file
from synthmed.classify.api import load_classifier
from synthmed.classify.dual_bn import bn_route
from synthmed.classify.gallery import saliency_gallery
from synthmed.classify.networks import gradcam_layer
from synthmed.classify.samples import check_fits, eval_samples
from synthmed.classify.saliency import METHODS, saliency_maps
from synthmed.classify.targets import label_names
from synthmed.errors import SynthmedError
from synthmed.metrics.classification import bootstrap_ci
from synthmed.metrics.saliency import saliency_scores
from synthmed.outputs import JSON_FILE, PNG_FILE, guard_output
from synthmed.progress import track

SCORES = ("mass_in_mask", "pointing_game", "auroc")


def default_out(run: str | Path, test_store: str | Path, method: str) -> Path:
    """``RUN/saliency/<store>_<method>`` (the stem of the PNG and JSON files)."""
    return Path(run) / "saliency" / f"{Path(test_store).name}_{method}"


def _mean_ci(values: np.ndarray, subjects: np.ndarray, *, n_boot: int, seed: int) -> list[float]:
    """Bootstrap interval over subjects of the nan-mean of per-sample ``values``."""
    return list(bootstrap_ci(values, np.zeros_like(values), subjects, lambda v, _t: float(np.nanmean(v)),
                             n_boot=n_boot, seed=seed))


def gallery_picks(labels: np.ndarray, subjects: np.ndarray, count: int) -> np.ndarray:
    """Indices of the largest-WT sample of each of the first ``count`` subjects (in order of appearance)."""
    picks: list[int] = []
    for subject in dict.fromkeys(subjects.tolist()):
        members = np.flatnonzero(subjects == subject)
        sizes = (labels[members] > 0).reshape(len(members), -1).sum(1)
        picks.append(int(members[int(np.argmax(sizes))]))
        if len(picks) == count:
            break
    return np.asarray(picks, np.int64)


def explain(
    runs: Sequence[str | Path],
    test_store: str | Path,
    *,
    method: str = "gradient",
    target: str | None = None,
    checkpoint: str = "auto",
    dilation: int = 1,
    max_samples: int | None = None,
    gallery_samples: int = 6,
    n_boot: int = 1000,
    seed: int = 0,
    out: str | Path | None = None,
    device: str = "auto",
    batch: int = 16,
    write: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Saliency of ``runs`` on the tumour-bearing test samples of ``test_store`` (see the module docstring).

    Returns (and with ``write`` saves as ``<out>.json``, beside the gallery ``<out>.png``)::

        {"method", "target", "dilation", "test_store", "n", "subjects", "gallery",
         "runs": [{"run", "name", "task", "network", "mode", "checkpoint",
                   "mass_in_mask", "mass_in_mask_ci", "pointing_game", "pointing_game_ci", "auroc", "auroc_ci"}]}

    Raises:
        SynthmedError: no runs, an unknown method or target, runs of different tasks or sample
            shapes, a store that does not fit, no tumour-bearing test sample; with ``write``,
            see :func:`~synthmed.outputs.guard_output` (checked first).
    """
    if not runs:
        raise SynthmedError("give at least one classifier run")
    if method not in METHODS:
        raise SynthmedError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if dilation < 0:
        raise SynthmedError(f"--dilation must be >= 0 voxels, got {dilation}")
    stem = Path(out).with_suffix("") if out is not None else default_out(runs[0], test_store, method)
    png_file, json_file = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".json")
    if write:
        guard_output(png_file, [test_store], kind=PNG_FILE, overwrite=overwrite)
        guard_output(json_file, [test_store], kind=JSON_FILE, overwrite=overwrite)
    loaded = [load_classifier(r, checkpoint=checkpoint, device=device) for r in runs]
    tasks = {config.task for _, config, _, _ in loaded}
    if len(tasks) > 1:
        raise SynthmedError(f"the runs compared are trained for different tasks ({', '.join(sorted(tasks))})")
    names = label_names(loaded[0][1].task)
    target = names[0] if target is None else target
    if target not in names:
        raise SynthmedError(f"--target must be one of {', '.join(names)} for task {loaded[0][1].task}, got {target!r}")
    test = eval_samples(test_store, loaded[0][1])
    for _, config, _, _ in loaded[1:]:
        check_fits(test.store, config)
    keep = np.flatnonzero((test.labels > 0).reshape(len(test.labels), -1).any(1))
    if max_samples is not None:
        keep = keep[:max_samples]
    if len(keep) == 0:
        raise SynthmedError(f"{test.store.path}: no test sample has a tumour; "
                            "saliency is scored against the tumour mask")
    images, labels, subjects = test.images.numpy()[keep], test.labels[keep], test.subjects[keep]
    masks = labels > 0
    picks = gallery_picks(labels, subjects, gallery_samples)
    entries, gallery_maps = [], {}
    for run, (net, config, info, ckpt) in zip(runs, loaded):
        layer = gradcam_layer(net) if method == "gradcam" else None
        maps = []
        with bn_route("clean"):
            for start in track(range(0, len(images), batch), total=-(-len(images) // batch),
                               description=f"{method} {Path(run).name}", enabled=progress):
                x = torch.from_numpy(images[start : start + batch]).to(next(net.parameters()).device)
                maps.append(saliency_maps(net, x, method=method, target=names.index(target), layer=layer,
                                          seed=seed + start).numpy())
        maps_np = np.concatenate(maps)
        scores = saliency_scores(maps_np, masks, dilation=dilation)
        entry: dict[str, Any] = {"run": str(Path(run).resolve()), "name": Path(run).name, "task": config.task,
                                 "network": config.network, "mode": config.mode, "checkpoint": ckpt}
        for score in SCORES:
            entry[score] = float(np.nanmean(scores[score]))
            entry[f"{score}_ci"] = _mean_ci(np.asarray(scores[score], float), subjects, n_boot=n_boot, seed=seed)
        entries.append(entry)
        gallery_maps[f"{Path(run).name} ({config.mode})"] = maps_np[picks]
    result = {"method": method, "target": target, "dilation": dilation, "test_store": str(test.store.path.resolve()),
              "n": int(len(images)), "subjects": int(len(np.unique(subjects))),
              "gallery": str(png_file) if write else None, "runs": entries}
    if write:
        saliency_gallery(images[picks], masks[picks], gallery_maps, png_file,
                         title=f"{method} saliency of {target}, WT mask dilated by {dilation}")
        with atomic_file(json_file) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result
