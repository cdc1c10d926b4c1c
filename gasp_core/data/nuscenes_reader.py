"""Read nuScenes scenes through ``nuscenes-devkit``: keyframes, lidar sweeps, poses, boxes, map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nuscenes.map_expansion import map_api
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.data_classes import LidarPointCloud
from pyquaternion import Quaternion

from gasp_core.geometry import make_se3, quat_wxyz_to_rotation


def register_location(name: str) -> None:
    """``NuScenesMap`` accepts only the four nuScenes cities; add a map-expansion location of our own."""
    if name not in map_api.locations:
        map_api.locations.append(name)


def load_map(dataroot: Path, location: str) -> map_api.NuScenesMap:
    register_location(location)
    return map_api.NuScenesMap(dataroot=str(dataroot), map_name=location)


def record_pose(record: dict) -> np.ndarray:
    """4x4 from a nuScenes record with ``translation`` and scalar-first ``rotation``."""
    return make_se3(quat_wxyz_to_rotation(np.asarray(record["rotation"])), np.asarray(record["translation"]))


class NuScenesSceneReader:
    """One scene of a nuScenes dataset."""

    def __init__(self, nusc: NuScenes, scene_token: str, lidar_channel: str = "LIDAR_TOP") -> None:
        self.nusc = nusc
        self.scene = nusc.get("scene", scene_token)
        self.log = nusc.get("log", self.scene["log_token"])
        self.channel = lidar_channel

    def keyframe_tokens(self) -> list[str]:
        tokens, tok = [], self.scene["first_sample_token"]
        while tok:
            tokens.append(tok)
            tok = self.nusc.get("sample", tok)["next"]
        return tokens

    def lidar_sample_data(self) -> list[dict]:
        """Every lidar sample_data of the scene (keyframes and sweeps), in time order."""
        first = self.nusc.get("sample", self.scene["first_sample_token"])
        sd = self.nusc.get("sample_data", first["data"][self.channel])
        while sd["prev"]:
            sd = self.nusc.get("sample_data", sd["prev"])
        out = [sd]
        while sd["next"]:
            sd = self.nusc.get("sample_data", sd["next"])
            out.append(sd)
        return out

    def ego_T_sensor(self, sd: dict) -> np.ndarray:
        return record_pose(self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]))

    def city_T_ego(self, sd: dict) -> np.ndarray:
        return record_pose(self.nusc.get("ego_pose", sd["ego_pose_token"]))

    def points_ego(self, sd: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points in the ego frame at the sample_data timestamp, intensity, ring index)."""
        pc = LidarPointCloud.from_file(str(Path(self.nusc.dataroot) / sd["filename"]))
        ego_T_sensor = self.ego_T_sensor(sd)
        pts = pc.points[:3].T.astype(np.float64) @ ego_T_sensor[:3, :3].T + ego_T_sensor[:3, 3]
        raw = np.fromfile(Path(self.nusc.dataroot) / sd["filename"], dtype=np.float32).reshape(-1, 5)
        return pts, raw[:, 3], raw[:, 4].astype(np.int64)

    def boxes_global(self, sample_token: str) -> list:
        """nuScenes ``Box`` objects of a keyframe in the global (city) frame."""
        return [self.nusc.get_box(a) for a in self.nusc.get("sample", sample_token)["anns"]]

    @staticmethod
    def box_yaw(rotation_wxyz) -> float:
        return float(Quaternion(rotation_wxyz).yaw_pitch_roll[0])
