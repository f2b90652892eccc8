"""Feature spaces for the fidelity metrics: ``[N, F]`` features (and class logits) of a store's samples.

Three feature spaces (:func:`make_extractor`): ``domain`` (default, offline), a small encoder
trained self-supervised on the real store (:mod:`~synthmed.features.domain_encoder`,
:mod:`~synthmed.features.domain_training`); ``radimagenet`` and ``inception``, pretrained
networks from the user's weight files (:mod:`~synthmed.features.pretrained`). 3D stores are
embedded as 2.5D (:mod:`~synthmed.features.embedding`); stores are streamed batch by batch
(:mod:`~synthmed.features.extract`). Inputs are in ``[0, 1]`` as stored; the label is never an
input. Perceptual distances for training losses, from the same networks, are in
:mod:`~synthmed.features.perceptual`.
"""

from synthmed.features.domain_encoder import (DOMAIN_CLASSES, DomainEncoder, DomainEncoderConfig, DomainExtractor,
                                             presence_class)
from synthmed.features.domain_training import DomainEncoderTask, encoder_dir, load_domain_encoder, train_domain_encoder
from synthmed.features.embedding import FeatureExtractor, describe_embedding, embed, orthogonal_planes
from synthmed.features.extract import extract_features, iter_features
from synthmed.features.perceptual import DomainPerceptual, RadImageNetPerceptual, load_domain_perceptual
from synthmed.features.pretrained import RADIMAGENET_MEAN_BGR, InceptionExtractor, RadImageNetExtractor
from synthmed.features.spaces import FEATURE_SPACES, describe, make_extractor

__all__ = [
    "DOMAIN_CLASSES",
    "DomainEncoder",
    "DomainEncoderConfig",
    "DomainEncoderTask",
    "DomainExtractor",
    "DomainPerceptual",
    "FEATURE_SPACES",
    "FeatureExtractor",
    "InceptionExtractor",
    "RADIMAGENET_MEAN_BGR",
    "RadImageNetExtractor",
    "RadImageNetPerceptual",
    "describe",
    "describe_embedding",
    "embed",
    "encoder_dir",
    "extract_features",
    "iter_features",
    "load_domain_encoder",
    "load_domain_perceptual",
    "make_extractor",
    "orthogonal_planes",
    "presence_class",
    "train_domain_encoder",
]
