"""InternVL dynamic tiling and the SAM2 input: grid choice, tile order, golden bit-exactness."""

import numpy as np
import pytest
import torch
from PIL import Image

from projects.sa2va_vessel.datasets.image_processing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAM2_MEAN,
    SAM2_STD,
    dynamic_tiles,
    find_closest_aspect_ratio,
    normalise_sam2,
    normalise_tiles,
    preprocess_image,
    sam2_image_uint8,
    target_ratios,
    tiles_uint8,
)
from tests._data_support import GOLDEN_REF, requires_golden


def _grid(w: int, h: int, max_num: int = 12):
    return find_closest_aspect_ratio(w, h, target_ratios(1, max_num), 448)


def test_target_ratios_are_all_grids_up_to_max_sorted_by_area():
    ratios = target_ratios(1, 12)
    assert len(ratios) == len(set(ratios)) == sum(1 for i in range(1, 13) for j in range(1, 13) if i * j <= 12)
    areas = [c * r for c, r in ratios]
    assert areas == sorted(areas) and ratios[0] == (1, 1)
    assert all(2 <= c * r <= 4 for c, r in target_ratios(2, 4))


@pytest.mark.parametrize(
    'size, grid',
    [
        ((512, 512), (1, 1)),  # square, small: (2,2) ties but the image is too small for it
        ((1000, 1000), (3, 3)),  # square, large: ties go to the largest grid it fills > half of
        ((800, 800), (2, 2)),  # 640000 px > half of 2x2 (401408) but not of 3x3 (903168)
        ((1000, 500), (2, 1)),  # 2:1, small: (4,2) ties but needs > 802816 px
        ((2000, 1000), (4, 2)),  # 2:1, large
        ((500, 1000), (1, 2)),
        ((1344, 448), (3, 1)),
        ((448, 4000), (1, 9)),  # 0.112 is closest to 1/9
        ((5000, 300), (12, 1)),  # very wide: the widest grid available
        ((700, 500), (4, 3)),  # 1.4: 1.333 (4,3) is nearer than 1.5 (3,2)
        ((760, 500), (3, 2)),  # 1.52: 1.5 (3,2)
    ],
)
def test_grid_choice(size, grid):
    assert _grid(*size) == grid


def test_max_num_limits_the_grid():
    assert _grid(5000, 300, max_num=6) == (6, 1)
    assert _grid(1000, 1000, max_num=1) == (1, 1)


def test_tiles_are_row_major_and_thumbnail_comes_last():
    # 896x448 needs no resampling for a (2,1) grid, so tiles equal the two halves.
    arr = np.zeros((448, 896, 3), np.uint8)
    arr[:, :448] = (255, 0, 0)
    arr[:, 448:] = (0, 0, 255)
    tiles = tiles_uint8(arr)
    assert tiles.shape == (3, 448, 448, 3)
    assert np.array_equal(tiles[0], arr[:, :448]) and np.array_equal(tiles[1], arr[:, 448:])
    thumb = np.asarray(Image.fromarray(arr).resize((448, 448), Image.Resampling.BICUBIC))
    assert np.array_equal(tiles[2], thumb)
    # (1,2) grid on a tall image: first tile is the top.
    tall = np.ascontiguousarray(arr.transpose(1, 0, 2))
    t = tiles_uint8(tall)
    assert np.array_equal(t[0], tall[:448]) and np.array_equal(t[1], tall[448:])
    # 2x2: order (0,0), (1,0), (0,1), (1,1) = left-right then top-bottom.
    quad = np.zeros((896, 896, 3), np.uint8)
    for k, (y, x) in enumerate([(0, 0), (0, 448), (448, 0), (448, 448)]):
        quad[y : y + 448, x : x + 448] = k * 60
    q = tiles_uint8(quad, max_num=4)
    assert [int(q[k, 0, 0, 0]) for k in range(4)] == [0, 60, 120, 180] and len(q) == 5


def test_single_tile_has_no_thumbnail_and_use_thumbnail_false_drops_it():
    assert len(dynamic_tiles(Image.new('RGB', (300, 300)))) == 1
    assert len(dynamic_tiles(Image.new('RGB', (1000, 500)), use_thumbnail=False)) == 2


def test_sam2_constants_are_the_bf16_rounded_imagenet_constants():
    assert SAM2_MEAN == tuple(torch.tensor(IMAGENET_MEAN, dtype=torch.bfloat16).float().tolist())
    assert SAM2_STD == tuple(torch.tensor(IMAGENET_STD, dtype=torch.bfloat16).float().tolist())


def test_sam2_image_squashes_to_1024():
    out = sam2_image_uint8(np.zeros((300, 700, 3), np.uint8))
    assert out.shape == (1024, 1024, 3) and out.dtype == np.uint8


def test_preprocess_image_shapes():
    pv, gpv = preprocess_image(np.full((500, 1000, 3), 128, np.uint8))
    assert pv.shape == (3, 3, 448, 448) and pv.dtype == torch.float32
    assert gpv.shape == (3, 1024, 1024) and gpv.dtype == torch.float32


@requires_golden
def test_golden_tiles_and_sam2_image_bit_exact():
    from safetensors.torch import load_file

    ref = load_file(str(GOLDEN_REF / 'inputs.safetensors'))
    image = Image.open(GOLDEN_REF / 'test_image.png')
    tiles = tiles_uint8(image)
    g_img = sam2_image_uint8(image)
    assert tiles.shape == tuple(ref['tiles_uint8'].shape) == (1, 448, 448, 3)
    assert np.array_equal(tiles, ref['tiles_uint8'].numpy())
    assert np.array_equal(g_img, ref['g_image_uint8'].numpy())

    # Normalised tensors, as the fixture README says to recompute them (float32 throughout).
    pv, gpv = preprocess_image(image)
    expect_pv = (
        ref['tiles_uint8'].permute(0, 3, 1, 2).float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expect_g = (
        ref['g_image_uint8'].permute(2, 0, 1).float() / 255
        - torch.tensor([0.484375, 0.455078125, 0.40625]).view(3, 1, 1)
    ) / torch.tensor([0.228515625, 0.2236328125, 0.224609375]).view(3, 1, 1)
    assert torch.equal(pv, expect_pv) and torch.equal(gpv, expect_g)
    assert torch.equal(normalise_tiles(tiles), expect_pv) and torch.equal(normalise_sam2(g_img), expect_g)


def test_uint8_transport_normalises_to_the_same_bits():
    """The dataset ships uint8; the model's normalisation equals the CPU float path bit for bit."""
    from projects.sa2va_vessel.datasets.image_processing import chw_uint8, normalise_sam2_tensor, normalise_tiles_tensor

    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (2, 448, 448, 3), dtype=np.uint8)
    g_img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    raw = chw_uint8(tiles)
    assert raw.dtype == torch.uint8 and raw.shape == (2, 3, 448, 448)
    assert torch.equal(normalise_tiles_tensor(raw), normalise_tiles(tiles))
    assert torch.equal(normalise_sam2_tensor(chw_uint8(g_img)[None])[0], normalise_sam2(g_img))
    already = normalise_tiles(tiles)
    assert normalise_tiles_tensor(already) is already  # float input is taken as normalised
