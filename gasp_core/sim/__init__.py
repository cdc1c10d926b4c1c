"""The embedded driving world: a procedural town with traffic, ray-cast lidar and cameras, written
in the real Argoverse 2 and nuScenes layouts so every stage reads it through the real loaders."""

from gasp_core.sim.config import WorldConfig, world_config_from_dict
from gasp_core.sim.world import SimLog, simulate_log

__all__ = ["SimLog", "WorldConfig", "simulate_log", "world_config_from_dict"]
