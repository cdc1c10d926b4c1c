"""Ray-cast sensors of the embedded world: a rotating multi-beam lidar and pinhole ring cameras.

Both use Embree (via embreex, the ray tracer behind trimesh's fast path) against a static scene
built once per log and a small dynamic scene of the agents, rebuilt at each instant they are
posed at. Every ray reports the distance, the ``Surface`` it hit and the agent (or -1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

from gasp_core.geometry import make_se3, transform_points
from gasp_core.sim.agents import AgentTrack
from gasp_core.sim.config import CameraConfig, CameraSpec, LidarConfig
from gasp_core.sim.meshes import TaggedMesh, agent_local_mesh
from gasp_core.sim.semantics import ALBEDO, REFLECTIVITY, TEXTURE, Surface
from gasp_core.sim.town import Town

NO_HIT = np.float32(1e30)
SUN_DIR = np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])


@dataclass
class RayHits:
    """Per-ray results; ``range_m`` is ``inf`` where nothing was hit."""

    range_m: np.ndarray
    surface: np.ndarray
    instance: np.ndarray
    normal: np.ndarray


class _EmbreeScene:
    def __init__(self, mesh: TaggedMesh) -> None:
        self.mesh = mesh
        self.scene = rtcore_scene.EmbreeScene()
        if len(mesh.faces):
            TriangleMesh(self.scene, mesh.triangles.astype(np.float32))

    def run(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(self.mesh.faces) == 0 or len(origins) == 0:
            n = len(origins)
            return np.full(n, np.inf), np.full(n, -1, np.int64), np.zeros((n, 3), np.float32)
        out = self.scene.run(origins.astype(np.float32), dirs.astype(np.float32), output=1)
        prim = out["primID"].astype(np.int64)
        dist = np.where(prim >= 0, out["tfar"].astype(np.float64), np.inf)
        return dist, prim, out["Ng"]


class WorldCaster:
    """Casts rays against the static town and the agents posed at one instant."""

    def __init__(self, town: Town, static: TaggedMesh, tracks: list[AgentTrack]) -> None:
        self.town = town
        self.static = _EmbreeScene(static)
        self.tracks = tracks
        local = [agent_local_mesh(tr.kind, tr.length_m, tr.width_m, tr.height_m) for tr in tracks]
        self._local = local
        # all tracks share one time grid: stack their states for vectorised posing
        self._times = tracks[0].times_s if tracks else np.zeros(1)
        self._xy = np.stack([tr.xy for tr in tracks]) if tracks else np.zeros((0, 1, 2))
        self._yaw = np.stack([np.unwrap(tr.yaw_rad) for tr in tracks]) if tracks else np.zeros((0, 1))
        self._z = np.stack([tr.z for tr in tracks]) if tracks else np.zeros((0, 1))
        self._extent = np.array([tr.length_m for tr in tracks])

    def agent_states(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xy (K, 2), yaw (K,), z (K,)) of every track at ``t_s``, linearly interpolated."""
        times = self._times
        i = int(np.clip(np.searchsorted(times, t_s) - 1, 0, max(len(times) - 2, 0)))
        w = float(np.clip((t_s - times[i]) / (times[i + 1] - times[i]), 0.0, 1.0)) if len(times) > 1 else 0.0
        j = min(i + 1, len(times) - 1)
        lerp = lambda a: a[:, i] * (1 - w) + a[:, j] * w  # noqa: E731
        return lerp(self._xy), lerp(self._yaw), lerp(self._z)

    def agents_at(self, t_s: float, near_xy: np.ndarray, radius_m: float) -> tuple[_EmbreeScene, np.ndarray]:
        """Dynamic scene of the agents within ``radius_m`` of ``near_xy`` at time ``t_s``, and face -> agent."""
        xy, yaw, z = self.agent_states(t_s)
        near = np.nonzero(np.linalg.norm(xy - near_xy, axis=1) <= radius_m + self._extent)[0] if len(xy) else []
        parts, owner = [], []
        for k in near:
            local = self._local[k]
            c, s = np.cos(yaw[k]), np.sin(yaw[k])
            world = np.column_stack(
                [
                    local.vertices[:, 0] * c - local.vertices[:, 1] * s + xy[k, 0],
                    local.vertices[:, 0] * s + local.vertices[:, 1] * c + xy[k, 1],
                    local.vertices[:, 2] + z[k],
                ]
            )
            parts.append(TaggedMesh(world, local.faces, local.face_class))
            owner.append(np.full(len(local.faces), k, np.int64))
        if not parts:
            return _EmbreeScene(
                TaggedMesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.uint8))
            ), np.zeros(0, np.int64)
        return _EmbreeScene(TaggedMesh.concatenate(parts)), np.concatenate(owner)

    def cast(self, origins: np.ndarray, dirs: np.ndarray, dynamic: tuple[_EmbreeScene, np.ndarray]) -> RayHits:
        d_static, p_static, n_static = self.static.run(origins, dirs)
        dyn_scene, owner = dynamic
        d_dyn, p_dyn, n_dyn = dyn_scene.run(origins, dirs)
        use_dyn = d_dyn < d_static
        rng = np.where(use_dyn, d_dyn, d_static)
        surface = np.zeros(len(origins), np.uint8)
        instance = np.full(len(origins), -1, np.int64)
        hit_s = (~use_dyn) & (p_static >= 0)
        surface[hit_s] = self.static.mesh.face_class[p_static[hit_s]]
        surface[use_dyn] = dyn_scene.mesh.face_class[p_dyn[use_dyn]]
        instance[use_dyn] = owner[p_dyn[use_dyn]]
        ground = surface == Surface.GROUND
        if ground.any():
            hit_xy = origins[ground, :2] + dirs[ground, :2] * rng[ground, None]
            surface[ground] = self.town.material_at(hit_xy)
        normal = np.where(use_dyn[:, None], n_dyn, n_static).astype(np.float64)
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        return RayHits(rng, surface, instance, normal)


