"""The town's ground: the smoothly rolling terrain, the raised curb level off the road, and the material raster
(road, lane markings, crosswalks, sidewalk, parking, grass) that lidar intensity and camera colour read."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from gasp_core.sim.config import TownConfig
from gasp_core.sim.roads import RoadNetwork
from gasp_core.sim.semantics import Surface


def draw_ground_phase(rng: np.random.Generator) -> np.ndarray:
    """The terrain's random phases (3,)."""
    return rng.uniform(0, 2 * np.pi, 3)


class Ground:
    """Terrain height and ground material of one town; ``phase`` from :func:`draw_ground_phase`."""

    def __init__(
        self, cfg: TownConfig, roads: RoadNetwork, phase: np.ndarray, parking_strips: list[np.ndarray]
    ) -> None:
        self.cfg = cfg
        self.roads = roads
        self.phase = phase
        self._make_material_raster(parking_strips)

    def terrain_height(self, xy: np.ndarray) -> np.ndarray:
        """Smooth ground height (m) of the road level at points (N, 2)."""
        c, p = self.cfg, self.phase
        k = 2 * np.pi / c.ground_wavelength_m
        x, y = xy[..., 0], xy[..., 1]
        return c.ground_amplitude_m * (
            0.6 * np.sin(k * x + p[0]) * np.cos(0.8 * k * y + p[1]) + 0.4 * np.sin(1.7 * k * (x + y) + p[2])
        )

    def surface_height(self, xy: np.ndarray) -> np.ndarray:
        """Height of the walkable surface: road level on drivable cells, curb level elsewhere."""
        return self.terrain_height(xy) + np.where(self.roads.is_drivable(xy), 0.0, self.cfg.curb_height_m)

    # ---------------------------------------------------------------- materials
    def _make_material_raster(self, parking_strips: list[np.ndarray]) -> None:
        """Ground material (``Surface``) per cell of a fine BEV raster: road, paint, sidewalk, grass."""
        roads, c, res, w = self.roads, self.cfg, self.cfg.material_res_m, self.roads.half_width_m
        x0, y0, x1, y1 = roads.bounds_xy
        width, height = int(math.ceil((x1 - x0) / res)), int(math.ceil((y1 - y0) / res))
        img = Image.new("L", (width, height), int(Surface.GRASS))
        draw = ImageDraw.Draw(img)

        def px(points: np.ndarray) -> list[tuple[float, float]]:
            return [((p[0] - x0) / res, (p[1] - y0) / res) for p in points]

        def rect(lo: np.ndarray, hi: np.ndarray, value: int) -> None:
            draw.polygon(px(np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])), fill=value)

        polys = roads.drivable_polygons()
        for poly in polys:
            rect(poly.min(0) - c.sidewalk_width_m, poly.max(0) + c.sidewalk_width_m, int(Surface.SIDEWALK))
        for strip in parking_strips:
            draw.polygon(px(strip), fill=int(Surface.PARKING))
        for poly in polys:
            rect(poly.min(0), poly.max(0), int(Surface.ROAD))

        def stripe(a: np.ndarray, b: np.ndarray, width_m: float, value: int) -> None:
            d = (b - a) / max(np.linalg.norm(b - a), 1e-9)
            n = np.array([-d[1], d[0]]) * width_m / 2
            draw.polygon(px(np.stack([a - n, b - n, b + n, a + n])), fill=value)

        lw = c.lane_width_m
        for a, b in roads.edges:
            u = (roads.nodes_xy[b] - roads.nodes_xy[a]) / c.block_m
            left = np.array([-u[1], u[0]])
            p0, p1 = roads.nodes_xy[a] + u * w, roads.nodes_xy[b] - u * w
            for off in (-c.centre_line_offset_m, c.centre_line_offset_m):  # double solid yellow centre line
                stripe(p0 + left * off, p1 + left * off, c.centre_line_width_m, int(Surface.MARKING_YELLOW))
            for side in (1.0, -1.0):
                for k in range(1, c.lanes_per_direction):  # dashed lane dividers
                    off = side * k * lw * left
                    length = float(np.dot(p1 - p0, u))
                    for s in np.arange(c.lane_dash_start_m, length - c.lane_dash_m, c.lane_dash_period_m):
                        stripe(
                            p0 + off + u * s,
                            p0 + off + u * (s + c.lane_dash_m),
                            c.lane_line_width_m,
                            int(Surface.MARKING_WHITE),
                        )
                edge = side * (w - c.edge_line_inset_m) * left  # solid edge line
                stripe(p0 + edge, p1 + edge, c.lane_line_width_m, int(Surface.MARKING_WHITE))
        for cw in roads.crosswalks:
            u = (cw.edge2[0] - cw.edge1[0]) / np.linalg.norm(cw.edge2[0] - cw.edge1[0])  # along the road
            across = cw.edge1[1] - cw.edge1[0]
            span = np.linalg.norm(across)
            across /= span
            half = c.zebra_bar_width_m / 2
            for s in np.arange(c.zebra_start_m, span - half, c.zebra_pitch_m):  # zebra bars, parallel to the road
                a = cw.edge1[0] + across * (s + half)
                stripe(
                    a, a + u * (c.crosswalk_end_m - c.crosswalk_start_m), c.zebra_bar_width_m, int(Surface.CROSSWALK)
                )
        for (src, dst), _ids in roads.road_lanes.items():  # stop lines before crossings
            if len(roads.neighbors[dst]) < 3:
                continue
            u = (roads.nodes_xy[dst] - roads.nodes_xy[src]) / c.block_m
            left = np.array([-u[1], u[0]])
            p = roads.nodes_xy[dst] - u * (w + c.stop_line_m)
            stripe(p, p - left * w, c.stop_line_width_m, int(Surface.MARKING_WHITE))
        self.material = np.asarray(img, dtype=np.uint8)  # row = y index, col = x index
        self.material_origin_xy = np.array([x0, y0])

    def material_at(self, xy: np.ndarray) -> np.ndarray:
        """Ground material (``Surface`` values) at points (N, 2)."""
        res = self.cfg.material_res_m
        col = np.clip(((xy[:, 0] - self.material_origin_xy[0]) / res).astype(int), 0, self.material.shape[1] - 1)
        row = np.clip(((xy[:, 1] - self.material_origin_xy[1]) / res).astype(int), 0, self.material.shape[0] - 1)
        return self.material[row, col]
