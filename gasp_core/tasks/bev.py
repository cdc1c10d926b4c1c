"""A BEV raster in the t0 ego frame and what gets drawn on it: boxes, polygons, polylines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon


@dataclass(frozen=True)
class BevGrid:
    """Cells of ``resolution_m`` over ``extent_m`` = (x_min, x_max, y_min, y_max); rows along y, columns along x."""

    extent_m: tuple[float, float, float, float]
    resolution_m: float

    @property
    def shape(self) -> tuple[int, int]:
        x0, x1, y0, y1 = self.extent_m
        return int(round((y1 - y0) / self.resolution_m)), int(round((x1 - x0) / self.resolution_m))

    def centres(self) -> np.ndarray:
        """(H * W, 2) cell centres, row-major."""
        x0, _, y0, _ = self.extent_m
        rows, cols = self.shape
        xs = x0 + (np.arange(cols) + 0.5) * self.resolution_m
        ys = y0 + (np.arange(rows) + 0.5) * self.resolution_m
        xx, yy = np.meshgrid(xs, ys)
        return np.column_stack([xx.ravel(), yy.ravel()])


def boxes_mask(
    grid: BevGrid, centre_xy: np.ndarray, yaw: np.ndarray, length: np.ndarray, width: np.ndarray
) -> np.ndarray:
    """(H, W) cells whose centre lies inside any of the rotated rectangles."""
    pts = grid.centres()
    inside = np.zeros(len(pts), bool)
    for (cx, cy), a, l, w in zip(
        np.atleast_2d(centre_xy), np.atleast_1d(yaw), np.atleast_1d(length), np.atleast_1d(width)
    ):
        d = pts - (cx, cy)
        lx = np.cos(a) * d[:, 0] + np.sin(a) * d[:, 1]
        ly = -np.sin(a) * d[:, 0] + np.cos(a) * d[:, 1]
        inside |= (np.abs(lx) <= l / 2) & (np.abs(ly) <= w / 2)
    return inside.reshape(grid.shape)


def polygons_mask(grid: BevGrid, rings: list[np.ndarray], holes: list[list[np.ndarray]] | None = None) -> np.ndarray:
    """(H, W) cells whose centre lies inside any polygon (exterior ring, optional holes)."""
    pts = grid.centres()
    inside = np.zeros(len(pts), bool)
    for k, ring in enumerate(rings):
        if len(ring) < 3:
            continue
        poly = Polygon(ring[:, :2], [h[:, :2] for h in (holes[k] if holes else [])])
        shapely.prepare(poly)  # prepared geometries answer many point queries an order of magnitude faster
        inside |= shapely.contains_xy(poly, pts[:, 0], pts[:, 1])
    return inside.reshape(grid.shape)


def lines_mask(grid: BevGrid, lines: list[np.ndarray], width_m: float) -> np.ndarray:
    """(H, W) cells whose centre lies within ``width_m / 2`` of any polyline."""
    pts = shapely.points(grid.centres())
    near = np.zeros(len(pts), bool)
    for line in lines:
        if len(line) >= 2:
            geom = LineString(line[:, :2])
            shapely.prepare(geom)
            near |= shapely.dwithin(geom, pts, width_m / 2)
    return near.reshape(grid.shape)
