"""The simulated log, written as AV2 and as nuScenes, reads back through the datasets' own loaders."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from nuscenes.nuscenes import NuScenes

from gasp_core.data.av2_reader import AV2LogReader
from gasp_core.data.nuscenes_reader import NuScenesSceneReader, load_map
from gasp_core.geometry import transform_points
from gasp_core.sim.sensors import chunk_time_offset_s, lidar_directions
from gasp_core.sim.world import simulate_log


@pytest.fixture(scope="module")
def av2(av2_split, sim_log) -> AV2LogReader:
    return AV2LogReader(av2_split, sim_log.log_id)


def test_av2_counts_timestamps_and_poses(av2, sim_log):
    assert AV2LogReader.log_ids(av2.split_dir) == [sim_log.log_id]
    assert av2.lidar_timestamps_ns == [int(sim_log.to_ns(s.timestamp_s)) for s in sim_log.sweeps]
    for sweep in sim_log.sweeps:
        ts = int(sim_log.to_ns(sweep.timestamp_s))
        np.testing.assert_allclose(av2.city_T_ego(ts), sim_log.city_T_ego(np.array([sweep.timestamp_s]))[0], atol=1e-9)
        pts = av2.sweep(ts)
        assert len(pts.points_ego) == len(sweep.points_ego)
        np.testing.assert_allclose(pts.points_ego, sweep.points_ego, atol=1e-4)  # float32 on disk
        np.testing.assert_array_equal(pts.offset_ns, sweep.offset_ns)
        np.testing.assert_array_equal(pts.laser_number, sweep.laser_number)


def test_av2_boxes_match_the_simulation(av2, sim_log):
    for sweep, boxes in zip(sim_log.sweeps, sim_log.boxes):
        got = av2.boxes(int(sim_log.to_ns(sweep.timestamp_s)))
        assert len(got.center) == len(boxes) > 0
        np.testing.assert_allclose(got.center, np.stack([b.center_ego for b in boxes]), atol=1e-9)
        yaw = np.arctan2(got.rotation[:, 1, 0], got.rotation[:, 0, 0])
        want = np.array([b.yaw_ego_rad for b in boxes])
        np.testing.assert_allclose(np.angle(np.exp(1j * (yaw - want))), 0.0, atol=1e-9)
        assert list(got.category) == [sim_log.tracks[b.track].category for b in boxes]


def test_av2_map_layers(av2, sim_log):
    town = sim_log.town
    m = av2.static_map
    assert len(m.vector_lane_segments) == len(town.lanes)
    assert len(m.vector_pedestrian_crossings) == len(town.crosswalks)
    assert len(m.vector_drivable_areas) == len(town.drivable_polygons())
    lane = next(iter(town.lanes.values()))
    seg = m.vector_lane_segments[lane.id]
    np.testing.assert_allclose(seg.left_lane_boundary.xyz[:, :2], lane.left_boundary, atol=1e-3)
    assert seg.left_mark_type.value == lane.left_mark and seg.successors == lane.successors
    marks = {s.left_mark_type.value for s in m.vector_lane_segments.values()} | {
        s.right_mark_type.value for s in m.vector_lane_segments.values()
    }
    assert {"DASHED_WHITE", "SOLID_WHITE", "DOUBLE_SOLID_YELLOW"} <= marks


def test_av2_camera_frames_sync_and_calibration(av2, sim_log):
    cams = av2.camera_names()
    assert cams == sorted(c.av2_name for c in sim_log.cfg.camera.rig)
    ts = av2.lidar_timestamps_ns[0]
    for cam in cams:
        path = av2.loader.get_closest_img_fpath(av2.log_id, cam, ts)
        assert path is not None and path.is_file()
        pinhole = av2.pinhole_camera(cam)
        assert (pinhole.width_px, pinhole.height_px) == (sim_log.cfg.camera.width_px, sim_log.cfg.camera.height_px)


def test_every_lidar_return_lies_on_a_mesh_surface(av2, sim_log):
    """Read through the av2 loader, taken to the city frame, each return is < 1 cm from the world mesh
    posed at its firing time (static town + agents at the sweep's motion chunk)."""
    cfg = sim_log.cfg.lidar
    n_cols = lidar_directions(cfg)[0].shape[0]
    chunk_edges = np.linspace(0, n_cols, cfg.motion_chunks + 1).astype(int)
    rng = np.random.default_rng(0)
    for sweep in sim_log.sweeps[:: max(1, len(sim_log.sweeps) // 3)]:
        ts = int(sim_log.to_ns(sweep.timestamp_s))
        pts = av2.sweep(ts)
        city = transform_points(av2.city_T_ego(ts), pts.points_ego)
        col = np.round(pts.offset_ns * 1e-9 * cfg.rate_hz * n_cols).astype(int)
        chunk = np.searchsorted(chunk_edges, col, side="right") - 1
        for c in rng.choice(np.unique(chunk), size=3, replace=False):
            sel = np.nonzero(chunk == c)[0]
            sel = rng.choice(sel, size=min(300, len(sel)), replace=False)
            t = sweep.timestamp_s + chunk_time_offset_s(chunk_edges[c], chunk_edges[c + 1], n_cols, cfg.rate_hz)
            mesh, _ = sim_log.world_mesh_at(t)
            tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
            _, dist, _ = trimesh.proximity.closest_point(tm, city[sel])
            assert dist.max() < 0.01, f"sweep {ts} chunk {c}: return {dist.max():.4f} m off the surface"


def test_points_inside_boxes_match_num_interior_pts(av2, sim_log):
    """av2's own cuboid geometry counts exactly the points the writer recorded per box."""
    for ts in av2.lidar_timestamps_ns[::3]:
        pts = av2.sweep(ts).points_ego
        cuboids = av2.cuboids(ts)
        recorded = av2.boxes(ts).num_interior_pts
        assert len(cuboids) == len(recorded)
        for cuboid, n in zip(cuboids, recorded):
            _, mask = cuboid.compute_interior_points(pts)
            assert mask.sum() == n
        assert recorded.sum() > 100


def test_agent_returns_are_inside_their_box_at_firing_time(sim_log):
    cfg = sim_log.cfg.lidar
    n_cols = lidar_directions(cfg)[0].shape[0]
    sweep = sim_log.sweeps[0]
    hit_agents = np.unique(sweep.instance[sweep.instance >= 0])
    assert len(hit_agents) > 3
    col = np.round(sweep.offset_ns * 1e-9 * cfg.rate_hz * n_cols).astype(int)
    chunk_edges = np.linspace(0, n_cols, cfg.motion_chunks + 1).astype(int)
    chunk = np.searchsorted(chunk_edges, col, side="right") - 1
    for k in hit_agents:
        tr = sim_log.tracks[k]
        sel = sweep.instance == k
        t = sweep.timestamp_s + np.array(
            [chunk_time_offset_s(chunk_edges[c], chunk_edges[c + 1], n_cols, cfg.rate_hz) for c in chunk[sel]]
        )
        xy, yaw, z = tr.state_at(t)
        rel = sweep.points_city[sel] - np.column_stack([xy, z])
        c, s = np.cos(yaw), np.sin(yaw)
        local = np.column_stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]])
        assert np.all(np.abs(local) <= np.array([tr.length_m, tr.width_m, tr.height_m]) / 2 + 1e-4)


