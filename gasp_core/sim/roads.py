"""The town's road network: the grid of roads, the drivable cells, the HD map's lanes and crosswalks, the traffic
lights and the pedestrians' sidewalk graph.

Roads run between the nodes of a grid; every node is an intersection (4-way in the interior,
3-way on the border, a bend at the corners; dropped interior roads add more 3-way ones).
Traffic drives on the right. The town frame is the "city" frame of the written logs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from gasp_core.sim.config import TownConfig

FIRST_LANE_ID = 1000
LANE_POINT_STEP_M = 1.0  # spacing of the points of lane centerlines
TURN_CURVE_POINTS = 24  # points of a turn's quadratic Bezier curve before densifying


@dataclass
class LaneSegment:
    """One lane segment of the HD map (AV2 semantics); polylines are (N, 2) in the town frame."""

    id: int
    centerline: np.ndarray
    left_boundary: np.ndarray
    right_boundary: np.ndarray
    left_mark: str
    right_mark: str
    is_intersection: bool
    lane_index: int
    """0 = innermost lane of its direction."""
    node: int
    """Intersection this lane ends at (road lanes) or lies in (connectors)."""
    axis: int
    """0 if the lane's traffic approaches/leaves along x, 1 along y (for connectors: the entry axis)."""
    turn: str = "none"
    """Connector manoeuvre: straight | left | right; "none" for road lanes."""
    successors: list[int] = field(default_factory=list)
    predecessors: list[int] = field(default_factory=list)
    left_neighbor: int | None = None
    right_neighbor: int | None = None

    @property
    def length_m(self) -> float:
        return float(np.linalg.norm(np.diff(self.centerline, axis=0), axis=1).sum())


@dataclass
class Crosswalk:
    """A pedestrian crossing across one arm of an intersection."""

    polygon: np.ndarray  # (4, 2)
    edge1: np.ndarray  # (2, 2), AV2's two long edges
    edge2: np.ndarray
    node: int
    axis: int  # axis of the road it crosses (0: road along x)


def _polyline_normals(line: np.ndarray) -> np.ndarray:
    tangent = np.gradient(line, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    return np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)


def _densify(points: np.ndarray, step_m: float) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(math.ceil(s[-1] / step_m)) + 1)
    q = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(q, s, points[:, 0]), np.interp(q, s, points[:, 1])], axis=1)


