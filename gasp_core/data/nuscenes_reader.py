"""Read nuScenes scenes through ``nuscenes-devkit``: keyframes, lidar sweeps, poses, boxes, map.

Simulated scenes may carry per-return surface classes in ``<dataroot>/gasp_sidecar/<scene name>/``
(a :class:`~gasp_core.data.source.SurfaceSidecar` keyed by the ``.pcd.bin`` file name without that
suffix); real nuScenes has none.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
from nuscenes.map_expansion import map_api
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.data_classes import LidarPointCloud
from pyquaternion import Quaternion

from gasp_core.data.errors import BadSweepError, InputError
from gasp_core.data.schema import CALIBRATION, CAMERA_FRAMES, MapLayer
from gasp_core.data.source import (
    SIDECAR_DIR,
    BoxRecords,
    MapElement,
    SurfaceSidecar,
    SweepData,
    SweepRef,
    dedupe_polylines,
    overlaps,
    polygon_elements,
    road_boundaries,
)
from gasp_core.geometry import make_se3, quat_wxyz_to_rotation


def register_location(name: str) -> None:
    """``NuScenesMap`` accepts only the four nuScenes cities; add a map-expansion location of our own."""
    if name not in map_api.locations:
        map_api.locations.append(name)


def load_map(dataroot: Path, location: str) -> map_api.NuScenesMap:
    register_location(location)
    return map_api.NuScenesMap(dataroot=str(dataroot), map_name=location)


def record_pose(record: dict) -> np.ndarray:
    """4x4 from a nuScenes record with ``translation`` and scalar-first ``rotation``."""
    return make_se3(quat_wxyz_to_rotation(np.asarray(record["rotation"])), np.asarray(record["translation"]))


class NuScenesSceneReader:
    """One scene of a nuScenes dataset."""

    def __init__(self, nusc: NuScenes, scene_token: str, lidar_channel: str = "LIDAR_TOP") -> None:
        self.nusc = nusc
        self.scene = nusc.get("scene", scene_token)
        self.log = nusc.get("log", self.scene["log_token"])
        self.channel = lidar_channel

    def keyframe_tokens(self) -> list[str]:
        tokens, tok = [], self.scene["first_sample_token"]
        while tok:
            tokens.append(tok)
            tok = self.nusc.get("sample", tok)["next"]
        return tokens

    def lidar_sample_data(self) -> list[dict]:
        """Every lidar sample_data of the scene (keyframes and sweeps), in time order."""
        first = self.nusc.get("sample", self.scene["first_sample_token"])
        sd = self.nusc.get("sample_data", first["data"][self.channel])
        while sd["prev"]:
            sd = self.nusc.get("sample_data", sd["prev"])
        out = [sd]
        while sd["next"]:
            sd = self.nusc.get("sample_data", sd["next"])
            out.append(sd)
        return out

    def ego_T_sensor(self, sd: dict) -> np.ndarray:
        return record_pose(self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]))

    def city_T_ego(self, sd: dict) -> np.ndarray:
        return record_pose(self.nusc.get("ego_pose", sd["ego_pose_token"]))

    def points_ego(self, sd: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points in the ego frame at the sample_data timestamp, intensity, ring index)."""
        pc = LidarPointCloud.from_file(str(Path(self.nusc.dataroot) / sd["filename"]))
        ego_T_sensor = self.ego_T_sensor(sd)
        pts = pc.points[:3].T.astype(np.float64) @ ego_T_sensor[:3, :3].T + ego_T_sensor[:3, 3]
        raw = np.fromfile(Path(self.nusc.dataroot) / sd["filename"], dtype=np.float32).reshape(-1, 5)
        return pts, raw[:, 3], raw[:, 4].astype(np.int64)

    def boxes_global(self, sample_token: str) -> list:
        """nuScenes ``Box`` objects of a keyframe in the global (city) frame."""
        return [self.nusc.get_box(a) for a in self.nusc.get("sample", sample_token)["anns"]]

    @staticmethod
    def box_yaw(rotation_wxyz) -> float:
        return float(Quaternion(rotation_wxyz).yaw_pitch_roll[0])


# --- ingest source ---------------------------------------------------------------------------

