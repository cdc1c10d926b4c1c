"""Write simulated logs as a nuScenes dataset (tables, samples/, sweeps/, maps/ with map expansion).

Readable by ``nuscenes.NuScenes(version=..., dataroot=...)``; each log is one scene, keyframes
(samples) at ``KEYFRAME_HZ`` carry the annotations, the other lidar sweeps and camera frames are
non-keyframe sample_data, as in nuScenes. Each log's town is its own map location, written in
the map-expansion format read by ``nuscenes.map_expansion.map_api.NuScenesMap`` (see
``gasp_core.data.nuscenes_reader.register_location`` for its list of known locations).

Outside the nuScenes format, each return's surface class is written per scene under
``<dataroot>/gasp_sidecar/<scene name>/``: ``surface_classes.json`` and
``lidar_surface/<sweep file name without .pcd.bin>.feather``, rows aligned with the ``.pcd.bin``
points in file order (see ``gasp_core.sim.writers.sidecar``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from gasp_core.geometry import make_se3, quat_wxyz_from_yaw, rotation_to_quat_wxyz, transform_points, yaw_rotation
from gasp_core.io import atomic_dir
from gasp_core.sim.sensors import camera_intrinsics, ego_T_camera
from gasp_core.sim.world import SimLog
from gasp_core.sim.writers.sidecar import SIDECAR_DIR, write_surface_classes, write_sweep_surface

KEYFRAME_HZ = 2.0
LIDAR_CHANNEL = "LIDAR_TOP"
MAP_RES_M = 0.1

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


def write_nuscenes_log(log: SimLog, root: Path) -> dict[str, list[dict]]:
    """Write one log's files under ``root`` and return its table rows."""
    tables: dict[str, list[dict]] = {name: [] for name in TABLES}
    _write_log(log, root, tables)
    return tables


def write_tables(root: Path, version: str, parts: list[dict[str, list[dict]]]) -> None:
    table_dir = Path(root) / version
    table_dir.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        (table_dir / f"{name}.json").write_text(json.dumps([row for part in parts for row in part[name]]))


def write_nuscenes(logs: list[SimLog], dataroot: Path, version: str = "v1.0-gasp") -> Path:
    """Write ``logs`` as one nuScenes dataset at ``dataroot`` (replaced atomically when complete)."""
    with atomic_dir(Path(dataroot)) as root:
        parts = [static_tables(logs[0])] + [write_nuscenes_log(log, root) for log in logs]
        write_tables(root, version, parts)
    return Path(dataroot)


