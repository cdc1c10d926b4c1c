"""The town: a grid road network with its HD map, ground, materials and static props.

Roads run between the nodes of a grid; every node is an intersection (4-way in the interior,
3-way on the border, a bend at the corners; dropped interior roads add more 3-way ones).
Traffic drives on the right. The town frame is the "city" frame of the written logs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from gasp_core.sim.config import TownConfig
from gasp_core.sim.semantics import Surface

# Distances measured from an intersection's centre along an arm, in units added to the road
# half-width W: where the crosswalk band starts/ends and where vehicles stop.
CROSSWALK_START_M = 0.5
CROSSWALK_END_M = 3.5
STOP_LINE_M = 4.2
PED_CORNER_M = 2.0  # pedestrian corner points sit this far beyond W, on the sidewalk


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


class Town:
    """Road network, HD map, ground surface and static props of one procedural town."""

    def __init__(self, cfg: TownConfig, seed: int) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.half_width_m = cfg.lanes_per_direction * cfg.lane_width_m
        self._make_graph()
        self._make_cells()
        self.light_offset_s = self.rng.uniform(0.0, 100.0, len(self.nodes_xy))
        self._ground_phase = self.rng.uniform(0, 2 * np.pi, 3)
        self._make_lanes()
        self._make_crosswalks()
        self._make_props()
        self._make_material_raster()
        self._make_ped_graph()

    # ---------------------------------------------------------------- graph
    def _make_graph(self) -> None:
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
            if self.rng.random() >= c.drop_road_prob or degree(e[0]) < 4 or degree(e[1]) < 4:
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

    def terrain_height(self, xy: np.ndarray) -> np.ndarray:
        """Smooth ground height (m) of the road level at points (N, 2)."""
        c, p = self.cfg, self._ground_phase
        k = 2 * np.pi / c.ground_wavelength_m
        x, y = xy[..., 0], xy[..., 1]
        return c.ground_amplitude_m * (
            0.6 * np.sin(k * x + p[0]) * np.cos(0.8 * k * y + p[1]) + 0.4 * np.sin(1.7 * k * (x + y) + p[2])
        )

    def surface_height(self, xy: np.ndarray) -> np.ndarray:
        """Height of the walkable surface: road level on drivable cells, curb level elsewhere."""
        return self.terrain_height(xy) + np.where(self.is_drivable(xy), 0.0, self.cfg.curb_height_m)

    # ---------------------------------------------------------------- lanes
    def _make_lanes(self) -> None:
        c, w = self.cfg, self.half_width_m
        lw, n_lanes = c.lane_width_m, c.lanes_per_direction
        self.lanes: dict[int, LaneSegment] = {}
        self.road_lanes: dict[tuple[int, int], list[int]] = {}  # (from, to) -> lane ids by index
        next_id = 1000
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
                    center = _densify(np.stack([p0, p1]), 1.0)
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
                            center = _densify(np.stack([p0, p2]), 1.0)
                        else:
                            p1 = p0 + u_in * float(np.dot(p2 - p0, u_in))
                            t = np.linspace(0, 1, 24)[:, None]
                            curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
                            center = _densify(curve, 1.0)
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
                a0, a1 = base + u * (w + CROSSWALK_START_M), base + u * (w + CROSSWALK_END_M)
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

    # ---------------------------------------------------------------- props
    def _road_sides(self):
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

    def _make_props(self) -> None:
        c, rng = self.cfg, self.rng
        self.trees: list[Tree] = []
        self.poles: list[Pole] = []
        self.parked_cars: list[ParkedCar] = []
        self.parking_strips: list[np.ndarray] = []
        keepout: list[np.ndarray] = []  # rectangles [x0, y0, x1, y1] buildings must avoid
        for p0, p1, u, normal in self._road_sides():
            length = float(np.dot(p1 - p0, u))
            s = 6.0 + rng.uniform(0, c.tree_spacing_m)
            while s < length - 6.0:
                xy = p0 + u * s + normal * 0.9
                self.trees.append(Tree(xy, rng.uniform(2.0, 3.2), rng.uniform(1.4, 2.6)))
                s += c.tree_spacing_m * rng.uniform(0.7, 1.3)
            s = 4.0 + rng.uniform(0, c.pole_spacing_m)
            while s < length - 4.0:
                self.poles.append(Pole(p0 + u * s + normal * 0.4, rng.uniform(5.0, 8.0)))
                s += c.pole_spacing_m * rng.uniform(0.7, 1.3)
            if rng.random() < c.parked_car_prob:
                depth0, depth1 = c.sidewalk_width_m + 0.5, c.sidewalk_width_m + 3.5
                q0, q1 = p0 + u * 8.0, p1 - u * 8.0
                strip = np.stack(
                    [q0 + normal * depth0, q1 + normal * depth0, q1 + normal * depth1, q0 + normal * depth1]
                )
                self.parking_strips.append(strip)
                keepout.append(np.concatenate([strip.min(0) - 1.0, strip.max(0) + 1.0]))
                yaw = math.atan2(u[1], u[0]) + (math.pi if rng.random() < 0.5 else 0.0)
                s = 10.0
                while s < length - 10.0:
                    if rng.random() < 0.75:
                        self.parked_cars.append(ParkedCar(p0 + u * s + normal * (depth0 + 1.5), yaw))
                    s += rng.uniform(6.0, 7.5)
        # buildings fill the raised cells, set back from the sidewalk
        self.buildings: list[Building] = []
        setback = c.sidewalk_width_m + 2.0
        xs, ys = self.x_breaks, self.y_breaks
        core = np.array([xs[1] - 45.0, ys[1] - 45.0, xs[-2] + 45.0, ys[-2] + 45.0])
        for cx, cy in zip(*np.nonzero(~self.cell_drivable)):
            area = np.array([xs[cx] + setback, ys[cy] + setback, xs[cx + 1] - setback, ys[cy + 1] - setback])
            area[:2] = np.maximum(area[:2], core[:2])
            area[2:] = np.minimum(area[2:], core[2:])
            if np.any(area[2:] - area[:2] < 8.0):
                continue
            placed: list[np.ndarray] = []
            for _ in range(c.buildings_per_block * 3):
                if len(placed) >= c.buildings_per_block:
                    break
                size = rng.uniform([8.0, 8.0], [24.0, 20.0])
                size = np.minimum(size, area[2:] - area[:2])
                lo = area[:2] + size / 2
                hi = area[2:] - size / 2
                center = rng.uniform(lo, hi)
                rect = np.concatenate([center - size / 2 - 1.5, center + size / 2 + 1.5])
                if any(_overlap(rect, r) for r in placed + keepout):
                    continue
                placed.append(rect)
                self.buildings.append(Building(center, size, float(rng.uniform(5.0, 22.0))))
        # a few trees in the open land beyond the town
        for _ in range(40):
            xy = rng.uniform(self.bounds_xy[:2] + 5, self.bounds_xy[2:] - 5)
            if self.is_drivable(xy[None])[0] or (core[0] < xy[0] < core[2] and core[1] < xy[1] < core[3]):
                continue
            self.trees.append(Tree(xy, rng.uniform(2.0, 3.5), rng.uniform(1.8, 3.2)))

    # ---------------------------------------------------------------- materials
    def _make_material_raster(self) -> None:
        """Ground material (``Surface``) per cell of a fine BEV raster: road, paint, sidewalk, grass."""
        c, res, w = self.cfg, self.cfg.material_res_m, self.half_width_m
        x0, y0, x1, y1 = self.bounds_xy
        width, height = int(math.ceil((x1 - x0) / res)), int(math.ceil((y1 - y0) / res))
        img = Image.new("L", (width, height), int(Surface.GRASS))
        draw = ImageDraw.Draw(img)

        def px(points: np.ndarray) -> list[tuple[float, float]]:
            return [((p[0] - x0) / res, (p[1] - y0) / res) for p in points]

        def rect(lo: np.ndarray, hi: np.ndarray, value: int) -> None:
            draw.polygon(px(np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])), fill=value)

        polys = self.drivable_polygons()
        for poly in polys:
            rect(poly.min(0) - c.sidewalk_width_m, poly.max(0) + c.sidewalk_width_m, int(Surface.SIDEWALK))
        for strip in self.parking_strips:
            draw.polygon(px(strip), fill=int(Surface.PARKING))
        for poly in polys:
            rect(poly.min(0), poly.max(0), int(Surface.ROAD))

        def stripe(a: np.ndarray, b: np.ndarray, width_m: float, value: int) -> None:
            d = (b - a) / max(np.linalg.norm(b - a), 1e-9)
            n = np.array([-d[1], d[0]]) * width_m / 2
            draw.polygon(px(np.stack([a - n, b - n, b + n, a + n])), fill=value)

        lw = c.lane_width_m
        for a, b in self.edges:
            u = (self.nodes_xy[b] - self.nodes_xy[a]) / c.block_m
            left = np.array([-u[1], u[0]])
            p0, p1 = self.nodes_xy[a] + u * w, self.nodes_xy[b] - u * w
            for off in (-0.12, 0.12):  # double solid yellow centre line
                stripe(p0 + left * off, p1 + left * off, 0.12, int(Surface.MARKING_YELLOW))
            for side in (1.0, -1.0):
                for k in range(1, c.lanes_per_direction):  # dashed lane dividers
                    off = side * k * lw * left
                    length = float(np.dot(p1 - p0, u))
                    for s in np.arange(1.0, length - 3.0, 9.0):
                        stripe(p0 + off + u * s, p0 + off + u * (s + 3.0), 0.15, int(Surface.MARKING_WHITE))
                edge = side * (w - 0.25) * left  # solid edge line
                stripe(p0 + edge, p1 + edge, 0.15, int(Surface.MARKING_WHITE))
        for cw in self.crosswalks:
            u = (cw.edge2[0] - cw.edge1[0]) / np.linalg.norm(cw.edge2[0] - cw.edge1[0])  # along the road
            across = cw.edge1[1] - cw.edge1[0]
            span = np.linalg.norm(across)
            across /= span
            for s in np.arange(0.5, span - 0.25, 1.0):  # zebra bars, parallel to the road
                a = cw.edge1[0] + across * (s + 0.25)
                stripe(a, a + u * (CROSSWALK_END_M - CROSSWALK_START_M), 0.5, int(Surface.CROSSWALK))
        for (src, dst), _ids in self.road_lanes.items():  # stop lines before crossings
            if len(self.neighbors[dst]) < 3:
                continue
            u = (self.nodes_xy[dst] - self.nodes_xy[src]) / c.block_m
            left = np.array([-u[1], u[0]])
            p = self.nodes_xy[dst] - u * (w + STOP_LINE_M)
            stripe(p, p - left * w, 0.4, int(Surface.MARKING_WHITE))
        self.material = np.asarray(img, dtype=np.uint8)  # row = y index, col = x index
        self.material_origin_xy = np.array([x0, y0])

    def material_at(self, xy: np.ndarray) -> np.ndarray:
        """Ground material (``Surface`` values) at points (N, 2)."""
        res = self.cfg.material_res_m
        col = np.clip(((xy[:, 0] - self.material_origin_xy[0]) / res).astype(int), 0, self.material.shape[1] - 1)
        row = np.clip(((xy[:, 1] - self.material_origin_xy[1]) / res).astype(int), 0, self.material.shape[0] - 1)
        return self.material[row, col]

    # ---------------------------------------------------------------- pedestrian graph
    def _make_ped_graph(self) -> None:
        """Corner points around every intersection, linked along sidewalks and across crosswalks."""
        off = self.half_width_m + PED_CORNER_M
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


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
