"""Semantic classes of the embedded world's surfaces, and their look to lidar and cameras."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Surface(IntEnum):
    """What a ray hit. Ground-mesh hits are refined through the ground-material raster."""

    NONE = 0
    ROAD = 1
    MARKING_WHITE = 2
    MARKING_YELLOW = 3
    CROSSWALK = 4
    SIDEWALK = 5
    CURB = 6
    GRASS = 7
    PARKING = 8
    BUILDING = 9
    POLE = 10
    TRUNK = 11
    FOLIAGE = 12
    VEHICLE = 13
    PEDESTRIAN = 14
    CYCLIST = 15
    GROUND = 16  # placeholder on the ground mesh, replaced by the raster's material


# Lidar reflectivity in [0, 1]; paint and vehicles are retro-reflective, asphalt is dark.
REFLECTIVITY = np.zeros(len(Surface), dtype=np.float32)
REFLECTIVITY[[Surface.ROAD, Surface.PARKING]] = 0.08
REFLECTIVITY[[Surface.MARKING_WHITE, Surface.MARKING_YELLOW, Surface.CROSSWALK]] = 0.75
REFLECTIVITY[[Surface.SIDEWALK, Surface.CURB]] = 0.18
REFLECTIVITY[Surface.GRASS] = 0.12
REFLECTIVITY[Surface.BUILDING] = 0.22
REFLECTIVITY[Surface.POLE] = 0.45
REFLECTIVITY[Surface.TRUNK] = 0.1
REFLECTIVITY[Surface.FOLIAGE] = 0.14
REFLECTIVITY[Surface.VEHICLE] = 0.35
REFLECTIVITY[Surface.PEDESTRIAN] = 0.16
REFLECTIVITY[Surface.CYCLIST] = 0.3

# Camera albedo, RGB in [0, 1]; chosen so that classes differ in colour and texture.
ALBEDO = np.zeros((len(Surface), 3), dtype=np.float32)
ALBEDO[Surface.ROAD] = (0.22, 0.22, 0.24)
ALBEDO[Surface.MARKING_WHITE] = (0.92, 0.92, 0.9)
ALBEDO[Surface.MARKING_YELLOW] = (0.9, 0.75, 0.15)
ALBEDO[Surface.CROSSWALK] = (0.95, 0.95, 0.95)
ALBEDO[Surface.SIDEWALK] = (0.62, 0.6, 0.56)
ALBEDO[Surface.CURB] = (0.72, 0.72, 0.7)
ALBEDO[Surface.GRASS] = (0.3, 0.5, 0.2)
ALBEDO[Surface.PARKING] = (0.3, 0.3, 0.33)
ALBEDO[Surface.BUILDING] = (0.7, 0.55, 0.45)
ALBEDO[Surface.POLE] = (0.5, 0.52, 0.55)
ALBEDO[Surface.TRUNK] = (0.35, 0.24, 0.15)
ALBEDO[Surface.FOLIAGE] = (0.15, 0.42, 0.12)
ALBEDO[Surface.VEHICLE] = (0.7, 0.1, 0.1)  # per-agent paint overrides this
ALBEDO[Surface.PEDESTRIAN] = (0.25, 0.3, 0.6)
ALBEDO[Surface.CYCLIST] = (0.9, 0.5, 0.1)

# Strength of the procedural texture per class (value-noise amplitude).
TEXTURE = np.full(len(Surface), 0.08, dtype=np.float32)
TEXTURE[[Surface.GRASS, Surface.FOLIAGE]] = 0.35
TEXTURE[[Surface.ROAD, Surface.PARKING]] = 0.15
TEXTURE[Surface.BUILDING] = 0.1
TEXTURE[[Surface.VEHICLE, Surface.MARKING_WHITE, Surface.MARKING_YELLOW]] = 0.03
