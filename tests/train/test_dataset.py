"""Pre-training items: DINO targets as stored, every query inside the BEV grid, ego-path labels under rotation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow.ipc as ipc
import pytest

from gasp_core.data.store import LogStore
from gasp_core.geometry import yaw_rotation
from gasp_core.models import variant
from gasp_core.targets import schema
from gasp_core.targets.ego_path import inside_footprint
from gasp_core.train.dataset import PretrainDataset, QueryCounts
from tests.train.conftest import TINY_MODEL, TINY_SCENE

COUNTS = QueryCounts(occupancy=256, ego=64, dino=64)


def dataset(inputs: dict, name: str, voxelizer=TINY_MODEL.voxelizer, **kwargs) -> PretrainDataset:
    return PretrainDataset(
        inputs["store"],
        inputs["occupancy"],
        inputs["dino"],
        TINY_SCENE,
        voxelizer,
        COUNTS,
        variant(name),
        **kwargs,
    )


def stored_features(inputs: dict, log_id: str, dim: int) -> np.ndarray:
    with ipc.open_file(inputs["dino"] / log_id / schema.DINO_POINTS_FILE) as f:
        return np.concatenate(
            [
                f.get_batch(b).column("feature").flatten().to_numpy().reshape(-1, dim)
                for b in range(f.num_record_batches)
            ]
        )


def test_dino_targets_are_the_stored_pca_features(pretrain_inputs):
    data = dataset(pretrain_inputs, "gasp")
    np.testing.assert_array_equal(data.dino_mean, 0.0)  # copied into the model: predictions in PCA units
    np.testing.assert_array_equal(data.dino_std, 1.0)
    log_id = data.samples[0][0]
    stored = {row.tobytes() for row in stored_features(pretrain_inputs, log_id, data.dino_dim)}
    for seed in range(3):
        target = data[(0, seed)]["dino_target"].numpy()
        # float16 on disk: a target is a stored feature exactly, not rescaled per dimension
        np.testing.assert_array_equal(target.astype(np.float16).astype(np.float32), target)
        assert all(row.tobytes() in stored for row in target.astype(np.float16))
    standardized = dataset(pretrain_inputs, "gasp", dino_standardize=True)
    assert (standardized.dino_std != 1.0).any()
    np.testing.assert_allclose(
        standardized[(0, 0)]["dino_target"].numpy(),
        (data[(0, 0)]["dino_target"].numpy() - standardized.dino_mean) / standardized.dino_std,
        rtol=1e-5,
    )


def test_every_query_lies_inside_the_bev_grid(pretrain_inputs):
    data = dataset(pretrain_inputs, "gasp")
    lo, hi = TINY_SCENE.box_min, TINY_SCENE.box_max
    for index in range(len(data)):
        for seed in range(12):
            item = data[(index, seed)]
            assert item["occupancy_q"].shape == (COUNTS.occupancy, 4) and item["ego_q"].shape == (COUNTS.ego, 3)
            for key, dims in (("occupancy_q", 3), ("ego_q", 2), ("dino_q", 3)):
                q = item[key].numpy()[:, :dims]
                assert ((q >= lo[:dims] - 1e-4) & (q <= hi[:dims] + 1e-4)).all(), (key, index, seed)
    assert len({float(data[(0, seed)]["rotation_rad"]) for seed in range(12)}) == 12  # rotated, a new yaw per draw
    assert float(dataset(pretrain_inputs, "gasp_no_rotation")[(0, 0)]["rotation_rad"]) == 0.0


def test_ego_path_labels_under_rotation_match_the_footprint(pretrain_inputs):
    data = dataset(pretrain_inputs, "gasp")
    store = LogStore(pretrain_inputs["store"])
    eps_m = 0.01  # float16 times (about 1 mm of travel) and float32 coordinates blur the footprint's edge
    positives = 0
    for index in range(len(data)):
        log_id, _, t0_ns, _ = data.samples[index]
        log = store.log(log_id)
        ego = log.meta.ego
        t0_T_city = np.linalg.inv(log.city_T_ego(np.array([t0_ns]))[0])
        for seed in range(6):
            item = data[(index, seed)]
            R = yaw_rotation(float(item["rotation_rad"]))[:2, :2]
            xyt = item["ego_q"].numpy().astype(np.float64)
            xy_t0 = xyt[:, :2] @ R  # un-rotate: the item holds xy_t0 @ R.T
            t0_T_ego = t0_T_city @ log.city_T_ego(t0_ns + np.round(xyt[:, 2] * 1e9).astype(np.int64))
            label = item["ego_label"].numpy().astype(bool)
            surely_in = inside_footprint(
                xy_t0,
                t0_T_ego,
                replace(
                    ego,
                    length_m=ego.length_m - 2 * eps_m,
                    width_m=ego.width_m - 2 * eps_m,
                    rear_overhang_m=ego.rear_overhang_m - eps_m,
                ),
            )
            maybe_in = inside_footprint(
                xy_t0,
                t0_T_ego,
                replace(
                    ego,
                    length_m=ego.length_m + 2 * eps_m,
                    width_m=ego.width_m + 2 * eps_m,
                    rear_overhang_m=ego.rear_overhang_m + eps_m,
                ),
            )
            assert (label[surely_in]).all() and not (label[~maybe_in]).any(), (index, seed)
            positives += int(label.sum())
    assert positives > 0


@pytest.mark.parametrize("levels", [(), (10.0, 40.0)])
def test_rotated_voxels_are_the_rotated_sweeps_voxelized(pretrain_inputs, levels):
    """Against the store's own sweeps: the input grid of a rotated draw is voxelize() of every past sweep moved to t0
    and turned by the draw's yaw (the loader's pre-filtering of points no yaw brings into the grid changes nothing),
    with and without intensity channels (the intensity travels with its point through the rotation)."""
    from gasp_core.models.voxelizer import voxelize

    vox = replace(TINY_MODEL.voxelizer, intensity_levels=levels)
    data = dataset(pretrain_inputs, "gasp", voxelizer=vox, cache_mib=64)
    store = LogStore(pretrain_inputs["store"])
    for index in range(len(data)):
        log_id, _, t0_ns, past_ns = data.samples[index]
        log = store.log(log_id)
        for seed in (0, 1, 2):
            item = data[(index, seed)]
            R = yaw_rotation(float(item["rotation_rad"]))[:2, :2]
            sweeps = [log.sweep_points_in(ts, t0_ns, intensity=True) for ts in past_ns]
            # turned as the loader's kernel turns them (no fused multiply-add): the same floats, the same cells
            turned = [
                np.column_stack(
                    [R[0, 0] * p[:, 0] + R[0, 1] * p[:, 1], R[1, 0] * p[:, 0] + R[1, 1] * p[:, 1], p[:, 2:]]
                )
                for p in sweeps
            ]
            expected = voxelize(turned, TINY_SCENE, vox)
            assert expected.any()
            if levels:  # a thermometer code: the brighter level lights a strict, non-empty subset of the dimmer's cells
                lit = expected.reshape(TINY_SCENE.past_sweeps, -1, *expected.shape[1:])[:, vox.z_bins :]
                assert (lit[:, 1] <= lit[:, 0]).all() and 0 < lit[:, 1].sum() < lit[:, 0].sum()
            got = np.unpackbits(item["voxels"].numpy(), axis=-1)[..., : expected.shape[-1]]  # bit-packed along x
            np.testing.assert_array_equal(got, expected, err_msg=f"sample {index} seed {seed}")


@pytest.mark.parametrize("name", ["gasp", "uno"])
def test_cached_draws_equal_draws_read_from_disk(pretrain_inputs, name):
    """The loader cache changes where inputs come from, never what a draw holds: every tensor of every item is
    bit-identical with and without it, on the first visit and on revisits (rotation draws differ per seed)."""
    plain, cached = dataset(pretrain_inputs, name, cache_mib=0), dataset(pretrain_inputs, name, cache_mib=64)
    items = [(i, seed) for seed in (0, 5) for i in range(len(plain))]
    for item in items + items[::-1]:
        a, b = plain[item], cached[item]
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=f"{item} {k}")
    assert cached._cache.hits > cached._cache.misses > 0
    assert plain._cache.bytes == 0  # 0 MiB caches nothing


def test_array_cache_evicts_the_least_recently_used_within_its_budget():
    from gasp_core.train.dataset import ArrayCache

    cache = ArrayCache(max_bytes=3 * 800)
    made = []

    def make(key):
        made.append(key)
        return np.zeros(100)  # 800 bytes

    for key in ("a", "b", "c", "a", "d"):  # "d" evicts "b", the least recently used ("a" was used again)
        cache.get(key, lambda k=key: make(k))
    assert made == ["a", "b", "c", "d"] and cache.bytes == 2400
    cache.get("b", lambda: make("b"))
    cache.get("a", lambda: make("a"))
    assert made == ["a", "b", "c", "d", "b"]  # "a" still cached, "b" read again
    big = cache.get("big", lambda: np.zeros(1000))  # larger than the budget: returned, not kept
    assert big.shape == (1000,) and "big" not in cache._items and cache.bytes <= 2400


@pytest.mark.parametrize("inside_fraction", [0.9, 0.05])
def test_query_draws_are_uniform_among_the_rows_inside_once_turned(pretrain_inputs, inside_fraction):
    """Whether most rows or few stay inside once turned, each allowed row inside the grid is equally likely, none
    is drawn twice in one draw, rows outside or not allowed never are, and the drawn rows come back turned."""
    from scipy.stats import chisquare

    data = dataset(pretrain_inputs, "gasp")
    R = yaw_rotation(0.5)[:2, :2]
    rng = np.random.default_rng(0)
    m, n = 1000, 20
    inside_rows = rng.random(m) < inside_fraction
    # rows placed in the t0 frame so that, once turned by R, they are inside (3 m from the origin) or outside
    radius = np.where(inside_rows, 3.0, 100.0)
    points = np.zeros((m, 4))
    points[:, :2] = (R.T @ np.vstack([radius, np.zeros(m)])).T
    allowed = rng.random(m) < 0.9
    eligible = np.flatnonzero(inside_rows & allowed)
    counts = np.zeros(m)
    for seed in range(300):
        rows, turned = data._draw(np.random.default_rng(seed), points, R, 3, n, "test", allowed)
        assert len(set(rows.tolist())) == n and np.isin(rows, eligible).all()
        np.testing.assert_allclose(turned, np.column_stack([points[rows, :2] @ R.T, points[rows, 2:]]))
        counts[rows] += 1
    assert chisquare(counts[eligible]).pvalue > 1e-4
    # with replacement only when there are fewer eligible rows than the draw
    few = np.zeros(m, bool)
    few[eligible[:5]] = True
    rows, _ = data._draw(np.random.default_rng(1), points, R, 3, n, "test", few)
    assert set(rows.tolist()) <= set(eligible[:5].tolist()) and len(rows) == n
