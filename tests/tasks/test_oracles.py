"""Every task's evaluation scores a head that returns the truth perfectly and one that returns its negation badly;
depth rendering finds an analytic field's 0.5 crossing exactly.

The labels are hand-made (random blobs, paths and queries); the oracle heads read them back from the arrays this
file wrote, mapping each query to its label on their own (never through the task's query code)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

from gasp_core.data.samples import SceneConfig
from gasp_core.targets import schema
from gasp_core.targets.occupancy import QuerySource
from gasp_core.tasks.build import MANIFEST, TaskLabels
from gasp_core.tasks.config import FinetuneConfig, TaskLabelsConfig
from gasp_core.tasks.finetune import items_of, make_task
from gasp_core.tasks.forecast.task import ForecastTask
from gasp_core.tasks.map.task import MapTask
from gasp_core.tasks.occupancy.task import OccupancyTask
from gasp_core.tasks.semantic_occupancy.labels import SEMANTIC_CLASSES
from gasp_core.tasks.semantic_occupancy.task import SemanticOccupancyTask
from gasp_core.tasks.trajectory.task import TrajectoryTask

# not square, so a swap of rows and columns cannot pass unnoticed
SCENE = SceneConfig(extent_m=(-16.0, 16.0, -12.0, 12.0, -2.0, 4.0), past_sweeps=2, horizon_s=3.0)
ROWS, COLS = 24, 32  # 1 m cells
F_TIMES = [0.0, 1.0, 3.0]
WP_TIMES = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
LOGS = {"a": 3, "b": 2}
EGO = (4.5, 2.0, 1.0)  # length, width, rear overhang


def _blobs(rng, shape, n=4, size=(2, 6)) -> np.ndarray:
    out = np.zeros(shape, bool)
    for _ in range(n):
        h, w = rng.integers(*size, size=2)
        r, c = rng.integers(0, shape[0] - h), rng.integers(0, shape[1] - w)
        out[r : r + h, c : c + w] = True
    return out


def _write(root: Path, rng: np.random.Generator) -> dict:
    """Labels (and stored occupancy queries) of LOGS; returns the raw arrays per log for the oracles."""
    (root / "labels").mkdir(parents=True)
    raw = {}
    for log_id, n in LOGS.items():
        forecast = np.stack([[[_blobs(rng, (ROWS, COLS)) for _ in range(3)] for _ in F_TIMES] for _ in range(n)])
        maps = np.stack([[_blobs(rng, (ROWS, COLS), n=6, size=(1, 8)) for _ in range(4)] for _ in range(n)])
        speed = rng.uniform(3.0, 10.0, n)
        wp_t, past_t = np.array(WP_TIMES), np.array([-0.1, 0.0])
        curve = rng.normal(0.0, 0.5, n)
        waypoints = np.stack([np.column_stack([v * wp_t, c * wp_t**2]) for v, c in zip(speed, curve)]).astype(
            np.float32
        )
        ego_past = np.stack([np.column_stack([v * past_t, np.zeros(2), past_t]) for v in speed]).astype(np.float32)
        # a box on the true path at waypoint 3 (1 m ahead of the rear axle) for the first sample, none elsewhere
        wp = waypoints[0, 3]
        boxes = np.array([[0, 3, wp[0] + 1.0, wp[1], 0.0, 2.0, 1.0]], np.float32)
        # semantic queries: random points and classes
        sem_n = 40 * n
        sem_xyzt = np.column_stack(
            [rng.uniform(-15, 15, (sem_n, 2)), rng.uniform(-1, 3, sem_n), rng.uniform(0, 3, sem_n)]
        ).astype(np.float32)
        sem_class = rng.integers(0, len(SEMANTIC_CLASSES), sem_n).astype(np.int8)
        sem_sample = np.repeat(np.arange(n), 40).astype(np.int32)
        arrays = {
            "voxels": np.packbits(np.zeros((n, 4, ROWS, COLS), bool).reshape(n, -1), axis=1),
            "forecast": np.packbits(forecast.reshape(n, -1), axis=1),
            "map": np.packbits(maps.reshape(n, -1), axis=1),
            "waypoints": waypoints,
            "ego_past": ego_past,
            "boxes": boxes,
            "ego_dims": np.array(EGO, np.float32),
            "t0_ns": np.arange(n, dtype=np.int64),
            "sem_xyzt": sem_xyzt,
            "sem_class": sem_class,
            "sem_sample": sem_sample,
            "ray_origin": np.zeros((0, 3), np.float32),
            "ray_dir": np.zeros((0, 3), np.float32),
            "ray_t": np.zeros(0, np.float32),
            "ray_range": np.zeros(0, np.float32),
            "ray_sample": np.zeros(0, np.int32),
            "occ_t_min": np.full(n, 0.1, np.float32),
        }
        np.savez(root / "labels" / f"{log_id}.npz", **arrays)
        # stored occupancy queries, one batch per sample: returns and free space (some before t0's sweep ends),
        # and missing-ray queries (free)
        occ_dir = root / "occupancy" / log_id
        occ_dir.mkdir(parents=True)
        batches, occ_raw, occ_source = [], [], []
        for s in range(n):
            m = 300
            q = np.column_stack([rng.uniform(-15, 15, (m, 2)), rng.uniform(-1, 3, m), rng.uniform(0, 3, m)]).astype(
                np.float32
            )
            src = rng.choice([QuerySource.RETURN, QuerySource.FREE, QuerySource.MISSING], m, p=[0.3, 0.5, 0.2]).astype(
                np.uint8
            )
            occupied = (src == QuerySource.RETURN).astype(np.uint8)
            batches.append(
                pa.record_batch(
                    {
                        "x_m": q[:, 0],
                        "y_m": q[:, 1],
                        "z_m": q[:, 2],
                        "t_s": q[:, 3],
                        "occupied": occupied,
                        "source": src,
                    }
                )
            )
            occ_raw.append((q, occupied))
            occ_source.append(src)
        with (
            pa.OSFile(str(occ_dir / schema.OCCUPANCY_FILE), "wb") as sink,
            pa.ipc.new_file(sink, batches[0].schema) as w,
        ):
            for b in batches:
                w.write_batch(b)
        raw[log_id] = {
            "forecast": forecast,
            "map": maps,
            "waypoints": waypoints,
            "occ": occ_raw,
            "occ_source": occ_source,
            "sem": (sem_xyzt, sem_class, sem_sample),
        }
    cfg = TaskLabelsConfig(
        bev_resolution_m=1.0, forecast_times_s=F_TIMES, map_resolution_m=1.0, waypoint_times_s=WP_TIMES
    )
    manifest = {
        "logs": LOGS,
        "config": cfg.__dict__,
        "voxel_shape": [4, ROWS, COLS],
        "forecast_shape": [len(F_TIMES), 3, ROWS, COLS],
        "map_shape": [4, ROWS, COLS],
        "voxelizer": {"voxel_size_m": 1.0, "z_bins": 2},
    }
    (root / "labels" / MANIFEST).write_text(json.dumps(manifest))
    return raw


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracles")
    raw = _write(root, np.random.default_rng(7))
    labels = TaskLabels(root / "labels")
    items = items_of(labels, list(LOGS))

    def task(name):
        return make_task(name, labels, root / "occupancy", SCENE, FinetuneConfig(device="cpu"))

    def bev_of(its):  # the "features" of an item: its index, so the oracle heads know whose labels to return
        assert len(its) == 1
        return torch.tensor([[float(items.index(its[0]))]])

    return raw, items, task, bev_of


class _Oracle(nn.Module):
    """Logits +-20 from the truth (``sign`` -1: the negated truth)."""

    def __init__(self, raw, items, sign=1.0):
        super().__init__()
        self.raw, self.items, self.sign = raw, items, sign
        self.dummy = nn.Parameter(torch.zeros(1))

    def item(self, bev):
        return self.items[int(bev[0, 0])]

    def logits(self, truth: np.ndarray) -> np.ndarray:
        return self.sign * np.where(truth, 20.0, -20.0)


class _ForecastOracle(_Oracle):
    def forward(self, bev, q):
        log_id, s = self.item(bev)
        q = q[0].numpy().astype(np.float64)
        col = np.floor(q[:, 0] + 16.0).astype(int)
        row = np.floor(q[:, 1] + 12.0).astype(int)
        k = np.array([F_TIMES.index(t) for t in np.round(q[:, 2], 6)])
        y = self.raw[log_id]["forecast"][s][k, :, row, col]  # (N, 3)
        return torch.from_numpy(self.logits(y))[None].float()


class _MapOracle(_Oracle):
    def forward(self, bev):
        log_id, s = self.item(bev)
        return torch.from_numpy(self.logits(self.raw[log_id]["map"][s]))[None].float()


class _TrajectoryOracle(_Oracle):
    def __init__(self, raw, items, odometry=1.0, blind=1.0):
        super().__init__(raw, items)
        self.signs = {"odometry": odometry, "blind": blind}

    def forward(self, bev, past):
        log_id, s = self.item(bev)
        wp = torch.from_numpy(self.raw[log_id]["waypoints"][s].astype(np.float32))
        return {part: (sign * wp)[None] for part, sign in self.signs.items()}


class _SemanticOracle(_Oracle):
    def forward(self, bev, q):
        log_id, s = self.item(bev)
        xyzt, cls, sample = self.raw[log_id]["sem"]
        lookup = {row.tobytes(): c for row, c in zip(xyzt[sample == s], cls[sample == s])}
        y = np.array([lookup.get(row.tobytes(), 0) for row in q[0].numpy().astype(np.float32)])
        onehot = np.eye(len(SEMANTIC_CLASSES), dtype=bool)[y]
        return torch.from_numpy(self.logits(onehot))[None].float()


def test_forecast_oracle(world):
    raw, items, task, bev_of = world
    t = task("forecast")
    assert isinstance(t, ForecastTask)
    good = t.evaluate(_ForecastOracle(raw, items), bev_of, items)
    for cls in ("vehicle", "pedestrian", "cyclist"):
        for time in F_TIMES:
            assert good.metrics[f"AP/{cls}/{time:g}s"] == pytest.approx(1.0)
            assert good.metrics[f"softIoU/{cls}/{time:g}s"] == pytest.approx(1.0, abs=1e-6)
    assert good.metrics["mAP"] == pytest.approx(1.0)
    assert t.main_from_stats({k: v.sum(0)[None] for k, v in good.stats.items()}, np.array([len(items)]))[
        0
    ] == pytest.approx(1.0)
    bad = t.evaluate(_ForecastOracle(raw, items, sign=-1.0), bev_of, items)
    prevalence = np.concatenate([raw[lid]["forecast"][s] for lid, s in items]).mean()
    assert bad.metrics["mAP"] < 2 * prevalence < 0.5
    assert bad.metrics["softIoU"] < 1e-6


def test_map_oracle(world):
    raw, items, task, bev_of = world
    t = task("map")
    assert isinstance(t, MapTask)
    good = t.evaluate(_MapOracle(raw, items), bev_of, items)
    assert all(good.metrics[k] == pytest.approx(1.0) for k in good.metrics)  # every layer's IoU, mIoU, mIoU_all
    counts = good.stats["iou_counts"]
    assert (counts[..., 0] == counts[..., 1]).all() and (counts[..., 1] > 0).all()
    np.testing.assert_array_equal(good.qualitative["truth"], raw[items[0][0]]["map"][items[0][1]])
    bad = t.evaluate(_MapOracle(raw, items, sign=-1.0), bev_of, items)
    assert all(bad.metrics[k] == 0.0 for k in bad.metrics)


def test_trajectory_oracle(world):
    raw, items, task, bev_of = world
    t = task("trajectory")
    assert isinstance(t, TrajectoryTask) and t.at_s == (1.0, 2.0, 3.0)
    good = t.evaluate(_TrajectoryOracle(raw, items), bev_of, items)
    for suffix in ("", "/no_odometry"):
        for key in ("l2_1s", "l2_2s", "l2_3s", "L2_avg"):
            assert good.metrics[f"{key}{suffix}"] == pytest.approx(0.0, abs=1e-6)
    # the true path hits the box placed on it (each log's first sample, waypoint at 2 s), so does the oracle
    assert good.metrics["collision_rate_true_path"] == pytest.approx(2 / len(items))
    assert good.metrics["collision_rate"] == pytest.approx(2 / len(items))
    assert good.metrics["collision_1s"] == 0.0 and good.metrics["collision_2s"] == pytest.approx(2 / len(items))
    np.testing.assert_allclose(good.stats["l2"], 0.0, atol=1e-6)
    # odometry head true, blind head negated: each head is scored on its own output
    mixed = t.evaluate(_TrajectoryOracle(raw, items, blind=-1.0), bev_of, items)
    assert mixed.metrics["L2_avg"] == pytest.approx(0.0, abs=1e-6)
    true = np.stack([raw[lid]["waypoints"][s] for lid, s in items]).astype(np.float64)
    expected = 2 * np.linalg.norm(true[:, [1, 3, 5]], axis=-1)  # |wp - (-wp)| at 1, 2, 3 s
    np.testing.assert_allclose(mixed.stats["l2_blind"], expected, rtol=1e-5)
    assert mixed.metrics["L2_avg/no_odometry"] == pytest.approx(expected.mean(), rel=1e-5)
    assert mixed.metrics["l2_3s/no_odometry"] == pytest.approx(expected[:, 2].mean(), rel=1e-5)


def test_semantic_occupancy_oracle(world):
    raw, items, task, bev_of = world
    t = task("semantic_occupancy")
    assert isinstance(t, SemanticOccupancyTask)
    good = t.evaluate(_SemanticOracle(raw, items), bev_of, items)
    assert good.metrics["mAP"] == pytest.approx(1.0) and good.metrics["mIoU"] == pytest.approx(1.0)
    bad = t.evaluate(_SemanticOracle(raw, items, sign=-1.0), bev_of, items)
    assert bad.metrics["mAP"] < 0.5 and bad.metrics["mIoU"] < 0.3


def _occupancy_field(raw, sign=1.0):
    """field_of(item): the stored label of each stored query (0 for anything else), or its negation."""

    def field_of(item):
        q, occupied = raw[item[0]]["occ"][item[1]]
        lookup = {row.tobytes(): bool(o) for row, o in zip(q, occupied)}

        def field(queries):
            y = np.array([lookup.get(row.tobytes(), False) for row in np.asarray(queries, np.float32)], np.float64)
            return y if sign > 0 else 1.0 - y

        return field

    return field_of


def test_occupancy_oracle(world):
    raw, items, task, bev_of = world
    t = task("occupancy")
    assert isinstance(t, OccupancyTask)
    good = t._score(_occupancy_field(raw), items)
    for key in ("AP", "IoU", "AP/1s", "IoU/1s", "AP/2s", "IoU/2s", "AP/3s", "IoU/3s"):
        assert good.metrics[key] == pytest.approx(1.0), key
    assert good.metrics["free_rate/missing"] == 1.0
    assert t.main_from_stats({"hist": good.stats["hist"].sum(0)}, np.array(len(items))) == pytest.approx(1.0)
    bad = t._score(_occupancy_field(raw, sign=-1.0), items)
    assert bad.metrics["AP"] < 0.5 and bad.metrics["IoU"] == 0.0 and bad.metrics["free_rate/missing"] == 0.0


def test_depth_rendering_interpolates_to_the_analytic_crossing(world):
    """P(occupied) ramps linearly along x, crossing 0.5 at x = 5.2 + t (between the 0.5 m steps): the rendered depth
    is the crossing to 1e-6, on rays along and across the ramp and at different times."""
    raw, items, task, bev_of = world
    t = task("occupancy")
    arrays = t.labels.log("a")
    saved = {k: arrays[k] for k in ("ray_origin", "ray_dir", "ray_t", "ray_range", "ray_sample")}
    angles = np.array([0.0, 0.3, -0.7, 0.0])
    times = np.array([0.0, 0.5, 1.3, 0.3])
    origins = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [-3.0, 1.0, 1.0], [0.4, 0.0, 0.0]])
    dirs = np.column_stack([np.cos(angles), np.sin(angles), np.zeros(4)])
    crossing = (5.2 + times - origins[:, 0]) / np.cos(angles)  # distance along each ray to x = 5.2 + t
    try:
        arrays.update(
            ray_origin=origins.astype(np.float32),
            ray_dir=dirs.astype(np.float32),
            ray_t=times.astype(np.float32),
            ray_range=crossing.astype(np.float32),
            ray_sample=np.zeros(4, np.int32),
        )

        def field(q):
            q = np.asarray(q, np.float64)
            return np.clip((q[:, 0] - (5.2 + q[:, 3])) / 2.0 + 0.5, 0.0, 1.0)

        depth, true = t.render(field, ("a", 0))
        # float32 ray directions and times: the crossing is exact up to their rounding
        np.testing.assert_allclose(depth, crossing, atol=1e-5)
        assert np.abs((depth / t.step_m) - np.round(depth / t.step_m)).max() > 0.1  # crossings fall between steps
        np.testing.assert_allclose(true, crossing.astype(np.float32), rtol=0)
        # a field that never reaches 0.5: the depth is where the ray leaves the scene (x = 16 for a ray along x)
        depth, _ = t.render(lambda q: np.full(len(q), 0.2), ("a", 0))
        assert depth[0] == pytest.approx(16.0, abs=1e-5)
    finally:
        arrays.update(saved)


def _tiny_model(name: str):
    """An untrained pre-training model of variant ``name`` whose input is the world's voxels (2 sweeps x 2 bins)."""
    from gasp_core.models.config import DecoderConfig, EncoderConfig, ModelConfig, VoxelizerConfig, variant
    from gasp_core.models.gasp_model import GaspModel

    cfg = ModelConfig(
        VoxelizerConfig(voxel_size_m=1.0, z_bins=2, intensity_levels=()),
        EncoderConfig(backbone="resnet10t", out_indices=(0, 1, 2), width=16, out_stride=2),
        DecoderConfig(hidden=16, blocks=1, offsets=0),
    )
    torch.manual_seed(0)
    return GaspModel(SCENE, cfg, variant(name))