def test_projected_boxes_land_on_the_agent_in_the_image(av2, sim_log):
    """Box centres projected with av2's PinholeCamera hit pixels whose rendered depth is the agent's."""
    checked = hits = 0
    for frame in sim_log.frames:
        cam = sim_log.cfg.camera.rig[frame.camera].av2_name
        pinhole = av2.pinhole_camera(cam)
        # the frame's lidar sweep and its boxes (ego frame at the sweep time)
        k = int(np.argmin([abs(s.timestamp_s - frame.timestamp_s) for s in sim_log.sweeps]))
        lidar_ts = int(sim_log.to_ns(sim_log.sweeps[k].timestamp_s))
        cam_ts = int(sim_log.to_ns(frame.timestamp_s))
        city_T_ego_cam = av2.loader.get_city_SE3_ego(av2.log_id, cam_ts)
        city_T_ego_lidar = av2.loader.get_city_SE3_ego(av2.log_id, lidar_ts)
        for box in sim_log.boxes[k]:
            tr = sim_log.tracks[box.track]
            if tr.kind not in ("car", "parked", "truck", "bus") or box.num_interior_pts < 30:
                continue
            # box centre at the camera time: the agent moved between lidar and camera timestamps
            xy, _, z = tr.state_at(frame.timestamp_s)
            center_ego_cam = city_T_ego_cam.inverse().transform_point_cloud(np.array([[xy[0], xy[1], z]]))
            uv, pts_cam, valid = pinhole.project_ego_to_img(center_ego_cam)
            if not valid[0]:
                continue
            u, v = int(uv[0, 0]), int(uv[0, 1])
            depth = frame.depth[v, u]
            checked += 1
            radius = 0.5 * np.linalg.norm([tr.length_m, tr.width_m, tr.height_m])
            hits += bool(depth >= pts_cam[0, 2] - radius - 0.05 and depth <= pts_cam[0, 2] + 0.05)
        del city_T_ego_lidar
    assert checked >= 5
    assert hits / checked >= 0.8  # the rest are occluded by nearer objects


