"""Model building blocks on synthetic tensors: voxelizer cells, decoder sampling, head shapes per variant, safe loading."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from gasp_core.data.samples import SceneConfig
from gasp_core.models import GaspModel, LossConfig, load_pretrained, variant
from gasp_core.models.implicit_decoder import FourierEncoding, sample_bev
from gasp_core.models.losses import pretrain_losses
from gasp_core.models.voxelizer import channels, grid_shape, height_bins, voxelize
from tests.train.conftest import TINY_MODEL, TINY_SCENE


def test_voxelizer_puts_points_in_exact_cells():
    scene = SceneConfig(extent_m=(-4.0, 4.0, -2.0, 2.0, 0.0, 4.0), past_sweeps=2, horizon_s=1.0)
    cfg = TINY_MODEL.voxelizer  # 1 m cells, 4 z bins of 1 m
    assert grid_shape(scene, cfg) == (4, 8)
    older = np.array([[-3.5, -1.5, 0.5], [100.0, 0.0, 0.5]])  # the second lies outside the extent
    t0 = np.array([[3.9, 1.9, 3.9], [0.0, 0.0, 2.0]])
    grid = voxelize([older, t0], scene, cfg)
    assert grid.shape == (8, 4, 8) and grid.sum() == 3
    assert grid[0, 0, 0] == 1  # sweep 0, z bin 0, row y=-1.5 -> 0, column x=-3.5 -> 0
    assert grid[4 + 3, 3, 7] == 1  # sweep 1, z bin 3, last row and column
    assert grid[4 + 2, 2, 4] == 1  # (0, 0, 2): row 2, column 4, z bin 2


def test_voxelizer_intensity_levels_code_the_brightest_ground_return():
    scene = SceneConfig(extent_m=(-4.0, 4.0, -2.0, 2.0, 0.0, 4.0), past_sweeps=1, horizon_s=1.0)
    cfg = replace(TINY_MODEL.voxelizer, intensity_levels=(10.0, 50.0), intensity_max_z_m=0.5)
    pts = np.array(
        [
            [-3.5, -1.5, 0.2, 60.0],  # bright paint: both levels
            [-3.4, -1.4, 0.3, 5.0],  # same cell, dim: the brightest return counts
            [0.5, 0.5, 0.1, 20.0],  # sidewalk: the first level only
            [1.5, 0.5, 0.2, 9.9],  # asphalt: below every level
            [2.5, 0.5, 2.5, 200.0],  # bright but high (a vehicle): height bin only
            [2.5, 1.5, 0.5, 10.0],  # exactly at the height limit and the first level
        ]
    )
    grid = voxelize([pts], scene, cfg)
    assert grid.shape == (4 + 2, 4, 8)
    np.testing.assert_array_equal(grid[:4], voxelize([pts[:, :3]], scene, TINY_MODEL.voxelizer))
    lit_low = {(int(r), int(c)) for r, c in zip(*np.nonzero(grid[4]))}
    lit_high = {(int(r), int(c)) for r, c in zip(*np.nonzero(grid[5]))}
    assert lit_low == {(0, 0), (2, 4), (3, 6)}
    assert lit_high == {(0, 0)}
    with pytest.raises(ValueError, match=r"need \(N, 4\) points"):
        voxelize([pts[:, :3]], scene, cfg)


def test_height_bins_pick_one_sweeps_occupancy_out_of_intensity_channels():
    scene = SceneConfig(extent_m=(-4.0, 4.0, -2.0, 2.0, 0.0, 4.0), past_sweeps=2, horizon_s=1.0)
    cfg = replace(TINY_MODEL.voxelizer, intensity_levels=(10.0, 50.0))
    rng = np.random.default_rng(0)
    sweeps = [
        np.column_stack([rng.uniform(-4, 4, 50), rng.uniform(-2, 2, 50), rng.uniform(0, 4, 50), rng.uniform(0, 99, 50)])
        for _ in range(2)
    ]
    grid = voxelize(sweeps, scene, cfg)
    plain = voxelize([s[:, :3] for s in sweeps], scene, TINY_MODEL.voxelizer)  # (2 * 4, H, W)
    np.testing.assert_array_equal(height_bins(grid, 4, 2), plain[4:])  # the newest sweep by default
    np.testing.assert_array_equal(height_bins(grid, 4, 2, sweep=0), plain[:4])
    np.testing.assert_array_equal(height_bins(plain, 4), plain[4:])


def test_sample_bev_reads_cell_centres():
    bev = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4)  # value = row * 4 + column
    # cell (row 1, column 2) has its centre at normalised x = -1 + (2 * 2 + 1) / 4, y = -1 + (2 * 1 + 1) / 3
    xy = torch.tensor([[[-1 + 5 / 4, -1 + 3 / 3], [-1 + 1 / 4, -1 + 1 / 3]]])
    np.testing.assert_allclose(sample_bev(bev, xy)[0, :, 0].numpy(), [6.0, 0.0], atol=1e-6)


def test_fourier_encoding():
    pe = FourierEncoding(2, 3)
    out = pe(torch.tensor([[0.25, 0.5]]))
    assert out.shape == (1, 2 * 7) and pe.out_dim == 14
    np.testing.assert_allclose(out[0, :2].numpy(), [0.25, 0.5])
    np.testing.assert_allclose(out[0, 2].item(), np.sin(np.pi * 0.25), atol=1e-6)


@pytest.mark.parametrize(
    "name, heads",
    [
        ("uno", {"occupancy_logits"}),
        ("uno_enhanced", {"occupancy_logits"}),
        ("gasp", {"occupancy_logits", "ego_logits", "dino"}),
        ("gasp_no_ego", {"occupancy_logits", "dino"}),
        ("gasp_no_dino", {"occupancy_logits", "ego_logits"}),
    ],
)
def test_heads_and_shapes_per_variant(name, heads):
    model = GaspModel(TINY_SCENE, TINY_MODEL, variant(name), dino_dim=8)
    vox = torch.rand(2, 8, 40, 40)
    q = torch.rand(2, 100, 4) * 10
    out = model(vox, q, q[..., [0, 1, 3]], q)
    assert set(out) - {"bev"} == heads
    assert out["bev"].shape == (2, 16, 20, 20)
    assert out["occupancy_logits"].shape == (2, 100)
    if "dino" in out:
        assert out["dino"].shape == (2, 100, 8)
    batch = {
        "occupancy_label": torch.ones(2, 100),
        "ego_label": torch.zeros(2, 100),
        "dino_target": torch.randn(2, 100, 8),
    }
    losses = pretrain_losses(out, batch, LossConfig())
    assert set(losses) == {"total"} | {k.removesuffix("_logits") for k in heads}
    losses["total"].backward()


def test_variants_form_the_papers_ladder():
    uno = variant("uno")  # UnO alone: occupancy without GASP's rotation augmentation or missing-ray supervision
    assert asdict(uno) == {
        "occupancy": True,
        "ego": False,
        "dino": False,
        "rotation_augmentation": False,
        "missing_rays": False,
        "teacher": "teacher",
    }
    enhanced, gasp = variant("uno_enhanced"), variant("gasp")
    assert asdict(enhanced) == {**asdict(uno), "rotation_augmentation": True, "missing_rays": True}
    assert all(asdict(gasp).values())
    for lower, upper in ((uno, enhanced), (enhanced, gasp)):  # each rung keeps everything below and adds to it
        on_lower = {k for k, v in asdict(lower).items() if v}
        on_upper = {k for k, v in asdict(upper).items() if v}
        assert on_lower < on_upper
    assert not variant("scratch").trains
    # the oracle-teacher control is GASP with only its DINO targets' source changed
    assert asdict(variant("gasp_oracle")) == {**asdict(gasp), "teacher": "oracle"}
    for name in ("gasp_no_ego", "gasp_no_dino", "gasp_no_rotation", "gasp_no_missing_rays"):
        assert sum(v is True for v in asdict(variant(name)).values()) == 4


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown pre-training variant"):
        variant("gasp_plus_magic")


def test_save_and_load_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    model = GaspModel(TINY_SCENE, TINY_MODEL, variant("gasp"), dino_dim=8).eval()
    model.dino_std.fill_(2.0)
    model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)
    sweeps = [np.random.default_rng(k).uniform(-15, 15, (500, 3)) for k in range(2)]
    xyzt = np.random.default_rng(5).uniform([-15, -15, -2, 0], [15, 15, 4, 0.5], (50, 4))
    a, b = model.query(sweeps, xyzt), loaded.query(sweeps, xyzt)
    assert set(a) == {"occupancy", "ego", "dino"}
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert ((a["occupancy"] >= 0) & (a["occupancy"] <= 1)).all() and a["dino"].shape == (50, 8)
    # the weights are safetensors: no pickle anywhere; a config with an unknown key is refused
    assert (tmp_path / "model.safetensors").read_bytes()[:8] != b"\x80\x04\x95"
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model"]["encoder"]["wdith"] = 3
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="wdith"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("width", [16, 13])
def test_unpack_bits_inverts_numpy_packbits_and_the_model_takes_packed_voxels(width):
    """Bit-packed voxels (the pre-training loader's) unpack to the grid, high bit first, for a width that 8 does
    not divide too; the model gives the same output for the packed and the unpacked grid."""
    from gasp_core.models.voxelizer import unpack_bits

    rng = np.random.default_rng(width)
    grid = (rng.random((2, 3, 5, width)) < 0.3).astype(np.uint8)
    packed = torch.from_numpy(np.packbits(grid, axis=-1))
    np.testing.assert_array_equal(unpack_bits(packed, width).numpy(), grid.astype(np.float32))
    with pytest.raises(ValueError, match="bit-packed voxels"):
        unpack_bits(packed, width + 8)

    scene = SceneConfig(extent_m=(-10.0, 10.0, -8.0, 8.0, -2.0, 4.0), past_sweeps=1, horizon_s=0.5)
    model = GaspModel(scene, TINY_MODEL, variant("uno")).eval()
    shape = (2, channels(scene, TINY_MODEL.voxelizer), *grid_shape(scene, TINY_MODEL.voxelizer))
    voxels = (rng.random(shape) < 0.2).astype(np.uint8)
    q = torch.zeros(2, 4, 4)
    with torch.no_grad():
        plain = model(torch.from_numpy(voxels), q)["occupancy_logits"]
        packed_out = model(torch.from_numpy(np.packbits(voxels, axis=-1)), q)["occupancy_logits"]
    torch.testing.assert_close(packed_out, plain, rtol=0, atol=0)


def test_voxelize_and_the_turned_scatter_match_a_plain_numpy_voxelizer():
    """Against a NumPy voxelizer written out here: random points (some NaN, some outside) on a grid 13 cells wide (the
    packed last byte half used), height bins and intensity levels, unturned and turned by a yaw."""
    from gasp_core.geometry import yaw_rotation
    from gasp_core.models.voxelizer import scatter_packed, voxel_codes

    scene = SceneConfig(extent_m=(-6.5, 6.5, -4.0, 4.0, -1.0, 3.0), past_sweeps=2, horizon_s=0.5)
    cfg = replace(TINY_MODEL.voxelizer, intensity_levels=(20.0, 50.0), intensity_max_z_m=0.5)
    rows, cols = grid_shape(scene, cfg)
    assert cols == 13
    rng = np.random.default_rng(3)
    sweeps = []
    for _ in range(2):
        p = np.column_stack([rng.uniform(-9, 9, (3000, 2)), rng.uniform(-2, 4, 3000), rng.uniform(0, 100, 3000)])
        p[::97, 0] = np.nan
        p[::89, 2] = np.nan
        sweeps.append(p)

    def plain(points_per_sweep):
        per = cfg.z_bins + 2
        grid = np.zeros((2 * per, rows, cols), np.float32)
        for k, p in enumerate(points_per_sweep):
            with np.errstate(invalid="ignore"):
                ix = np.floor((p[:, 0] + 6.5) / cfg.voxel_size_m)
                iy = np.floor((p[:, 1] + 4.0) / cfg.voxel_size_m)
                iz = np.floor((p[:, 2] + 1.0) / (4.0 / cfg.z_bins))
                ok = (ix >= 0) & (ix < cols) & (iy >= 0) & (iy < rows) & (iz >= 0) & (iz < cfg.z_bins)
                for i in np.flatnonzero(ok):
                    r, c = int(iy[i]), int(ix[i])
                    grid[k * per + int(iz[i]), r, c] = 1
                    if p[i, 2] <= 0.5:
                        for lvl, level in enumerate((20.0, 50.0)):
                            if p[i, 3] >= level:
                                grid[k * per + cfg.z_bins + lvl, r, c] = 1
        return grid

    np.testing.assert_array_equal(voxelize(sweeps, scene, cfg), plain(sweeps))
    R = yaw_rotation(0.8)[:2, :2]
    turned = [
        np.column_stack([R[0, 0] * p[:, 0] + R[0, 1] * p[:, 1], R[1, 0] * p[:, 0] + R[1, 1] * p[:, 1], p[:, 2:]])
        for p in sweeps
    ]
    packed = scatter_packed(voxel_codes(sweeps, scene, cfg), scene, cfg, R)
    assert packed.shape == (2 * (cfg.z_bins + 2), rows, 2)
    expected = plain(turned)
    assert expected.sum() > 500
    np.testing.assert_array_equal(np.unpackbits(packed, axis=-1)[..., :cols], expected)
    assert not np.unpackbits(packed, axis=-1)[..., cols:].any()  # the padding bits stay clear


def test_packed_voxels_equal_numpy_packbits_byte_for_byte_on_a_width_divisible_by_8():
    """Both production grids are 128 cells wide, a multiple of 8: the packed grid must be exactly
    ``np.packbits(grid, axis=-1)`` there (an off-by-one in the packed width would otherwise surface only deep in the
    model), with the grid from a plain loop over the points."""
    from gasp_core.models.voxelizer import scatter_packed, voxel_codes

    scene = SceneConfig(extent_m=(-8.0, 8.0, -4.0, 4.0, -1.0, 3.0), past_sweeps=1, horizon_s=0.5)
    cfg = replace(TINY_MODEL.voxelizer, voxel_size_m=1.0, intensity_levels=())
    rows, cols = grid_shape(scene, cfg)
    assert cols == 16 and cols % 8 == 0
    rng = np.random.default_rng(5)
    p = np.column_stack([rng.uniform(-9, 9, (2000, 2)), rng.uniform(-2, 4, 2000), rng.uniform(0, 100, 2000)])
    grid = np.zeros((cfg.z_bins, rows, cols), np.uint8)
    for x, y, z, _ in p:
        ix, iy, iz = int(np.floor(x + 8.0)), int(np.floor(y + 4.0)), int(np.floor((z + 1.0) / (4.0 / cfg.z_bins)))
        if 0 <= ix < cols and 0 <= iy < rows and 0 <= iz < cfg.z_bins:
            grid[iz, iy, ix] = 1
    packed = scatter_packed(voxel_codes([p], scene, cfg), scene, cfg)
    assert packed.shape == (cfg.z_bins, rows, cols // 8) and grid.sum() > 100
    assert packed.tobytes() == np.packbits(grid, axis=-1).tobytes()
