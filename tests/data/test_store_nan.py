"""NaN or infinities in a store (damaged, or rewritten by another tool) are an error naming the sample."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr
from tiny_stores import make_store

from synthmed.data.store import Store
from synthmed.errors import DataError


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_the_sample(tmp_path, bad):
    make_store(tmp_path / "s", n=8, side=16, chunk_samples=4)
    image = zarr.open_group(tmp_path / "s", mode="r+")["image"]
    sample = image[5]
    sample[2, 7, 3] = bad
    image[5] = sample
    store = Store.open(tmp_path / "s")
    np.testing.assert_array_equal(store.read([0, 1])[0], Store.open(tmp_path / "s").read([0, 1])[0])  # chunk 0 is fine
    message = r"s: sample 5 \(case case2, slice 1\) holds NaN or infinite values"
    with pytest.raises(DataError, match=message):
        store.read([4])
    with pytest.raises(DataError, match=message):
        list(store.iter_batches(3))
    with pytest.raises(DataError, match=message):
        store.dataset()[5]
    with pytest.raises(DataError, match=message):
        store.read([6], fast=False)  # through zarr as well


def test_cli_names_the_sample_in_one_line(tmp_path):
    make_store(tmp_path / "s", n=4, side=16, chunk_samples=4)
    image = zarr.open_group(tmp_path / "s", mode="r+")["image"]
    sample = image[3]
    sample[0, 0, 0] = np.nan
    image[3] = sample
    proc = subprocess.run([sys.executable, "-m", "synthmed", "data", "inspect", str(tmp_path / "s")],
                          capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "sample 3 (case case1, slice 1)" in lines[0], proc.stderr
