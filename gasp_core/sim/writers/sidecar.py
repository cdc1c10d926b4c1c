"""Per-return surface classes of simulated lidar sweeps: a sidecar outside the AV2 and nuScenes formats.

One log's sidecar folder (AV2: ``<log_dir>/gasp_sidecar``; nuScenes: ``<dataroot>/gasp_sidecar/<scene name>``)::

    surface_classes.json          JSON list of class names indexed by id (``Surface`` names, lower case)
    lidar_surface/<key>.feather   one uint8 column ``surface``: row i labels point i of the sweep file

``<key>`` names the sweep: AV2 its ``<timestamp_ns>``, nuScenes its ``.pcd.bin`` file name without that
suffix. Real data has no such folder. Read back by ``gasp_core.data.source.SurfaceSidecar`` (the data layer
keeps its own copy of these names: it does not import the simulator).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from gasp_core.sim.semantics import Surface

SIDECAR_DIR = "gasp_sidecar"
CLASSES_FILE = "surface_classes.json"
SURFACE_DIR = "lidar_surface"
SURFACE_COLUMN = "surface"


def surface_class_names() -> list[str]:
    return [s.name.lower() for s in Surface]


def write_surface_classes(folder: Path) -> Path:
    """Write the class list into a log's sidecar ``folder`` (created if needed)."""
    path = Path(folder) / CLASSES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(surface_class_names()))
    return path


def write_sweep_surface(folder: Path, key: str, surface: np.ndarray) -> Path:
    """Write one sweep's per-return classes, in the order of the sweep file's points."""
    path = Path(folder) / SURFACE_DIR / f"{key}.feather"
    path.parent.mkdir(parents=True, exist_ok=True)
    feather.write_feather(pa.table({SURFACE_COLUMN: np.asarray(surface, np.uint8)}), str(path), compression="lz4")
    return path
