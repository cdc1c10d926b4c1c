"""Map labels: the HD map's layers rasterised around the ego at t0."""

from __future__ import annotations

import numpy as np
import polars as pl

from gasp_core.data.samples import Sample, SceneConfig
from gasp_core.data.schema import MapLayer
from gasp_core.data.store import StoredLog
from gasp_core.models.config import VoxelizerConfig
from gasp_core.tasks.bev import BevGrid, lines_mask, polygons_mask
from gasp_core.tasks.config import TaskLabelsConfig
from gasp_core.tasks.label_builder import LabelBuilder

MAP_CLASSES = (MapLayer.DRIVABLE_AREA, MapLayer.PED_CROSSING, MapLayer.LANE_DIVIDER, MapLayer.ROAD_BOUNDARY)


def map_grid(scene: SceneConfig, cfg: TaskLabelsConfig) -> BevGrid:
    return BevGrid(tuple(scene.extent_m[:4]), cfg.map_resolution_m)


def map_labels(
    log: StoredLog, t0_ns: int, grid: BevGrid, line_width_m: float = 1.0, layers: tuple[str, ...] = MAP_CLASSES
) -> np.ndarray:
    """(L, H, W) bool: the HD map's layers around the ego at t0 (polygons filled, lines ``line_width_m`` wide)."""
    t0_T_city = np.linalg.inv(log.city_T_ego(t0_ns)[0])
    out = np.zeros((len(layers), *grid.shape), bool)
    for k, layer in enumerate(layers):
        rows = log.map.filter(pl.col("layer") == layer)
        shapes = [
            np.column_stack([x, y]) @ t0_T_city[:2, :2].T + t0_T_city[:2, 3] for x, y in zip(rows["x_m"], rows["y_m"])
        ]
        if layer in (MapLayer.LANE_DIVIDER, MapLayer.ROAD_BOUNDARY):
            closed = rows["closed"].to_list()
            out[k] = lines_mask(grid, [np.vstack([s, s[:1]]) if c else s for s, c in zip(shapes, closed)], line_width_m)
        else:
            ids, parts = rows["element_id"].to_list(), rows["part"].to_list()
            exteriors, holes = [], []
            for s, eid, part in zip(shapes, ids, parts):
                if part == 0:
                    exteriors.append(s)
                    holes.append([h for h, hid, hp in zip(shapes, ids, parts) if hid == eid and hp > 0])
            out[k] = polygons_mask(grid, exteriors, holes)
    return out


class MapLabels(LabelBuilder):
    """``map``: (S, 4, Hm, Wm) packed bits, drivable area / crossings / lane dividers / road boundaries."""

    keys = ("map",)
    stacked = frozenset(keys)
    packed = {"map": "map_shape"}

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.grid = map_grid(ctx.scene, ctx.cfg)

    @classmethod
    def manifest(cls, scene: SceneConfig, vox: VoxelizerConfig, cfg: TaskLabelsConfig) -> dict:
        return {"map_shape": [len(MAP_CLASSES), *map_grid(scene, cfg).shape], "map_classes": list(MAP_CLASSES)}

    def sample(self, index: int, sample: Sample) -> dict[str, np.ndarray]:
        return {"map": np.packbits(map_labels(self.ctx.log, sample.t0_ns, self.grid, self.ctx.cfg.map_line_width_m))}
