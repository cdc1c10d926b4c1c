"""Sample windows: the inputs are the sweeps up to and including t0, the targets the sweeps after it.

The expected windows are recomputed here from the log's sweep times alone (never through ``select_samples``), so a
window shifted by one sweep, into the future or the past, fails every test below.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gasp_core.data.samples import SceneConfig, select_samples
from gasp_core.data.store import LogStore
from gasp_core.models import variant
from gasp_core.models.voxelizer import voxelize
from gasp_core.targets.build import OccupancyLabelsConfig
from gasp_core.tasks.build import label_log, stored_samples
from gasp_core.tasks.config import TaskLabelsConfig
from gasp_core.train.dataset import PretrainDataset, QueryCounts
from tests.train.conftest import TINY_MODEL, TINY_SCENE


def expected_window(
    sweep_ns: np.ndarray, t0_ns: int, scene: SceneConfig, tol_ns: int = 20_000_000
) -> tuple[list, list]:
    """(past, future) timestamps of t0's sample by definition: the past_sweeps newest sweeps at or before t0, and
    every sweep in (t0, t0 + horizon] (the horizon's end matched within select_samples' default tolerance)."""
    sweep_ns = np.sort(np.asarray(sweep_ns, np.int64))
    past = sweep_ns[sweep_ns <= t0_ns][-scene.past_sweeps :]
    horizon_ns = int(round(scene.horizon_s * 1e9))
    future = sweep_ns[(sweep_ns > t0_ns) & (sweep_ns <= t0_ns + horizon_ns + tol_ns)]
    return [int(t) for t in past], [int(t) for t in future]


def check_window(past_ns, future_ns, t0_ns: int, sweep_ns: np.ndarray, scene: SceneConfig) -> None:
    past_ns, future_ns = [int(t) for t in past_ns], [int(t) for t in future_ns]
    assert len(past_ns) == scene.past_sweeps
    assert past_ns[-1] == t0_ns, "the newest input sweep is t0's"
    assert all(t <= t0_ns for t in past_ns), "an input sweep lies after t0"
    assert past_ns == sorted(past_ns) and len(set(past_ns)) == len(past_ns)
    assert future_ns and all(t0_ns < t <= t0_ns + int(round(scene.horizon_s * 1e9)) + 20_000_000 for t in future_ns)
    assert (past_ns, future_ns) == expected_window(sweep_ns, t0_ns, scene)


@pytest.mark.parametrize("past_sweeps, stride", [(1, 1), (2, 3), (5, 2)])
def test_select_samples_windows_on_jittered_sweeps(past_sweeps, stride):
    rng = np.random.default_rng(past_sweeps)
    sweep_ns = (np.arange(40) * 100_000_000 + rng.integers(-1_000_000, 1_000_000, 40)).astype(np.int64)  # 100 +- 1 ms
    scene = SceneConfig(past_sweeps=past_sweeps, horizon_s=0.8)
    samples = select_samples(sweep_ns, scene, stride)
    assert samples
    assert samples[0].index == past_sweeps - 1  # the first t0 with a full history
    for s in samples:
        assert s.t0_ns == sweep_ns[s.index]
        check_window(s.past_ns, s.future_ns, s.t0_ns, sweep_ns, scene)
    assert sweep_ns[-1] >= samples[-1].t0_ns + 800_000_000 - 20_000_000  # a full horizon after the last t0


def test_pretrain_dataset_inputs_are_exactly_the_past_sweeps(pretrain_inputs):
    """Every sample's window, and its voxels: voxelize() of exactly the past sweeps (no rotation, so comparable)."""
    data = PretrainDataset(
        pretrain_inputs["store"],
        pretrain_inputs["occupancy"],
        pretrain_inputs["dino"],
        TINY_SCENE,
        TINY_MODEL.voxelizer,
        QueryCounts(occupancy=16, ego=8, dino=8),
        variant("gasp_no_rotation"),
    )
    store = LogStore(pretrain_inputs["store"])
    assert len(data) >= 2
    for index, (log_id, _, t0_ns, past_ns) in enumerate(data.samples):
        log = store.log(log_id)
        sweep_ns = np.asarray(log.sweep_timestamps_ns)
        past, future = expected_window(sweep_ns, t0_ns, TINY_SCENE)
        stored = {s.t0_ns: s for s in stored_samples(pretrain_inputs["occupancy"], log_id)}[t0_ns]
        check_window(past_ns, stored.future_ns, t0_ns, sweep_ns, TINY_SCENE)
        expected = voxelize([log.sweep_points_in(ts, t0_ns) for ts in past], TINY_SCENE, TINY_MODEL.voxelizer)
        packed = data[(index, 0)]["voxels"].numpy()  # bit-packed along x
        got = np.unpackbits(packed, axis=-1)[..., : expected.shape[-1]]
        assert packed.shape[-1] == -(-expected.shape[-1] // 8) and expected.any()
        np.testing.assert_array_equal(got, expected)
        # the t0 sweep is the last input block: a window shifted by one sweep changes it
        z = TINY_MODEL.voxelizer.z_bins
        t0_only = voxelize(
            [log.sweep_points_in(t0_ns, t0_ns)], replace(TINY_SCENE, past_sweeps=1), TINY_MODEL.voxelizer
        )
        np.testing.assert_array_equal(got[-z:], t0_only)


def test_task_label_voxels_are_the_past_sweeps(pretrain_inputs):
    store = LogStore(pretrain_inputs["store"])
    log = store.log(store.log_ids[0])
    sweep_ns = np.asarray(log.sweep_timestamps_ns)
    cfg = TaskLabelsConfig(
        forecast_times_s=[0.0, 0.5], waypoint_times_s=[0.5], semantic_from_occupancy=50, semantic_in_boxes=20
    )
    labels = label_log(
        log,
        pretrain_inputs["occupancy"],
        TINY_SCENE,
        TINY_MODEL.voxelizer,
        OccupancyLabelsConfig(),
        cfg,
        with_rays=False,
    )
    samples = stored_samples(pretrain_inputs["occupancy"], log.log_id)
    assert len(labels["voxels"]) == len(samples) >= 2
    shape = (TINY_SCENE.past_sweeps * TINY_MODEL.voxelizer.z_bins, 40, 40)
    for packed, s in zip(labels["voxels"], samples):
        check_window(s.past_ns, s.future_ns, s.t0_ns, sweep_ns, TINY_SCENE)
        past, _ = expected_window(sweep_ns, s.t0_ns, TINY_SCENE)
        expected = voxelize([log.sweep_points_in(ts, s.t0_ns) for ts in past], TINY_SCENE, TINY_MODEL.voxelizer)
        assert expected.shape == shape
        np.testing.assert_array_equal(np.unpackbits(packed)[: expected.size].reshape(shape), expected.astype(np.uint8))
    # ego_past times are the input sweeps' times relative to t0: <= 0, ending at 0
    for ego_past in labels["ego_past"]:
        assert ego_past[-1, 2] == 0.0 and (ego_past[:, 2] <= 0).all()


@pytest.mark.parametrize("last_s, kept", [(1.0, True), (0.98, True), (0.97999, False)])
def test_the_last_window_is_kept_exactly_when_its_horizon_is_covered(last_s, kept):
    """Sweeps every 0.1 s up to ``last_s``; horizon 0.5 s matched within 20 ms: t0 = 0.5 s has a full future when the
    last sweep is at or after 0.98 s (to the nanosecond), and is then the last sample."""
    sweep_ns = np.r_[np.arange(10) * 100_000_000, round(last_s * 1e9)].astype(np.int64)
    samples = select_samples(sweep_ns, SceneConfig(past_sweeps=2, horizon_s=0.5), stride=1)
    assert (samples[-1].t0_ns == 500_000_000) == kept
    assert [s.t0_ns for s in samples][:4] == [100_000_000, 200_000_000, 300_000_000, 400_000_000]


def test_a_sweep_at_the_horizon_tolerance_is_in_the_future_window():
    """The future window is (t0, t0 + horizon + 20 ms], closed at its end: a sweep exactly there belongs to it."""
    sweep_ns = np.r_[np.arange(10) * 100_000_000, 920_000_000].astype(np.int64)
    (first, *_) = select_samples(sweep_ns, SceneConfig(past_sweeps=5, horizon_s=0.5), stride=1)
    assert first.t0_ns == 400_000_000 and first.future_ns[-1] == 920_000_000