# nuScenes lane-divider segment types in av2's LaneMarkType vocabulary (the store's mark_type).
NUSCENES_MARK_TYPES = {
    "SINGLE_DASHED_WHITE": "DASHED_WHITE",
    "DOUBLE_DASHED_WHITE": "DOUBLE_DASH_WHITE",
    "SINGLE_SOLID_WHITE": "SOLID_WHITE",
    "DOUBLE_SOLID_WHITE": "DOUBLE_SOLID_WHITE",
    "SINGLE_SOLID_YELLOW": "SOLID_YELLOW",
    "DOUBLE_SOLID_YELLOW": "DOUBLE_SOLID_YELLOW",
    "SINGLE_DASHED_YELLOW": "DASHED_YELLOW",
    "NIL": "NONE",
}
POINT_FIELDS = 5  # .pcd.bin: float32 x, y, z, intensity, ring index


_NUSC_CACHE: dict[tuple[str, str], NuScenes] = {}


def open_nuscenes(dataroot: Path, version: str) -> NuScenes:
    """One ``NuScenes`` per (dataroot, version) and process: loading the tables is the slow part."""
    key = (str(Path(dataroot).resolve()), version)
    if key not in _NUSC_CACHE:
        table_dir = Path(dataroot) / version
        if not table_dir.is_dir():
            raise FileNotFoundError(
                f"nuScenes tables {table_dir} do not exist (dataroot={dataroot}, version={version})"
            )
        _NUSC_CACHE[key] = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    return _NUSC_CACHE[key]


