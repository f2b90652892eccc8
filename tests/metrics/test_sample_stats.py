"""sample_stats against brute-force loops, and the failures it must catch."""

from __future__ import annotations

import numpy as np
import torch

from synthmed.metrics.sample_stats import BRAIN_LEVEL, pooled_fd, pooled_features, sample_stats


def data(n: int = 6, side: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 4, side, side), np.float32)
    labels = np.zeros((n, side, side), np.uint8)
    for i in range(n):
        a, b = rng.integers(2, 6, 2)
        images[i, :, a:a + 8, b:b + 8] = rng.uniform(0.2, 0.9, (4, 1, 1))
        labels[i, a + 2:a + 5, b + 2:b + 5] = rng.integers(1, 4)
        images[i, :, 0, 0] = 0.03  # background noise below the brain level
    return images, labels


def test_stats_equal_brute_force_loops():
    images, labels = data()
    stats = sample_stats(images, labels, pairs=20)
    inside = outside = 0
    total_out, sums = 0.0, np.zeros(4)
    per_sample = [[] for _ in range(4)]
    for i in range(len(images)):
        count, acc = 0, np.zeros(4)
        for y in range(16):
            for x in range(16):
                pixel = images[i, :, y, x]
                if pixel.mean() > BRAIN_LEVEL:
                    count += 1
                    acc += pixel
                else:
                    outside += 1
                    total_out += pixel.mean()
        inside += count
        for c in range(4):
            per_sample[c].append(acc[c] / count)
    assert abs(stats.background - total_out / outside) < 1e-6
    assert abs(stats.brain_fraction - inside / images[:, 0].size) < 1e-9
    np.testing.assert_allclose(stats.brain_mean, [np.mean(v) for v in per_sample], atol=1e-6)
    for k in (1, 2, 3):
        assert abs(stats.label_fractions[k - 1] - sum(int((lab == k).sum()) for lab in labels) / labels.size) < 1e-12
    assert 0 < stats.ms_ssim < 1


def test_pooled_features_are_block_means():
    images, labels = data()
    feats = pooled_features(images, labels, side=4).reshape(len(images), 7, 4, 4)
    for i in range(len(images)):
        for c in range(7):
            plane = images[i, c] if c < 4 else (labels[i] == c - 3).astype(np.float64)
            blocks = plane.reshape(4, 4, 4, 4).mean(axis=(1, 3))
            np.testing.assert_allclose(feats[i, c].numpy(), blocks, atol=1e-6)


def test_collapse_and_grey_background_are_visible():
    images, labels = data(n=40)
    real = sample_stats(images, labels)
    collapsed = sample_stats(np.repeat(images[:1], 40, 0), np.repeat(labels[:1], 40, 0))
    assert collapsed.ms_ssim > 0.99 > real.ms_ssim
    grey = np.clip(images + 0.3, 0, 1)
    assert sample_stats(grey, labels).background == 0.0 and sample_stats(grey, labels).brain_fraction == 1.0
    noise = (np.random.default_rng(1).random(images.shape).astype(np.float32), labels)
    assert pooled_fd((images, labels), noise) > 10 * pooled_fd((images, labels), data(n=40, seed=5))
    assert torch.is_tensor(pooled_features(images, labels))