class RoadNetwork:
    """Roads, drivable cells, lanes, crosswalks, traffic lights and the sidewalk graph of one town.

    Draws from ``rng``, in this order: which interior roads are dropped, then every intersection's light offset.
    """

    def __init__(self, cfg: TownConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.half_width_m = cfg.lanes_per_direction * cfg.lane_width_m
        self._make_graph(rng)
        self._make_cells()
        self.light_offset_s = rng.uniform(0.0, cfg.light_offset_max_s, len(self.nodes_xy))
        self._make_lanes()
        self._make_crosswalks()
        self._make_ped_graph()

    # ---------------------------------------------------------------- graph
    def _make_graph(self, rng: np.random.Generator) -> None:
        c = self.cfg
        ij = [(i, j) for j in range(c.grid_nodes_y) for i in range(c.grid_nodes_x)]
        self.node_ij = np.array(ij, dtype=int)
        self.nodes_xy = self.node_ij.astype(float) * c.block_m
        index = {p: k for k, p in enumerate(ij)}
        edges = set()
        for (i, j), k in index.items():
            if (i + 1, j) in index:
                edges.add((k, index[(i + 1, j)]))
            if (i, j + 1) in index:
                edges.add((k, index[(i, j + 1)]))
        on_border = lambda k: (  # noqa: E731
            self.node_ij[k, 0] in (0, c.grid_nodes_x - 1) or self.node_ij[k, 1] in (0, c.grid_nodes_y - 1)
        )
        interior = sorted(e for e in edges if not (on_border(e[0]) and on_border(e[1])))
        degree = lambda k: sum(k in f for f in edges)  # noqa: E731
        for e in interior:
            # a dropped road must leave both ends at least 3-way and the town at least one 4-way
            if rng.random() >= c.drop_road_prob or degree(e[0]) < 4 or degree(e[1]) < 4:
                continue
            four_way_left = sum(degree(k) == 4 for k in range(len(ij)) if k not in e)
            if four_way_left >= 1:
                edges.remove(e)
        self.edges = sorted(edges)
        self.neighbors: dict[int, list[int]] = {k: [] for k in range(len(ij))}
        for a, b in self.edges:
            self.neighbors[a].append(b)
            self.neighbors[b].append(a)

    def node_arms(self, node: int) -> list[np.ndarray]:
        """Unit directions (2,) of the roads leaving ``node``."""
        return [(self.nodes_xy[m] - self.nodes_xy[node]) / self.cfg.block_m for m in self.neighbors[node]]

    # ---------------------------------------------------------------- cells
    def _make_cells(self) -> None:
        """Tile the plane into axis-aligned cells, each either drivable or raised (curb height)."""
        c, w = self.cfg, self.half_width_m
        xs = np.unique(self.nodes_xy[:, 0])
        ys = np.unique(self.nodes_xy[:, 1])
        self.bounds_xy = np.array(
            [
                xs[0] - w - c.outer_margin_m,
                ys[0] - w - c.outer_margin_m,
                xs[-1] + w + c.outer_margin_m,
                ys[-1] + w + c.outer_margin_m,
            ]
        )
        self.x_breaks = np.concatenate(
            [[self.bounds_xy[0]], np.stack([xs - w, xs + w], 1).ravel(), [self.bounds_xy[2]]]
        )
        self.y_breaks = np.concatenate(
            [[self.bounds_xy[1]], np.stack([ys - w, ys + w], 1).ravel(), [self.bounds_xy[3]]]
        )
        nx, ny = len(self.x_breaks) - 1, len(self.y_breaks) - 1
        drivable = np.zeros((nx, ny), dtype=bool)
        node_at = {(int(i), int(j)): k for k, (i, j) in enumerate(self.node_ij)}
        edge_set = set(self.edges)
        for cx in range(nx):
            for cy in range(ny):
                # odd cell index = a node's column/row band; even = between nodes (or margin)
                if cx % 2 == 1 and cy % 2 == 1:
                    drivable[cx, cy] = True
                elif cx % 2 == 1 and 0 < cy < ny - 1:
                    i, j = (cx - 1) // 2, cy // 2 - 1
                    a, b = node_at.get((i, j)), node_at.get((i, j + 1))
                    drivable[cx, cy] = (a, b) in edge_set
                elif cy % 2 == 1 and 0 < cx < nx - 1:
                    i, j = cx // 2 - 1, (cy - 1) // 2
                    a, b = node_at.get((i, j)), node_at.get((i + 1, j))
                    drivable[cx, cy] = (a, b) in edge_set
        self.cell_drivable = drivable

    def is_drivable(self, xy: np.ndarray) -> np.ndarray:
        """Whether points (N, 2) lie on the road surface (not on the raised curb level)."""
        cx = np.clip(np.searchsorted(self.x_breaks, xy[:, 0]) - 1, 0, len(self.x_breaks) - 2)
        cy = np.clip(np.searchsorted(self.y_breaks, xy[:, 1]) - 1, 0, len(self.y_breaks) - 2)
        return self.cell_drivable[cx, cy]

    # ---------------------------------------------------------------- lanes
    def _make_lanes(self) -> None:
        c, w = self.cfg, self.half_width_m
        lw, n_lanes = c.lane_width_m, c.lanes_per_direction
        self.lanes: dict[int, LaneSegment] = {}
        self.road_lanes: dict[tuple[int, int], list[int]] = {}  # (from, to) -> lane ids by index
        next_id = FIRST_LANE_ID
        for a, b in self.edges:
            for src, dst in ((a, b), (b, a)):
                u = (self.nodes_xy[dst] - self.nodes_xy[src]) / c.block_m
                left = np.array([-u[1], u[0]])
                axis = 0 if abs(u[0]) > 0.5 else 1
                ids = []
                for k in range(n_lanes):
                    offset = -(k + 0.5) * lw * left
                    p0 = self.nodes_xy[src] + u * w + offset
                    p1 = self.nodes_xy[dst] - u * w + offset
                    center = _densify(np.stack([p0, p1]), LANE_POINT_STEP_M)
                    lane = LaneSegment(
                        id=next_id,
                        centerline=center,
                        left_boundary=center + 0.5 * lw * left,
                        right_boundary=center - 0.5 * lw * left,
                        left_mark="DOUBLE_SOLID_YELLOW" if k == 0 else "DASHED_WHITE",
                        right_mark="SOLID_WHITE" if k == n_lanes - 1 else "DASHED_WHITE",
                        is_intersection=False,
                        lane_index=k,
                        node=dst,
                        axis=axis,
                    )
                    self.lanes[next_id] = lane
                    ids.append(next_id)
                    next_id += 1
                for k, lid in enumerate(ids):
                    self.lanes[lid].left_neighbor = ids[k - 1] if k > 0 else None
                    self.lanes[lid].right_neighbor = ids[k + 1] if k + 1 < n_lanes else None
                self.road_lanes[(src, dst)] = ids
        # connectors through each intersection
        for node in range(len(self.nodes_xy)):
            for src in self.neighbors[node]:
                u_in = (self.nodes_xy[node] - self.nodes_xy[src]) / c.block_m
                for dst in self.neighbors[node]:
                    if dst == src:
                        continue  # no U-turns
                    u_out = (self.nodes_xy[dst] - self.nodes_xy[node]) / c.block_m
                    cross = u_in[0] * u_out[1] - u_in[1] * u_out[0]
                    turn = "straight" if abs(cross) < 0.5 else ("left" if cross > 0 else "right")
                    ks = {"straight": range(n_lanes), "left": [0], "right": [n_lanes - 1]}[turn]
                    if len(self.neighbors[node]) == 2:
                        ks = range(n_lanes)  # a bend: every lane follows it
                    for k in ks:
                        lane_in = self.lanes[self.road_lanes[(src, node)][k]]
                        lane_out = self.lanes[self.road_lanes[(node, dst)][k]]
                        p0, p2 = lane_in.centerline[-1], lane_out.centerline[0]
                        if turn == "straight":
                            center = _densify(np.stack([p0, p2]), LANE_POINT_STEP_M)
                        else:
                            p1 = p0 + u_in * float(np.dot(p2 - p0, u_in))
                            t = np.linspace(0, 1, TURN_CURVE_POINTS)[:, None]
                            curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
                            center = _densify(curve, LANE_POINT_STEP_M)
                        normal = _polyline_normals(center)
                        lane = LaneSegment(
                            id=next_id,
                            centerline=center,
                            left_boundary=center + 0.5 * lw * normal,
                            right_boundary=center - 0.5 * lw * normal,
                            left_mark="NONE",
                            right_mark="NONE",
                            is_intersection=True,
                            lane_index=k,
                            node=node,
                            axis=lane_in.axis,
                            turn=turn,
                            successors=[lane_out.id],
                            predecessors=[lane_in.id],
                        )
                        self.lanes[next_id] = lane
                        lane_in.successors.append(next_id)
                        lane_out.predecessors.append(next_id)
                        next_id += 1

    # ---------------------------------------------------------------- crosswalks
    def _make_crosswalks(self) -> None:
        w = self.half_width_m
        self.crosswalks: list[Crosswalk] = []
        for node in range(len(self.nodes_xy)):
            if len(self.neighbors[node]) < 3:
                continue  # bends and pass-throughs get no crossings
            for u in self.node_arms(node):
                left = np.array([-u[1], u[0]])
                base = self.nodes_xy[node]
                a0, a1 = base + u * (w + self.cfg.crosswalk_start_m), base + u * (w + self.cfg.crosswalk_end_m)
                edge1 = np.stack([a0 - w * left, a0 + w * left])
                edge2 = np.stack([a1 - w * left, a1 + w * left])
                poly = np.stack([edge1[0], edge1[1], edge2[1], edge2[0]])
                self.crosswalks.append(Crosswalk(poly, edge1, edge2, node, 0 if abs(u[0]) > 0.5 else 1))

    def drivable_polygons(self) -> list[np.ndarray]:
        """Drivable areas as rectangles (4, 2), one per drivable cell."""
        polys = []
        for cx, cy in zip(*np.nonzero(self.cell_drivable)):
            x0, x1 = self.x_breaks[cx], self.x_breaks[cx + 1]
            y0, y1 = self.y_breaks[cy], self.y_breaks[cy + 1]
            polys.append(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
        return polys

    # ---------------------------------------------------------------- traffic lights
    def light_is_green(self, node: int, axis: int, t_s: float, green_s: float, all_red_s: float) -> bool:
        """Whether traffic approaching ``node`` along ``axis`` may enter at time ``t_s``."""
        if len(self.neighbors[node]) < 3:
            return True
        cycle = 2 * (green_s + all_red_s)
        phase = (t_s + self.light_offset_s[node]) % cycle
        if axis == 0:
            return phase < green_s
        return green_s + all_red_s <= phase < 2 * green_s + all_red_s

    # ---------------------------------------------------------------- road sides
    def road_sides(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """For each road and side: (start, end) of the curb line, outward unit normal."""
        w = self.half_width_m
        for a, b in self.edges:
            u = (self.nodes_xy[b] - self.nodes_xy[a]) / self.cfg.block_m
            left = np.array([-u[1], u[0]])
            for side in (1.0, -1.0):
                normal = side * left
                p0 = self.nodes_xy[a] + u * w + normal * w
                p1 = self.nodes_xy[b] - u * w + normal * w
                yield p0, p1, u, normal

    # ---------------------------------------------------------------- pedestrian graph
    def _make_ped_graph(self) -> None:
        """Corner points around every intersection, linked along sidewalks and across crosswalks."""
        off = self.half_width_m + self.cfg.ped_corner_m
        corners = {}
        xy = []
        for node in range(len(self.nodes_xy)):
            for sx in (-1, 1):
                for sy in (-1, 1):
                    corners[(node, sx, sy)] = len(xy)
                    xy.append(self.nodes_xy[node] + off * np.array([sx, sy]))
        self.ped_nodes_xy = np.array(xy)
        edges: list[tuple[int, int, int, int]] = []  # (a, b, crossing node or -1, axis of road crossed)
        node_at = {(int(i), int(j)): k for k, (i, j) in enumerate(self.node_ij)}
        for node, (i, j) in enumerate(self.node_ij):
            right, up = node_at.get((i + 1, j)), node_at.get((i, j + 1))
            for s in (-1, 1):
                if right is not None:
                    edges.append((corners[(node, 1, s)], corners[(right, -1, s)], -1, -1))
                if up is not None:
                    edges.append((corners[(node, s, 1)], corners[(up, s, -1)], -1, -1))
            arms = {tuple(np.round(u).astype(int)) for u in self.node_arms(node)}
            crossable = len(self.neighbors[node]) >= 3
            for d in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                if d[0] != 0:
                    a, b = corners[(node, d[0], -1)], corners[(node, d[0], 1)]
                else:
                    a, b = corners[(node, -1, d[1])], corners[(node, 1, d[1])]
                if d in arms:
                    if crossable:
                        edges.append((a, b, node, 0 if d[0] != 0 else 1))
                else:
                    edges.append((a, b, -1, -1))
        self.ped_edges = edges
        self.ped_adjacency: dict[int, list[int]] = {k: [] for k in range(len(xy))}
        for e, (a, b, _, _) in enumerate(edges):
            self.ped_adjacency[a].append(e)
            self.ped_adjacency[b].append(e)
