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


def dataset(inputs: dict, name: str, **kwargs) -> PretrainDataset:
    return PretrainDataset(inputs["store"], inputs["occupancy"], inputs["dino"], TINY_SCENE, TINY_MODEL.voxelizer, COUNTS,
                           variant(name), **kwargs)


def stored_features(inputs: dict, log_id: str, dim: int) -> np.ndarray:
    with ipc.open_file(inputs["dino"] / log_id / schema.DINO_POINTS_FILE) as f:
        return np.concatenate([f.get_batch(b).column("feature").flatten().to_numpy().reshape(-1, dim)
                               for b in range(f.num_record_batches)])


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
    np.testing.assert_allclose(standardized[(0, 0)]["dino_target"].numpy(),
                               (data[(0, 0)]["dino_target"].numpy() - standardized.dino_mean) / standardized.dino_std, rtol=1e-5)


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
            surely_in = inside_footprint(xy_t0, t0_T_ego, replace(ego, length_m=ego.length_m - 2 * eps_m,
                                                                  width_m=ego.width_m - 2 * eps_m,
                                                                  rear_overhang_m=ego.rear_overhang_m - eps_m))
            maybe_in = inside_footprint(xy_t0, t0_T_ego, replace(ego, length_m=ego.length_m + 2 * eps_m,
                                                                 width_m=ego.width_m + 2 * eps_m,
                                                                 rear_overhang_m=ego.rear_overhang_m + eps_m))
            assert (label[surely_in]).all() and not (label[~maybe_in]).any(), (index, seed)
            positives += int(label.sum())
    assert positives > 0
