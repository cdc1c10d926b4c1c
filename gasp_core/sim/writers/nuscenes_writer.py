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

This module is the entry point; the parts are in ``nuscenes_tables`` (constants, tokens, table rows),
``nuscenes_map`` (raster and map expansion), ``nuscenes_sample_data`` (lidar and camera files) and
``nuscenes_annotations`` (boxes and instances).
"""

from __future__ import annotations

from pathlib import Path

from gasp_core.io import atomic_dir
from gasp_core.sim.world import SimLog
from gasp_core.sim.writers.nuscenes_annotations import add_annotations
from gasp_core.sim.writers.nuscenes_map import MAP_RES_M, write_map_expansion, write_map_mask
from gasp_core.sim.writers.nuscenes_sample_data import write_sample_data
from gasp_core.sim.writers.nuscenes_tables import (
    ATTRIBUTES,
    KEYFRAME_HZ,
    LIDAR_CHANNEL,
    NUSCENES_CATEGORY,
    TABLES,
    add_calibrated_sensors,
    add_samples_and_scene,
    lidar_T_nuscenes,
    location_name,
    log_row,
    map_row,
    scene_name,
    static_tables,
    token,
    write_tables,
)

__all__ = [
    "ATTRIBUTES",
    "KEYFRAME_HZ",
    "LIDAR_CHANNEL",
    "MAP_RES_M",
    "NUSCENES_CATEGORY",
    "TABLES",
    "lidar_T_nuscenes",
    "location_name",
    "scene_name",
    "static_tables",
    "token",
    "write_nuscenes",
    "write_nuscenes_log",
    "write_tables",
]


def write_nuscenes_log(log: SimLog, root: Path) -> dict[str, list[dict]]:
    """Write one log's files under ``root`` and return its table rows."""
    tables: dict[str, list[dict]] = {name: [] for name in TABLES}
    _write_log(log, root, tables)
    return tables


def write_nuscenes(logs: list[SimLog], dataroot: Path, version: str = "v1.0-gasp") -> Path:
    """Write ``logs`` as one nuScenes dataset at ``dataroot`` (replaced atomically when complete)."""
    with atomic_dir(Path(dataroot)) as root:
        parts = [static_tables(logs[0])] + [write_nuscenes_log(log, root) for log in logs]
        write_tables(root, version, parts)
    return Path(dataroot)


def _write_log(log: SimLog, root: Path, tables: dict[str, list[dict]]) -> None:
    log_token = token("log", log.log_id)
    location = location_name(log)
    tables["log"].append(log_row(log, log_token, location))
    map_token = token("map", log.log_id)
    write_map_mask(log, root / "maps" / f"{map_token}.png")
    tables["map"].append(map_row(map_token, log_token))
    write_map_expansion(log, root / "maps" / "expansion" / f"{location}.json")

    ego_T_lidar, calib = add_calibrated_sensors(log, tables)

    # samples at keyframes
    every = int(round(log.cfg.lidar.rate_hz / KEYFRAME_HZ))
    key_idx = list(range(0, len(log.sweeps), every))
    sample_tokens = add_samples_and_scene(log, tables, log_token, key_idx)

    write_sample_data(log, root, tables, ego_T_lidar, calib, every, key_idx, sample_tokens)
    add_annotations(log, tables, key_idx, sample_tokens)
