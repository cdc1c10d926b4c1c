"""Triangle meshes of the town and of its agents, each face tagged with a ``Surface`` class."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh

from gasp_core.sim.semantics import Surface
from gasp_core.sim.town import Town


@dataclass
class TaggedMesh:
    """Vertices (V, 3), faces (F, 3) and a ``Surface`` class per face."""

    vertices: np.ndarray
    faces: np.ndarray
    face_class: np.ndarray

    @property
    def triangles(self) -> np.ndarray:
        return self.vertices[self.faces]

    @staticmethod
    def concatenate(meshes: list[TaggedMesh]) -> TaggedMesh:
        offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
        return TaggedMesh(
            np.concatenate([m.vertices for m in meshes]).astype(np.float64),
            np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]).astype(np.int64),
            np.concatenate([m.face_class for m in meshes]).astype(np.uint8),
        )


def _tagged(mesh: trimesh.Trimesh, surface: Surface) -> TaggedMesh:
    return TaggedMesh(
        np.asarray(mesh.vertices), np.asarray(mesh.faces), np.full(len(mesh.faces), int(surface), np.uint8)
    )


def box_mesh(extents: tuple[float, float, float], center: tuple[float, float, float], surface: Surface) -> TaggedMesh:
    """Axis-aligned box with the given extents (x, y, z) and centre."""
    return _tagged(
        trimesh.creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(center)), surface
    )


def _grid_surface(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate a height grid z[i, j] over x[i], y[j] (faces wound counter-clockwise, normals up)."""
    nx, ny = len(x), len(y)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    vertices = np.stack([xx.ravel(), yy.ravel(), z.ravel()], axis=1)
    idx = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return vertices, faces


def ground_mesh(town: Town) -> TaggedMesh:
    """Terrain of every cell (road level or curb level) plus vertical curb faces between them."""
    cfg = town.cfg
    step = cfg.terrain_step_m
    xs, ys = town.x_breaks, town.y_breaks
    samples_x = [
        np.linspace(xs[i], xs[i + 1], max(2, math.ceil((xs[i + 1] - xs[i]) / step) + 1)) for i in range(len(xs) - 1)
    ]
    samples_y = [
        np.linspace(ys[j], ys[j + 1], max(2, math.ceil((ys[j + 1] - ys[j]) / step) + 1)) for j in range(len(ys) - 1)
    ]
    parts: list[TaggedMesh] = []
    lift = lambda drivable: 0.0 if drivable else cfg.curb_height_m  # noqa: E731
    for i, x in enumerate(samples_x):
        for j, y in enumerate(samples_y):
            xx, yy = np.meshgrid(x, y, indexing="ij")
            z = town.terrain_height(np.stack([xx, yy], -1)) + lift(town.cell_drivable[i, j])
            v, f = _grid_surface(x, y, z)
            parts.append(TaggedMesh(v, f, np.full(len(f), int(Surface.GROUND), np.uint8)))
    # curb walls on shared cell edges whose two sides differ in drivability
    for i in range(len(samples_x)):
        for j in range(len(samples_y)):
            for di, dj in ((1, 0), (0, 1)):
                ni, nj = i + di, j + dj
                if ni >= len(samples_x) or nj >= len(samples_y):
                    continue
                if town.cell_drivable[i, j] == town.cell_drivable[ni, nj]:
                    continue
                if di:
                    line = np.stack([np.full(len(samples_y[j]), xs[ni]), samples_y[j]], 1)
                else:
                    line = np.stack([samples_x[i], np.full(len(samples_x[i]), ys[nj])], 1)
                parts.append(_wall(line, town.terrain_height(line), cfg.curb_height_m))
    return TaggedMesh.concatenate(parts)


def _wall(line_xy: np.ndarray, base_z: np.ndarray, height: float) -> TaggedMesh:
    n = len(line_xy)
    bottom = np.column_stack([line_xy, base_z])
    top = np.column_stack([line_xy, base_z + height])
    vertices = np.concatenate([bottom, top])
    k = np.arange(n - 1)
    faces = np.concatenate([np.stack([k, k + 1, n + k + 1], 1), np.stack([k, n + k + 1, n + k], 1)])
    # two-sided: embree intersects both sides anyway; the renderer uses |n . d|
    return TaggedMesh(vertices, faces, np.full(len(faces), int(Surface.CURB), np.uint8))


