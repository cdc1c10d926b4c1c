"""Analytic scenes with exactly known geometry, served through the same interface as a stored log."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from gasp_core.data.schema import EgoDims
from gasp_core.data.store import StoredSweep
from gasp_core.geometry import from_spherical, make_se3

EGO = EgoDims(length_m=4.0, width_m=2.0, height_m=1.5, rear_overhang_m=1.0)
DT_NS = 100_000_000


@dataclass
class AnalyticLog:
    """A log whose ego pose is a closed-form function of time (constant velocity and yaw rate)."""

    speed_mps: float = 10.0
    yaw_rate: float = 0.0
    mount_m: tuple = (1.0, 0.0, 2.0)
    sweeps: dict = field(default_factory=dict)
    cameras: dict = field(default_factory=dict)  # name -> (ego_T_cam, K)
    log_id: str = "analytic"

    def __post_init__(self) -> None:
        self.meta = SimpleNamespace(lidars=["lidar"], ego=EGO, log_id=self.log_id)

    @property
    def sweep_timestamps_ns(self) -> np.ndarray:
        return np.array(sorted(self.sweeps), dtype=np.int64)

    def sweep(self, ts: int) -> StoredSweep:
        return self.sweeps[int(ts)]

    def pose_range_ns(self) -> tuple[int, int]:
        return 0, 100 * DT_NS

    def city_T_ego(self, ts_ns) -> np.ndarray:
        t = np.atleast_1d(np.asarray(ts_ns, dtype=np.float64)) / 1e9
        yaw = self.yaw_rate * t
        if self.yaw_rate == 0:
            xy = np.stack([self.speed_mps * t, np.zeros_like(t)], -1)
        else:
            r = self.speed_mps / self.yaw_rate
            xy = np.stack([r * np.sin(yaw), r * (1 - np.cos(yaw))], -1)
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.zeros((len(t), 3, 3))
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
        return make_se3(rot, np.concatenate([xy, np.zeros((len(t), 1))], 1))

    def ego_T_sensor(self, name: str) -> np.ndarray:
        if name == "lidar":
            return make_se3(np.eye(3), np.array(self.mount_m))
        return self.cameras[name][0]

    def intrinsics(self, name: str) -> np.ndarray:
        return self.cameras[name][1]


def scan(log: AnalyticLog, ts: int, surface, elevations_deg, n_az: int) -> StoredSweep:
    """Cast a spinning lidar (laser i at elevations_deg[i], n_az azimuths per turn over one sweep period)
    against ``surface(origins, dirs) -> range or inf`` in the city frame; returns in the ego frame at ts."""
    az = -np.pi + (np.arange(n_az) + 0.5) * 2 * np.pi / n_az
    off = (np.arange(n_az) * DT_NS) // n_az
    pts, lasers, offs = [], [], []
    for laser, el in enumerate(np.deg2rad(elevations_deg)):
        fire = log.city_T_ego(ts + off)
        origins = fire[:, :3, 3] + np.einsum("nij,j->ni", fire[:, :3, :3], np.array(log.mount_m))
        dirs = np.einsum("nij,nj->ni", fire[:, :3, :3], from_spherical(az, np.full(n_az, el)))
        rng = surface(origins, dirs)
        hit = np.isfinite(rng)
        p_city = origins[hit] + dirs[hit] * rng[hit, None]
        ego = np.linalg.inv(log.city_T_ego(ts)[0])
        pts.append(p_city @ ego[:3, :3].T + ego[:3, 3])
        lasers.append(np.full(hit.sum(), laser))
        offs.append(off[hit])
    pts = np.concatenate(pts)
    n = len(pts)
    return StoredSweep(
        ts,
        pts.astype(np.float64),
        np.ones(n, np.float32),
        np.concatenate(lasers).astype(np.int16),
        np.zeros(n, np.uint8),
        np.concatenate(offs).astype(np.int32),
    )


def wall(x_m: float, max_range_m: float = 200.0):
    def surface(origins, dirs):
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (x_m - origins[:, 0]) / dirs[:, 0]
        return np.where((dirs[:, 0] > 1e-9) & (r < max_range_m), r, np.inf)

    return surface


def box_then_wall(box_min, box_max, wall_x):
    """A box whose front face x = box_min[0] faces the sensor, and a wall behind it."""
    behind = wall(wall_x)

    def surface(origins, dirs):
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (box_min[0] - origins[:, 0]) / dirs[:, 0]
        hit = origins[:, None, :] + dirs[:, None, :] * r[:, None, None]
        on_face = (dirs[:, 0] > 1e-9) & np.all((hit[:, 0, 1:] >= box_min[1:]) & (hit[:, 0, 1:] <= box_max[1:]), axis=1)
        return np.where(on_face, r, behind(origins, dirs))

    return surface


ELEVATIONS = (-10.0, -5.0, 0.0, 5.0, 10.0)
N_AZ = 180


@pytest.fixture
def wall_log() -> AnalyticLog:
    log = AnalyticLog(speed_mps=10.0)
    for k in range(35):
        log.sweeps[k * DT_NS] = scan(log, k * DT_NS, wall(60.0, max_range_m=1e6), ELEVATIONS, N_AZ)
    return log
