"""The town's static props: street trees, poles, parking strips with parked cars, buildings on the blocks and a
few trees in the open land beyond the town."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gasp_core.sim.config import TownConfig
from gasp_core.sim.roads import RoadNetwork


@dataclass
class Building:
    center_xy: np.ndarray
    size_xy: np.ndarray
    height_m: float


@dataclass
class Tree:
    xy: np.ndarray
    trunk_height_m: float
    crown_radius_m: float


@dataclass
class Pole:
    xy: np.ndarray
    height_m: float


@dataclass
class ParkedCar:
    xy: np.ndarray
    yaw_rad: float


class Props:
    """Every static prop of one town, placed along ``roads`` with draws from ``rng``."""

    def __init__(self, cfg: TownConfig, roads: RoadNetwork, rng: np.random.Generator) -> None:
        c = cfg
        self.trees: list[Tree] = []
        self.poles: list[Pole] = []
        self.parked_cars: list[ParkedCar] = []
        self.parking_strips: list[np.ndarray] = []
        keepout: list[np.ndarray] = []  # rectangles [x0, y0, x1, y1] buildings must avoid
        for p0, p1, u, normal in roads.road_sides():
            length = float(np.dot(p1 - p0, u))
            s = c.street_tree_end_gap_m + rng.uniform(0, c.tree_spacing_m)
            while s < length - c.street_tree_end_gap_m:
                xy = p0 + u * s + normal * c.street_tree_offset_m
                self.trees.append(Tree(xy, rng.uniform(*c.tree_trunk_height_m), rng.uniform(*c.tree_crown_radius_m)))
                s += c.tree_spacing_m * rng.uniform(*c.spacing_jitter)
            s = c.pole_end_gap_m + rng.uniform(0, c.pole_spacing_m)
            while s < length - c.pole_end_gap_m:
                self.poles.append(Pole(p0 + u * s + normal * c.pole_offset_m, rng.uniform(*c.pole_height_m)))
                s += c.pole_spacing_m * rng.uniform(*c.spacing_jitter)
            if rng.random() < c.parked_car_prob:
                depth0 = c.sidewalk_width_m + c.parking_strip_depth_m[0]
                depth1 = c.sidewalk_width_m + c.parking_strip_depth_m[1]
                q0, q1 = p0 + u * c.parking_strip_end_gap_m, p1 - u * c.parking_strip_end_gap_m
                strip = np.stack(
                    [q0 + normal * depth0, q1 + normal * depth0, q1 + normal * depth1, q0 + normal * depth1]
                )
                self.parking_strips.append(strip)
                keepout.append(np.concatenate([strip.min(0) - c.parking_keepout_m, strip.max(0) + c.parking_keepout_m]))
                yaw = math.atan2(u[1], u[0]) + (math.pi if rng.random() < 0.5 else 0.0)
                s = c.parked_car_end_gap_m
                while s < length - c.parked_car_end_gap_m:
                    if rng.random() < c.parked_car_fill_prob:
                        self.parked_cars.append(ParkedCar(p0 + u * s + normal * (depth0 + c.parked_car_inset_m), yaw))
                    s += rng.uniform(*c.parked_car_pitch_m)
        # buildings fill the raised cells, set back from the sidewalk
        self.buildings: list[Building] = []
        setback = c.sidewalk_width_m + c.building_setback_m
        xs, ys = roads.x_breaks, roads.y_breaks
        m = c.building_core_margin_m
        core = np.array([xs[1] - m, ys[1] - m, xs[-2] + m, ys[-2] + m])
        for cx, cy in zip(*np.nonzero(~roads.cell_drivable)):
            area = np.array([xs[cx] + setback, ys[cy] + setback, xs[cx + 1] - setback, ys[cy + 1] - setback])
            area[:2] = np.maximum(area[:2], core[:2])
            area[2:] = np.minimum(area[2:], core[2:])
            if np.any(area[2:] - area[:2] < c.building_min_lot_m):
                continue
            placed: list[np.ndarray] = []
            for _ in range(c.buildings_per_block * c.building_tries):
                if len(placed) >= c.buildings_per_block:
                    break
                size = rng.uniform(c.building_size_min_m, c.building_size_max_m)
                size = np.minimum(size, area[2:] - area[:2])
                lo = area[:2] + size / 2
                hi = area[2:] - size / 2
                center = rng.uniform(lo, hi)
                rect = np.concatenate([center - size / 2 - c.building_gap_m, center + size / 2 + c.building_gap_m])
                if any(_overlap(rect, r) for r in placed + keepout):
                    continue
                placed.append(rect)
                self.buildings.append(Building(center, size, float(rng.uniform(*c.building_height_m))))
        # a few trees in the open land beyond the town
        bounds = roads.bounds_xy
        for _ in range(c.outer_trees):
            xy = rng.uniform(bounds[:2] + c.outer_tree_edge_gap_m, bounds[2:] - c.outer_tree_edge_gap_m)
            if roads.is_drivable(xy[None])[0] or (core[0] < xy[0] < core[2] and core[1] < xy[1] < core[3]):
                continue
            self.trees.append(
                Tree(xy, rng.uniform(*c.outer_tree_trunk_height_m), rng.uniform(*c.outer_tree_crown_radius_m))
            )


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
