"""The evaluation protocol on the simulated log: nothing from the input sweeps is scored as a forecast, semantic labels
use each query's own time, AP is scikit-learn's, occupancy is scored per query source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from sklearn.metrics import average_precision_score

from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.samples import SceneConfig
from gasp_core.data.store import LogStore
from gasp_core.models.config import VoxelizerConfig
from gasp_core.targets import schema
from gasp_core.targets.build import OccupancyLabelsConfig, build_occupancy_labels
from gasp_core.targets.ego_path import EgoPathConfig
from gasp_core.targets.occupancy import OccupancyConfig, QuerySource
from gasp_core.tasks.build import TaskLabels, build_task_labels, stored_samples
from gasp_core.tasks.config import FinetuneConfig, TaskLabelsConfig
from gasp_core.tasks.finetune import items_of
from gasp_core.tasks.labels import objects_at
from gasp_core.tasks.metrics import ap_from_histogram, average_precision, score_histogram
from gasp_core.tasks.occupancy.task import OccupancyTask
from gasp_core.tasks.semantic_occupancy.labels import semantic_occupancy

SCENE = SceneConfig(extent_m=(-20.0, 20.0, -20.0, 20.0, -3.0, 5.0), past_sweeps=2, horizon_s=0.5)
VOX = VoxelizerConfig(voxel_size_m=1.0, z_bins=4, intensity_levels=())


@pytest.fixture(scope="module")
def labelled(av2_split, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    ingest(
        IngestConfig(format="av2", root=str(av2_split.parent), split=av2_split.name, map_margin_m=200.0),
        root / "store",
        progress=False,
    )
    occ = OccupancyLabelsConfig(
        occupancy=OccupancyConfig(stride=2, occupied_per_sample=800, free_per_sample=800, missing_per_sample=400),
        ego_path=EgoPathConfig(positives_per_sample=50, near_per_sample=50, far_per_sample=20),
    )
    build_occupancy_labels(root / "store", out=root / "occupancy", scene=SCENE, cfg=occ, progress=False)
    log_id = LogStore(root / "store").log_ids[0]
    cfg = TaskLabelsConfig(
        forecast_times_s=[0.0, 0.5],
        waypoint_times_s=[0.25, 0.5],
        semantic_from_occupancy=200,
        semantic_in_boxes=40,
        render_rays=200,
    )
    build_task_labels(
        root / "store",
        root / "occupancy",
        out=root / "labels",
        scene=SCENE,
        vox=VOX,
        occ_cfg=occ,
        cfg=cfg,
        logs=[log_id],
        progress=False,
    )
    return root, log_id


def _t0_sweep_end_s(log, sample) -> float:
    return float(log.sweep(sample.t0_ns).offset_ns.max()) / 1e9


def test_depth_rays_come_from_future_sweeps_only(labelled):
    root, log_id = labelled
    log = LogStore(root / "store").log(log_id)
    arrays = TaskLabels(root / "labels").log(log_id)
    samples = stored_samples(root / "occupancy", log_id)
    assert len(arrays["ray_t"]) > 0
    for s, sample in enumerate(samples):
        t = arrays["ray_t"][arrays["ray_sample"] == s]
        first_future_s = (sample.future_ns[0] - sample.t0_ns) / 1e9
        # the t0 sweep fires over (0, 0.1 s): its rays are the model's input, never a forecast target
        assert len(t) and t.min() >= first_future_s - 1e-6 > _t0_sweep_end_s(log, sample)


def test_occupancy_is_scored_on_future_lidar_queries_only(labelled):
    root, log_id = labelled
    log = LogStore(root / "store").log(log_id)
    labels = TaskLabels(root / "labels")
    task = OccupancyTask(labels, root / "occupancy", SCENE, FinetuneConfig(device="cpu"))
    task.eval_queries = 10**6  # every stored query
    reader = ipc.open_file(pa.memory_map(str(root / "occupancy" / log_id / schema.OCCUPANCY_FILE)))
    samples = stored_samples(root / "occupancy", log_id)
    scores, truth = [], []
    for s, sample in enumerate(samples):
        b = reader.get_batch(sample.index)
        t = b.column("t_s").to_numpy().astype(np.float64)
        src = b.column("source").to_numpy()
        keep = (t > _t0_sweep_end_s(log, sample) + 1e-4) & (src != QuerySource.MISSING)
        sets = task.eval_queries_of((log_id, s))
        q, y = sets["lidar"]
        assert len(q) == keep.sum() > 0  # float16 times: the t0 sweep's last firing and the next sweep's first differ
        assert (
            len(sets["missing"][0])
            == ((t > _t0_sweep_end_s(log, sample) + 1e-4) & (src == QuerySource.MISSING)).sum()
            > 0
        )
        x = b.column("x_m").to_numpy()
        np.testing.assert_array_equal(np.sort(q[:, 0]), np.sort(x[keep].astype(np.float32)))
        # a field that calls everything close to the sensor occupied: its AP over exactly these queries
        scores.append(-np.linalg.norm(q[:, :3], axis=1))
        truth.append(y)
    ev = task._score(lambda it: lambda q: 1.0 / (1.0 + np.linalg.norm(q[:, :3], axis=1)), items_of(labels, [log_id]))
    expected = average_precision_score(np.concatenate(truth).astype(bool), np.concatenate(scores))
    assert ev.metrics["AP"] == pytest.approx(expected, abs=1e-9)
    assert 0.0 <= ev.metrics["free_rate/missing"] <= 1.0


def test_semantic_labels_use_each_querys_own_time(labelled):
    root, log_id = labelled
    log = LogStore(root / "store").log(log_id)
    t0 = int(log.sweep_timestamps_ns[2])
    checked = 0
    for t_s in (0.13, 0.27, 0.43):  # off the 0.1 s bin centres
        obj = objects_at(log, t0, t0 + int(round(t_s * 1e9)))
        later = objects_at(log, t0, t0 + int(round((t_s + 0.03) * 1e9)))
        for k, track in enumerate(obj.track_id):
            if track not in later.track_id:
                continue
            j = later.track_id.index(track)
            step = later.center[j, :2] - obj.center[k, :2]
            if np.linalg.norm(step) < 0.1:  # parked: nothing to tell apart
                continue
            # a point just inside the box's trailing edge at t_s, which the box leaves within 30 ms
            heading = np.array([np.cos(obj.yaw[k]), np.sin(obj.yaw[k])])
            back = -np.sign(step @ heading) * heading
            p = obj.center[k, :2] + back * (obj.size_lwh[k, 0] / 2 - 0.02)
            q = np.array([[p[0], p[1], obj.center[k, 2], t_s], [p[0], p[1], obj.center[k, 2], t_s + 0.03]])
            lab = semantic_occupancy(log, t0, q)
            assert lab[0] == obj.category[k] + 1, (track, t_s)
            checked += 1
    assert checked >= 3


def test_ap_is_sklearns_including_ties():
    # tied scores are one threshold: the order of the inputs must not matter
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert average_precision(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    scores = np.round(rng.uniform(size=500), 1)  # many ties
    labels = rng.uniform(size=500) < scores
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))
    assert np.isnan(average_precision(scores, np.zeros(500, bool)))


def test_histogram_ap_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.uniform(size=20000) < 0.1
    p = 1.0 / (1.0 + np.exp(-(rng.normal(size=20000) + 2.0 * y)))
    assert ap_from_histogram(score_histogram(p, y)) == pytest.approx(average_precision_score(y, p), abs=1.5e-3)
    # histograms add: the AP of two halves' summed histograms is the AP of the whole
    h = score_histogram(p[:10000], y[:10000]) + score_histogram(p[10000:], y[10000:])
    assert ap_from_histogram(h) == pytest.approx(ap_from_histogram(score_histogram(p, y)))


def test_pr_curves_take_each_inits_first_full_run_and_the_baseline():
    from gasp_core.tasks.evaluation import BASELINE, pr_curves, save_pr_curves, stats_key
    from gasp_core.tasks.metrics import pr_from_histogram

    rng = np.random.default_rng(0)

    def hist():  # (samples 3, 2, bins 64)
        return rng.integers(0, 5, size=(3, 2, 64)).astype(np.int32)

    stats = {"sample_log": np.zeros(3, np.int64)}
    for init in ("scratch", "gasp"):
        for budget in ("low", "full"):
            for run in ("pretrain_0/seed_1", "pretrain_0/seed_0"):
                stats[stats_key(init, budget, run, "hist")] = hist()
    stats[stats_key(BASELINE, "-", "-", "hist")] = hist()
    curves = pr_curves(OccupancyTask, stats, "full")
    assert set(curves) == {"scratch", "gasp", BASELINE}
    expected = pr_from_histogram(stats[stats_key("gasp", "full", "pretrain_0/seed_0", "hist")].sum(0))
    np.testing.assert_allclose(curves["gasp"][0], expected[0])
    np.testing.assert_allclose(curves["gasp"][1], expected[1])
    assert pr_curves(type("NoAP", (), {"histogram_stats": ()}), stats, "full") == {}
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        paths = save_pr_curves(Path(d), curves)
        text = Path(d, "pr_gasp.csv").read_text().splitlines()
        assert len(paths) == 3 and text[0] == "recall,precision" and len(text) == len(expected[0]) + 1


def test_dvc_pr_plots_read_what_the_evaluate_stages_write():
    import yaml

    from gasp_core.tasks.registry import TASK_CLASSES

    root = Path(__file__).resolve().parents[2]
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    params = yaml.safe_load((root / "params.yaml").read_text())
    files = {f for plot in dvc["plots"] for spec in plot.values() for f in spec["y"]}
    expected = set()
    for name, cls in TASK_CLASSES.items():
        if cls.histogram_stats:
            inits = list(params["finetune"]["inits"]) + (["baseline"] if name == "occupancy" else [])
            expected |= {f"data/eval/{name}/pr_{i}.csv" for i in inits}
    assert files == expected
