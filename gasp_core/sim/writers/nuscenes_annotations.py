"""nuScenes annotations of a simulated log: ``sample_annotation`` rows at keyframes (global frame) and ``instance``
rows, with each box's attributes from its track's kind and speed."""

from __future__ import annotations

import numpy as np

from gasp_core.geometry import quat_wxyz_from_yaw, transform_points
from gasp_core.sim.world import SimLog
from gasp_core.sim.writers.nuscenes_tables import NUSCENES_CATEGORY, token


def add_annotations(log: SimLog, tables: dict[str, list[dict]], key_idx: list[int], sample_tokens: list[str]) -> None:
    """Append the boxes of keyframe sweeps ``key_idx`` (samples ``sample_tokens``) as ``sample_annotation`` rows, in
    the global (city) frame, linked per track, and one ``instance`` row per track."""
    per_instance: dict[int, list[dict]] = {}
    for k, st in zip(key_idx, sample_tokens):
        sweep = log.sweeps[k]
        city_T_ego = log.city_T_ego(np.array([sweep.timestamp_s]))[0]
        ego_yaw = float(np.arctan2(city_T_ego[1, 0], city_T_ego[0, 0]))
        for box in log.boxes[k]:
            tr = log.tracks[box.track]
            center = transform_points(city_T_ego, box.center_ego[None])[0]
            speed = float(
                np.linalg.norm(
                    np.diff(tr.state_at(np.array([sweep.timestamp_s - 0.05, sweep.timestamp_s + 0.05]))[0], axis=0)
                )
                / 0.1
            )
            per_instance.setdefault(box.track, []).append(
                {
                    "token": token("ann", log.log_id, box.track, k),
                    "sample_token": st,
                    "instance_token": token("instance", log.log_id, tr.track_id),
                    "visibility_token": "4",
                    "attribute_tokens": [token("attribute", a) for a in _attributes(tr.kind, speed)],
                    "translation": list(map(float, center)),
                    "size": [tr.width_m, tr.length_m, tr.height_m],
                    "rotation": list(map(float, quat_wxyz_from_yaw(box.yaw_ego_rad + ego_yaw))),
                    "num_lidar_pts": int(box.num_interior_pts),
                    "num_radar_pts": 0,
                }
            )
    for track, anns in per_instance.items():
        tr = log.tracks[track]
        for i, ann in enumerate(anns):
            ann["prev"] = anns[i - 1]["token"] if i > 0 else ""
            ann["next"] = anns[i + 1]["token"] if i + 1 < len(anns) else ""
            tables["sample_annotation"].append(ann)
        tables["instance"].append(
            {
                "token": token("instance", log.log_id, tr.track_id),
                "category_token": token("category", NUSCENES_CATEGORY[tr.category]),
                "nbr_annotations": len(anns),
                "first_annotation_token": anns[0]["token"],
                "last_annotation_token": anns[-1]["token"],
            }
        )


def _attributes(kind: str, speed_mps: float) -> list[str]:
    if kind == "pedestrian":
        return ["pedestrian.moving" if speed_mps > 0.2 else "pedestrian.standing"]
    if kind == "cyclist":
        return ["cycle.with_rider"]
    if kind == "parked":
        return ["vehicle.parked"]
    return ["vehicle.moving" if speed_mps > 0.3 else "vehicle.stopped"]
