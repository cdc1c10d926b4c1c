import numpy as np
import pytest

from gasp_core.sim.config import TownConfig
from gasp_core.sim.meshes import ground_mesh
from gasp_core.sim.semantics import Surface
from gasp_core.sim.town import Town


@pytest.fixture(scope="module")
def town() -> Town:
    return Town(TownConfig(), seed=5)


def test_town_has_three_and_four_way_intersections(town):
    degrees = [len(town.neighbors[k]) for k in range(len(town.nodes_xy))]
    assert 3 in degrees and 4 in degrees
    assert min(degrees) >= 2  # no dead ends: every vehicle always has somewhere to go


def test_lane_graph_is_closed_and_continuous(town):
    for lane in town.lanes.values():
        assert lane.successors, f"lane {lane.id} has no successor"
        for succ in lane.successors:
            gap = np.linalg.norm(town.lanes[succ].centerline[0] - lane.centerline[-1])
            assert gap < 1e-6, f"lane {lane.id} -> {succ} jumps {gap} m"
            assert lane.id in town.lanes[succ].predecessors


def test_two_lanes_per_direction_with_marked_boundaries(town):
    lw = town.cfg.lane_width_m
    for (src, dst), ids in town.road_lanes.items():
        assert len(ids) == 2
        inner, outer = (town.lanes[i] for i in ids)
        assert inner.left_mark == "DOUBLE_SOLID_YELLOW" and inner.right_mark == "DASHED_WHITE"
        assert outer.left_mark == "DASHED_WHITE" and outer.right_mark == "SOLID_WHITE"
        width = np.linalg.norm(inner.left_boundary - inner.right_boundary, axis=1)
        np.testing.assert_allclose(width, lw, atol=1e-9)
        np.testing.assert_allclose(inner.right_boundary, outer.left_boundary, atol=1e-9)


def test_four_way_offers_left_straight_right(town):
    node = next(k for k in range(len(town.nodes_xy)) if len(town.neighbors[k]) == 4)
    src = town.neighbors[node][0]
    turns = set()
    for lid in town.road_lanes[(src, node)]:
        turns |= {town.lanes[s].turn for s in town.lanes[lid].successors}
    assert turns == {"left", "straight", "right"}


def test_materials_mark_roads_paint_and_sidewalks(town):
    counts = np.bincount(town.material.ravel(), minlength=len(Surface))
    for surface in (
        Surface.ROAD,
        Surface.MARKING_WHITE,
        Surface.MARKING_YELLOW,
        Surface.CROSSWALK,
        Surface.SIDEWALK,
        Surface.GRASS,
    ):
        assert counts[surface] > 0, surface.name
    # lane centres are road, the centre line between opposing lanes is yellow paint
    lane = next(l for l in town.lanes.values() if not l.is_intersection)
    mid = lane.centerline[len(lane.centerline) // 2]
    assert town.material_at(mid[None])[0] == Surface.ROAD
    i = len(lane.centerline) // 2
    left = (lane.left_boundary[i] - lane.centerline[i]) / np.linalg.norm(lane.left_boundary[i] - lane.centerline[i])
    assert town.material_at(lane.left_boundary[i][None] - 0.12 * left)[0] == Surface.MARKING_YELLOW
    assert town.material_at(np.array([[-60.0, -60.0]]))[0] == Surface.GRASS


def test_ground_mesh_heights_follow_terrain_and_curbs(town):
    mesh = ground_mesh(town)
    ground = mesh.face_class == Surface.GROUND
    verts = mesh.vertices[np.unique(mesh.faces[ground])]
    # probe cell interiors: on drivable cells the surface is the terrain, elsewhere terrain + curb
    xy = verts[:, :2]
    inner = (np.abs(xy[:, None, 0] - town.x_breaks[None]) > 0.01).all(1) & (
        np.abs(xy[:, None, 1] - town.y_breaks[None]) > 0.01
    ).all(1)
    expected = town.surface_height(xy[inner])
    np.testing.assert_allclose(verts[inner, 2], expected, atol=1e-9)
    assert (mesh.face_class == Surface.CURB).sum() > 0
