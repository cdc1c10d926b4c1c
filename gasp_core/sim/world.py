"""Simulate one log of the embedded world: town, traffic, lidar sweeps, camera frames, boxes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

from gasp_core.geometry import make_se3, transform_points, yaw_rotation
from gasp_core.progress import progress as progress_bar
from gasp_core.sim.agents import AgentTrack
from gasp_core.sim.config import WorldConfig
from gasp_core.sim.meshes import TaggedMesh, static_mesh
from gasp_core.sim.sensors import (
    LidarSweep,
    WorldCaster,
    camera_trigger_offset_s,
    cast_lidar_sweep,
    ego_T_camera,
    render_camera,
)
from gasp_core.sim.town import Town
from gasp_core.sim.traffic import simulate_traffic

# Logs start at a fixed GPS-like epoch (ns) so timestamps look like AV2's; log k is 1e12 ns later.
EPOCH_NS = 315_970_000_000_000_000


@dataclass
class Box:
    """An annotated cuboid in the ego frame at a lidar timestamp."""

    track: int  # index into SimLog.tracks
    center_ego: np.ndarray
    yaw_ego_rad: float
    num_interior_pts: int


@dataclass
class CameraFrame:
    camera: int  # index into cfg.camera.rig
    timestamp_s: float
    image: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float, along the optical axis


@dataclass
class SimLog:
    log_id: str
    seed: int
    start_ns: int
    cfg: WorldConfig
    town: Town
    ego: AgentTrack
    tracks: list[AgentTrack]
    sweeps: list[LidarSweep] = field(default_factory=list)
    boxes: list[list[Box]] = field(default_factory=list)  # per sweep
    frames: list[CameraFrame] = field(default_factory=list)

    def to_ns(self, t_s: float | np.ndarray) -> np.ndarray:
        return self.start_ns + np.round(np.asarray(t_s, dtype=np.float64) * 1e9).astype(np.int64)

    def city_T_ego(self, t_s: np.ndarray) -> np.ndarray:
        """Ego poses (N, 4, 4) at times (s). The ego origin is the rear axle on the ground."""
        xy, yaw, _ = self.ego.state_at(np.asarray(t_s, dtype=np.float64))
        heading = np.stack([np.cos(yaw), np.sin(yaw)], -1)
        rear_xy = xy - heading * (self.cfg.ego_length_m / 2 - self.cfg.ego_rear_overhang_m)
        z = self.town.terrain_height(rear_xy)
        return make_se3(yaw_rotation(yaw), np.column_stack([rear_xy, z]))

    def pose_times_s(self) -> np.ndarray:
        """Times at which ego poses are written: a 20 Hz grid plus every sensor timestamp."""
        grid = np.arange(0.0, self.ego.times_s[-1] + 1e-9, 0.05)
        sensor = [s.timestamp_s for s in self.sweeps] + [f.timestamp_s for f in self.frames]
        return np.unique(np.round(np.concatenate([grid, sensor]), 9))

    def world_mesh_at(self, t_s: float) -> tuple[TaggedMesh, np.ndarray]:
        """Static plus posed agent meshes at ``t_s`` and the agent index per face (-1 static)."""
        caster = WorldCaster(self.town, static_mesh(self.town), self.tracks)
        scene, owner = caster.agents_at(t_s, np.zeros(2), 1e9)
        mesh = TaggedMesh.concatenate([caster.static.mesh, scene.mesh])
        return mesh, np.concatenate([np.full(len(caster.static.mesh.faces), -1), owner])


def log_id_for(seed: int) -> str:
    return str(uuid.UUID(int=int(np.random.default_rng([seed, 7]).integers(0, 2**62)) << 64 | seed, version=4))


def simulate_log(cfg: WorldConfig, seed: int, index: int = 0, progress: bool = False) -> SimLog:
    """Generate one log; identical output for identical (cfg, seed)."""
    ratio = cfg.lidar.rate_hz / cfg.camera.rate_hz
    if abs(ratio - round(ratio)) > 1e-9 or ratio < 1:
        raise ValueError(f"camera.rate_hz={cfg.camera.rate_hz} must divide lidar.rate_hz={cfg.lidar.rate_hz}")
    rng = np.random.default_rng(seed)
    town = Town(cfg.town, seed)
    ego, tracks = simulate_traffic(town, cfg, rng)
    log = SimLog(log_id_for(seed), seed, EPOCH_NS + index * 10**12, cfg, town, ego, tracks)
    caster = WorldCaster(town, static_mesh(town), tracks)
    n_sweeps = int(round(cfg.seconds * cfg.lidar.rate_hz))
    every = int(round(ratio))
    sensor_rng = np.random.default_rng([seed, 1])
    for k in progress_bar(range(n_sweeps), desc=f"log {log.log_id[:8]}", disable=not progress, leave=False):
        t = k / cfg.lidar.rate_hz
        sweep = cast_lidar_sweep(caster, cfg.lidar, log.city_T_ego, t, sensor_rng)
        log.sweeps.append(sweep)
        log.boxes.append(_annotate(log, sweep))
        if k % every == 0:
            for c, spec in enumerate(cfg.camera.rig):
                t_cam = t + camera_trigger_offset_s(c, len(cfg.camera.rig))
                city_T_cam = log.city_T_ego(np.array([t_cam]))[0] @ ego_T_camera(cfg.camera, spec)
                image, depth = render_camera(caster, cfg.camera, city_T_cam, t_cam)
                log.frames.append(CameraFrame(c, t_cam, image, depth))
    return log


def boxes_contain(points: np.ndarray, center: np.ndarray, yaw: float, size_lwh: np.ndarray) -> np.ndarray:
    """Mask of points (N, 3) inside the yawed cuboid (centre, yaw about z, length/width/height)."""
    local = (points - center) @ yaw_rotation(yaw)
    return np.all(np.abs(local) <= size_lwh / 2, axis=1)


def _annotate(log: SimLog, sweep: LidarSweep) -> list[Box]:
    """Boxes of every agent within lidar range at the sweep timestamp, in the ego frame."""
    ego_T_city = np.linalg.inv(log.city_T_ego(np.array([sweep.timestamp_s]))[0])
    ego_yaw = float(np.arctan2(ego_T_city[1, 0], ego_T_city[0, 0]))
    boxes = []
    # points sorted by x once: each box tests only the points within its circumradius in x
    order = np.argsort(sweep.points_ego[:, 0], kind="stable")
    sorted_x = sweep.points_ego[order, 0]
    for k, tr in enumerate(log.tracks):
        xy, yaw, z = tr.state_at(sweep.timestamp_s)
        center = transform_points(ego_T_city, np.array([[xy[0], xy[1], float(z)]]))[0]
        if np.linalg.norm(center[:2]) > log.cfg.lidar.max_range_m:
            continue
        yaw_ego = float(yaw) + ego_yaw
        size = np.array([tr.length_m, tr.width_m, tr.height_m])
        reach = 0.5 * float(np.hypot(tr.length_m, tr.width_m)) + 1e-6
        lo, hi = np.searchsorted(sorted_x, [center[0] - reach, center[0] + reach])
        near = sweep.points_ego[order[lo:hi]]
        inside = int(boxes_contain(near, center, yaw_ego, size).sum())
        boxes.append(Box(k, center, yaw_ego, inside))
    return boxes
