"""Typed configuration of the embedded driving world.

Every knob of the world lives here, with its unit in the name; the CLI and the DVC stage build
a :class:`WorldConfig` from a plain mapping with :func:`world_config_from_dict`, which rejects
unknown keys so a misspelt parameter never silently does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gasp_core.config import from_dict


@dataclass
class TownConfig:
    grid_nodes_x: int = 4
    """Intersections along x; the town is a grid of roads between them."""
    grid_nodes_y: int = 3
    """Intersections along y."""
    block_m: float = 70.0
    """Distance between neighbouring intersections."""
    lanes_per_direction: int = 2
    """Driving lanes in each direction of every road."""
    lane_width_m: float = 3.5
    """Width of one lane."""
    sidewalk_width_m: float = 3.0
    """Width of the raised sidewalk along every road."""
    curb_height_m: float = 0.15
    """Height of the curb between road and sidewalk."""
    drop_road_prob: float = 0.3
    """Chance that an interior road is left out (makes more 3-way intersections)."""
    outer_margin_m: float = 90.0
    """Terrain beyond the outermost roads (lidar range must see ground there)."""
    ground_amplitude_m: float = 0.35
    """Amplitude of the smooth ground-height variation."""
    ground_wavelength_m: float = 140.0
    """Wavelength of the ground-height variation."""
    terrain_step_m: float = 2.5
    """Triangle size of the ground mesh."""
    material_res_m: float = 0.1
    """Resolution of the ground-material raster (road, markings, sidewalk, grass)."""
    buildings_per_block: int = 7
    """Building placement attempts per block."""
    tree_spacing_m: float = 14.0
    """Mean spacing of street trees along sidewalks."""
    pole_spacing_m: float = 25.0
    """Mean spacing of poles along sidewalks."""
    parked_car_prob: float = 0.5
    """Chance that a block side holds a row of parked cars."""
    # road network: distances along an intersection's arm, measured from the edge of its box (half a road width
    # from its centre)
    crosswalk_start_m: float = 0.5
    """Where a crosswalk band starts."""
    crosswalk_end_m: float = 3.5
    """Where a crosswalk band ends."""
    stop_line_m: float = 4.2
    """Where the stop line is painted and vehicles stop for a red light or to yield."""
    ped_corner_m: float = 2.0
    """Pedestrians turn at corner points this far beyond both road edges, on the sidewalk."""
    light_offset_max_s: float = 100.0
    """Each intersection's traffic-light cycle starts at a random offset below this."""
    # props
    street_tree_offset_m: float = 0.9
    """Street trees stand this far behind the curb."""
    street_tree_end_gap_m: float = 6.0
    """Street trees keep this far from both ends of a road."""
    tree_trunk_height_m: tuple[float, float] = (2.0, 3.2)
    """Range of street trees' trunk heights."""
    tree_crown_radius_m: tuple[float, float] = (1.4, 2.6)
    """Range of street trees' crown radii."""
    spacing_jitter: tuple[float, float] = (0.7, 1.3)
    """Each gap between street trees (poles) is their mean spacing times a factor in this range."""
    pole_offset_m: float = 0.4
    """Poles stand this far behind the curb."""
    pole_end_gap_m: float = 4.0
    """Poles keep this far from both ends of a road."""
    pole_height_m: tuple[float, float] = (5.0, 8.0)
    """Range of pole heights."""
    parking_strip_depth_m: tuple[float, float] = (0.5, 3.5)
    """Inner and outer edge of a parking strip, measured beyond the sidewalk."""
    parking_strip_end_gap_m: float = 8.0
    """Parking strips keep this far from both ends of a road."""
    parking_keepout_m: float = 1.0
    """Buildings keep this far from parking strips."""
    parked_car_end_gap_m: float = 10.0
    """Parking slots keep this far from both ends of a road."""
    parked_car_fill_prob: float = 0.75
    """Chance that a parking slot holds a car."""
    parked_car_pitch_m: tuple[float, float] = (6.0, 7.5)
    """Range of distances between neighbouring parking slots."""
    parked_car_inset_m: float = 1.5
    """Parked cars' centres sit this far into the strip from its inner edge."""
    building_setback_m: float = 2.0
    """Buildings keep this far behind the sidewalk."""
    building_core_margin_m: float = 45.0
    """Buildings stand at most this far beyond the outer edge of the outermost roads."""
    building_min_lot_m: float = 8.0
    """Lots narrower than this (after setbacks) stay empty."""
    building_tries: int = 3
    """Placement attempts per building of a block (an attempt that overlaps is dropped)."""
    building_size_min_m: tuple[float, float] = (8.0, 8.0)
    """Smallest building footprint (x, y)."""
    building_size_max_m: tuple[float, float] = (24.0, 20.0)
    """Largest building footprint (x, y)."""
    building_gap_m: float = 1.5
    """Clearance around every building footprint."""
    building_height_m: tuple[float, float] = (5.0, 22.0)
    """Range of building heights."""
    outer_trees: int = 40
    """Trees tried in the open land beyond the town (those landing on a road or in the town are dropped)."""
    outer_tree_edge_gap_m: float = 5.0
    """Outer trees keep this far from the terrain's edge."""
    outer_tree_trunk_height_m: tuple[float, float] = (2.0, 3.5)
    """Range of outer trees' trunk heights."""
    outer_tree_crown_radius_m: tuple[float, float] = (1.8, 3.2)
    """Range of outer trees' crown radii."""
    # ground markings
    centre_line_offset_m: float = 0.12
    """Each line of the double yellow centre line runs this far from the road's centre."""
    centre_line_width_m: float = 0.12
    """Width of each line of the double yellow centre line."""
    lane_line_width_m: float = 0.15
    """Width of the white lane dividers and edge lines."""
    lane_dash_m: float = 3.0
    """Length of a lane divider's dash."""
    lane_dash_period_m: float = 9.0
    """Distance from one dash's start to the next."""
    lane_dash_start_m: float = 1.0
    """The first dash starts this far from the road's start."""
    edge_line_inset_m: float = 0.25
    """The solid edge line runs this far inside the road's edge."""
    zebra_bar_width_m: float = 0.5
    """Width of a zebra crossing's bar."""
    zebra_pitch_m: float = 1.0
    """Distance between neighbouring zebra bars."""
    zebra_start_m: float = 0.5
    """The first zebra bar starts this far inside the road's edge."""
    stop_line_width_m: float = 0.4
    """Width of the stop line."""


