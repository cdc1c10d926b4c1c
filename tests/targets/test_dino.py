"""Pinhole lifting against hand-computed pixels, the teacher's weight handling, PCA and feature sampling."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from gasp_core.data.store import StoredSweep
from gasp_core.geometry import make_se3, project
from gasp_core.targets.dino_lift import LiftConfig, lift_frame
from gasp_core.teacher.dinov2 import DinoTeacher, TeacherConfig, sample_features
from gasp_core.teacher.pca import FeaturePCA
from tests.targets.conftest import AnalyticLog

K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])
# a forward camera at (1.5, 0, 1.6): OpenCV axes x right = -y_ego, y down = -z_ego, z forward = x_ego
EGO_R_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
EGO_T_CAM = make_se3(EGO_R_CAM, np.array([1.5, 0.0, 1.6]))


def test_pinhole_projection_by_hand():
    uv, depth = project(np.array([[1.0, 0.5, 5.0], [0.0, 0.0, -2.0]]), K)
    np.testing.assert_allclose(uv[0], [70.0, 50.0])  # 100 * 1/5 + 50, 100 * 0.5/5 + 40
    assert depth[0] == 5.0 and depth[1] < 0


def camera_log(speed: float, points_ego: np.ndarray) -> AnalyticLog:
    log = AnalyticLog(speed_mps=speed)
    n = len(points_ego)
    log.sweeps[0] = StoredSweep(
        0,
        points_ego,
        np.ones(n, np.float32),
        np.zeros(n, np.int16),
        np.zeros(n, np.uint8),
        np.arange(n, dtype=np.int32) * 1000,
    )
    log.cameras["front"] = (EGO_T_CAM, K)
    return log


def test_lift_projects_by_hand_and_drops_hidden_points():
    pts = np.array(
        [
            [11.5, -1.0, 1.6],  # 10 m ahead, 1 m right -> (60, 40)
            [21.5, -2.0, 1.6],  # same pixel, twice as far: hidden behind the first
            [-5.0, 0.0, 1.6],  # behind the camera
            [11.5, 9.0, 1.6],  # left of the image (u = -40)
            [6.5, 0.0, 1.1],  # 5 m ahead, 0.5 m below -> (50, 50)
        ]
    )
    lifted = lift_frame(camera_log(0.0, pts), "front", 0, 100, 80, LiftConfig(max_points_per_frame=0))
    np.testing.assert_allclose(lifted.uv, [[60.0, 40.0], [50.0, 50.0]], atol=1e-9)
    np.testing.assert_allclose(lifted.points_ego, pts[[0, 4]])
    np.testing.assert_array_equal(lifted.t_ns, [0, 4000])


def test_lift_compensates_ego_motion_to_the_camera_time():
    # the sweep is at t = 0, the camera fires 20 ms later after the car moved 0.2 m forward
    lifted = lift_frame(camera_log(10.0, np.array([[11.5, -1.0, 1.6]])), "front", 20_000_000, 100, 80, LiftConfig())
    np.testing.assert_allclose(lifted.uv[0], [100 * 1 / 9.8 + 50, 40.0], atol=1e-9)
    assert (
        lift_frame(camera_log(10.0, np.array([[11.5, -1.0, 1.6]])), "front", 90_000_000, 100, 80, LiftConfig()) is None
    )


def test_sample_features_is_bilinear_at_patch_centres():
    # a 3 x 4 map whose value is the patch column; each patch covers 14 px of a 42 x 56 image
    fmap = torch.arange(4, dtype=torch.float32).repeat(3, 1)[None]
    uv = np.array([[7.0, 7.0], [21.0, 21.0], [14.0, 30.0], [49.0, 35.0], [0.0, 0.0]])
    got = sample_features(fmap, uv, (42, 56))[:, 0].numpy()
    np.testing.assert_allclose(got, [0.0, 1.0, 0.5, 3.0, 0.0], atol=1e-6)


def test_pca_recovers_known_axes():
    g = torch.Generator().manual_seed(0)
    axes = torch.linalg.qr(torch.randn(16, 16, generator=g))[0][:, :3].T  # 3 orthonormal axes in 16-D
    x = (torch.randn(5000, 3, generator=g) * torch.tensor([5.0, 3.0, 1.0])) @ axes + 7.0
    pca = FeaturePCA.fit(x, 3)
    np.testing.assert_allclose(torch.abs(pca.components @ axes.T).numpy(), np.eye(3), atol=0.02)
    assert float(pca.explained_variance_ratio.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(pca.transform(pca.mean[None]), torch.zeros(1, 3), atol=1e-5)


@pytest.fixture(scope="module")
def random_teacher() -> DinoTeacher:
    torch.manual_seed(0)
    return DinoTeacher(TeacherConfig(weights="random", max_side_px=112))


def test_random_teacher_is_flagged_and_shapes(random_teacher, caplog):
    assert random_teacher.is_random and random_teacher.weights_id == "random"
    out = random_teacher(torch.rand(2, 3, 120, 160))
    assert out.shape == (2, 384, 6, 8)  # 120 x 160 -> 84 x 112 input -> 6 x 8 patches
    with caplog.at_level("WARNING"):
        DinoTeacher(TeacherConfig(weights="random"))
    assert "RANDOM WEIGHTS" in caplog.text


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_from_a_local_file_match(random_teacher, tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in random_teacher.vit.state_dict().items()}
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"model": state}, path)
    loaded = DinoTeacher(TeacherConfig(weights=str(path), max_side_px=112))
    assert not loaded.is_random and loaded.weights_id.startswith(f"file:w{suffix}:sha256=")
    x = torch.rand(1, 3, 84, 112)
    torch.testing.assert_close(loaded(x), random_teacher(x))


class Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        DinoTeacher(TeacherConfig(weights=str(path)))


def test_wrong_weights_fail_loudly(tmp_path):
    from safetensors.torch import save_file

    save_file({"nothing": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="lack"):
        DinoTeacher(TeacherConfig(weights=str(tmp_path / "w.safetensors")))
    with pytest.raises(FileNotFoundError):
        DinoTeacher(TeacherConfig(weights=str(tmp_path / "missing.safetensors")))


def test_hub_offline_fails_fast_instead_of_hanging(tmp_path):
    """Offline, 'hub' weights fail at once with Hugging Face's "not in the local cache" error: not a hang, and not some
    other failure (an ImportError, a bad config) that a bare non-zero exit would also accept."""
    import os
    import time

    code = (
        "import os; os.environ['HF_HUB_OFFLINE'] = '1'\n"
        "from gasp_core.teacher.dinov2 import DinoTeacher, TeacherConfig\n"
        "DinoTeacher(TeacherConfig(weights='hub'))"
    )
    # an empty cache: a DINOv2 checkpoint cached on this machine must not make the load succeed
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert time.monotonic() - start < 60
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("huggingface_hub.errors.LocalEntryNotFoundError"), res.stderr[-2000:]
    assert "cannot find the requested files in the local cache" in last


@pytest.fixture(scope="module")
def two_log_split(av2_split, tmp_path_factory):
    """The simulated AV2 split plus a "val" twin of its log whose camera images are noise: (split, train id, val id)."""
    import shutil

    from PIL import Image

    split = tmp_path_factory.mktemp("two_logs") / "train"
    shutil.copytree(av2_split, split)
    train_id = next(p.name for p in split.iterdir() if p.is_dir())
    val_id = "00000000-0000-0000-0000-0000000000fa"
    shutil.copytree(split / train_id, split / val_id)
    rng = np.random.default_rng(0)
    for jpg in (split / val_id / "sensors" / "cameras").rglob("*.jpg"):
        with Image.open(jpg) as im:
            size = im.size
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(jpg)
    return split, train_id, val_id


def test_dino_pca_is_fitted_on_the_training_logs_only(two_log_split, tmp_path):
    import json

    from gasp_core.data.ingest import IngestConfig, ingest
    from gasp_core.targets import schema
    from gasp_core.targets.dino import DinoTargetsConfig, build_dino_targets

    split, train_id, val_id = two_log_split
    both, train_only = tmp_path / "store_both", tmp_path / "store_train"
    ingest(IngestConfig(format="av2", root=str(split.parent), split=split.name), both, progress=False)
    ingest(
        IngestConfig(format="av2", root=str(split.parent), split=split.name, logs=[train_id]),
        train_only,
        progress=False,
    )
    cfg = DinoTargetsConfig(
        teacher=TeacherConfig(weights="random", max_side_px=112, batch_size=8),
        pca_dim=4,
        pca_fit_frames=6,
        frame_stride=1,
    )
    build_dino_targets(both, out=tmp_path / "dino_both", cfg=cfg, fit_logs=[train_id], progress=False)
    build_dino_targets(train_only, out=tmp_path / "dino_train", cfg=cfg, fit_logs=[train_id], progress=False)
    # the val log's images do not move the PCA: it is the one fitted on a store holding the training log alone
    assert (tmp_path / "dino_both" / schema.PCA_FILE).read_bytes() == (
        tmp_path / "dino_train" / schema.PCA_FILE
    ).read_bytes()
    manifest = json.loads((tmp_path / "dino_both" / schema.MANIFEST_FILE).read_text())
    assert manifest["pca_fit_logs"] == [train_id] and sorted(manifest["logs"]) == sorted([train_id, val_id])
    for log_id in (train_id, val_id):  # every log is still transformed
        assert (tmp_path / "dino_both" / log_id / schema.DINO_POINTS_FILE).is_file()
    with pytest.raises(ValueError, match=r"\['not-a-log'\] are not in the log store"):
        build_dino_targets(both, out=tmp_path / "dino_bad", cfg=cfg, fit_logs=[train_id, "not-a-log"], progress=False)
    assert not (tmp_path / "dino_bad").exists()  # checked before anything is written


@pytest.fixture(scope="module")
def sim_store(av2_split, tmp_path_factory):
    """The simulated log ingested into a store (160 x 120 camera images, per-return surface labels)."""
    from gasp_core.data.ingest import IngestConfig, ingest

    out = tmp_path_factory.mktemp("dino_store")
    ingest(IngestConfig(format="av2", root=str(av2_split.parent), split=av2_split.name), out, progress=False)
    return out


class PatchIndexTeacher:
    """A stand-in teacher whose (2, 6, 8) feature map holds each patch's row (channel 0) and column (channel 1)."""

    model_name, weights_id, is_random, dim = "patch-index", "stub", False, 2
    grid = (6, 8)

    def __init__(self, cfg) -> None:
        pass

    def to(self, device):
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        gh, gw = self.grid
        rows = torch.arange(gh, dtype=torch.float32)[:, None].expand(gh, gw)
        cols = torch.arange(gw, dtype=torch.float32)[None, :].expand(gh, gw)
        return torch.stack([rows, cols])[None].expand(len(images), -1, -1, -1)


