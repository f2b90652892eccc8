"""The memorization audit record: per-sample nearest training samples, their summary, and the audit JSON file.

The file (``format: synthmed-memorization``, version 1) holds the summary (:meth:`MemorizationAudit.summary`)
and one row per synthetic sample (:meth:`MemorizationAudit.table`); :meth:`MemorizationAudit.load`
reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthmed.errors import SynthmedError
from synthmed.metrics.shift_flip import shift_offsets, variant_shift

#: What an audit records about the stores it measured (beyond their paths).
AUDIT_RECORD_KEYS: tuple[str, ...] = ("synthetic_created", "train_created", "synthetic_hash", "train_hash")


@dataclass
class MemorizationAudit:
    """The result of :func:`~synthmed.evaluate.audit`: one row per synthetic sample and the summary.

    Attributes:
        values: float64 ``[M]`` joint maximum correlation per synthetic sample.
        indices: int64 ``[M]`` the training *store* sample index reaching it.
        channel_values: float64 ``[M, C]`` the per-channel maxima.
        channel_indices: int64 ``[M, C]``.
        threshold: near-copy threshold on ``values``.
        channels: channel names.
        synthetic_path / train_path: the stores, absolute (``None`` for arrays).
        train_split: the split of the training store compared with (``None``: all samples).
        extra: ``synthetic_created`` / ``train_created`` and the stores' content hashes
            ``synthetic_hash`` / ``train_hash`` (:func:`~synthmed.data.fingerprint.store_hash`),
            which bind the audit to what it measured.
        embedding: nearest domain-embedding distances and store indices, if computed.
        shift_flip: ``(values, store indices, variants)`` of the shift- and flip-tolerant
            similarity (:func:`~synthmed.metrics.shift_flip.nearest_correlation_tolerant`), if computed, with ``max_shift``.
    """

    values: np.ndarray
    indices: np.ndarray
    channel_values: np.ndarray
    channel_indices: np.ndarray
    threshold: float
    channels: Sequence[str]
    synthetic_path: str | None = None
    train_path: str | None = None
    train_split: str | None = "train"
    extra: dict = field(default_factory=dict)
    embedding: tuple[np.ndarray, np.ndarray] | None = None
    shift_flip: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    max_shift: int | None = None

    @property
    def similarity(self) -> str:
        """``shift-flip`` when the tolerant similarity was computed, else ``pixel``."""
        return "shift-flip" if self.shift_flip is not None else "pixel"

    def gate_values(self, similarity: str = "pixel") -> tuple[np.ndarray, np.ndarray]:
        """``(values, store indices)`` the privacy gate compares with its threshold.

        Raises:
            SynthmedError: ``shift-flip`` asked of an audit without it.
        """
        if similarity == "pixel":
            return self.values, self.indices
        if similarity == "shift-flip" and self.shift_flip is not None:
            return self.shift_flip[0], self.shift_flip[1]
        raise SynthmedError(f"this audit has no {similarity!r} similarity (it has {self.similarity})")

    @property
    def near_copies(self) -> np.ndarray:
        """Synthetic sample indices whose joint maximum correlation exceeds the threshold (> t)."""
        return np.flatnonzero(self.values > self.threshold)

    @property
    def fraction_above(self) -> float:
        return float(len(self.near_copies) / max(len(self.values), 1))

    def histogram(self, bins: int = 20) -> dict:
        """Counts of the joint values over ``bins`` equal bins of [-1, 1]."""
        counts, edges = np.histogram(self.values, bins=bins, range=(-1.0, 1.0))
        return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}

    def table(self) -> list[dict]:
        """One row per synthetic sample: index, value, nearest train index, per-channel values."""
        rows = []
        for i in range(len(self.values)):
            row = {"synthetic": i, "correlation": float(self.values[i]), "train": int(self.indices[i])}
            for c, name in enumerate(self.channels):
                row[f"correlation_{name}"] = float(self.channel_values[i, c])
                row[f"train_{name}"] = int(self.channel_indices[i, c])
            if self.embedding is not None:
                row["embedding_distance"] = float(self.embedding[0][i])
                row["embedding_train"] = int(self.embedding[1][i])
            if self.shift_flip is not None:
                mirrored, dy, dx = variant_shift(int(self.shift_flip[2][i]), self.max_shift or 0)
                row["correlation_shift_flip"] = float(self.shift_flip[0][i])
                row["train_shift_flip"] = int(self.shift_flip[1][i])
                row["variant_shift_flip"] = {"mirrored": mirrored, "dy": dy, "dx": dx}
            rows.append(row)
        return rows

    def summary(self) -> dict:
        v = self.values
        return {
            "synthetic": self.synthetic_path,
            "train": self.train_path,
            "train_split": self.train_split,
            "n_synthetic": int(len(v)),
            "threshold": float(self.threshold),
            "n_above": int(len(self.near_copies)),
            "fraction_above": self.fraction_above,
            "max": float(v.max()) if len(v) else None,
            "mean": float(v.mean()) if len(v) else None,
            "median": float(np.median(v)) if len(v) else None,
            "max_per_channel": {name: float(self.channel_values[:, c].max()) for c, name in enumerate(self.channels)}
            if len(v) else {},
            "histogram": self.histogram(),
            "similarity": self.similarity,
            **({"shift_flip": {"max_shift": int(self.max_shift or 0),
                               "max": float(self.shift_flip[0].max()) if len(v) else None,
                               "n_above": int((self.shift_flip[0] > self.threshold).sum())}}
               if self.shift_flip is not None else {}),
            **self.extra,
        }

    def to_json(self) -> dict:
        return {"format": "synthmed-memorization", "format_version": 1, **self.summary(), "samples": self.table()}

    @classmethod
    def load(cls, path: str | Path) -> MemorizationAudit:
        """Read an audit written by :meth:`save` (summary and per-sample table).

        Raises:
            SynthmedError: not a synthmed memorization file.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SynthmedError(f"{path}: cannot read the memorization audit ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != "synthmed-memorization":
            raise SynthmedError(f"{path}: not a synthmed memorization audit (format synthmed-memorization)")
        rows, channels = data.get("samples", []), tuple(data.get("max_per_channel", {}))

        def column(key: str, dtype: type) -> np.ndarray:
            return np.array([r[key] for r in rows], dtype=dtype)

        def per_channel(prefix: str, dtype: type) -> np.ndarray:
            values = [[r[f"{prefix}_{c}"] for c in channels] for r in rows]
            return np.array(values, dtype=dtype).reshape(len(rows), len(channels))

        try:
            embedding = shift_flip = max_shift = None
            if rows and "embedding_distance" in rows[0]:
                embedding = (column("embedding_distance", np.float64), column("embedding_train", np.int64))
            if data.get("similarity") == "shift-flip":
                max_shift = int(data["shift_flip"]["max_shift"])
                shifts = shift_offsets(max_shift)
                variants = [int(r["variant_shift_flip"]["mirrored"]) * len(shifts)
                            + shifts.index((r["variant_shift_flip"]["dy"], r["variant_shift_flip"]["dx"])) for r in rows]
                shift_flip = (column("correlation_shift_flip", np.float64), column("train_shift_flip", np.int64),
                              np.array(variants, np.int64))
            return cls(column("correlation", np.float64), column("train", np.int64),
                       per_channel("correlation", np.float64), per_channel("train", np.int64), float(data["threshold"]),
                       channels, data.get("synthetic"), data.get("train"), data.get("train_split"),
                       extra={k: data[k] for k in AUDIT_RECORD_KEYS if k in data},
                       embedding=embedding, shift_flip=shift_flip, max_shift=max_shift)
        except (KeyError, TypeError, ValueError) as exc:
            raise SynthmedError(f"{path}: not a readable synthmed memorization audit ({type(exc).__name__}: "
                                f"{str(exc)[:200]})") from None

    def save(self, path: str | Path) -> Path:
        """Write the summary and the per-sample table as JSON (atomically)."""
        from synthmed.atomic import atomic_file

        path = Path(path)
        with atomic_file(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path
