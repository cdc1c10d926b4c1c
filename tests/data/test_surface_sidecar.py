"""The simulator's per-return surface classes: sidecar beside AV2 / nuScenes logs, through ingest into the store.

The sidecar is optional (real data has none): without it the store is what it always was; with it every kept
sweep carries one uint8 class per point, in the order of the stored points.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pytest

from gasp_core.data import nuscenes_reader, schema
from gasp_core.data.av2_reader import AV2LogReader
from gasp_core.data.errors import BadSweepError, InputError
from gasp_core.data.ingest import IngestConfig, ingest, ingest_log
from gasp_core.data.store import LogStore, StoredLog
from gasp_core.geometry import quat_wxyz_to_rotation
from gasp_core.sim.semantics import Surface

FORMATS = ("av2", "nuscenes")
GROUND_CLASSES = [
    Surface.ROAD,
    Surface.MARKING_WHITE,
    Surface.MARKING_YELLOW,
    Surface.CROSSWALK,
    Surface.SIDEWALK,
    Surface.GRASS,
    Surface.PARKING,
]
RAISED_CLASSES = [
    Surface.BUILDING,
    Surface.POLE,
    Surface.TRUNK,
    Surface.FOLIAGE,
    Surface.VEHICLE,
    Surface.PEDESTRIAN,
    Surface.CYCLIST,
]
STATIC_CLASSES = [Surface.BUILDING, Surface.POLE, Surface.TRUNK, Surface.FOLIAGE]


def config(fmt: str, root: Path, **kw) -> IngestConfig:
    if fmt == "av2":
        return IngestConfig(format="av2", root=str(root.parent), split=root.name, **kw)
    nuscenes_reader._NUSC_CACHE.clear()
    return IngestConfig(format="nuscenes", root=str(root), version="v1.0-test", split="all", **kw)


def sidecar_dir(fmt: str, root: Path) -> Path:
    """The one log's sidecar folder: AV2 ``<log_dir>/gasp_sidecar``, nuScenes ``<dataroot>/gasp_sidecar/<scene>``."""
    if fmt == "av2":
        return next(p for p in root.iterdir() if p.is_dir()) / "gasp_sidecar"
    return next(p for p in (root / "gasp_sidecar").iterdir() if p.is_dir())


def source_copy(fmt: str, av2_split: Path, nuscenes_root: Path, tmp: Path) -> Path:
    """A private copy of the simulated split (AV2) or dataroot (nuScenes), free to damage."""
    dst = tmp / "raw" / ("train" if fmt == "av2" else "nuscenes")
    shutil.copytree(av2_split if fmt == "av2" else nuscenes_root, dst)
    return dst


def only_log(out: Path) -> StoredLog:
    store = LogStore(out)
    assert len(store.log_ids) == 1
    return store.log(store.log_ids[0])


def sweep_schema(log: StoredLog, ts: int) -> pa.Schema:
    with ipc.open_file(str(log.log_dir / schema.SWEEPS_DIR / f"{ts}.arrow")) as reader:
        return reader.schema.remove_metadata()


@pytest.fixture(scope="module")
def stored(av2_split, nuscenes_root, tmp_path_factory) -> dict[str, tuple[StoredLog, dict]]:
    out = tmp_path_factory.mktemp("surface")
    result = {}
    for fmt, root in (("av2", av2_split), ("nuscenes", nuscenes_root)):
        metrics = ingest(config(fmt, root), out / fmt, progress=False)
        result[fmt] = only_log(out / fmt), metrics
    return result


@pytest.mark.parametrize("fmt", FORMATS)
def test_store_surface_is_the_simulators_in_point_order(stored, sim_log, fmt):
    log, metrics = stored[fmt]
    assert metrics["logs_with_surface_labels"] == 1
    assert log.meta.surface_classes == [s.name.lower() for s in Surface]
    assert len(log.sweep_timestamps_ns) == len(sim_log.sweeps)
    for ts, truth in zip(log.sweep_timestamps_ns, sim_log.sweeps):
        got = log.sweep(ts)
        assert sweep_schema(log, ts) == schema.SWEEP_POINTS_WITH_SURFACE
        assert got.surface.dtype == np.uint8
        np.testing.assert_array_equal(got.surface, truth.surface)
        # the same order as the stored points (nuScenes goes through the lidar frame in float32)
        np.testing.assert_allclose(got.points_ego, truth.points_ego, atol=0 if fmt == "av2" else 5e-5)
        assert set(np.unique(got.surface)) <= set(range(1, Surface.GROUND))  # ground placeholder always resolved


