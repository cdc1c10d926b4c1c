"""Writers of simulated logs in real dataset layouts (read back with the datasets' own loaders)."""

from gasp_core.sim.writers.av2_writer import write_av2_log
from gasp_core.sim.writers.nuscenes_writer import write_nuscenes, write_nuscenes_log

__all__ = ["write_av2_log", "write_nuscenes", "write_nuscenes_log"]