@dataclass
class TrafficConfig:
    vehicles: int = 24
    """Moving cars, trucks and buses (besides the ego vehicle)."""
    truck_fraction: float = 0.12
    """Fraction of moving vehicles that are box trucks."""
    bus_fraction: float = 0.08
    """Fraction of moving vehicles that are buses."""
    pedestrians: int = 28
    """Pedestrians walking the sidewalks."""
    crossing_prob: float = 0.5
    """Chance a pedestrian crosses at a crosswalk it reaches."""
    cyclists: int = 4
    """Cyclists riding in the outer lanes."""
    ego_speed_mps: float = 11.0
    """Ego vehicle's desired speed on straight roads."""
    vehicle_speed_mps: tuple[float, float] = (8.0, 13.0)
    """Range of other vehicles' desired speeds."""
    max_accel_mps2: float = 2.0
    """Comfortable acceleration (IDM a)."""
    comfort_decel_mps2: float = 3.0
    """Comfortable deceleration (IDM b)."""
    turn_speed_mps: float = 6.0
    """Speed limit while turning inside an intersection."""
    green_s: float = 11.0
    """Green time of each traffic-light phase."""
    all_red_s: float = 2.5
    """All-red clearance time between phases."""
    warmup_s: float = 10.0
    """Traffic is simulated this long before recording starts."""
    dt_s: float = 0.1
    """Simulation step."""


@dataclass
class LidarConfig:
    beams: int = 32
    """Lasers stacked in elevation."""
    elevation_deg: tuple[float, float] = (-25.0, 15.0)
    """Lowest and highest laser elevation."""
    azimuth_step_deg: float = 0.4
    """Horizontal angle between firings of one laser."""
    rate_hz: float = 10.0
    """Rotation (= sweep) rate."""
    max_range_m: float = 90.0
    """Returns beyond this range are dropped, like a real sensor."""
    min_range_m: float = 1.0
    """Returns closer than this are dropped."""
    mount_xyz_m: tuple[float, float, float] = (1.2, 0.0, 1.9)
    """Lidar origin in the ego frame (ego origin: rear axle on the ground)."""
    range_noise_m: float = 0.0
    """Standard deviation of Gaussian range noise."""
    dropout_prob: float = 0.0
    """Chance that a return is dropped."""
    motion_chunks: int = 10
    """Moving agents are posed at this many instants per sweep (rolling-shutter fidelity)."""


@dataclass
class CameraSpec:
    av2_name: str
    """Name in the AV2 layout (must be an AV2 ring camera)."""
    nuscenes_name: str
    """Channel name in the nuScenes layout."""
    yaw_deg: float
    """Heading of the optical axis in the ego frame (0 = forward, + = left)."""


def _default_rig() -> list[CameraSpec]:
    return [
        CameraSpec("ring_front_center", "CAM_FRONT", 0.0),
        CameraSpec("ring_front_left", "CAM_FRONT_LEFT", 48.0),
        CameraSpec("ring_side_left", "CAM_SIDE_LEFT", 100.0),
        CameraSpec("ring_rear_left", "CAM_BACK_LEFT", 152.0),
        CameraSpec("ring_rear_right", "CAM_BACK_RIGHT", -152.0),
        CameraSpec("ring_side_right", "CAM_SIDE_RIGHT", -100.0),
        CameraSpec("ring_front_right", "CAM_FRONT_RIGHT", -48.0),
    ]


@dataclass
class CameraConfig:
    rig: list[CameraSpec] = field(default_factory=_default_rig)
    """Ring cameras; the default covers 360 degrees like AV2's seven ring cameras."""
    width_px: int = 224
    """Image width."""
    height_px: int = 168
    """Image height."""
    hfov_deg: float = 64.0
    """Horizontal field of view."""
    rate_hz: float = 2.0
    """Frame rate; must divide the lidar rate (frames are triggered by the lidar sweep)."""
    mount_height_m: float = 1.6
    """Height of the camera centres above the ground."""
    mount_forward_m: float = 1.3
    """Forward offset of the ring's centre from the rear axle."""
    ring_radius_m: float = 0.3
    """Radius of the ring on which the cameras sit."""
    shadows: bool = True
    """Cast shadow rays towards the sun (doubles the rays per image)."""
    jpeg_quality: int = 92
    """JPEG quality of the written images."""


@dataclass
class WorldConfig:
    town: TownConfig = field(default_factory=TownConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    seconds: float = 10.0
    """Recorded duration of each log."""
    ego_length_m: float = 4.8
    """Ego vehicle length."""
    ego_width_m: float = 2.0
    """Ego vehicle width."""
    ego_height_m: float = 1.7
    """Ego vehicle height."""
    ego_rear_overhang_m: float = 1.0
    """Distance from the rear bumper to the rear axle (the ego origin)."""


def world_config_from_dict(data: Mapping[str, Any] | None) -> WorldConfig:
    """Build a WorldConfig from nested mappings, rejecting unknown keys."""
    return from_dict(WorldConfig, data, "world")