class _LabelDecoder(nn.Module):
    """Stands in for a pre-trained occupancy decoder: it takes queries normalised as pre-training normalises them
    (x, y, z over the scene's extent, t over the horizon, to [0, 1]), maps them back to metres and seconds on its own
    and returns logits +-20 from the stored label of the stored query there (-20 where there is none)."""

    def __init__(self, raw, sign: float = 1.0) -> None:
        super().__init__()
        x0, x1, y0, y1, z0, z1 = SCENE.extent_m
        self.lo = torch.tensor([x0, y0, z0, 0.0], dtype=torch.float64)
        self.span = torch.tensor([x1 - x0, y1 - y0, z1 - z0, SCENE.horizon_s], dtype=torch.float64)
        occ = [pair for log in raw.values() for pair in log["occ"]]
        self.q = torch.from_numpy(np.concatenate([q for q, _ in occ]).astype(np.float64))
        self.y = torch.from_numpy(np.concatenate([y for _, y in occ]).astype(bool))
        self.sign = sign

    def forward(self, bev, q_norm):
        q = q_norm[0].double() * self.span + self.lo
        gap = (q[:, None, :] - self.q[None]).abs().amax(-1)  # (N, stored queries)
        near, k = gap.min(1)
        truth = self.y[k] & (near < 1e-4)
        return (self.sign * (truth.double() * 40.0 - 20.0)).float()[None, :, None]


