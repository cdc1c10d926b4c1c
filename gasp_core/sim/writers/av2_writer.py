"""Write a simulated log in the Argoverse 2 sensor-dataset layout.

Readable by ``av2.datasets.sensor.av2_sensor_dataloader.AV2SensorDataLoader`` and
``av2.map.map_api.ArgoverseStaticMap``. One deliberate difference: lidar x/y/z are float32 (AV2
ships float16), so returns keep millimetre precision; the av2 loader reads both.

Outside the AV2 format, ``<log_dir>/gasp_sidecar/`` holds each return's surface class
(``surface_classes.json`` and ``lidar_surface/<timestamp_ns>.feather``, rows aligned 1:1 with
``sensors/lidar/<timestamp_ns>.feather``; see ``gasp_core.sim.writers.sidecar``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
from PIL import Image

from gasp_core.geometry import quat_wxyz_from_yaw, rotation_to_quat_wxyz
from gasp_core.io import atomic_dir
from gasp_core.sim.sensors import camera_intrinsics, ego_T_camera
from gasp_core.sim.world import SimLog
from gasp_core.sim.writers.sidecar import SIDECAR_DIR, write_surface_classes, write_sweep_surface

CITY_NAME = "SIM"
GROUND_RES_M = 0.3  # AV2's ground-height raster resolution


def _feather(path: Path, columns: dict[str, np.ndarray | list]) -> None:
    feather.write_feather(pa.table(columns), str(path), compression="lz4")


def _xyz(points_xy: np.ndarray, z: np.ndarray) -> list[dict[str, float]]:
    return [
        {"x": round(float(x), 3), "y": round(float(y), 3), "z": round(float(h), 3)} for (x, y), h in zip(points_xy, z)
    ]


def write_av2_log(log: SimLog, split_dir: Path) -> Path:
    """Write ``log`` under ``split_dir/<log_id>``; the folder appears only once complete."""
    final = Path(split_dir) / log.log_id
    with atomic_dir(final) as root:
        _write_lidar(log, root)
        _write_cameras(log, root)
        _write_poses(log, root)
        _write_calibration(log, root)
        _write_annotations(log, root)
        _write_map(log, root)
    return final


def _write_lidar(log: SimLog, root: Path) -> None:
    lidar_dir = root / "sensors" / "lidar"
    lidar_dir.mkdir(parents=True)
    sidecar = root / SIDECAR_DIR
    write_surface_classes(sidecar)
    for sweep in log.sweeps:
        ts = int(log.to_ns(sweep.timestamp_s))
        _feather(
            lidar_dir / f"{ts}.feather",
            {
                "x": sweep.points_ego[:, 0].astype(np.float32),
                "y": sweep.points_ego[:, 1].astype(np.float32),
                "z": sweep.points_ego[:, 2].astype(np.float32),
                "intensity": sweep.intensity.astype(np.uint8),
                "laser_number": sweep.laser_number.astype(np.uint8),
                "offset_ns": sweep.offset_ns.astype(np.int32),
            },
        )
        write_sweep_surface(sidecar, str(ts), sweep.surface)


def _write_cameras(log: SimLog, root: Path) -> None:
    rig = log.cfg.camera.rig
    for frame in log.frames:
        cam_dir = root / "sensors" / "cameras" / rig[frame.camera].av2_name
        cam_dir.mkdir(parents=True, exist_ok=True)
        ts = int(log.to_ns(frame.timestamp_s))
        Image.fromarray(frame.image).save(cam_dir / f"{ts}.jpg", quality=log.cfg.camera.jpeg_quality)


def _write_poses(log: SimLog, root: Path) -> None:
    times = log.pose_times_s()
    poses = log.city_T_ego(times)
    q = rotation_to_quat_wxyz(poses[:, :3, :3])
    _feather(
        root / "city_SE3_egovehicle.feather",
        {
            "timestamp_ns": log.to_ns(times).astype(np.int64),
            "qw": q[:, 0],
            "qx": q[:, 1],
            "qy": q[:, 2],
            "qz": q[:, 3],
            "tx_m": poses[:, 0, 3],
            "ty_m": poses[:, 1, 3],
            "tz_m": poses[:, 2, 3],
        },
    )


def _write_calibration(log: SimLog, root: Path) -> None:
    cfg = log.cfg
    calib = root / "calibration"
    calib.mkdir()
    names, poses = [], []
    for spec in cfg.camera.rig:
        names.append(spec.av2_name)
        poses.append(ego_T_camera(cfg.camera, spec))
    lidar_pose = np.eye(4)
    lidar_pose[:3, 3] = cfg.lidar.mount_xyz_m
    # AV2 vehicles carry two stacked lidars and av2's Sweep reader looks up both extrinsics; the
    # simulated one is registered under both names (points are already in the ego frame).
    names += ["up_lidar", "down_lidar"]
    poses += [lidar_pose, lidar_pose]
    poses_arr = np.stack(poses)
    q = rotation_to_quat_wxyz(poses_arr[:, :3, :3])
    _feather(
        calib / "egovehicle_SE3_sensor.feather",
        {
            "sensor_name": names,
            "qw": q[:, 0],
            "qx": q[:, 1],
            "qy": q[:, 2],
            "qz": q[:, 3],
            "tx_m": poses_arr[:, 0, 3],
            "ty_m": poses_arr[:, 1, 3],
            "tz_m": poses_arr[:, 2, 3],
        },
    )
    K = camera_intrinsics(cfg.camera)
    n = len(cfg.camera.rig)
    _feather(
        calib / "intrinsics.feather",
        {
            "sensor_name": [s.av2_name for s in cfg.camera.rig],
            "fx_px": np.full(n, K[0, 0]),
            "fy_px": np.full(n, K[1, 1]),
            "cx_px": np.full(n, K[0, 2]),
            "cy_px": np.full(n, K[1, 2]),
            "k1": np.zeros(n),
            "k2": np.zeros(n),
            "k3": np.zeros(n),
            "height_px": np.full(n, cfg.camera.height_px, np.uint16),
            "width_px": np.full(n, cfg.camera.width_px, np.uint16),
        },
    )


def _write_annotations(log: SimLog, root: Path) -> None:
    rows: dict[str, list] = {
        k: []
        for k in (
            "timestamp_ns",
            "track_uuid",
            "category",
            "length_m",
            "width_m",
            "height_m",
            "qw",
            "qx",
            "qy",
            "qz",
            "tx_m",
            "ty_m",
            "tz_m",
            "num_interior_pts",
        )
    }
    for sweep, boxes in zip(log.sweeps, log.boxes):
        ts = int(log.to_ns(sweep.timestamp_s))
        for box in boxes:
            tr = log.tracks[box.track]
            q = quat_wxyz_from_yaw(box.yaw_ego_rad)
            for key, value in (
                ("timestamp_ns", ts),
                ("track_uuid", tr.track_id),
                ("category", tr.category),
                ("length_m", tr.length_m),
                ("width_m", tr.width_m),
                ("height_m", tr.height_m),
                ("qw", q[0]),
                ("qx", q[1]),
                ("qy", q[2]),
                ("qz", q[3]),
                ("tx_m", box.center_ego[0]),
                ("ty_m", box.center_ego[1]),
                ("tz_m", box.center_ego[2]),
                ("num_interior_pts", box.num_interior_pts),
            ):
                rows[key].append(value)
    table = pa.table(
        {
            "timestamp_ns": pa.array(rows["timestamp_ns"], pa.int64()),
            "track_uuid": pa.array(rows["track_uuid"], pa.string()),
            "category": pa.array(rows["category"], pa.string()),
            **{
                k: pa.array(rows[k], pa.float64())
                for k in ("length_m", "width_m", "height_m", "qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")
            },
            "num_interior_pts": pa.array(rows["num_interior_pts"], pa.int64()),
        }
    )
    feather.write_feather(table, str(root / "annotations.feather"), compression="lz4")


def _write_map(log: SimLog, root: Path) -> None:
    town = log.town
    map_dir = root / "map"
    map_dir.mkdir()
    h = town.terrain_height
    lanes = {}
    for lane in town.lanes.values():
        lanes[str(lane.id)] = {
            "id": lane.id,
            "is_intersection": lane.is_intersection,
            "lane_type": "VEHICLE",
            "left_lane_boundary": _xyz(lane.left_boundary, h(lane.left_boundary)),
            "left_lane_mark_type": lane.left_mark,
            "right_lane_boundary": _xyz(lane.right_boundary, h(lane.right_boundary)),
            "right_lane_mark_type": lane.right_mark,
            "successors": list(lane.successors),
            "predecessors": list(lane.predecessors),
            "right_neighbor_id": lane.right_neighbor,
            "left_neighbor_id": lane.left_neighbor,
        }
    crossings = {}
    for k, cw in enumerate(town.crosswalks):
        cid = 500_000 + k
        crossings[str(cid)] = {"edge1": _xyz(cw.edge1, h(cw.edge1)), "edge2": _xyz(cw.edge2, h(cw.edge2)), "id": cid}
    areas = {}
    for k, poly in enumerate(town.drivable_polygons()):
        aid = 900_000 + k
        areas[str(aid)] = {"area_boundary": _xyz(poly, h(poly)), "id": aid}
    vector = {"pedestrian_crossings": crossings, "lane_segments": lanes, "drivable_areas": areas}
    (map_dir / f"log_map_archive_{log.log_id}____{CITY_NAME}_city_{log.seed}.json").write_text(json.dumps(vector))
    # ground height raster at 30 cm, with the Sim(2) that maps city coordinates to raster indices
    x0, y0, x1, y1 = town.bounds_xy
    xs = np.arange(x0, x1, GROUND_RES_M)
    ys = np.arange(y0, y1, GROUND_RES_M)
    xx, yy = np.meshgrid(xs, ys)
    ground = town.surface_height(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(xx.shape).astype(np.float16)
    np.save(map_dir / f"{log.log_id}_ground_height_surface____{CITY_NAME}.npy", ground)
    sim2 = {"R": [1.0, 0.0, 0.0, 1.0], "t": [-float(x0), -float(y0)], "s": 1.0 / GROUND_RES_M}
    (map_dir / f"{log.log_id}___img_Sim2_city.json").write_text(json.dumps(sim2))