# ------------------------------------------------------------------------------------------ lidar
@dataclass
class LidarSweep:
    """One lidar rotation. Points are in the ego frame at ``timestamp_s``, motion-compensated."""

    timestamp_s: float
    points_ego: np.ndarray  # (N, 3)
    intensity: np.ndarray  # (N,) uint8
    laser_number: np.ndarray  # (N,) uint8, 0 = lowest beam
    offset_ns: np.ndarray  # (N,) int64, firing time after timestamp_s
    surface: np.ndarray  # (N,) ground-truth Surface of each return (the sidecar, outside the AV2 and nuScenes formats)
    instance: np.ndarray  # (N,) index into the log's tracks, -1 for static world
    points_city: np.ndarray  # (N, 3)
    sensor_origin_city: np.ndarray  # (N, 3) lidar origin at each firing


def lidar_directions(cfg: LidarConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit ray directions (columns, beams, 3) in the sensor frame, azimuths and elevations (rad)."""
    n_cols = int(round(360.0 / cfg.azimuth_step_deg))
    azimuth = math.pi + 2 * math.pi * np.arange(n_cols) / n_cols  # start facing backwards, turn CCW
    elevation = np.deg2rad(np.linspace(cfg.elevation_deg[0], cfg.elevation_deg[1], cfg.beams))
    ce, se = np.cos(elevation), np.sin(elevation)
    dirs = np.stack(
        [
            np.cos(azimuth)[:, None] * ce[None],
            np.sin(azimuth)[:, None] * ce[None],
            np.broadcast_to(se[None], (n_cols, cfg.beams)),
        ],
        axis=-1,
    )
    return dirs, azimuth, elevation


def cast_lidar_sweep(
    caster: WorldCaster, cfg: LidarConfig, city_T_ego_fn, t_sweep_s: float, rng: np.random.Generator
) -> LidarSweep:
    """Simulate one rotation starting at ``t_sweep_s``; ``city_T_ego_fn(times) -> (N, 4, 4)``."""
    dirs_sensor, _, _ = lidar_directions(cfg)
    n_cols, n_beams = dirs_sensor.shape[:2]
    col_offset_s = np.arange(n_cols) / n_cols / cfg.rate_hz
    poses = city_T_ego_fn(t_sweep_s + col_offset_s)  # (C, 4, 4)
    mount = np.asarray(cfg.mount_xyz_m, dtype=np.float64)
    origins_col = np.einsum("cij,j->ci", poses[:, :3, :3], mount) + poses[:, :3, 3]
    dirs_city = np.einsum("cij,cbj->cbi", poses[:, :3, :3], dirs_sensor)
    origins = np.broadcast_to(origins_col[:, None], dirs_city.shape).reshape(-1, 3)
    dirs = dirs_city.reshape(-1, 3)
    col_of_ray = np.repeat(np.arange(n_cols), n_beams)
    beam_of_ray = np.tile(np.arange(n_beams), n_cols)
    ranges = np.full(len(dirs), np.inf)
    surface = np.zeros(len(dirs), np.uint8)
    instance = np.full(len(dirs), -1, np.int64)
    normal = np.zeros((len(dirs), 3))
    chunk_edges = np.linspace(0, n_cols, cfg.motion_chunks + 1).astype(int)
    for c0, c1 in zip(chunk_edges[:-1], chunk_edges[1:]):
        if c1 <= c0:
            continue
        t_chunk = t_sweep_s + chunk_time_offset_s(c0, c1, n_cols, cfg.rate_hz)
        dyn = caster.agents_at(t_chunk, origins_col[c0, :2], cfg.max_range_m)
        sel = slice(c0 * n_beams, c1 * n_beams)
        hits = caster.cast(origins[sel], dirs[sel], dyn)
        ranges[sel], surface[sel], instance[sel], normal[sel] = hits.range_m, hits.surface, hits.instance, hits.normal
    keep = (ranges >= cfg.min_range_m) & (ranges <= cfg.max_range_m)
    if cfg.dropout_prob > 0:
        keep &= rng.random(len(keep)) >= cfg.dropout_prob
    idx = np.nonzero(keep)[0]
    r = ranges[idx]
    if cfg.range_noise_m > 0:
        r = r + rng.normal(0.0, cfg.range_noise_m, len(r))
    points_city = origins[idx] + dirs[idx] * r[:, None]
    cos_inc = np.abs(np.einsum("ij,ij->i", normal[idx], dirs[idx]))
    refl = REFLECTIVITY[surface[idx]]
    intensity = np.clip(
        255.0 * refl * (0.35 + 0.65 * cos_inc) * (1.0 - 0.4 * np.minimum(r / cfg.max_range_m, 1.0))
        + rng.normal(0.0, 2.0, len(r)),
        0,
        255,
    ).astype(np.uint8)
    ego_T_city = np.linalg.inv(city_T_ego_fn(np.array([t_sweep_s]))[0])
    return LidarSweep(
        timestamp_s=t_sweep_s,
        points_ego=transform_points(ego_T_city, points_city),
        intensity=intensity,
        laser_number=beam_of_ray[idx].astype(np.uint8),
        offset_ns=np.round(col_offset_s[col_of_ray[idx]] * 1e9).astype(np.int64),
        surface=surface[idx],
        instance=instance[idx],
        points_city=points_city,
        sensor_origin_city=origins[idx],
    )


def chunk_time_offset_s(c0: int, c1: int, n_cols: int, rate_hz: float) -> float:
    """Instant (after the sweep start) at which agents are posed for columns [c0, c1)."""
    return 0.5 * (c0 + c1 - 1) / n_cols / rate_hz


# ------------------------------------------------------------------------------------------ camera
def camera_intrinsics(cfg: CameraConfig) -> np.ndarray:
    """3x3 pinhole matrix shared by the ring cameras."""
    fx = 0.5 * cfg.width_px / math.tan(math.radians(cfg.hfov_deg) / 2)
    return np.array([[fx, 0.0, cfg.width_px / 2], [0.0, fx, cfg.height_px / 2], [0.0, 0.0, 1.0]])


def ego_T_camera(cfg: CameraConfig, spec: CameraSpec) -> np.ndarray:
    """Camera pose in the ego frame; camera axes x right, y down, z forward (OpenCV, as AV2/nuScenes)."""
    yaw = math.radians(spec.yaw_deg)
    forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    position = np.array(
        [cfg.mount_forward_m + cfg.ring_radius_m * math.cos(yaw), cfg.ring_radius_m * math.sin(yaw), cfg.mount_height_m]
    )
    return make_se3(np.stack([right, down, forward], axis=1), position)


def camera_trigger_offset_s(index: int, n_cameras: int) -> float:
    """Cameras fire staggered within 5-23 ms after the sweep starts (each within AV2's 25 ms sync window)."""
    return 0.005 + 0.018 * index / max(n_cameras - 1, 1)


def _value_noise(p: np.ndarray, scale: float) -> np.ndarray:
    q = p / scale
    i = np.floor(q)
    f = q - i
    f = f * f * (3 - 2 * f)
    out = np.zeros(len(p))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                corner = i + np.array([dx, dy, dz])
                h = np.sin(corner @ np.array([127.1, 311.7, 74.7])) * 43758.5453
                h -= np.floor(h)
                w = (
                    (f[:, 0] if dx else 1 - f[:, 0])
                    * (f[:, 1] if dy else 1 - f[:, 1])
                    * (f[:, 2] if dz else 1 - f[:, 2])
                )
                out += w * h
    return out * 2 - 1


def render_camera(
    caster: WorldCaster, cfg: CameraConfig, city_T_cam: np.ndarray, t_s: float, dynamic=None
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one image: (H, W, 3) uint8 RGB and (H, W) depth along the optical axis (inf = sky)."""
    K = camera_intrinsics(cfg)
    u, v = np.meshgrid(np.arange(cfg.width_px) + 0.5, np.arange(cfg.height_px) + 0.5)
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    z_per_unit = 1.0 / np.linalg.norm(rays_cam, axis=1)
    dirs = (rays_cam * z_per_unit[:, None]) @ city_T_cam[:3, :3].T
    origins = np.broadcast_to(city_T_cam[:3, 3], dirs.shape)
    if dynamic is None:
        dynamic = caster.agents_at(t_s, city_T_cam[:2, 3], 150.0)
    hits = caster.cast(origins, dirs, dynamic)
    hit = np.isfinite(hits.range_m)
    # sky: brighter towards the horizon
    elev = np.clip(dirs[:, 2], -1, 1)
    sky = np.stack([0.55 - 0.25 * elev, 0.7 - 0.2 * elev, 0.95 - 0.05 * elev], -1)
    color = sky.copy()
    idx = np.nonzero(hit)[0]
    if len(idx):
        p = origins[idx] + dirs[idx] * hits.range_m[idx, None]
        surf = hits.surface[idx]
        albedo = ALBEDO[surf].astype(np.float64)
        inst = hits.instance[idx]
        painted = inst >= 0
        if painted.any():
            albedo[painted] = np.stack([tr.color for tr in caster.tracks])[inst[painted]]
        n = hits.normal[idx]
        n = np.where((np.einsum("ij,ij->i", n, dirs[idx]) > 0)[:, None], -n, n)
        texture = 0.6 * _value_noise(p, 0.4) + 0.4 * _value_noise(p, 2.5)
        albedo *= 1.0 + TEXTURE[surf][:, None] * texture[:, None]
        building = (surf == Surface.BUILDING) & (np.abs(n[:, 2]) < 0.5)
        if building.any():  # windows on facades
            along = np.where(np.abs(n[building, 0]) > np.abs(n[building, 1]), p[building, 1], p[building, 0])
            win = (
                ((along / 3.0) % 1.0 > 0.25)
                & ((along / 3.0) % 1.0 < 0.75)
                & ((p[building, 2] / 3.2) % 1.0 > 0.35)
                & ((p[building, 2] / 3.2) % 1.0 < 0.8)
            )
            albedo[np.nonzero(building)[0][win]] = (0.2, 0.27, 0.38)
        lambert = np.clip(n @ SUN_DIR, 0.0, 1.0)
        if cfg.shadows:
            s_origin = p + n * 0.03
            s_dirs = np.broadcast_to(SUN_DIR, s_origin.shape)
            shadow = np.isfinite(caster.cast(s_origin, s_dirs, dynamic).range_m)
            lambert = np.where(shadow, 0.0, lambert)
        shade = 0.4 + 0.6 * lambert
        lit = albedo * shade[:, None]
        haze = 1.0 - np.exp(-hits.range_m[idx] / 350.0)
        color[idx] = lit * (1 - haze[:, None]) + sky[idx] * haze[:, None]
    image = (np.clip(color, 0, 1) * 255).astype(np.uint8).reshape(cfg.height_px, cfg.width_px, 3)
    depth = np.where(hit, hits.range_m * z_per_unit, np.inf).reshape(cfg.height_px, cfg.width_px)
    return image, depth
