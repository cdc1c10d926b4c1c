"""Rigid transforms, frames and rays shared by every other room."""

from gasp_core.geometry.camera import in_image, project, zbuffer_visible
from gasp_core.geometry.rays import from_spherical, ray_box_interval, spherical
from gasp_core.geometry.transforms import (
    PoseInterpolator,
    make_se3,
    quat_wxyz_from_yaw,
    quat_wxyz_to_rotation,
    rotation_to_quat_wxyz,
    transform_points,
    yaw_rotation,
)

__all__ = [
    "PoseInterpolator",
    "from_spherical",
    "in_image",
    "project",
    "ray_box_interval",
    "spherical",
    "zbuffer_visible",
    "make_se3",
    "quat_wxyz_from_yaw",
    "quat_wxyz_to_rotation",
    "rotation_to_quat_wxyz",
    "transform_points",
    "yaw_rotation",
]
