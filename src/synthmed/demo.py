"""The offline demo: phantom → prepare → inspect, in one folder; finished steps are reused.

Every step writes atomically, so a folder that exists is a finished step and a second run
returns in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from synthmed.config import PhantomConfig, PrepareConfig
from synthmed.data.inspect import render_grid, summarize
from synthmed.data.phantom import write_phantom
from synthmed.data.prepare import prepare
from synthmed.data.store import Store


def run_demo(out: str | Path, *, cases: int = 6, size: int = 64, seed: int = 0) -> Iterator[str]:
    """Run the demo into ``out``, yielding one line per step for the user."""
    out = Path(out)
    phantom_dir, store_dir, grid = out / "phantom", out / "store-2d", out / "store-2d-samples.png"
    if phantom_dir.exists():
        yield f"reusing phantom dataset {phantom_dir}"
    else:
        config = PhantomConfig(cases=cases, seed=seed, tumour_free_fraction=0.0)
        write_phantom(phantom_dir, **config.model_dump())
        yield f"wrote phantom dataset {phantom_dir} ({cases} BraTS-like cases, 240×240×155 at 1 mm)"
    if store_dir.exists():
        yield f"reusing store {store_dir}"
    else:
        result = prepare(phantom_dir, store_dir, PrepareConfig(dims=2, size=size, test_fraction=0.34, seed=seed))
        yield (f"wrote store {store_dir}: {len(result.store)} axial slices of {size}×{size} "
               f"({result.cases['train']} train / {result.cases['test']} test cases)")
    store = Store.open(store_dir)
    if not grid.exists():
        render_grid(store, grid)
    summary = summarize(store)
    yield f"store summary: {summary['samples']} samples, tumour voxels {100 * summary['tumour_fraction']:.2f}%"
    yield f"sample grid (each channel + mask overlay): {grid}"