SMALL_DINO = dict(teacher=TeacherConfig(weights="random", batch_size=4), pca_dim=2, pca_fit_frames=6, frame_stride=1)


@pytest.fixture(scope="module")
def patch_index_targets(sim_store, sim_log, tmp_path_factory):
    """Targets of the simulated log lifted from the patch-index teacher (PCA to 2-D: a rotation, inverted below)."""
    from gasp_core.targets import dino
    from gasp_core.targets.dino import DinoTargetsConfig, build_dino_targets

    out = tmp_path_factory.mktemp("patch_index") / "dino"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dino, "DinoTeacher", PatchIndexTeacher)
        lid = sim_log.log_id
        build_dino_targets(
            sim_store, out=out, cfg=DinoTargetsConfig(**SMALL_DINO), fit_logs=[lid], progress=False, test_logs=[lid]
        )
    return out


def read_points(out, log_id) -> tuple:
    """(frames table, one dict of columns per frame) of stored DINO targets."""
    import polars as pl
    import pyarrow.ipc as ipc

    from gasp_core.targets import schema

    frames = pl.read_parquet(out / log_id / schema.DINO_FRAMES_FILE)
    batches = []
    with ipc.open_file(out / log_id / schema.DINO_POINTS_FILE) as f:
        for b in range(f.num_record_batches):
            batch = f.get_batch(b)
            cols = {c: batch.column(c).to_numpy() for c in ("x_m", "y_m", "z_m", "t_ns", "surface")}
            cols["feature"] = np.stack(batch.column("feature").to_numpy(zero_copy_only=False)).astype(np.float32)
            batches.append(cols)
    return frames, batches