def _city_points(log: StoredLog, ts: int) -> np.ndarray:
    T = log.city_T_ego(ts)[0]
    return log.sweep(ts).points_ego.astype(np.float64) @ T[:3, :3].T + T[:3, 3]


def _in_vehicle_boxes(log: StoredLog, ts: int, city: np.ndarray, margin_m: float) -> np.ndarray | None:
    rows = log.boxes.filter((pl.col("timestamp_ns") == ts) & (pl.col("category") == "vehicle"))
    if rows.height == 0:
        return None
    rot = quat_wxyz_to_rotation(rows.select("qw", "qx", "qy", "qz").to_numpy())
    center = rows.select("tx_m", "ty_m", "tz_m").to_numpy()
    half = rows.select("length_m", "width_m", "height_m").to_numpy() / 2 + margin_m
    local = np.einsum("mji,nmj->nmi", rot, city[:, None, :] - center[None])
    return (np.abs(local) <= half[None]).all(-1).any(1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_labels_agree_with_geometry(stored, sim_log, fmt):
    """Against references the labels are not made from: the town's ground height and the annotated boxes."""
    log, _ = stored[fmt]
    town = sim_log.town
    box_sweeps = 0
    for ts in log.sweep_timestamps_ns:
        surface = log.sweep(ts).surface
        city = _city_points(log, ts)
        dz = city[:, 2] - town.surface_height(city[:, :2])
        ground, raised = np.isin(surface, GROUND_CLASSES), np.isin(surface, RAISED_CLASSES)
        assert ground.sum() > 1000 and raised.sum() > 1000
        assert np.abs(dz[ground]).max() < 0.05, f"sweep {ts}: ground-class return off the ground"
        assert (dz[raised] > 0.1).mean() > 0.95, f"sweep {ts}: object-class returns lie on the ground"
        # moving agents were hit during the 0.1 s sweep, boxes are at its timestamp: allow 0.3 m
        inside = _in_vehicle_boxes(log, ts, city, margin_m=0.3)
        if inside is None:
            continue  # nuScenes annotates keyframes only
        box_sweeps += 1
        vehicle = surface == Surface.VEHICLE
        assert vehicle.sum() > 100
        assert inside[vehicle].mean() > 0.98, f"sweep {ts}: vehicle returns outside every vehicle box"
        assert inside[np.isin(surface, STATIC_CLASSES)].mean() < 0.01
    assert box_sweeps >= (len(log.sweep_timestamps_ns) if fmt == "av2" else 2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_without_sidecar_the_store_is_unlabelled_and_unchanged(av2_split, nuscenes_root, tmp_path, fmt):
    root = source_copy(fmt, av2_split, nuscenes_root, tmp_path)
    out = tmp_path / "store"
    ingest(config(fmt, root), out, progress=False)
    log = only_log(out)
    before = {ts: log.sweep(ts) for ts in log.sweep_timestamps_ns}
    assert all(s.surface is not None for s in before.values())

    shutil.rmtree(sidecar_dir(fmt, root))
    metrics = ingest(config(fmt, root), out, progress=False)  # same store: the fingerprint must see the change
    assert (metrics["logs_ingested"], metrics["logs_up_to_date"], metrics["logs_with_surface_labels"]) == (1, 0, 0)
    log = only_log(out)
    assert log.meta.surface_classes is None
    assert list(log.sweep_timestamps_ns) == list(before)
    for ts, old in before.items():
        new = log.sweep(ts)
        assert new.surface is None and sweep_schema(log, ts) == schema.SWEEP_POINTS
        for name in ("points_ego", "intensity", "laser_number", "lidar", "offset_ns"):
            np.testing.assert_array_equal(getattr(new, name), getattr(old, name), err_msg=name)
    again = ingest(config(fmt, root), out, progress=False)
    assert again["logs_up_to_date"] == 1


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "defect, reason",
    [
        ("short", "surface sidecar row count differs from its sweep"),
        ("missing", "surface sidecar file is missing"),
    ],
)
def test_bad_sidecar_file_stops_or_skips_its_sweep(av2_split, nuscenes_root, tmp_path, fmt, defect, reason):
    root = source_copy(fmt, av2_split, nuscenes_root, tmp_path)
    victim = sorted((sidecar_dir(fmt, root) / "lidar_surface").glob("*.feather"))[4]
    if defect == "short":
        table = feather.read_table(victim)
        feather.write_feather(table.slice(0, table.num_rows - 1), victim)
    else:
        victim.unlink()

    with pytest.raises(BadSweepError, match=reason) as info:
        ingest(config(fmt, root, on_bad_sweep="error"), tmp_path / "e", progress=False)
    assert str(victim) in str(info.value) and info.value.file == str(victim)
    assert not (tmp_path / "e" / "manifest.json").exists()

    metrics = ingest(config(fmt, root, max_bad_sweep_fraction=0.2), tmp_path / "s", progress=False)
    assert (metrics["sweeps"], metrics["sweeps_skipped"]) == (9, 1)
    assert metrics["sweeps_skipped_by_reason"] == {reason: 1}
    log = only_log(tmp_path / "s")
    assert [s.file for s in log.meta.skipped] == [str(victim)]
    assert log.meta.skipped[0].timestamp_ns not in log.sweep_timestamps_ns
    assert all(log.sweep(ts).surface is not None for ts in log.sweep_timestamps_ns)


def test_sidecar_without_class_list_fails_the_log(av2_split, tmp_path):
    root = source_copy("av2", av2_split, av2_split, tmp_path)
    classes = sidecar_dir("av2", root) / "surface_classes.json"
    classes.unlink()
    with pytest.raises(InputError, match="surface class list is missing") as info:
        ingest(config("av2", root), tmp_path / "s", progress=False)
    assert info.value.file == str(classes)


class _LabelsOnAllButOne(AV2LogReader):
    """A source whose log has labels but one sweep comes without (or, ``invert``, the reverse)."""

    victim = 0
    invert = False

    def surface_classes(self):
        return None if self.invert else super().surface_classes()

    def read_sweep(self, ref):
        data = super().read_sweep(ref)
        if (ref.timestamp_ns == self.victim) != self.invert:
            data.surface = None
        return data


@pytest.mark.parametrize(
    "invert, problem",
    [
        (False, "sweep has no surface labels but its log has"),
        (True, "sweep has surface labels but its log has no surface classes"),
    ],
)
def test_a_log_is_labelled_in_every_kept_sweep_or_in_none(av2_split, sim_log, tmp_path, invert, problem):
    source = _LabelsOnAllButOne(av2_split, sim_log.log_id)
    refs = source.sweep_refs()
    source.victim, source.invert = refs[3].timestamp_ns, invert
    with pytest.raises(BadSweepError, match=problem) as info:
        ingest_log(source, tmp_path / "e" / sim_log.log_id, config("av2", av2_split, on_bad_sweep="error"))
    assert info.value.file == str(refs[3].file)
    result = ingest_log(source, tmp_path / "s" / sim_log.log_id, config("av2", av2_split, max_bad_sweep_fraction=0.2))
    log = StoredLog(tmp_path / "s" / sim_log.log_id)
    assert (result.sweeps, result.sweeps_skipped, result.surface_labels) == (9, 1, not invert)
    assert all((log.sweep(ts).surface is None) == invert for ts in log.sweep_timestamps_ns)


def test_real_av2_log_has_no_surface_labels(av2_sample):
    reader = AV2LogReader(av2_sample, AV2LogReader.log_ids(av2_sample)[0])
    assert reader.surface_classes() is None
    assert reader.read_sweep(reader.sweep_refs()[0]).surface is None
