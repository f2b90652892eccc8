"""The built-in BraTS-like phantom: four MR sequences and a tumour mask per case, offline.

The stages, one module each, run in this order by :mod:`.simulate` (:func:`phantom_case`):
:mod:`.draws` (the case's random parameters), :mod:`.warp`, :mod:`.tumour`,
:mod:`.intensities`; they build on :mod:`.geometry` (the grid), :mod:`.template` (the MNI
maps), :mod:`.tissues` (the tissue classes and means) and :mod:`.fields` (smooth B-spline
fields). :mod:`.writer` writes a dataset of cases (:func:`write_phantom`) or a longitudinal
cohort (:func:`write_longitudinal_phantom`): :mod:`.longitudinal` follows case ``i`` over
visits (:func:`phantom_visits`: same anatomy, contrasts and tumour site and shape, the tumour
scaled by the growth law of :mod:`.growth`, fresh noise per visit; its composition shows the
growth class at baseline by the cue strength of :mod:`.cue`).

Anatomy comes from nilearn's bundled 1 mm MNI152 (ICBM 2009a) template: grey- and
white-matter probability maps and the brain mask (T1 template > 0.2, as
``nilearn.datasets.load_mni152_brain_mask``); CSF is ``clip(mask - GM - WM, 0, 1)``. Each case:

1. **Warp** — a random affine (rotation, per-axis scale, translation), a smooth random
   displacement (cubic B-spline, control points every 30 mm) and the tumour's *mass effect*
   (a volume-preserving radial inflation around its centre), composed into one pull-back
   and applied to the MNI maps by a single trilinear ``grid_sample`` over the box that can
   hold the brain.
2. **Tumour** (optional) — centred on a random deep white-matter site of the cerebrum. A
   randomly rotated, anisotropic, lobulated ellipsoid (radius perturbed by smooth noise at
   two scales) is the tumour core (TC); a smaller, off-centre lobulated ellipsoid inside the
   core's one-voxel erosion is the necrotic core (NCR); the rest of the core is the
   enhancing rim (ET); edema (ED) is a larger lobulated region that spreads preferentially
   along white matter, avoids CSF, stays inside the brain and always surrounds the core
   (at least ~2 mm, at least one voxel) inside the brain. The whole tumour is one connected
   region of about 10–150 cm³ (nominal volume log-uniform in 12–125 cm³, then grown along
   white matter and clipped to brain tissue). A tumour case always has all three labels;
   NCR never touches non-core voxels (6-connectivity). Everything is computed on the
   tumour's bounding box.
3. **Intensities** — partial-volume mixtures of per-tissue means per sequence
   (:data:`TISSUE_MEANS`, jittered per case, with smooth texture inside the tumour and an
   edema signal fading towards its border), times a smooth multiplicative bias field per
   sequence, with Rician noise, rounded to integers. T1: WM > GM > CSF; T1ce: as T1 with a
   very bright enhancing rim and a dark necrotic core; T2: CSF brightest, WM darker than
   GM, edema bright; FLAIR: CSF suppressed (dark), edema bright.

Geometry. The field of view is always BraTS's 240 × 240 × 155 mm ``(x, y, z)``; the grid
has ``shape = (D, H, W)`` voxels, so the spacing is ``(155 / D, 240 / H, 240 / W)`` mm in
``(D, H, W)`` order — exactly 1 mm at :data:`DEFAULT_SHAPE`. Other shapes see the same brain
at a coarser (or finer) resolution, so physical sizes (tumour volumes in cm³) do not change
with the shape; for grids of 2 mm or coarser the MNI maps are first averaged over blocks of
about one voxel (partial volume, no aliasing). The affine is RAS+ and diagonal; world
coordinates are roughly MNI millimetres (the brain is scaled by 0.95: MNI152 brains are
larger than average). The brain fits with a margin in x and y and below the vertex; as in
BraTS, the brainstem leaves through the lowest slice.

Background is exactly 0 outside the warped brain mask and every brain voxel is at least 1
in every channel, so ``(images > 0).any(0)`` is the brain mask. Intensities are integers
in scanner-like units (white matter ≈ 250–1100 depending on sequence and case, enhancing
rim up to ≈ 2500), written as int16.

Randomness. Case ``i`` depends only on ``(seed, i)`` and its ``tumour`` flag:
``numpy.random.SeedSequence(seed, spawn_key=(i,))`` spawns independent streams for the
tumour-free decision, the anatomy, the tumour, the contrasts and the noise (a tumour-free
case has the same anatomy and contrasts as its tumour twin; its noise differs); a
longitudinal subject ``i`` adds a growth stream (``spawn_key=(i, 5)``) and draws visit ``v``'s
noise from ``spawn_key=(i, 4, v)``, a child of the noise stream. No global
RNG state is used and torch runs on one thread during a case, so the arrays are identical
whatever the number of workers or cases.
"""

from synthmed.data.phantom.draws import is_tumour_free
from synthmed.data.phantom.geometry import DEFAULT_SHAPE, FIELD_OF_VIEW_MM, phantom_geometry
from synthmed.data.phantom.simulate import (
    CASE_ID_FORMAT,
    PhantomTissues,
    case_id,
    phantom_case,
    phantom_sample,
    phantom_tissues,
)
from synthmed.data.phantom.tissues import TISSUE_MEANS, TISSUES
from synthmed.data.phantom.growth import Growth
from synthmed.data.phantom.longitudinal import (
    PhantomVisit,
    VisitRecord,
    phantom_visits,
    subject_growth,
    subject_id,
    visit_id,
)
from synthmed.data.phantom.writer import LONGITUDINAL_COLUMNS, write_longitudinal_phantom, write_phantom

__all__ = [
    "CASE_ID_FORMAT",
    "DEFAULT_SHAPE",
    "FIELD_OF_VIEW_MM",
    "LONGITUDINAL_COLUMNS",
    "Growth",
    "PhantomVisit",
    "VisitRecord",
    "TISSUES",
    "TISSUE_MEANS",
    "PhantomTissues",
    "case_id",
    "is_tumour_free",
    "phantom_case",
    "phantom_geometry",
    "phantom_sample",
    "phantom_tissues",
    "phantom_visits",
    "subject_growth",
    "subject_id",
    "visit_id",
    "write_longitudinal_phantom",
    "write_phantom",
]
