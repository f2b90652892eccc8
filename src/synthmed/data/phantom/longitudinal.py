"""The longitudinal phantom: a subject's visits, one case each, with the same anatomy and a growing tumour.

Subject ``i`` of the cohort with ``seed`` is phantom case ``i`` (:func:`~.simulate.phantom_case`)
followed in time: its anatomy, contrasts and tumour (site, shape, texture) come from the case's
own streams (:func:`~.draws.case_streams`), so they are the same at every visit — and the same
as those of cross-sectional case ``i``. Only the tumour's composition (its core's share of the
whole tumour and its necrosis's share of the core) depends on the subject's growth class, by
the cue strength (:mod:`.cue`: 0, exactly case ``i``'s tumour). Visit ``v`` is at
``v × interval_months`` months. What changes between visits:

* **the tumour's size** — the drawn tumour (:class:`~.draws.TumourSpec`, nominal volume
  ``V_ref``) is scaled about its centre by ``s = (V(t) / V_ref)^(1/3)``, ``V(t)`` the nominal
  volume of :mod:`.growth`. Its level-set noise is fixed in the tumour's own frame
  (:class:`~.fields.NoiseLattice` evaluated at ``offset / s``), so each visit draws the same
  lobulated shape, larger; the labels of a visit are then united with the previous visit's
  (WT, core and necrosis each), so the WT voxel count never decreases (clipping to the brain,
  its white-matter spread and the minimum sizes of coarse grids would otherwise allow small
  losses) and the labels stay nested;
* **the noise** — each visit draws fresh Rician noise (:func:`~.draws.visit_noise_stream`).

The mass effect is the drawn tumour's (``r_mass`` of the reference size) at every visit, a
tumour-free onset visit included, so the warped anatomy — the brain mask and the GM / WM maps —
is identical at every visit; only the labels and their partial-volume tissue fractions differ.

Each visit's record (:class:`VisitRecord`) holds its WT volume in mL (voxel count × voxel
volume) and its grade (:mod:`synthmed.data.grades`) on the subject's tumour-centre axial slice
(:func:`~synthmed.data.preprocess.tumour_centre_slice` of its earliest tumour-bearing visit: the
slice ``data prepare`` keeps for it), measured on the phantom's own grid — a prepared store's
resized mask can differ by a grade where the fraction sits on a bin edge.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from synthmed.data.case import Case
from synthmed.data.grades import grade_of_label
from synthmed.data.phantom.cue import CUE_STRENGTH, check_strength, cue_composition
from synthmed.data.phantom.draws import (
    TumourSpec,
    case_streams,
    draw_anatomy,
    draw_contrast,
    draw_tumour,
    growth_stream,
    visit_noise_stream,
)
from synthmed.data.phantom.fields import NoiseLattice, noise_lattice
from synthmed.data.phantom.geometry import DEFAULT_SHAPE
from synthmed.data.phantom.growth import FAST_FRACTION, Growth, draw_growth
from synthmed.data.phantom.simulate import PhantomScene, PhantomTissues, phantom_scene, render_case
from synthmed.data.phantom.template import mni_template
from synthmed.data.phantom.tumour import (
    ROUGH_CELL_MM,
    TumourBox,
    box_offsets,
    lobe_cell_mm,
    tighten,
    tumour_box,
    tumour_on_box,
    whole_reach_mm,
)
from synthmed.data.preprocess import tumour_centre_slice
from synthmed.errors import SynthmedError
from synthmed.parallel import torch_threads

#: Subject id of longitudinal subject ``subject``.
SUBJECT_ID_FORMAT = "phantom-{subject:04d}"
#: Case id of visit ``visit`` of subject ``subject``.
VISIT_ID_FORMAT = "phantom-{subject:04d}-v{visit:02d}"
#: Default months between visits.
INTERVAL_MONTHS = 12.0


def subject_id(subject: int) -> str:
    """``phantom-0003``-style id of longitudinal subject ``subject``."""
    return SUBJECT_ID_FORMAT.format(subject=subject)


def visit_id(subject: int, visit: int) -> str:
    """``phantom-0003-v02``-style case id of visit ``visit`` of subject ``subject``."""
    return VISIT_ID_FORMAT.format(subject=subject, visit=visit)


@dataclass(frozen=True)
class VisitRecord:
    """One visit, as a row of ``longitudinal.csv``.

    Attributes:
        case_id, subject_id: ids (:func:`visit_id`, :func:`subject_id`).
        visit: 0-based visit number; ``months``: months since the baseline (visit 0).
        wt_ml: WT volume (mL) of the visit's labels; 0 for a tumour-free visit.
        grade: grade (0–3) of the WT fraction of the subject's tumour-centre axial slice.
        progressor: 1 for a fast progressor, 0 for a slow one (the subject's class).
        centre_slice: the subject's tumour-centre axial index on the phantom grid (-1 when no visit has a tumour).
    """

    case_id: str
    subject_id: str
    visit: int
    months: float
    wt_ml: float
    grade: int
    progressor: int
    centre_slice: int


@dataclass
class PhantomVisit:
    """A visit's case, its record and (when asked for) its tissue fractions."""

    case: Case
    record: VisitRecord
    tissues: PhantomTissues | None = None


class GrowingTumour:
    """A drawn tumour at any scale about its centre, the same shape at every scale.

    The level-set noise (lobulation and roughness, :func:`~.tumour.tumour_on_box`) is laid on
    lattices in the tumour's own frame, from the tumour's noise seed; the box is the one of the
    largest scale, so every scale is drawn on the same voxels. ``lobe_cell`` is the lobulation's
    feature size (mm; default :func:`~.tumour.lobe_cell_mm` of ``spec``): the drawn tumour's,
    when ``spec`` is its cued composition, keeps the lobulation of the drawn shape.
    """

    def __init__(self, spec: TumourSpec, scene: PhantomScene, max_scale: float, lobe_cell: float | None = None):
        if scene.centre_vox is None:
            raise ValueError("a growing tumour needs a scene drawn with its tumour's mass effect")
        self.spec = spec
        self.scene = scene
        self.spacing = np.array(scene.spacing)
        rng = np.random.default_rng(spec.seed)
        reach = whole_reach_mm(spec)
        self.lobes: NoiseLattice = noise_lattice(rng, reach, 3, lobe_cell_mm(spec) if lobe_cell is None else lobe_cell)
        self.rough: NoiseLattice = noise_lattice(rng, reach, 3, ROUGH_CELL_MM)
        self.box = tumour_box(scaled(spec, max_scale), scene.centre_vox, self.spacing, scene.mask.shape)
        self.rel = box_offsets(self.box, scene.centre_vox, self.spacing)

    def at(self, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, modulation)`` on :attr:`box` of the tumour scaled by ``scale`` (at most the box's scale)."""
        unit = tuple(r / scale for r in self.rel)  # offsets in the tumour's own frame
        scene = self.scene
        assert scene.centre_vox is not None
        return tumour_on_box(scaled(self.spec, scale), self.box, self.rel, scene.centre_vox, self.lobes.at(unit),
                             self.rough.at(unit), self.spacing, scene.gm, scene.wm, scene.mask)


def scaled(spec: TumourSpec, scale: float) -> TumourSpec:
    """``spec`` with every length scaled by ``scale`` about the centre (the mass effect's ``r_mass`` too)."""
    return dataclasses.replace(spec, r_whole=spec.r_whole * scale, r_core=spec.r_core * scale,
                               r_necrosis=spec.r_necrosis * scale, necrosis_offset=spec.necrosis_offset * scale,
                               r_mass=spec.r_mass * scale)


def nominal_ml(spec: TumourSpec) -> float:
    """The nominal WT volume (mL) of ``spec``: the sphere of its equivalent radius."""
    return 4.0 / 3.0 * math.pi * spec.r_whole**3 / 1000.0


def _united(labels: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """``labels`` united with ``previous`` (same box): WT, core (NCR + ET) and NCR each the union of both."""
    if previous is None:
        return labels
    whole = (labels > 0) | (previous > 0)
    core = np.isin(labels, (1, 3)) | np.isin(previous, (1, 3))
    necrosis = (labels == 1) | (previous == 1)
    out = whole.astype(np.uint8) * 2
    out[core] = 3
    out[necrosis] = 1
    return out


def check_cohort(*, visits: int, interval_months: float) -> None:
    """Raise a :class:`SynthmedError` for a visit count below 1 or a non-positive interval."""
    if visits < 1:
        raise SynthmedError(f"--visits must be at least 1, got {visits}")
    if not (math.isfinite(interval_months) and interval_months > 0):
        raise SynthmedError(f"--interval-months must be a positive number of months, got {interval_months}")


def subject_growth(subject: int, *, seed: int, onset_fraction: float,
                   fast_fraction: float = FAST_FRACTION) -> Growth:
    """Subject ``subject``'s :class:`~.growth.Growth` (cheap: draws only)."""
    return draw_growth(growth_stream(subject, seed), onset_fraction=onset_fraction, fast_fraction=fast_fraction)


def subject_tumour(subject: int, *, seed: int, fast: bool,
                   cue_strength: float = CUE_STRENGTH) -> tuple[TumourSpec, TumourSpec]:
    """``(drawn, cued)``: subject ``subject``'s tumour as cross-sectional case ``subject`` draws it, and with
    the composition of its class at ``cue_strength`` (:func:`~.cue.cue_composition`; cheap: draws only)."""
    drawn = draw_tumour(case_streams(subject, seed)[2], mni_template().sites_mm)
    return drawn, cue_composition(drawn, fast=fast, strength=cue_strength)


def phantom_visits(subject: int, *, seed: int, visits: int, shape: tuple[int, int, int] = DEFAULT_SHAPE,
                   interval_months: float = INTERVAL_MONTHS, onset_fraction: float = 0.0,
                   fast_fraction: float = FAST_FRACTION, cue_strength: float = CUE_STRENGTH,
                   tissues: bool = False) -> Iterator[PhantomVisit]:
    """The visits of longitudinal subject ``subject``, in time order, one at a time (see the module docstring).

    Each case is as :func:`~.simulate.phantom_case` describes (id :func:`visit_id`), its label
    all 0 at a tumour-free onset visit. Torch runs on one thread while a visit is computed.

    Raises:
        SynthmedError: a negative ``subject`` or ``seed``, ``visits < 1``, a non-positive
            ``interval_months``, or a fraction or ``cue_strength`` outside [0, 1].
    """
    check_cohort(visits=visits, interval_months=interval_months)
    check_strength(cue_strength)
    growth = subject_growth(subject, seed=seed, onset_fraction=onset_fraction, fast_fraction=fast_fraction)
    _, anatomy_rng, _, contrast_rng, _ = case_streams(subject, seed)
    drawn, spec = subject_tumour(subject, seed=seed, fast=growth.fast, cue_strength=cue_strength)
    months = [v * float(interval_months) for v in range(visits)]
    volumes = [0.0 if growth.onset and v == 0 else growth.nominal_ml(t) for v, t in enumerate(months)]
    reference = nominal_ml(spec)
    scales = [(volume / reference) ** (1.0 / 3.0) for volume in volumes]
    with torch_threads(1):
        scene = phantom_scene(shape, draw_anatomy(anatomy_rng), draw_contrast(contrast_rng), spec)
        growing = GrowingTumour(spec, scene, max(scales), lobe_cell_mm(drawn)) if max(scales) > 0 else None
        first = next((v for v, scale in enumerate(scales) if scale > 0), None)
        done = {first: growing.at(scales[first])} if growing is not None and first is not None else {}
    centre = None
    if growing is not None and first is not None:
        whole = np.zeros(scene.shape, dtype=np.uint8)
        whole[scene.box][growing.box] = done[first][0]
        centre = tumour_centre_slice(whole)
    voxel_ml = float(np.prod(scene.spacing)) / 1000.0
    previous: np.ndarray | None = None
    for visit, (t, scale) in enumerate(zip(months, scales)):
        with torch_threads(1):
            box: TumourBox | None = None
            if scale > 0 and growing is not None:
                labels, modulation = done.pop(visit) if visit in done else growing.at(scale)
                previous = _united(labels, previous)
                box = tighten(growing.box, previous, modulation)
            case, fractions = render_case(scene, box, visit_noise_stream(subject, seed, visit),
                                          visit_id(subject, visit), tissues=tissues)
        record = VisitRecord(
            case_id=case.id, subject_id=subject_id(subject), visit=visit, months=t,
            wt_ml=round(float(np.count_nonzero(case.label)) * voxel_ml, 4),
            grade=0 if centre is None else grade_of_label(case.label[centre]),
            progressor=int(growth.fast), centre_slice=-1 if centre is None else centre,
        )
        yield PhantomVisit(case=case, record=record, tissues=fractions)
