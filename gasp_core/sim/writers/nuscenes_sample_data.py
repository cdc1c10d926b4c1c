"""nuScenes sample data of a simulated log: lidar ``.pcd.bin`` and camera ``.jpg`` files with their rows.

Keyframe files go under ``samples/``, the others under ``sweeps/``; each file gets a ``sample_data`` row (linked
per channel by prev/next) and an ``ego_pose`` row, and each lidar sweep its surface-class sidecar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from gasp_core.geometry import rotation_to_quat_wxyz, transform_points
from gasp_core.sim.world import SimLog
from gasp_core.sim.writers.nuscenes_tables import LIDAR_CHANNEL, scene_name, timestamp_us, token
from gasp_core.sim.writers.sidecar import SIDECAR_DIR, write_surface_classes, write_sweep_surface


def write_sample_data(
    log: SimLog,
    root: Path,
    tables: dict[str, list[dict]],
    ego_T_lidar: np.ndarray,
    calib: dict[str, str],
    every: int,
    key_idx: list[int],
    sample_tokens: list[str],
) -> None:
    """Write every lidar sweep and camera frame under ``root``; append their ``sample_data`` and ``ego_pose`` rows.

    Sweep ``k`` is a keyframe when ``k % every == 0`` (``key_idx``, with ``sample_tokens`` its samples).
    """
    cfg = log.cfg
    us = lambda t: timestamp_us(log, t)  # noqa: E731
    key_times = np.array([log.sweeps[k].timestamp_s for k in key_idx])

    def nearest_sample(t: float) -> str:
        return sample_tokens[int(np.argmin(np.abs(key_times - t)))]

    def add_ego_pose(t: float) -> str:
        pose = log.city_T_ego(np.array([t]))[0]
        et = token("ego_pose", log.log_id, us(t))
        tables["ego_pose"].append(
            {
                "token": et,
                "timestamp": us(t),
                "translation": list(map(float, pose[:3, 3])),
                "rotation": list(map(float, rotation_to_quat_wxyz(pose[:3, :3]))),
            }
        )
        return et

    # lidar sample_data
    lidar_T_ego = np.linalg.inv(ego_T_lidar)
    chain: dict[str, list[dict]] = {}
    sidecar = root / SIDECAR_DIR / scene_name(log)
    write_surface_classes(sidecar)
    for k, sweep in enumerate(log.sweeps):
        is_key = k % every == 0
        folder = "samples" if is_key else "sweeps"
        fname = f"{folder}/{LIDAR_CHANNEL}/{log.log_id[:8]}__{LIDAR_CHANNEL}__{us(sweep.timestamp_s)}.pcd.bin"
        path = root / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        pts = transform_points(lidar_T_ego, sweep.points_ego)
        data = np.column_stack([pts, sweep.intensity.astype(np.float64), sweep.laser_number.astype(np.float64)]).astype(
            np.float32
        )
        data.tofile(path)
        write_sweep_surface(sidecar, path.name.removesuffix(".pcd.bin"), sweep.surface)
        chain.setdefault(LIDAR_CHANNEL, []).append(
            {
                "token": token("sd", log.log_id, LIDAR_CHANNEL, k),
                "sample_token": nearest_sample(sweep.timestamp_s),
                "ego_pose_token": add_ego_pose(sweep.timestamp_s),
                "calibrated_sensor_token": calib[LIDAR_CHANNEL],
                "timestamp": us(sweep.timestamp_s),
                "fileformat": "pcd",
                "is_key_frame": is_key,
                "height": 0,
                "width": 0,
                "filename": fname,
            }
        )
    # camera sample_data: a frame is a keyframe when it belongs to a keyframe sweep
    for n, frame in enumerate(log.frames):
        spec = cfg.camera.rig[frame.camera]
        sweep_k = int(
            np.argmin(
                [
                    abs(s.timestamp_s - frame.timestamp_s) if s.timestamp_s <= frame.timestamp_s else np.inf
                    for s in log.sweeps
                ]
            )
        )
        is_key = sweep_k % every == 0
        folder = "samples" if is_key else "sweeps"
        fname = f"{folder}/{spec.nuscenes_name}/{log.log_id[:8]}__{spec.nuscenes_name}__{us(frame.timestamp_s)}.jpg"
        path = root / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame.image).save(path, quality=cfg.camera.jpeg_quality)
        chain.setdefault(spec.nuscenes_name, []).append(
            {
                "token": token("sd", log.log_id, spec.nuscenes_name, n),
                "sample_token": sample_tokens[key_idx.index(sweep_k)] if is_key else nearest_sample(frame.timestamp_s),
                "ego_pose_token": add_ego_pose(frame.timestamp_s),
                "calibrated_sensor_token": calib[spec.nuscenes_name],
                "timestamp": us(frame.timestamp_s),
                "fileformat": "jpg",
                "is_key_frame": is_key,
                "height": cfg.camera.height_px,
                "width": cfg.camera.width_px,
                "filename": fname,
            }
        )
    for records in chain.values():
        for i, rec in enumerate(records):
            rec["prev"] = records[i - 1]["token"] if i > 0 else ""
            rec["next"] = records[i + 1]["token"] if i + 1 < len(records) else ""
            tables["sample_data"].append(rec)
