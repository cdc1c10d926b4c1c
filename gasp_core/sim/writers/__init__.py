"""Writers of simulated logs in real dataset layouts (read back with the datasets' own loaders)."""

from gasp_core.sim.writers.av2_writer import write_av2_log
from gasp_core.sim.writers.nuscenes_writer import write_nuscenes, write_nuscenes_log
from gasp_core.sim.writers.sidecar import surface_class_names, write_surface_classes, write_sweep_surface

__all__ = [
    "surface_class_names",
    "write_av2_log",
    "write_nuscenes",
    "write_nuscenes_log",
    "write_surface_classes",
    "write_sweep_surface",
]
