"""Analytic checks of the ray-cast lidar and camera on scenes whose answers are known exactly."""

import math

import numpy as np

from gasp_core.geometry import make_se3
from gasp_core.sim.config import CameraConfig, CameraSpec, LidarConfig
from gasp_core.sim.meshes import box_mesh
from gasp_core.sim.semantics import Surface
from gasp_core.sim.sensors import (
    WorldCaster,
    camera_intrinsics,
    cast_lidar_sweep,
    ego_T_camera,
    lidar_directions,
    render_camera,
)


def _wall_world(x_m: float) -> WorldCaster:
    # a 1 m thick wall whose near face is the plane x = x_m (city frame), 400 m wide and 60 m tall
    wall = box_mesh((1.0, 400.0, 60.0), (x_m + 0.5, 0.0, 0.0), Surface.BUILDING)
    return WorldCaster(town=None, static=wall, tracks=[])


def _moving_ego(speed_mps: float):
    def city_T_ego(times):
        times = np.atleast_1d(times)
        return make_se3(
            np.broadcast_to(np.eye(3), (len(times), 3, 3)),
            np.column_stack([speed_mps * times, np.zeros((len(times), 2))]),
        )

    return city_T_ego


def test_lidar_wall_ranges_are_exact_and_motion_compensated():
    cfg = LidarConfig(beams=8, elevation_deg=(-10.0, 10.0), azimuth_step_deg=1.0, mount_xyz_m=(1.0, 0.0, 2.0))
    speed, t0 = 15.0, 0.5
    sweep = cast_lidar_sweep(_wall_world(30.0), cfg, _moving_ego(speed), t0, np.random.default_rng(0))
    assert len(sweep.points_ego) > 0
    # the wall is static: in the ego frame at the sweep start it is the plane x = 30 - speed * t0
    np.testing.assert_allclose(sweep.points_ego[:, 0], 30.0 - speed * t0, atol=1e-3)
    # rays are fired over 0.1 s, from the sensor's moving origin: their x offset grows with offset_ns
    origin_x = sweep.sensor_origin_city[:, 0]
    np.testing.assert_allclose(origin_x, speed * (t0 + sweep.offset_ns * 1e-9) + 1.0, atol=1e-6)
    # every return faces the wall (forward half), and the range matches the ray geometry
    assert np.all(sweep.points_city[:, 0] > 29.99)
    assert sweep.offset_ns.min() >= 0 and sweep.offset_ns.max() < 1e8
    assert set(np.unique(sweep.laser_number)) <= set(range(8))


def test_rays_beyond_max_range_give_no_return():
    cfg = LidarConfig(beams=4, azimuth_step_deg=2.0, max_range_m=50.0)
    sweep = cast_lidar_sweep(_wall_world(120.0), cfg, _moving_ego(0.0), 0.0, np.random.default_rng(0))
    assert len(sweep.points_ego) == 0


def test_lidar_direction_pattern():
    cfg = LidarConfig(beams=32, azimuth_step_deg=0.4)
    dirs, az, el = lidar_directions(cfg)
    assert dirs.shape == (900, 32, 3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0)
    np.testing.assert_allclose(np.rad2deg(el[[0, -1]]), cfg.elevation_deg)


def test_dropout_and_noise_are_applied():
    cfg = LidarConfig(beams=8, elevation_deg=(-5.0, 5.0), azimuth_step_deg=1.0, dropout_prob=0.5, range_noise_m=0.05)
    clean = cast_lidar_sweep(
        _wall_world(20.0),
        LidarConfig(beams=8, elevation_deg=(-5.0, 5.0), azimuth_step_deg=1.0),
        _moving_ego(0.0),
        0.0,
        np.random.default_rng(0),
    )
    noisy = cast_lidar_sweep(_wall_world(20.0), cfg, _moving_ego(0.0), 0.0, np.random.default_rng(0))
    assert 0.35 < len(noisy.points_ego) / len(clean.points_ego) < 0.65
    assert 0.02 < np.std(noisy.points_ego[:, 0] - 20.0) < 0.1


def test_camera_depth_and_projection_of_a_known_box():
    cam_cfg = CameraConfig(width_px=96, height_px=64, hfov_deg=60.0, shadows=False)
    spec = CameraSpec("ring_front_center", "CAM_FRONT", 0.0)
    # a 2 m cube centred 20 m ahead of the camera, on its optical axis
    ego_T_cam = ego_T_camera(cam_cfg, spec)
    cube_center = ego_T_cam[:3, 3] + np.array([21.0, 0.0, 0.0])
    caster = WorldCaster(town=None, static=box_mesh((2.0, 2.0, 2.0), tuple(cube_center), Surface.BUILDING), tracks=[])
    image, depth = render_camera(caster, cam_cfg, ego_T_cam, 0.0)
    K = camera_intrinsics(cam_cfg)
    assert image.shape == (64, 96, 3) and depth.shape == (64, 96)
    # the face nearest the camera is at 20 m along the optical axis
    cy, cx = int(K[1, 2]), int(K[0, 2])
    assert abs(depth[cy, cx] - 20.0) < 1e-3
    # pinhole projection of the face's corners bounds exactly the pixels that see the cube
    corners_cam = np.array([[-1.0, -1.0, 20.0], [1.0, 1.0, 20.0]])
    uv = (corners_cam @ K.T)[:, :2] / 20.0
    hit = np.isfinite(depth)
    rows, cols = np.nonzero(hit)
    assert abs(cols.min() - uv[0, 0]) <= 1 and abs(cols.max() + 1 - uv[1, 0]) <= 1
    assert abs(rows.min() - uv[0, 1]) <= 1 and abs(rows.max() + 1 - uv[1, 1]) <= 1
    # the cube is not the colour of the sky
    assert np.abs(image[cy, cx].astype(int) - image[0, 0].astype(int)).sum() > 30


def test_camera_axes_follow_opencv_convention():
    cam_cfg = CameraConfig()
    spec = CameraSpec("ring_side_left", "CAM_SIDE_LEFT", 90.0)
    rot = ego_T_camera(cam_cfg, spec)[:3, :3]
    np.testing.assert_allclose(rot[:, 2], [0.0, 1.0, 0.0], atol=1e-12)  # looks left
    np.testing.assert_allclose(rot[:, 1], [0.0, 0.0, -1.0], atol=1e-12)  # image y points down
    assert math.isclose(np.linalg.det(rot), 1.0)