def test_occupancy_zero_shot_scores_the_models_own_decoder(world):
    """A model whose occupancy decoder is the label field (read off the raw queries it is given, as pre-training
    feeds them) scores exactly what ``_score`` gives the label field: AP 1 on the future lidar queries, and its
    negation AP = their positive rate (scikit-learn's, on the queries after t0's sweep that are not missing rays)."""
    from sklearn.metrics import average_precision_score

    raw, items, task, _ = world
    t = task("occupancy")
    y = np.concatenate(
        [
            raw[lid]["occ"][s][1][
                (raw[lid]["occ"][s][0][:, 3] > 0.1) & (raw[lid]["occ_source"][s] != QuerySource.MISSING)
            ]
            for lid, s in items
        ]
    ).astype(bool)
    assert 0 < y.mean() < 1
    model = _tiny_model("uno")
    for sign, expected_ap in ((1.0, average_precision_score(y, y)), (-1.0, average_precision_score(y, ~y))):
        model.occupancy = _LabelDecoder(raw, sign)
        ev = t.zero_shot(model, items)
        by_hand = t._score(_occupancy_field(raw, sign), items)
        assert ev.metrics == by_hand.metrics
        np.testing.assert_array_equal(ev.stats["hist"], by_hand.stats["hist"])
        assert ev.metrics["AP"] == pytest.approx(expected_ap, abs=1e-12)
    assert expected_ap == pytest.approx(y.mean())
    assert t.zero_shot(_tiny_model("scratch"), items) is None  # no occupancy decoder: no zero-shot score


