"""synthmed: synthetic medical images with tumour masks — train generators, sample, and
measure fidelity, utility and privacy in one reproducible study."""

__version__ = "0.1.0"
