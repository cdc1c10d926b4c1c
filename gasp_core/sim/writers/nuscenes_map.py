"""nuScenes maps of a simulated log's town: the semantic-prior raster (``maps/<token>.png``) and the map expansion
(``maps/expansion/<location>.json``, v1.3, as read by ``nuscenes.map_expansion.map_api.NuScenesMap``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from gasp_core.sim.world import SimLog
from gasp_core.sim.writers.nuscenes_tables import token

MAP_RES_M = 0.1


def write_map_mask(log: SimLog, path: Path) -> None:
    """nuScenes' semantic-prior raster: 255 on drivable ground at 0.1 m (origin at the town's lower-left corner)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    town = log.town
    drivable = np.isin(town.material, [1, 2, 3, 4])  # road and its paint
    step = max(1, int(round(MAP_RES_M / town.cfg.material_res_m)))
    Image.fromarray((drivable[::-step, ::step] * 255).astype(np.uint8)).save(path)


def write_map_expansion(log: SimLog, path: Path) -> None:
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