def _write_log(log: SimLog, root: Path, tables: dict[str, list[dict]]) -> None:
    cfg = log.cfg
    us = lambda t: int(log.to_ns(t) // 1000)  # noqa: E731
    log_token = token("log", log.log_id)
    location = location_name(log)
    tables["log"].append(
        {
            "token": log_token,
            "logfile": log.log_id,
            "vehicle": "gasp-sim",
            "date_captured": "2026-01-01",
            "location": location,
        }
    )
    map_token = token("map", log.log_id)
    _write_map_mask(log, root / "maps" / f"{map_token}.png")
    tables["map"].append(
        {
            "token": map_token,
            "log_tokens": [log_token],
            "category": "semantic_prior",
            "filename": f"maps/{map_token}.png",
        }
    )
    _write_map_expansion(log, root / "maps" / "expansion" / f"{location}.json")

    # calibrated sensors
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

    # samples at keyframes
    every = int(round(cfg.lidar.rate_hz / KEYFRAME_HZ))
    key_idx = list(range(0, len(log.sweeps), every))
    scene_token = token("scene", log.log_id)
    sample_tokens = [token("sample", log.log_id, k) for k in key_idx]
    for n, (k, st) in enumerate(zip(key_idx, sample_tokens)):
        tables["sample"].append(
            {
                "token": st,
                "timestamp": us(log.sweeps[k].timestamp_s),
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

    # annotations at keyframes, in the global (city) frame
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


def _write_map_mask(log: SimLog, path: Path) -> None:
    """nuScenes' semantic-prior raster: 255 on drivable ground at 0.1 m (origin at the town's lower-left corner)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    town = log.town
    drivable = np.isin(town.material, [1, 2, 3, 4])  # road and its paint
    step = max(1, int(round(MAP_RES_M / town.cfg.material_res_m)))
    Image.fromarray((drivable[::-step, ::step] * 255).astype(np.uint8)).save(path)


def _write_map_expansion(log: SimLog, path: Path) -> None:
    """The town in nuScenes map-expansion form (v1.3): drivable areas, lanes, dividers, crossings, walkways."""
    town = log.town
    layers: dict[str, list | dict] = {
        name: []
        for name in (
            "node",
            "line",
            "polygon",
            "drivable_area",
            "road_segment",
            "road_block",
            "lane",
            "ped_crossing",
            "walkway",
            "stop_line",
            "carpark_area",
            "road_divider",
            "lane_divider",
            "traffic_light",
            "lane_connector",
        )
    }
    layers["arcline_path_3"] = {}
    layers["connectivity"] = {}
    counter = {"n": 0}

    def node(xy: np.ndarray) -> str:
        counter["n"] += 1
        t = token("node", log.log_id, counter["n"])
        layers["node"].append({"token": t, "x": float(xy[0]), "y": float(xy[1])})
        return t

    def polygon(points: np.ndarray, hole: np.ndarray | None = None) -> str:
        t = token("polygon", log.log_id, counter["n"])
        holes = [] if hole is None else [{"node_tokens": [node(p) for p in hole]}]
        layers["polygon"].append({"token": t, "exterior_node_tokens": [node(p) for p in points], "holes": holes})
        return t

    def line(points: np.ndarray) -> tuple[str, list[str]]:
        nodes = [node(p) for p in points]
        t = token("line", log.log_id, counter["n"])
        layers["line"].append({"token": t, "node_tokens": nodes})
        return t, nodes

    drivable_polys = [polygon(p) for p in town.drivable_polygons()]
    da_token = token("drivable_area", log.log_id)
    layers["drivable_area"].append({"token": da_token, "polygon_tokens": drivable_polys})
    for k, p in enumerate(drivable_polys):
        layers["road_segment"].append(
            {
                "token": token("road_segment", log.log_id, k),
                "polygon_token": p,
                "is_intersection": False,
                "drivable_area_token": da_token,
            }
        )
    for lane in town.lanes.values():
        ring = np.concatenate([lane.left_boundary, lane.right_boundary[::-1]])
        record = {
            "token": token("lane", log.log_id, lane.id),
            "polygon_token": polygon(ring),
            "lane_type": "CAR",
            "from_edge_line_token": "",
            "to_edge_line_token": "",
            "left_lane_divider_segments": [],
            "right_lane_divider_segments": [],
        }
        layers["lane_connector" if lane.is_intersection else "lane"].append(record)
        layers["connectivity"][record["token"]] = {
            "incoming": [token("lane", log.log_id, p) for p in lane.predecessors],
            "outgoing": [token("lane", log.log_id, s) for s in lane.successors],
        }
        if not lane.is_intersection:
            if lane.left_mark == "DOUBLE_SOLID_YELLOW" and lane.left_neighbor is None:
                lt, _ = line(lane.left_boundary)
                layers["road_divider"].append(
                    {"token": token("road_divider", log.log_id, lane.id), "line_token": lt, "road_segment_token": ""}
                )
            if lane.right_mark == "DASHED_WHITE":
                lt, nodes = line(lane.right_boundary)
                layers["lane_divider"].append(
                    {
                        "token": token("lane_divider", log.log_id, lane.id),
                        "line_token": lt,
                        "lane_divider_segments": [
                            {"node_token": n, "segment_type": "SINGLE_DASHED_WHITE"} for n in nodes
                        ],
                    }
                )
    for k, cw in enumerate(town.crosswalks):
        layers["ped_crossing"].append(
            {
                "token": token("ped_crossing", log.log_id, k),
                "polygon_token": polygon(cw.polygon),
                "road_segment_token": "",
            }
        )
    for k, poly in enumerate(town.drivable_polygons()):
        ring = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * town.cfg.sidewalk_width_m
        outer = np.concatenate([poly.min(0), poly.max(0)])
        walk = np.array([[outer[0], outer[1]], [outer[2], outer[1]], [outer[2], outer[3]], [outer[0], outer[3]]]) + ring
        layers["walkway"].append({"token": token("walkway", log.log_id, k), "polygon_token": polygon(walk, poly)})
    for k, strip in enumerate(town.parking_strips):
        layers["carpark_area"].append(
            {"token": token("carpark", log.log_id, k), "polygon_token": polygon(strip), "orientation": 0.0}
        )
    x0, y0, x1, y1 = town.bounds_xy
    layers["canvas_edge"] = [float(x1), float(y1)]
    layers["version"] = "1.3"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(layers))
