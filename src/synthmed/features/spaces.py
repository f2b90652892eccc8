"""The feature spaces by name: :func:`make_extractor` builds the ``domain``, ``radimagenet`` or ``inception`` one.

``domain`` (default, offline) is the domain encoder trained on the real store
(:mod:`synthmed.features.domain_training`); ``radimagenet`` and ``inception`` are pretrained
networks from the user's weight files (:mod:`synthmed.features.pretrained`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.features.domain_encoder import DomainEncoderConfig, DomainExtractor
from synthmed.features.domain_training import train_domain_encoder
from synthmed.features.embedding import FeatureExtractor
from synthmed.features.pretrained import InceptionExtractor, RadImageNetExtractor

FEATURE_SPACES: tuple[str, ...] = ("domain", "radimagenet", "inception")


def make_extractor(
    kind: str,
    *,
    real: Store | None = None,
    weights: str | Path | None = None,
    encoder_config: DomainEncoderConfig = DomainEncoderConfig(),
    encoder_dir_: str | Path | None = None,
    channel_reduce: str = "mean",
    device: str = "auto",
    progress: bool = True,
) -> FeatureExtractor:
    """An extractor by name (:data:`FEATURE_SPACES`).

    ``domain`` needs the real store ``real`` (its encoder is loaded or trained; ``weights``
    may name an encoder run directory instead); ``radimagenet`` and ``inception`` need
    ``weights``.

    Raises:
        SynthmedError: unknown kind, missing weights file, unusable weights or packages.
    """
    if channel_reduce not in ("mean", "concat"):
        raise SynthmedError(f"channel_reduce must be mean or concat, got {channel_reduce!r}")
    if kind == "domain":
        if real is None:
            raise SynthmedError("the domain features need the real store its encoder is trained on")
        run_dir = encoder_dir_ if encoder_dir_ is not None else weights
        return DomainExtractor(train_domain_encoder(real, run_dir=run_dir, config=encoder_config, device=device,
                                                    progress=progress))
    if kind in ("radimagenet", "inception"):
        if weights is None:
            what = "RadImageNet ResNet-50 weights" if kind == "radimagenet" else "FID Inception weights"
            raise SynthmedError(f"--features {kind} needs --weights PATH: the {what} file (nothing is downloaded)")
        cls = RadImageNetExtractor if kind == "radimagenet" else InceptionExtractor
        return cls(weights, channel_reduce=channel_reduce)
    raise SynthmedError(f"--features must be one of {', '.join(FEATURE_SPACES)}, got {kind!r}")


def describe(extractor: FeatureExtractor) -> dict:
    """JSON-able description of an extractor for results files."""
    out: dict[str, Any] = {"features": extractor.name}
    if isinstance(extractor, (RadImageNetExtractor, InceptionExtractor)):
        out["channel_reduce"] = extractor.channel_reduce
    return json.loads(json.dumps(out))
