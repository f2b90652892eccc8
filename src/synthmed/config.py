"""Validated configuration of every command (pydantic).

The CLI and the YAML study files build these models; a bad value becomes one
:class:`~synthmed.errors.SynthmedError` naming the field and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

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


class LongitudinalPhantomConfig(Config):
    """`synthmed data phantom --longitudinal`: a cohort of subjects followed over visits.

    Defaults match :mod:`synthmed.data.phantom.growth` (``FAST_FRACTION``),
    :mod:`synthmed.data.phantom.cue` (``CUE_STRENGTH``) and
    :mod:`synthmed.data.phantom.longitudinal` (``INTERVAL_MONTHS``).
    """

    subjects: int = Field(ge=1, description="number of subjects")
    visits: int = Field(ge=1, description="visits per subject (the first is the baseline)")
    interval_months: float = Field(12.0, gt=0, allow_inf_nan=False, description="months between visits")
    onset_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of subjects whose first visit is tumour-free")
    fast_fraction: float = Field(0.4, ge=0.0, le=1.0, description="share of fast progressors")
    cue_strength: float = Field(0.7, ge=0.0, le=1.0, description="how much the baseline tumour's composition "
                                "shows the growth class (0: not at all, the negative control; 1: separated)")
    seed: int = Field(0, ge=0, description="random seed; same seed, same files")
    shape: PhantomShape = Field((155, 240, 240), description="(D, H, W) voxels; files are W×H×D")
    workers: int = Field(1, ge=1, description="processes writing subjects in parallel")


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
    slices: Literal["auto", "brain", "centre"] = Field(
        "auto", description="2D: 'brain' keeps every axial slice more than min_brain_fraction brain; 'centre' one "
        "slice per case, at its subject's tumour-centre axial position (longitudinal data); 'auto' is centre when "
        "the dataset gives subjects or months, else brain")


ConfigT = TypeVar("ConfigT", bound=Config)


#: Command-line options whose name is not the config field's (``--gamma`` sets ``r1_gamma``).
OPTION_NAMES: dict[str, str] = {"num_workers": "--workers", "r1_gamma": "--gamma", "kind": "--executor",
                               "autoencoder.steps": "--autoencoder-steps"}
#: Longest echo of a bad value in a validation error (characters of its repr).
MAX_ECHO = 80
#: Most problems listed in one validation error (the rest are counted).
MAX_PROBLEMS = 10
#: Most values (scalars, lists and mappings, counted with aliases expanded) a YAML file may hold.
MAX_YAML_VALUES = 100_000
#: Largest YAML file read (bytes).
MAX_YAML_BYTES = 4 * 2**20


def short(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` cut to ``limit`` characters (``…`` marks a cut); never builds a huge repr
    of a long string, list or mapping (only a bounded prefix of it is looked at)."""
    if isinstance(value, str) and len(value) > limit:
        value = value[: limit + 1]
    elif isinstance(value, (list, tuple)) and len(value) > limit:
        value = list(value[:limit])
    elif isinstance(value, dict) and len(value) > limit:
        value = dict(list(value.items())[:limit])
    text = reprlib_repr(value, limit)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reprlib_repr(value: object, limit: int) -> str:
    """A repr bounded in size and depth (nested containers are abbreviated as ``[...]``)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = r.maxlong = limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 8
    r.maxlevel = 3
    return r.repr(value)


def build_config(model: type[ConfigT], source: str = "options", /, *, prefix: str = "", **values: object) -> ConfigT:
    """Validate ``values`` into ``model``; errors name the field and say what was expected.

    With a ``source`` ending in ``options`` (``options``, ``model options``, ``training
    options``: command-line options) fields are named as their options (``--checkpoint-every``,
    :data:`OPTION_NAMES` where the option differs from the field); otherwise by their dotted
    path (``generators.0.name``), after ``prefix`` (e.g. ``generators.0.model_overrides.``).
    A bad value is echoed cut to :data:`MAX_ECHO` characters, and
    at most :data:`MAX_PROBLEMS` problems are listed.

    Raises:
        SynthmedError: listing each invalid field, e.g. ``options: --size: Input should be
            greater than or equal to 8 (got 4)``.
    """
    try:
        return model(**values)
    except ValidationError as exc:
        errors = exc.errors()
        problems = []
        for err in errors[:MAX_PROBLEMS]:
            field = ".".join(str(p) for p in err["loc"]) or "config"
            if source.endswith("options") and err["loc"]:
                name = str(err["loc"][0])
                field = OPTION_NAMES.get(name, "--" + name.replace("_", "-")) + "".join(f".{p}" for p in err["loc"][1:])
            got = f" (got {short(err['input'])})" if "input" in err and not isinstance(err["input"], dict) else ""
            problems.append(f"{(prefix + field)[:200]}: {err['msg'][:300]}{got}")
        if len(errors) > MAX_PROBLEMS:
            problems.append(f"and {len(errors) - MAX_PROBLEMS} more")
        raise SynthmedError(f"{source}: " + "; ".join(problems)) from None


def load_yaml(path: str | Path, *, max_values: int = MAX_YAML_VALUES, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Read a YAML file with ``yaml.SafeLoader``, refusing what would expand beyond a bound.

    Aliases (``*a``) are counted as the values they expand to, before anything is built, so
    an alias bomb (a few hundred bytes expanding to billions of values) is refused in
    milliseconds; so are recursive aliases and files over ``max_bytes``.

    Raises:
        SynthmedError: a missing, unreadable, too large or invalid file, or one that expands to
            more than ``max_values`` values (each message names the file and is one short line).
    """
    import yaml

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SynthmedError(f"{path}: {size} bytes; a YAML file here is at most {max_bytes} bytes")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SynthmedError(f"{path}: cannot read the file ({short(str(exc), 200)})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, max_values, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise SynthmedError(f"{path}: not valid YAML ({short(' '.join(str(exc).split()), 300)})") from None
    finally:
        loader.dispose()


def _check_expansion(root: Any, limit: int, path: Path) -> None:
    """Count the values of the composed YAML graph with aliases expanded (each shared node once,
    by memo), raising if the count passes ``limit`` or a node contains itself."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            active.discard(key)
            if isinstance(node, yaml.MappingNode):
                kids = [n for pair in node.value for n in pair]
            else:
                kids = node.value
            sizes[key] = total = 1 + sum(sizes[id(k)] for k in kids)
            if total > limit:
                raise SynthmedError(f"{path}: expands to more than {limit} values (through aliases *…); refused "
                                    "(a study file needs far fewer)")
            continue
        if key in sizes:
            continue
        if not isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            sizes[key] = 1
            continue
        if key in active:
            raise SynthmedError(f"{path}: a recursive alias (a value that contains itself); refused")
        active.add(key)
        stack.append((node, True))
        kids = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        for kid in kids:
            if id(kid) in active:
                raise SynthmedError(f"{path}: a recursive alias (a value that contains itself); refused")
            if id(kid) not in sizes:
                stack.append((kid, False))