def test_occupancy_zero_shot_is_the_pretraining_forward(world):
    """With a real (untrained) decoder, zero-shot P(occupied) is sigmoid of ``GaspModel.forward``'s occupancy logits
    on the item's voxels and raw queries, the call pre-training makes."""
    raw, items, task, _ = world
    t = task("occupancy")
    model = _tiny_model("uno").eval()

    def field_of(it):
        vox = torch.from_numpy(t.sample_array(it, "voxels")[None].astype(np.float32))

        def field(q):
            with torch.no_grad():
                logits = model(vox, torch.from_numpy(np.asarray(q, np.float32))[None])["occupancy_logits"][0]
            return torch.sigmoid(logits).numpy()

        return field

    ev, by_hand = t.zero_shot(model, items), t._score(field_of, items)
    assert ev.metrics == pytest.approx(by_hand.metrics, abs=1e-6)


def test_evaluate_runs_stores_zero_shot_rows_per_pretraining_seed(world, tmp_path):
    """The evaluate stage scores each init's own occupancy decoder per pre-training seed as budget ``zero_shot``
    (scratch has none), beside the fine-tuned runs; the report compares them paired, like the fine-tuned runs."""
    from gasp_core.models.gasp_model import load_pretrained
    from gasp_core.tasks.config import SplitsConfig
    from gasp_core.tasks.evaluation import ZERO_SHOT, evaluate_runs, pr_curves, split_stats, stats_key
    from gasp_core.tasks.finetune import pretrained_dir, run_dir, save_run
    from gasp_core.tasks.metrics import compact_histograms
    from gasp_core.tasks.report import NO_VERDICT, compare, write_report
    from gasp_core.tasks.stats import BootstrapConfig

    raw, items, task, _ = world
    t = task("occupancy")
    root = Path(t.labels.root).parent
    cfg = FinetuneConfig(device="cpu", budgets={"full": 1.0}, seeds=[0])
    inits = {name: tmp_path / "models" / name for name in ("scratch", "uno", "gasp")}
    for name, init_dir in inits.items():
        for p in (0, 1):
            model = _tiny_model(name)
            torch.manual_seed(p + 1)
            for prm in model.parameters():
                prm.data.normal_(0.0, 0.3)
            model.save_pretrained(pretrained_dir(init_dir, p))
            save_run(run_dir(tmp_path / "runs" / name, "full", p, 0), t.head(16), None, {"feat_dim": 16})
    splits = SplitsConfig(train=["t"], val=["v"], test=["a", "b"])
    metrics, _, stats = evaluate_runs(
        "occupancy",
        inits=inits,
        runs_root=tmp_path / "runs",
        labels_dir=root / "labels",
        occupancy_dir=root / "occupancy",
        scene=SCENE,
        splits=splits,
        cfg=cfg,
        pretrain_seeds=[0, 1],
        progress=False,
    )
    assert ZERO_SHOT not in metrics["results"]["scratch"]
    for name in ("uno", "gasp"):
        runs = metrics["results"][name][ZERO_SHOT]["runs"]
        assert list(runs) == ["pretrain_0", "pretrain_1"]
        ev = t.zero_shot(load_pretrained(pretrained_dir(inits[name], 1)), items)
        assert runs["pretrain_1"]["AP"] == pytest.approx(ev.metrics["AP"], abs=1e-5)
        np.testing.assert_array_equal(
            stats[stats_key(name, ZERO_SHOT, "pretrain_1", "hist")], compact_histograms(ev.stats["hist"])
        )
    assert set(split_stats(stats)["gasp"]) == {"full", ZERO_SHOT}
    assert set(pr_curves(t, stats, "full")) == {"scratch", "uno", "gasp", "baseline"}  # no zero-shot plot files
    boot = BootstrapConfig(replicates=50)
    cmp = compare(
        "occupancy", split_stats(stats), np.arange(len(items)), list(inits), [ZERO_SHOT], t.main_from_stats, boot
    )[ZERO_SHOT]
    assert set(cmp["interval"]) == {"uno", "gasp"} and set(cmp["pairs"]) == {"gasp>uno"}
    assert cmp["pairs"]["gasp>uno"]["verdict"] in ("better", "worse", "inconclusive")  # 2 pre-training seeds
    one_seed = {k: v for k, v in stats.items() if "|pretrain_1" not in k}  # one pre-training seed: no verdict
    one = compare(
        "occupancy", split_stats(one_seed), np.arange(len(items)), list(inits), [ZERO_SHOT], t.main_from_stats, boot
    )
    assert one[ZERO_SHOT]["pairs"]["gasp>uno"]["verdict"] == NO_VERDICT
    full = compare(
        "occupancy", split_stats(stats), np.arange(len(items)), list(inits), ["full"], t.main_from_stats, boot
    )
    summary = write_report(
        {"occupancy": metrics},
        {},
        tmp_path / "report",
        list(inits),
        ["full"],
        {"occupancy": full},
        zero_shot={"occupancy": cmp},
    )
    readme = (tmp_path / "report" / "README.md").read_text()
    assert "## 4D occupancy, zero-shot (each model's own pre-trained occupancy decoder, no labels)" in readme
    assert "| GASP vs UnO | " in readme and "| UnO | " in readme
    assert summary["tasks"]["occupancy"][ZERO_SHOT]["pairs"]["gasp>uno"] is cmp["pairs"]["gasp>uno"]
