"""Validated configuration of every command (pydantic).

The CLI and the YAML study files build these models; a bad value becomes one
:class:`~synthmed.errors.SynthmedError` naming the field and what was expected.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from synthmed.errors import SynthmedError

LayoutName = Literal["auto", "brats", "msd", "nnunet", "csv"]


def _at_least_16(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    if min(shape) < 16:
        raise ValueError("every side must be at least 16 voxels")
    return shape


#: A phantom grid ``(D, H, W)`` in voxels, every side at least 16.
PhantomShape = Annotated[tuple[int, int, int], AfterValidator(_at_least_16)]


class Config(BaseModel):
    """Base of all configs: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LoopConfig(Config):
    """The loop settings every trainer shares (generators, segmenters, encoders); each
    trainer's training config extends it (and may change the defaults)."""

    steps: int = Field(20, ge=1, description="total optimiser steps")
    batch: int = Field(8, ge=1, description="batch per process")
    checkpoint_every: int = Field(1000, ge=1, description="checkpoint every N steps (and at the end)")
    log_every: int = Field(10, ge=1, description="log scalars every N steps")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")


class PhantomConfig(Config):
    """`synthmed data phantom`: how many cases, which seed, which grid."""

    cases: int = Field(4, ge=1, description="number of cases to write")
    seed: int = Field(0, ge=0, description="random seed; same seed, same files")
    shape: PhantomShape = Field((155, 240, 240), description="(D, H, W) voxels; files are W×H×D")
    tumour_free_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of cases without a tumour")
    workers: int = Field(1, ge=1, description="processes writing cases in parallel")


class PrepareConfig(Config):
    """`synthmed data prepare`: how a dataset becomes a store."""

    dims: Literal[2, 3] = Field(2, description="2 = axial slices, 3 = volumes")
    size: int = Field(128, ge=8, le=1024, description="output side in voxels (S×S or S³)")
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="share of cases held out as the test split")
    seed: int = Field(0, ge=0, description="seed of the subject-level split")
    workers: int = Field(1, ge=1, description="processes preparing cases in parallel")
    layout: LayoutName = Field("auto", description="dataset layout, or auto-detect")
    skip_bad: bool = Field(False, description="skip unreadable or inconsistent cases instead of stopping")
    min_brain_fraction: float = Field(0.15, ge=0.0, lt=1.0, description="2D: keep slices more than this much brain")


ConfigT = TypeVar("ConfigT", bound=Config)


def build_config(model: type[ConfigT], source: str = "options", **values: object) -> ConfigT:
    """Validate ``values`` into ``model``; errors name the field and say what was expected.

    Raises:
        SynthmedError: listing each invalid field, e.g. ``options: size: Input should be
            greater than or equal to 8 (got 4)``.
    """
    try:
        return model(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "config"
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
            problems.append(f"{field}: {err['msg']}{got}")
        raise SynthmedError(f"{source}: " + "; ".join(problems)) from None
