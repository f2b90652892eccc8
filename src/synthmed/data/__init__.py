"""Data: layouts → `Case` → preprocessing → `Store`; the phantom; the joint encoding."""

from synthmed.data.case import CANONICAL_CHANNELS, LABEL_NAMES, REGIONS, Case
from synthmed.data.encoding import JointEncoding, decode, encode
from synthmed.data.layouts import LAYOUTS, CaseSource, detect_layout, discover_cases
from synthmed.data.nifti import load_nifti, save_nifti
from synthmed.data.store import ChunkShuffleSampler, Store, StoreDataset, StoreWriter

__all__ = [
    "CANONICAL_CHANNELS",
    "LABEL_NAMES",
    "LAYOUTS",
    "REGIONS",
    "Case",
    "CaseSource",
    "ChunkShuffleSampler",
    "JointEncoding",
    "Store",
    "StoreDataset",
    "StoreWriter",
    "decode",
    "detect_layout",
    "discover_cases",
    "encode",
    "load_nifti",
    "save_nifti",
]
