"""``synthmed metrics …``: metrics on files (``overlap``: Dice and both HD95s of two label maps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from synthmed.cli_options import Json
from synthmed.errors import SynthmedError

metrics_app = typer.Typer(help="Metrics on files: overlap (Dice, HD95, HD95-max) of segmentations.", no_args_is_help=True)
stdout = Console(soft_wrap=True)


def overlap_files(pred: str | Path, ref: str | Path) -> dict:
    """Dice and HD95s (mm, spacing from the reference's header) of two NIfTI label maps.

    Label maps with values in {0, 1} give one ``"foreground"`` entry; BraTS-style maps
    (0, 1 NCR, 2 ED, 3 or 4 ET) give ``"WT"``, ``"TC"``, ``"ET"``; each holds ``dice``, ``hd95``
    (pooled, medpy) and ``hd95_max`` (directed max, MONAI), see :mod:`synthmed.metrics.overlap`.

    Raises:
        SynthmedError: unreadable files, shapes that differ, or other label values.
    """
    import numpy as np

    from synthmed.data.nifti import load_nifti, spacing_from_affine
    from synthmed.metrics.overlap import overlap_by_region

    p, p_aff = load_nifti(pred, dtype=None)
    r, r_aff = load_nifti(ref, dtype=None)
    if p.ndim != 3 or r.ndim != 3:
        raise SynthmedError(f"{pred}, {ref}: expected 3D label maps, got shapes {p.shape} and {r.shape}")
    if p.shape != r.shape:
        raise SynthmedError(f"{pred}: shape {p.shape} differs from {ref}'s {r.shape}")
    spacing = spacing_from_affine(r_aff)
    values = set(np.unique(p).tolist()) | set(np.unique(r).tolist())
    if values <= {0, 1}:
        scores = overlap_by_region(p, r, spacing, regions={"foreground": (1,)})
    elif values <= {0, 1, 2, 3, 4}:
        p, r = np.where(p == 4, 3, p), np.where(r == 4, 3, r)
        scores = overlap_by_region(p, r, spacing)
    else:
        raise SynthmedError(f"{pred}, {ref}: label values {sorted(values)}; expected 0/1 masks or BraTS labels 0-4")
    return {"pred": str(pred), "ref": str(ref), "shape": list(r.shape), "spacing": list(spacing), "scores": scores}


@metrics_app.command("overlap")
def metrics_overlap(
    pred: Annotated[Path, typer.Argument(help="Predicted label map (.nii / .nii.gz).")],
    ref: Annotated[Path, typer.Argument(help="Reference label map, same grid; its header gives the spacing.")],
    as_json: Json = False,
) -> None:
    """Dice and HD95 (mm) of PRED against REF: per BraTS region (WT, TC, ET) for label maps,
    or of the foreground for 0/1 masks. HD95 pools both directions' surface distances (medpy);
    HD95-max is the larger directed 95th percentile (MONAI). Both empty: Dice 1, HD95 0; one
    empty: Dice 0, HD95 = the image diagonal in mm."""
    result = overlap_files(pred, ref)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table("region", "Dice", "HD95 (mm)", "HD95-max (mm)")
    for name, s in result["scores"].items():
        table.add_row(name, f"{s['dice']:.4f}", f"{s['hd95']:.2f}", f"{s['hd95_max']:.2f}")
    stdout.print(table)


__all__ = ["metrics_app", "overlap_files", "SynthmedError"]