def test_nuscenes_reads_back_through_the_devkit(nuscenes_root, sim_log):
    nusc = NuScenes(version="v1.0-test", dataroot=str(nuscenes_root), verbose=False)
    assert len(nusc.scene) == 1
    reader = NuScenesSceneReader(nusc, nusc.scene[0]["token"])
    keys = reader.keyframe_tokens()
    every = int(round(sim_log.cfg.lidar.rate_hz / 2.0))
    assert len(keys) == len(range(0, len(sim_log.sweeps), every))
    sds = reader.lidar_sample_data()
    assert len(sds) == len(sim_log.sweeps)
    for sd, sweep in zip(sds, sim_log.sweeps):
        assert sd["timestamp"] == int(sim_log.to_ns(sweep.timestamp_s) // 1000)
        np.testing.assert_allclose(
            reader.city_T_ego(sd), sim_log.city_T_ego(np.array([sweep.timestamp_s]))[0], atol=1e-6
        )
        pts, intensity, ring = reader.points_ego(sd)
        np.testing.assert_allclose(pts, sweep.points_ego, atol=1e-4)
        np.testing.assert_array_equal(ring, sweep.laser_number)
    # keyframe boxes in the global frame equal the simulated agents' poses
    for token, k in zip(keys, range(0, len(sim_log.sweeps), every)):
        boxes = reader.boxes_global(token)
        assert len(boxes) == len(sim_log.boxes[k])
        city_T_ego = sim_log.city_T_ego(np.array([sim_log.sweeps[k].timestamp_s]))[0]
        want = transform_points(city_T_ego, np.stack([b.center_ego for b in sim_log.boxes[k]]))
        np.testing.assert_allclose(np.stack([b.center for b in boxes]), want, atol=1e-6)
        np.testing.assert_allclose(
            [b.wlh[1] for b in boxes], [sim_log.tracks[b.track].length_m for b in sim_log.boxes[k]]
        )
    cams = {c.nuscenes_name for c in sim_log.cfg.camera.rig}
    assert cams <= set(nusc.get("sample", keys[0])["data"])


def test_nuscenes_map_expansion_loads(nuscenes_root, sim_log):
    nusc = NuScenes(version="v1.0-test", dataroot=str(nuscenes_root), verbose=False)
    nmap = load_map(nuscenes_root, nusc.log[0]["location"])
    town = sim_log.town
    assert len(nmap.lane) + len(nmap.lane_connector) == len(town.lanes)
    assert len(nmap.ped_crossing) == len(town.crosswalks)
    lane = next(l for l in town.lanes.values() if not l.is_intersection)
    x, y = lane.centerline[len(lane.centerline) // 2]
    layers = nmap.layers_on_point(x, y)
    assert layers["drivable_area"] and layers["lane"]
    assert not nmap.layers_on_point(float(town.bounds_xy[0] + 1), float(town.bounds_xy[1] + 1))["drivable_area"]


def test_same_seed_same_arrays(small_cfg):
    from gasp_core.sim.config import world_config_from_dict

    cfg = world_config_from_dict(
        {"seconds": 0.3, "traffic": {"warmup_s": 2.0}, "camera": {"width_px": 32, "height_px": 24, "rate_hz": 10.0}}
    )
    a, b = simulate_log(cfg, seed=3), simulate_log(cfg, seed=3)
    c = simulate_log(cfg, seed=4)
    assert a.log_id == b.log_id != c.log_id
    for sa, sb in zip(a.sweeps, b.sweeps):
        np.testing.assert_array_equal(sa.points_ego, sb.points_ego)
        np.testing.assert_array_equal(sa.intensity, sb.intensity)
    for fa, fb in zip(a.frames, b.frames):
        np.testing.assert_array_equal(fa.image, fb.image)
    assert len(a.sweeps[0].points_ego) != len(c.sweeps[0].points_ego) or not np.array_equal(
        a.sweeps[0].points_ego, c.sweeps[0].points_ego
    )
