"""The town: its road network (:mod:`gasp_core.sim.roads`), static props (:mod:`gasp_core.sim.props`) and ground
(:mod:`gasp_core.sim.ground`), composed into one :class:`Town`.

Roads run between the nodes of a grid; every node is an intersection (4-way in the interior,
3-way on the border, a bend at the corners; dropped interior roads add more 3-way ones).
Traffic drives on the right. The town frame is the "city" frame of the written logs.
"""

from __future__ import annotations

import numpy as np

from gasp_core.sim.config import TownConfig
from gasp_core.sim.ground import Ground, draw_ground_phase
from gasp_core.sim.props import Building, ParkedCar, Pole, Props, Tree
from gasp_core.sim.roads import Crosswalk, LaneSegment, RoadNetwork

__all__ = ["Building", "Crosswalk", "LaneSegment", "ParkedCar", "Pole", "Town", "Tree"]


class Town:
    """Road network, HD map, ground surface and static props of one procedural town.

    The parts are ``roads`` (:class:`RoadNetwork`), ``props`` (:class:`Props`) and ``ground`` (:class:`Ground`);
    their data and queries are reachable on the town itself too.
    """

    def __init__(self, cfg: TownConfig, seed: int) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        # the order of the draws fixes each seed's town: roads (dropped roads, light offsets), ground phase, props
        self.roads = RoadNetwork(cfg, self.rng)
        ground_phase = draw_ground_phase(self.rng)
        self.props = Props(cfg, self.roads, self.rng)
        self.ground = Ground(cfg, self.roads, ground_phase, self.props.parking_strips)

        r, p, g = self.roads, self.props, self.ground
        self.half_width_m = r.half_width_m
        self.node_ij, self.nodes_xy, self.edges, self.neighbors = r.node_ij, r.nodes_xy, r.edges, r.neighbors
        self.bounds_xy, self.x_breaks, self.y_breaks = r.bounds_xy, r.x_breaks, r.y_breaks
        self.cell_drivable = r.cell_drivable
        self.light_offset_s = r.light_offset_s
        self.lanes, self.road_lanes, self.crosswalks = r.lanes, r.road_lanes, r.crosswalks
        self.ped_nodes_xy, self.ped_edges, self.ped_adjacency = r.ped_nodes_xy, r.ped_edges, r.ped_adjacency
        self.buildings, self.trees, self.poles = p.buildings, p.trees, p.poles
        self.parking_strips, self.parked_cars = p.parking_strips, p.parked_cars
        self.material, self.material_origin_xy = g.material, g.material_origin_xy

    # ---------------------------------------------------------------- road network
    def node_arms(self, node: int) -> list[np.ndarray]:
        """Unit directions (2,) of the roads leaving ``node``."""
        return self.roads.node_arms(node)

    def is_drivable(self, xy: np.ndarray) -> np.ndarray:
        """Whether points (N, 2) lie on the road surface (not on the raised curb level)."""
        return self.roads.is_drivable(xy)

    def drivable_polygons(self) -> list[np.ndarray]:
        """Drivable areas as rectangles (4, 2), one per drivable cell."""
        return self.roads.drivable_polygons()

    def light_is_green(self, node: int, axis: int, t_s: float, green_s: float, all_red_s: float) -> bool:
        """Whether traffic approaching ``node`` along ``axis`` may enter at time ``t_s``."""
        return self.roads.light_is_green(node, axis, t_s, green_s, all_red_s)

    # ---------------------------------------------------------------- ground
    def terrain_height(self, xy: np.ndarray) -> np.ndarray:
        """Smooth ground height (m) of the road level at points (N, 2)."""
        return self.ground.terrain_height(xy)

    def surface_height(self, xy: np.ndarray) -> np.ndarray:
        """Height of the walkable surface: road level on drivable cells, curb level elsewhere."""
        return self.ground.surface_height(xy)

    def material_at(self, xy: np.ndarray) -> np.ndarray:
        """Ground material (``Surface`` values) at points (N, 2)."""
        return self.ground.material_at(xy)