class NuScenesLogSource(NuScenesSceneReader):
    """One nuScenes scene as a :class:`~gasp_core.data.source.LogSource`; its log id is the scene name."""

    dataset = "nuscenes"
    point_time_offsets = False

    def __init__(self, nusc: NuScenes, scene_token: str, lidar_channel: str = "LIDAR_TOP") -> None:
        super().__init__(nusc, scene_token, lidar_channel)
        self.log_id = self.scene["name"]
        self.city = self.log["location"]
        self.source_root = Path(nusc.dataroot)
        self.lidars = [lidar_channel]
        self.table_dir = self.source_root / nusc.version
        self.pose_file = self.table_dir / "ego_pose.json"
        self.annotation_file = self.table_dir / "category.json"
        self.sidecar = SurfaceSidecar(self.log_id, self.source_root / SIDECAR_DIR / self.log_id)

    def _get(self, table: str, tok: str) -> dict:
        try:
            return self.nusc.get(table, tok)
        except KeyError as exc:
            raise InputError(
                self.log_id, self.table_dir / f"{table}.json", f"no {table} record with token {tok}"
            ) from exc

    @cached_property
    def _lidar_chain(self) -> list[dict]:
        chain = self.lidar_sample_data()
        ts = np.array([sd["timestamp"] for sd in chain], dtype=np.int64)
        bad = np.flatnonzero(np.diff(ts) <= 0)
        if len(bad):
            raise InputError(
                self.log_id,
                self.table_dir / "sample_data.json",
                f"{self.channel} timestamps not increasing at {chain[bad[0] + 1]['filename']} "
                f"({ts[bad[0]]} then {ts[bad[0] + 1]} us)",
            )
        return chain

    @cached_property
    def _lidar_by_ns(self) -> dict[int, dict]:
        return {int(sd["timestamp"]) * 1000: sd for sd in self._lidar_chain}

    def _camera_chains(self) -> dict[str, list[dict]]:
        first = self._get("sample", self.scene["first_sample_token"])
        chains = {}
        for channel, tok in first["data"].items():
            sd = self._get("sample_data", tok)
            if (
                self._get("sensor", self._get("calibrated_sensor", sd["calibrated_sensor_token"])["sensor_token"])[
                    "modality"
                ]
                != "camera"
            ):
                continue
            while sd["prev"]:
                sd = self._get("sample_data", sd["prev"])
            chain = [sd]
            while sd["next"]:
                sd = self._get("sample_data", sd["next"])
                chain.append(sd)
            chains[channel] = chain
        return dict(sorted(chains.items()))

    def input_files(self) -> list[Path]:
        files = [self.source_root / sd["filename"] for sd in self._lidar_chain]
        files += sorted(self.table_dir.glob("*.json"))
        exp = self.source_root / "maps" / "expansion" / f"{self.city}.json"
        return files + ([exp] if exp.is_file() else []) + self.sidecar.files()

    def poses(self) -> tuple[np.ndarray, np.ndarray]:
        records = {}
        for sd in self._lidar_chain + [sd for chain in self._camera_chains().values() for sd in chain]:
            pose = self._get("ego_pose", sd["ego_pose_token"])
            records[int(pose["timestamp"])] = pose
        times = np.array(sorted(records), dtype=np.int64)
        mats = np.stack([record_pose(records[t]) for t in times]) if len(times) else np.zeros((0, 4, 4))
        if not np.isfinite(mats).all():
            raise InputError(self.log_id, self.table_dir / "ego_pose.json", "NaN or inf in ego poses")
        return times * 1000, mats

    def calibration(self) -> pa.Table:
        sensors = [(self.channel, self._lidar_chain[0], "lidar")]
        sensors += [(ch, chain[0], "camera") for ch, chain in self._camera_chains().items()]
        rows = {name: [] for name in CALIBRATION.names}
        for name, sd, kind in sensors:
            cs = self._get("calibrated_sensor", sd["calibrated_sensor_token"])
            q, t = cs.get("rotation"), cs.get("translation")
            if q is None or t is None or len(q) != 4 or len(t) != 3 or not np.isfinite(np.r_[q, t]).all():
                raise InputError(
                    self.log_id, self.table_dir / "calibrated_sensor.json", f"bad or missing extrinsics for {name}"
                )
            K = np.asarray(cs.get("camera_intrinsic") or [], dtype=np.float64)
            if kind == "camera" and K.shape != (3, 3):
                raise InputError(
                    self.log_id, self.table_dir / "calibrated_sensor.json", f"missing camera_intrinsic for {name}"
                )
            cam = kind == "camera"
            values = {
                "sensor_name": name,
                "kind": kind,
                "qw": q[0],
                "qx": q[1],
                "qy": q[2],
                "qz": q[3],
                "tx_m": t[0],
                "ty_m": t[1],
                "tz_m": t[2],
                "fx_px": K[0, 0] if cam else None,
                "fy_px": K[1, 1] if cam else None,
                "cx_px": K[0, 2] if cam else None,
                "cy_px": K[1, 2] if cam else None,
                "k1": 0.0 if cam else None,
                "k2": 0.0 if cam else None,
                "k3": 0.0 if cam else None,
                "width_px": int(sd["width"]) if cam else None,
                "height_px": int(sd["height"]) if cam else None,
            }
            for key, value in values.items():
                rows[key].append(value)
        return pa.table(rows, schema=CALIBRATION)

    def sweep_refs(self) -> list[SweepRef]:
        return [SweepRef(int(sd["timestamp"]) * 1000, self.source_root / sd["filename"]) for sd in self._lidar_chain]

    def read_sweep(self, ref: SweepRef) -> SweepData:
        if not ref.file.is_file():
            raise BadSweepError(self.log_id, ref.file, "sweep file is missing")
        raw = np.fromfile(ref.file, dtype=np.float32)
        if raw.size % POINT_FIELDS:
            raise BadSweepError(
                self.log_id,
                ref.file,
                f"truncated: {raw.size * 4} bytes is not a whole number of {POINT_FIELDS}-float points",
            )
        raw = raw.reshape(-1, POINT_FIELDS)
        sd = self._lidar_by_ns[ref.timestamp_ns]
        ego_T_sensor = record_pose(self._get("calibrated_sensor", sd["calibrated_sensor_token"]))
        pts = raw[:, :3].astype(np.float64) @ ego_T_sensor[:3, :3].T + ego_T_sensor[:3, 3]
        return SweepData(
            points_ego=pts,
            intensity=raw[:, 3],
            laser_number=raw[:, 4].astype(np.int64),
            lidar=np.zeros(len(raw), np.uint8),
            offset_ns=np.zeros(len(raw), np.int64),
            surface=self.sidecar.read(ref.file.name.removesuffix(".pcd.bin"), len(raw)),
        )

    def surface_classes(self) -> list[str] | None:
        """Names of the sidecar's surface ids; None for scenes without one (real nuScenes)."""
        return self.sidecar.classes()

    def camera_frames(self) -> pa.Table:
        rows = {"camera": [], "timestamp_ns": [], "image_path": []}
        for channel, chain in self._camera_chains().items():
            for sd in chain:
                rows["camera"].append(channel)
                rows["timestamp_ns"].append(int(sd["timestamp"]) * 1000)
                rows["image_path"].append(sd["filename"])
        return pa.table(rows, schema=CAMERA_FRAMES)

    def box_records(self) -> BoxRecords:
        ts, track, cat, center, quat, size, npts = [], [], [], [], [], [], []
        for tok in self.keyframe_tokens():
            sample = self._get("sample", tok)
            for ann_tok in sample["anns"]:
                ann = self._get("sample_annotation", ann_tok)
                inst = self._get("instance", ann["instance_token"])
                ts.append(int(sample["timestamp"]) * 1000)
                track.append(ann["instance_token"])
                cat.append(self._get("category", inst["category_token"])["name"])
                center.append(ann["translation"])
                quat.append(ann["rotation"])
                w, l, h = ann["size"]
                size.append([l, w, h])
                npts.append(int(ann.get("num_lidar_pts", -1)))
        arrays = [np.asarray(a, dtype=np.float64).reshape(-1, k) for a, k in ((center, 3), (quat, 4), (size, 3))]
        if not all(np.isfinite(a).all() for a in arrays):
            raise InputError(
                self.log_id, self.table_dir / "sample_annotation.json", "NaN or inf in box centres, rotations or sizes"
            )
        return BoxRecords(
            np.asarray(ts, np.int64), track, cat, arrays[0], arrays[1], arrays[2], np.asarray(npts, np.int64)
        )

    def map_elements(self, bounds_xy: tuple[float, float, float, float]) -> list[MapElement]:
        """The map-expansion layers that meet the box (empty when the dataroot has no expansion)."""
        if not (self.source_root / "maps" / "expansion" / f"{self.city}.json").is_file():
            return []
        nmap = load_map(self.source_root, self.city)
        layers = ["lane_divider", "road_divider", "ped_crossing", "drivable_area"]
        records = nmap.get_records_in_patch(tuple(bounds_xy), layers, mode="intersect")
        out: list[MapElement] = []
        dividers = []
        for layer in ("lane_divider", "road_divider"):
            for tok in records[layer]:
                rec = nmap.get(layer, tok)
                xy = np.asarray(nmap.extract_line(rec["line_token"]).coords)
                kinds = [
                    NUSCENES_MARK_TYPES.get(s.get("segment_type", ""), "UNKNOWN")
                    for s in rec.get("lane_divider_segments", [])
                ]
                mark = max(set(kinds), key=kinds.count) if kinds else "UNKNOWN"
                dividers.append(MapElement(MapLayer.LANE_DIVIDER, tok, 0, _xy_nan_z(xy), closed=False, mark_type=mark))
        out += dedupe_polylines(dividers)
        drivable_polys = []
        for tok in records["drivable_area"]:
            for k, ptok in enumerate(nmap.get("drivable_area", tok)["polygon_tokens"]):
                poly = nmap.extract_polygon(ptok)
                if not overlaps(np.asarray(poly.exterior.coords), bounds_xy):
                    continue  # one drivable_area record holds many polygons; keep those near the log
                drivable_polys.append(poly)
                out += polygon_elements(MapLayer.DRIVABLE_AREA, f"{tok}_{k}", poly)
        out += road_boundaries(drivable_polys)
        for tok in records["ped_crossing"]:
            out += polygon_elements(
                MapLayer.PED_CROSSING, tok, nmap.extract_polygon(nmap.get("ped_crossing", tok)["polygon_token"])
            )
        order = {name: i for i, name in enumerate(MapLayer.ALL)}
        return sorted(out, key=lambda el: order[el.layer])


def _xy_nan_z(xy: np.ndarray) -> np.ndarray:
    return np.column_stack([xy[:, :2], np.full(len(xy), np.nan)])
