"""A classifier *learns*: 30 steps on the presence store separate the test subjects' tumour slices.

The store (:func:`conftest.make_presence_store`) has one tumour-bearing and one tumour-free slice
per case, the tumour a bright blob with its labels. A working classifier at the ``tiny`` preset
reaches a clean test AUROC of 1.0 in 30 steps (measured, standard and dual-bn alike); a wrong
target (e.g. read from the wrong labels), a wrong BN route or a broken loss stays near 0.5.
(Accuracy at the 0.5 threshold is not asserted: after 30 steps the ranking is right while the
calibration is not yet — measured accuracy 0.5 at AUROC 1.0.) Robustness needs longer training than a test affords: it is measured in ``benchmarks/classify.py``.
"""

from __future__ import annotations

import pytest

from synthmed.classify.api import train_classifier
from synthmed.classify.robustness import evaluate_classifier
from synthmed.training.fabric import FabricOptions


@pytest.mark.parametrize("mode", ["standard", "dual-bn"])
def test_presence_is_learned(mode, presence2d, tmp_path):
    train_classifier(tmp_path / mode, [presence2d.path], mode=mode, fabric=FabricOptions(device="cpu"),
                     train_overrides={"steps": 30, "batch": 8, "validate_every": 0}, progress=False)
    result = evaluate_classifier(tmp_path / mode, presence2d.path, eps_sweep=[0.0], n_boot=20, device="cpu",
                                 write=False, progress=False)
    assert result["clean"]["tumour"]["auroc"] >= 0.95, result["clean"]
