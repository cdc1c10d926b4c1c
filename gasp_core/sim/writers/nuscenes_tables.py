"""nuScenes table rows of a simulated log: constants, tokens, the shared tables, log/map/sensor/sample/scene rows.

The rows are plain dicts in the nuScenes JSON schema; ``write_tables`` writes one ``<name>.json`` per table.
Sample data (files and their rows) is in ``nuscenes_sample_data``, annotations in ``nuscenes_annotations``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from gasp_core.geometry import make_se3, rotation_to_quat_wxyz, yaw_rotation
from gasp_core.sim.sensors import camera_intrinsics, ego_T_camera
from gasp_core.sim.world import SimLog

KEYFRAME_HZ = 2.0
LIDAR_CHANNEL = "LIDAR_TOP"

NUSCENES_CATEGORY = {
    "REGULAR_VEHICLE": "vehicle.car",
    "BOX_TRUCK": "vehicle.truck",
    "BUS": "vehicle.bus.rigid",
    "PEDESTRIAN": "human.pedestrian.adult",
    "BICYCLIST": "vehicle.bicycle",
}
TABLES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)
ATTRIBUTES = [
    "vehicle.moving",
    "vehicle.stopped",
    "vehicle.parked",
    "pedestrian.moving",
    "pedestrian.standing",
    "cycle.with_rider",
]


def token(*parts: object) -> str:
    """Deterministic 32-hex token, like nuScenes'."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def timestamp_us(log: SimLog, t: float) -> int:
    """nuScenes' integer microsecond timestamp of log time ``t``."""
    return int(log.to_ns(t) // 1000)


def lidar_T_nuscenes() -> np.ndarray:
    """ego_T_lidar rotation of nuScenes' LIDAR_TOP: x right, y forward, z up."""
    return yaw_rotation(np.pi / 2)


def location_name(log: SimLog) -> str:
    return f"gasp-town-{log.seed}"


def scene_name(log: SimLog) -> str:
    return f"scene-{log.log_id[:8]}"


def static_tables(log: SimLog) -> dict[str, list[dict]]:
    """Rows of the tables shared by all logs (categories, attributes, visibility, sensors)."""
    tables: dict[str, list[dict]] = {name: [] for name in TABLES}
    for name in sorted(set(NUSCENES_CATEGORY.values())):
        tables["category"].append({"token": token("category", name), "name": name, "description": name})
    for name in ATTRIBUTES:
        tables["attribute"].append({"token": token("attribute", name), "name": name, "description": name})
    for level, desc in (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100")):
        tables["visibility"].append(
            {"token": level, "level": desc, "description": f"visibility of whole object is {desc}%"}
        )
    channels = [(LIDAR_CHANNEL, "lidar")] + [(c.nuscenes_name, "camera") for c in log.cfg.camera.rig]
    for channel, modality in channels:
        tables["sensor"].append({"token": token("sensor", channel), "channel": channel, "modality": modality})
    return tables


def write_tables(root: Path, version: str, parts: list[dict[str, list[dict]]]) -> None:
    table_dir = Path(root) / version
    table_dir.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        (table_dir / f"{name}.json").write_text(json.dumps([row for part in parts for row in part[name]]))


def log_row(log: SimLog, log_token: str, location: str) -> dict:
    """The log's ``log`` row."""
    return {
        "token": log_token,
        "logfile": log.log_id,
        "vehicle": "gasp-sim",
        "date_captured": "2026-01-01",
        "location": location,
    }


def map_row(map_token: str, log_token: str) -> dict:
    """The ``map`` row of the log's semantic-prior raster."""
    return {
        "token": map_token,
        "log_tokens": [log_token],
        "category": "semantic_prior",
        "filename": f"maps/{map_token}.png",
    }


def add_calibrated_sensors(log: SimLog, tables: dict[str, list[dict]]) -> tuple[np.ndarray, dict[str, str]]:
    """Append the lidar's and cameras' ``calibrated_sensor`` rows; returns ego_T_lidar and each channel's token."""
    cfg = log.cfg
    ego_T_lidar = make_se3(lidar_T_nuscenes(), np.asarray(cfg.lidar.mount_xyz_m))
    calib = {LIDAR_CHANNEL: token("calib", log.log_id, LIDAR_CHANNEL)}
    tables["calibrated_sensor"].append(
        {
            "token": calib[LIDAR_CHANNEL],
            "sensor_token": token("sensor", LIDAR_CHANNEL),
            "translation": list(map(float, ego_T_lidar[:3, 3])),
            "rotation": list(map(float, rotation_to_quat_wxyz(ego_T_lidar[:3, :3]))),
            "camera_intrinsic": [],
        }
    )
    K = camera_intrinsics(cfg.camera)
    for spec in cfg.camera.rig:
        pose = ego_T_camera(cfg.camera, spec)
        calib[spec.nuscenes_name] = token("calib", log.log_id, spec.nuscenes_name)
        tables["calibrated_sensor"].append(
            {
                "token": calib[spec.nuscenes_name],
                "sensor_token": token("sensor", spec.nuscenes_name),
                "translation": list(map(float, pose[:3, 3])),
                "rotation": list(map(float, rotation_to_quat_wxyz(pose[:3, :3]))),
                "camera_intrinsic": K.tolist(),
            }
        )
    return ego_T_lidar, calib


def add_samples_and_scene(log: SimLog, tables: dict[str, list[dict]], log_token: str, key_idx: list[int]) -> list[str]:
    """Append the ``sample`` rows (one per keyframe sweep in ``key_idx``) and the ``scene`` row; returns the
    sample tokens."""
    scene_token = token("scene", log.log_id)
    sample_tokens = [token("sample", log.log_id, k) for k in key_idx]
    for n, (k, st) in enumerate(zip(key_idx, sample_tokens)):
        tables["sample"].append(
            {
                "token": st,
                "timestamp": timestamp_us(log, log.sweeps[k].timestamp_s),
                "scene_token": scene_token,
                "prev": sample_tokens[n - 1] if n > 0 else "",
                "next": sample_tokens[n + 1] if n + 1 < len(sample_tokens) else "",
            }
        )
    tables["scene"].append(
        {
            "token": scene_token,
            "log_token": log_token,
            "nbr_samples": len(sample_tokens),
            "first_sample_token": sample_tokens[0],
            "last_sample_token": sample_tokens[-1],
            "name": scene_name(log),
            "description": "gasp embedded world",
        }
    )
    return sample_tokens
