"""The kinds of stage a study plan is made of, in dependency order."""

from __future__ import annotations

#: every stage kind; :mod:`.plan` makes stages of these kinds, :mod:`.stages` has one function
#: per kind and ``executor.resources`` (:mod:`.spec`) is keyed by them.
KINDS = ("prepare", "encoder", "fit", "sample", "fidelity", "memorization", "train", "evaluate", "classify",
         "classify_eval", "progression_fit", "progression_eval")
