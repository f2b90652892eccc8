"""The saliency gallery: a PNG of rows × (2 + models) panels, 2D and 3D; mismatched shapes refused."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import image as mpimg

from synthmed.classify.gallery import saliency_gallery
from synthmed.errors import SynthmedError


def sample_set(n: int, spatial: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, 2, *spatial)).astype(np.float32)
    masks = np.zeros((n, *spatial), np.uint8)
    masks[(slice(0, n - 1), *(slice(s // 4, s // 2) for s in spatial))] = 2  # the last sample has no tumour
    maps = {"standard": rng.random((n, *spatial)), "dual-bn": rng.random((n, *spatial))}
    return images, masks, maps


@pytest.mark.parametrize("spatial", [(16, 16), (8, 16, 16)])
def test_gallery_writes_a_png_of_rows_by_columns(tmp_path, spatial):
    images, masks, maps = sample_set(3, spatial)
    path = saliency_gallery(images, masks, maps, tmp_path / "sub" / "gallery.png", channel=1, title="presence")
    assert path == tmp_path / "sub" / "gallery.png"
    png = mpimg.imread(path)
    height, width = png.shape[:2]
    assert height / width == pytest.approx(3 / 4, rel=0.2)  # 3 rows, image + mask + 2 models
    one = mpimg.imread(saliency_gallery(images[:1], masks[:1], {"standard": maps["standard"][:1]}, tmp_path / "one.png"))
    assert one.shape[0] / one.shape[1] == pytest.approx(1 / 3, rel=0.2)
    assert one.shape[0] < height and one.shape[1] < width


def test_gallery_without_maps_shows_image_and_mask(tmp_path):
    images, masks, _ = sample_set(2, (8, 12, 12))
    png = mpimg.imread(saliency_gallery(images, masks, {}, tmp_path / "g.png"))
    assert png.shape[0] / png.shape[1] == pytest.approx(1.0, rel=0.2)


def test_gallery_refuses_shapes_that_do_not_match(tmp_path):
    images, masks, maps = sample_set(2, (16, 16))
    with pytest.raises(SynthmedError, match="'dual-bn'"):
        saliency_gallery(images, masks, {**maps, "dual-bn": maps["dual-bn"][:, :8]}, tmp_path / "g.png")
    with pytest.raises(SynthmedError, match="masks"):
        saliency_gallery(images, masks[:1], maps, tmp_path / "g.png")
    with pytest.raises(SynthmedError, match="channel"):
        saliency_gallery(images, masks, maps, tmp_path / "g.png", channel=2)
    assert not (tmp_path / "g.png").exists()
