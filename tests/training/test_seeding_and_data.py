"""Per-step randomness and the batch stream: pure functions of (seed, step), world-size invariant."""

import numpy as np
import pytest
import torch

from synthmed.training.data import StepBatchSampler, batch_stream
from synthmed.training.seeding import GeneratorDraws, StepRandom, derive_seed, make_generator


def test_derive_seed_is_pure_and_distinguishes_parts():
    assert derive_seed(1, 2) == derive_seed(1, 2)
    assert len({derive_seed(1, 2), derive_seed(2, 1), derive_seed(1, 3), derive_seed(1, 2, 0)}) == 4


def test_step_random_slices_the_global_draw():
    one = StepRandom(7, 3, rank=0, world_size=1)
    full_n, full_t = one.randn((4, 2)), one.randint(0, 100, (4,))
    parts = []
    for rank in range(2):
        r = StepRandom(7, 3, rank=rank, world_size=2)
        parts.append((r.randn((2, 2)), r.randint(0, 100, (2,))))
    assert torch.equal(torch.cat([p[0] for p in parts]), full_n)
    assert torch.equal(torch.cat([p[1] for p in parts]), full_t)
    assert not torch.equal(StepRandom(7, 4).randn((4, 2)), full_n)  # another step, other numbers


def test_generator_draws_slice_one_stream_by_rank():
    """A stream's ranks draw their rows of each world-size-invariant draw, in order; rank 0 of
    world 1 draws exactly what ``torch.randn`` / ``torch.rand`` draw from the same generator."""
    plain, draws = make_generator(5), GeneratorDraws(make_generator(5))
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(draws.randn((3, 2, 4), dtype), torch.randn((3, 2, 4), generator=plain, dtype=dtype))
        assert torch.equal(draws.rand((3, 17), dtype), torch.rand((3, 17), generator=plain, dtype=dtype))
    world1 = StepRandom(7, 3).stream()
    ranks = [StepRandom(7, 3, rank=r, world_size=2).stream() for r in range(2)]
    for shape in ((2, 1, 5, 5), (2,), (2, 3)):  # several draws from one stream: the order is kept
        full_n, full_u = world1.randn((4, *shape[1:])), world1.rand((4, *shape[1:]))
        parts = [(s.randn(shape), s.rand(shape)) for s in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), full_n)
        assert torch.equal(torch.cat([p[1] for p in parts]), full_u)
        assert not torch.equal(parts[0][0], parts[1][0])  # ranks do not share their numbers
    assert torch.equal(StepRandom(7, 3).stream().randn((4, 2)),
                       torch.randn((4, 2), generator=StepRandom(7, 3).generator()))
    again = StepRandom(7, 3)
    again.stream()
    assert not torch.equal(again.stream().randn((4, 2)), StepRandom(7, 3).stream().randn((4, 2)))  # a new stream per call
    with pytest.raises(ValueError, match="rank must be in"):
        GeneratorDraws(make_generator(5), rank=2, world_size=2)


def test_batches_resume_and_shard_exactly(store2d):
    ds = store2d.dataset(split="train")  # 6 samples in chunks of 4
    one = StepBatchSampler(ds, 4, seed=3)
    seq = [one.positions(s) for s in range(6)]
    # an epoch-concatenated stream: every 3 steps (12 items) covers each sample exactly twice
    assert sorted(sum(seq[:3], [])) == sorted(list(range(6)) * 2)
    resumed = StepBatchSampler(ds, 4, seed=3, start_step=2)
    assert [b for b, _ in zip(resumed, range(4))] == seq[2:6]
    ranks = [StepBatchSampler(ds, 2, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in range(6):
        assert ranks[0].positions(s) + ranks[1].positions(s) == seq[s]
    assert StepBatchSampler(ds, 4, seed=4).positions(0) != seq[0] or StepBatchSampler(ds, 4, seed=4).positions(1) != seq[1]


def test_batch_stream_yields_store_samples(store2d):
    ds = store2d.dataset(split="train")
    images, labels = next(batch_stream(ds, 3, seed=0, start_step=1))
    positions = StepBatchSampler(ds, 3, seed=0).positions(1)
    want_images, want_labels = store2d.read(ds.indices[positions])
    assert images.shape == (3, 4, 16, 16) and labels.dtype == torch.uint8
    np.testing.assert_array_equal(images.numpy(), want_images)
    np.testing.assert_array_equal(labels.numpy(), want_labels)