def static_mesh(town: Town) -> TaggedMesh:
    """Everything that never moves: ground, curbs, buildings, poles, trees (parked cars are agents)."""
    parts = [ground_mesh(town)]
    for b in town.buildings:
        base = float(town.surface_height(b.center_xy[None])[0]) - 0.3  # sink into sloped ground
        parts.append(
            box_mesh(
                (b.size_xy[0], b.size_xy[1], b.height_m + 0.3),
                (b.center_xy[0], b.center_xy[1], base + (b.height_m + 0.3) / 2),
                Surface.BUILDING,
            )
        )
    for p in town.poles:
        base = float(town.surface_height(p.xy[None])[0]) - 0.1
        cyl = trimesh.creation.cylinder(radius=0.12, height=p.height_m, sections=8)
        cyl.apply_translation((p.xy[0], p.xy[1], base + p.height_m / 2))
        parts.append(_tagged(cyl, Surface.POLE))
    for t in town.trees:
        base = float(town.surface_height(t.xy[None])[0]) - 0.1
        trunk = trimesh.creation.cylinder(radius=0.18, height=t.trunk_height_m + 0.5, sections=8)
        trunk.apply_translation((t.xy[0], t.xy[1], base + (t.trunk_height_m + 0.5) / 2))
        crown = trimesh.creation.icosphere(subdivisions=1, radius=t.crown_radius_m)
        crown.apply_scale((1.0, 1.0, 1.2))
        crown.apply_translation((t.xy[0], t.xy[1], base + t.trunk_height_m + t.crown_radius_m))
        parts += [_tagged(trunk, Surface.TRUNK), _tagged(crown, Surface.FOLIAGE)]
    return TaggedMesh.concatenate(parts)


# Agent shapes in the agent's box frame (x forward, origin at the box centre); every part lies
# strictly inside the annotated cuboid (INSET metres from its faces), so returns on an agent are
# interior points of its box.
INSET_M = 0.02


def agent_local_mesh(kind: str, length: float, width: float, height: float) -> TaggedMesh:
    """Mesh of one agent in its box frame (x forward, z up, origin at the box centre)."""
    L, W, H = length - 2 * INSET_M, width - 2 * INSET_M, height - 2 * INSET_M
    zb = -H / 2  # bottom of the inset box
    if kind in ("car", "parked"):
        body = box_mesh((L, W, 0.5 * H), (0.0, 0.0, zb + 0.15 * H + 0.25 * H), Surface.VEHICLE)
        cabin = box_mesh((0.55 * L, 0.9 * W, 0.4 * H), (-0.05 * L, 0.0, zb + 0.6 * H + 0.2 * H), Surface.VEHICLE)
        return TaggedMesh.concatenate([body, cabin])
    if kind == "truck":
        cab = box_mesh((0.2 * L, W, 0.75 * H), (0.4 * L, 0.0, zb + 0.1 * H + 0.375 * H), Surface.VEHICLE)
        cargo = box_mesh((0.78 * L, W, 0.88 * H), (-0.11 * L, 0.0, zb + 0.12 * H + 0.44 * H), Surface.VEHICLE)
        return TaggedMesh.concatenate([cab, cargo])
    if kind == "bus":
        return box_mesh((L, W, 0.9 * H), (0.0, 0.0, zb + 0.1 * H + 0.45 * H), Surface.VEHICLE)
    if kind == "pedestrian":
        legs = box_mesh((0.25, 0.35, 0.5 * H), (0.0, 0.0, zb + 0.25 * H), Surface.PEDESTRIAN)
        torso = box_mesh((0.3, min(0.45, W), 0.35 * H), (0.0, 0.0, zb + 0.5 * H + 0.175 * H), Surface.PEDESTRIAN)
        head = box_mesh((0.2, 0.18, 0.13 * H), (0.0, 0.0, zb + 0.87 * H + 0.065 * H), Surface.PEDESTRIAN)
        return TaggedMesh.concatenate([legs, torso, head])
    if kind == "cyclist":
        bike = box_mesh((L, 0.12, 0.55 * H), (0.0, 0.0, zb + 0.05 * H + 0.275 * H), Surface.CYCLIST)
        rider = box_mesh((0.45, min(0.45, W), 0.45 * H), (-0.1 * L, 0.0, zb + 0.55 * H + 0.225 * H), Surface.CYCLIST)
        return TaggedMesh.concatenate([bike, rider])
    raise ValueError(f"unknown agent kind {kind!r}")
