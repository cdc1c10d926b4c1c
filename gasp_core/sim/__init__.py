"""The embedded driving world: a procedural town with traffic, ray-cast lidar and cameras, written
in the real Argoverse 2 and nuScenes layouts so every stage reads it through the real loaders.

Import what you need from the submodules (``gasp_core.sim.config``, ``gasp_core.sim.world``, ...):
the package itself stays light, so reading a world's config does not load the ray caster.
"""
