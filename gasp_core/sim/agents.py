"""Agents of the embedded world: their kinds and sizes, the state the traffic simulation steps
(:mod:`gasp_core.sim.traffic`), the recorded box tracks, the parked cars' tracks, and track ids and colours."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gasp_core.sim.town import Town

# kind -> (AV2 category, length, width, height) ranges
AGENT_SIZES = {
    "car": ("REGULAR_VEHICLE", (4.2, 5.0), (1.8, 2.0), (1.45, 1.75)),
    "parked": ("REGULAR_VEHICLE", (4.0, 4.9), (1.75, 1.95), (1.4, 1.7)),
    "truck": ("BOX_TRUCK", (6.5, 8.0), (2.3, 2.5), (2.9, 3.4)),
    "bus": ("BUS", (10.5, 12.0), (2.5, 2.6), (3.0, 3.3)),
    "pedestrian": ("PEDESTRIAN", (0.5, 0.7), (0.55, 0.75), (1.55, 1.9)),
    "cyclist": ("BICYCLIST", (1.7, 1.9), (0.6, 0.75), (1.6, 1.85)),
}


@dataclass
class AgentTrack:
    """Box trajectory of one agent; poses are the cuboid centre in the town (city) frame."""

    track_id: str
    kind: str
    category: str
    length_m: float
    width_m: float
    height_m: float
    times_s: np.ndarray
    xy: np.ndarray
    yaw_rad: np.ndarray
    z: np.ndarray
    color: np.ndarray = field(default_factory=lambda: np.array([0.7, 0.1, 0.1], np.float32))

    def state_at(self, t_s: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xy, yaw, z) linearly interpolated at time(s) ``t_s`` (clamped to the recorded span)."""
        t = np.asarray(t_s, dtype=np.float64)
        x = np.interp(t, self.times_s, self.xy[:, 0])
        y = np.interp(t, self.times_s, self.xy[:, 1])
        yaw = np.interp(t, self.times_s, np.unwrap(self.yaw_rad))
        z = np.interp(t, self.times_s, self.z)
        return np.stack([x, y], -1), yaw, z


@dataclass
class Vehicle:
    """Simulation state of a lane-following vehicle (the ego, cars, trucks, buses, cyclists)."""

    kind: str
    route: list[int]
    s: float
    v: float
    v0: float
    length: float
    width: float
    height: float
    outer_only: bool = False
    xy: np.ndarray = field(default_factory=lambda: np.zeros(2))
    heading: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0]))


@dataclass
class Pedestrian:
    """Simulation state of a pedestrian walking an edge of the sidewalk graph."""

    edge: int
    forward: bool
    d: float
    speed: float
    lateral_m: float
    length: float
    width: float
    height: float
    waiting: bool = False
    xy: np.ndarray = field(default_factory=lambda: np.zeros(2))
    heading: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0]))


def parked_car_tracks(town: Town, times: np.ndarray, rng: np.random.Generator) -> list[AgentTrack]:
    """Standing tracks over ``times`` of the town's parked cars, their sizes, ids and colours drawn from ``rng``."""
    tracks: list[AgentTrack] = []
    for car in town.parked_cars:
        _, lr, wr, hr = AGENT_SIZES["parked"]
        length, width, height = rng.uniform(*lr), rng.uniform(*wr), rng.uniform(*hr)
        z = float(town.surface_height(car.xy[None])[0]) + height / 2
        n = len(times)
        tracks.append(
            AgentTrack(
                track_uuid(rng),
                "parked",
                "REGULAR_VEHICLE",
                length,
                width,
                height,
                times,
                np.tile(car.xy, (n, 1)),
                np.full(n, car.yaw_rad),
                np.full(n, z),
                paint(rng, "parked"),
            )
        )
    return tracks


def track_uuid(rng: np.random.Generator) -> str:
    """A random (version 4) UUID drawn from ``rng``, so track ids are deterministic per seed."""
    return str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)), version=4))


def paint(rng: np.random.Generator, kind: str) -> np.ndarray:
    """Body colour (3,) of an agent of ``kind`` (cars draw one from a palette)."""
    if kind in ("car", "parked", "ego"):
        palette = np.array(
            [
                [0.75, 0.1, 0.1],
                [0.1, 0.2, 0.6],
                [0.85, 0.85, 0.85],
                [0.1, 0.1, 0.1],
                [0.5, 0.5, 0.55],
                [0.1, 0.45, 0.2],
                [0.8, 0.7, 0.2],
            ],
            np.float32,
        )
        return palette[int(rng.integers(len(palette)))]
    return {
        "truck": np.array([0.9, 0.9, 0.92], np.float32),
        "bus": np.array([0.95, 0.75, 0.1], np.float32),
        "pedestrian": np.array([0.25, 0.3, 0.6], np.float32),
        "cyclist": np.array([0.9, 0.5, 0.1], np.float32),
    }[kind]
