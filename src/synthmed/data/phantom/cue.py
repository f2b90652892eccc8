"""The baseline cue of the longitudinal phantom's growth class: the tumour's composition depends on the class.

Clinically, fast-growing (high-grade) gliomas present with an enhancing core around central
necrosis; slow (low-grade) ones are mostly non-enhancing, a small core in a T2 / FLAIR-hyperintense
region (labelled edema here, as BraTS labels non-enhancing tumour). A subject's tumour therefore
takes its core's (NCR + ET) share of the whole tumour's nominal volume and its necrosis's share
of the core from ranges that move with the cue strength ``S`` in [0, 1] from the
class-independent ranges of the cross-sectional phantom (:data:`~.draws.CORE_SHARE` 0.12–0.5,
:data:`~.draws.NECROSIS_SHARE` 0.2–0.6) towards the class's (fast: core 0.4–0.7 of the whole
tumour, 40–70 % of it necrotic; slow: core 0.04–0.15, 10–30 % necrotic):

    range_S = (1 − S) · drawn range + S · class range  (both ends),
    share   = low_S + q · (high_S − low_S),

``q`` the quantile of the share the tumour stream drew (``(share − low) / (high − low)`` in
the drawn range). No new random number is drawn, so ``S = 0`` is exactly the cross-sectional
case's tumour (the negative control: nothing at baseline shows the class) and ``S = 1``
separates the classes' composition ranges. Only the core and necrosis radii change
(:func:`~.draws.with_composition`; the necrosis keeps its radius bounds): the site, size, shape
and texture noise, the lobulation's feature size and the mass effect (so the anatomy) stay the
drawn tumour's. The edema surrounds the core by at least ~2 mm, so a large core pushes the whole
tumour a little past its nominal volume (baseline WT volume AUROC for fast progressors 0.60 at
the default, 0.65 at ``S = 1``, 120 subjects on the 2 mm grid; the 32 px slice's WT pixel count
does not show it).

What shows at 32 px (``benchmarks/phantom_cue.py``): the baselines are about 2 pixels across,
so the enhancing rim (a few mm) is thinner than a pixel, and the store's intensity window
saturates T1ce enhancement and FLAIR edema; what remains is the core's share of the mask's WT
pixels and the necrosis, dark on T1.
"""

from __future__ import annotations

from typing import Any

from synthmed.data.phantom.draws import CORE_SHARE, NECROSIS_SHARE, TumourSpec, with_composition
from synthmed.errors import SynthmedError

#: Default cue strength: clear at the 32 px benchmark resolution without separating the classes.
CUE_STRENGTH = 0.7
#: Range of a fast progressor's core (NCR + ET) share of the whole tumour at cue strength 1.
FAST_CORE_SHARE: tuple[float, float] = (0.4, 0.7)
#: Range of a fast progressor's necrosis share of the core at cue strength 1.
FAST_NECROSIS_SHARE: tuple[float, float] = (0.4, 0.7)
#: Range of a slow progressor's core share of the whole tumour at cue strength 1.
SLOW_CORE_SHARE: tuple[float, float] = (0.04, 0.15)
#: Range of a slow progressor's necrosis share of the core at cue strength 1.
SLOW_NECROSIS_SHARE: tuple[float, float] = (0.1, 0.3)


def check_strength(strength: float) -> float:
    """``strength`` as a float; raises a :class:`SynthmedError` naming ``--cue-strength`` outside [0, 1]."""
    if not 0.0 <= strength <= 1.0:  # also refuses nan
        raise SynthmedError(f"--cue-strength must be in [0, 1], got {strength}")
    return float(strength)


def _moved(share: float, drawn: tuple[float, float], target: tuple[float, float], strength: float) -> float:
    """``share``, drawn uniform in ``drawn``, at its quantile in the range moved ``strength`` towards ``target``."""
    q = (share - drawn[0]) / (drawn[1] - drawn[0])
    low = (1.0 - strength) * drawn[0] + strength * target[0]
    high = (1.0 - strength) * drawn[1] + strength * target[1]
    return low + q * (high - low)


def cue_composition(spec: TumourSpec, *, fast: bool, strength: float) -> TumourSpec:
    """The drawn tumour ``spec`` with the composition of its class at cue ``strength`` (see the module docstring).

    ``strength`` 0 returns ``spec`` itself.
    """
    strength = check_strength(strength)
    if strength == 0.0:
        return spec
    core = FAST_CORE_SHARE if fast else SLOW_CORE_SHARE
    necrosis = FAST_NECROSIS_SHARE if fast else SLOW_NECROSIS_SHARE
    return with_composition(spec, _moved(spec.core_share, CORE_SHARE, core, strength),
                            _moved(spec.necrosis_share, NECROSIS_SHARE, necrosis, strength))


def cue_record(strength: float) -> dict[str, Any]:
    """``phantom.json``'s ``cue`` entry: the strength and the share ranges it moves between."""
    return {"strength": float(strength), "law": "range_S = (1 - S) drawn + S class, same quantile",
            "drawn": {"core_share": list(CORE_SHARE), "necrosis_share": list(NECROSIS_SHARE)},
            "fast": {"core_share": list(FAST_CORE_SHARE), "necrosis_share": list(FAST_NECROSIS_SHARE)},
            "slow": {"core_share": list(SLOW_CORE_SHARE), "necrosis_share": list(SLOW_NECROSIS_SHARE)}}