def test_stored_features_sample_the_patch_each_point_projects_to(patch_index_targets, sim_store, sim_log):
    """Non-square images (160 x 120): every stored feature, mapped back through the stored PCA, is the (row, column)
    of the patch grid at the pixel its point projects to, the projection done here by hand from the store's poses,
    extrinsics and intrinsics. A swapped (h, w) in the sampling would read other patches."""
    from PIL import Image

    from gasp_core.data.store import LogStore
    from gasp_core.targets import schema

    lg = LogStore(sim_store).log(sim_log.log_id)
    pca = FeaturePCA.load(patch_index_targets / schema.PCA_FILE)
    frames, batches = read_points(patch_index_targets, sim_log.log_id)
    gh, gw = PatchIndexTeacher.grid
    sizes = {}
    for cam, rel in zip(lg.camera_frames["camera"], lg.camera_frames["image_path"]):
        with Image.open(lg.image_path(rel)) as im:
            sizes[cam] = im.size[::-1]  # (h, w)
    assert set(sizes.values()) == {(120, 160)}  # the case that tells h from w
    checked = 0
    for row, cols in zip(frames.iter_rows(named=True), batches):
        h, w = sizes[row["camera"]]
        xyz = np.column_stack([cols["x_m"], cols["y_m"], cols["z_m"]]).astype(np.float64)
        # ego at the sweep -> city -> ego at the camera time -> camera (OpenCV axes) -> pinhole
        city_T_sweep, city_T_now = lg.city_T_ego(np.array([row["sweep_ns"], row["camera_ns"]]))
        cam_T_sweep = np.linalg.inv(lg.ego_T_sensor(row["camera"])) @ np.linalg.inv(city_T_now) @ city_T_sweep
        p = xyz @ cam_T_sweep[:3, :3].T + cam_T_sweep[:3, 3]
        k = lg.intrinsics(row["camera"])
        u = k[0, 0] * p[:, 0] / p[:, 2] + k[0, 1] * p[:, 1] / p[:, 2] + k[0, 2]
        v = k[1, 1] * p[:, 1] / p[:, 2] + k[1, 2]
        assert (p[:, 2] > 0).all() and (u >= 0).all() and (u < w).all() and (v >= 0).all() and (v < h).all()
        # patch centres sit at (i + 0.5) * patch size; between them the row / column index is linear (bilinear)
        want = np.column_stack([np.clip(v * gh / h - 0.5, 0, gh - 1), np.clip(u * gw / w - 0.5, 0, gw - 1)])
        got = cols["feature"] @ pca.components.numpy() + pca.mean.numpy()
        np.testing.assert_allclose(got, want, atol=0.02)
        checked += len(u)
    assert checked > 1000


def test_oracle_targets_embed_each_points_surface_class(sim_store, sim_log, patch_index_targets, tmp_path):
    """Oracle targets (no network): one fixed feature per surface class, the probe separates the classes, and the
    stored points are those of the teacher's targets of the same store."""
    import json

    from gasp_core.data.store import LogStore
    from gasp_core.targets import dino, schema
    from gasp_core.targets.dino import DinoTargetsConfig, build_dino_targets
    from gasp_core.targets.dino_oracle import ORACLE_DIM, oracle_embedding

    lid = sim_log.log_id
    cfg = DinoTargetsConfig(**{**SMALL_DINO, "pca_dim": 24})  # more than the classes: a rank-deficient PCA
    metrics = build_dino_targets(
        sim_store, out=tmp_path / "oracle", cfg=cfg, fit_logs=[lid], progress=False, test_logs=[lid], source="oracle"
    )
    assert metrics["probe"]["teacher"]["accuracy"] >= 0.99 and metrics["probe"]["teacher"]["test_points"] > 100
    assert json.loads((tmp_path / "oracle" / schema.TEACHER_FILE).read_text()) == {
        "model": "oracle",
        "weights": "oracle:surface-class",
        "random_weights": False,
        "feature_dim": ORACLE_DIM,
        "pca_dim": 24,
    }
    pca = FeaturePCA.load(tmp_path / "oracle" / schema.PCA_FILE)
    assert all(torch.isfinite(t).all() for t in (pca.mean, pca.components, pca.explained_variance_ratio))
    frames, batches = read_points(tmp_path / "oracle", lid)
    surface = np.concatenate([b["surface"] for b in batches]).astype(np.int64)
    feats = np.concatenate([b["feature"] for b in batches])
    # the known answer: each point's target is the PCA of its class's embedding
    classes = LogStore(sim_store).log(lid).meta.surface_classes
    table = pca.transform(torch.from_numpy(oracle_embedding(len(classes), cfg.seed))).numpy()
    np.testing.assert_allclose(feats, table[surface], atol=2e-3)
    present = np.unique(surface)
    assert len(present) >= 4
    for c in present:  # one feature per class, distinct classes far apart
        assert (feats[surface == c] == feats[surface == c][0]).all()
    per_class = np.stack([feats[surface == c][0] for c in present])
    dist = np.linalg.norm(per_class[:, None] - per_class[None], axis=-1)
    assert dist[~np.eye(len(present), dtype=bool)].min() > 0.5
    # the same lift, the same draws: the teacher's targets of this store hold the very same points
    teacher_frames, teacher_batches = read_points(patch_index_targets, lid)
    assert frames.equals(teacher_frames)
    for a, b in zip(batches, teacher_batches, strict=True):
        for c in ("x_m", "y_m", "z_m", "t_ns", "surface"):
            np.testing.assert_array_equal(a[c], b[c])
    with pytest.raises(ValueError, match="'clairvoyant'"):
        build_dino_targets(
            sim_store, out=tmp_path / "bad", cfg=cfg, fit_logs=[lid], progress=False, source="clairvoyant"
        )
    with pytest.MonkeyPatch.context() as mp:  # a store without labels (real data) has no oracle
        mp.setattr(dino, "surface_classes", lambda store: None)
        with pytest.raises(ValueError, match=re.escape(f"{sim_store}: oracle DINO targets need")):
            build_dino_targets(
                sim_store, out=tmp_path / "bad", cfg=cfg, fit_logs=[lid], progress=False, source="oracle"
            )
