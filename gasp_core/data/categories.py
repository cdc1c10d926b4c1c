"""One mapping from every AV2 and nuScenes category to a :class:`UnifiedCategory`.

Riders and their vehicles both map to ``cyclist`` (AV2 labels the bicycle and the bicyclist
separately; nuScenes' ``vehicle.bicycle`` box holds both). An unknown name is an input error unless
the ingest config maps unknowns to ``other``.
"""

from __future__ import annotations

from gasp_core.data.schema import UnifiedCategory

V, P, C, O = UnifiedCategory.VEHICLE, UnifiedCategory.PEDESTRIAN, UnifiedCategory.CYCLIST, UnifiedCategory.OTHER

AV2_CATEGORIES: dict[str, UnifiedCategory] = {
    "REGULAR_VEHICLE": V,
    "LARGE_VEHICLE": V,
    "BUS": V,
    "BOX_TRUCK": V,
    "TRUCK": V,
    "TRUCK_CAB": V,
    "VEHICULAR_TRAILER": V,
    "SCHOOL_BUS": V,
    "ARTICULATED_BUS": V,
    "RAILED_VEHICLE": V,
    "PEDESTRIAN": P,
    "OFFICIAL_SIGNALER": P,
    "WHEELCHAIR": P,
    "BICYCLIST": C,
    "MOTORCYCLIST": C,
    "WHEELED_RIDER": C,
    "BICYCLE": C,
    "MOTORCYCLE": C,
    "ANIMAL": O,
    "DOG": O,
    "BOLLARD": O,
    "CONSTRUCTION_BARREL": O,
    "CONSTRUCTION_CONE": O,
    "MESSAGE_BOARD_TRAILER": O,
    "MOBILE_PEDESTRIAN_CROSSING_SIGN": O,
    "SIGN": O,
    "STOP_SIGN": O,
    "STROLLER": O,
    "TRAFFIC_LIGHT_TRAILER": O,
    "WHEELED_DEVICE": O,
}

NUSCENES_CATEGORIES: dict[str, UnifiedCategory] = {
    "vehicle.car": V,
    "vehicle.truck": V,
    "vehicle.bus.bendy": V,
    "vehicle.bus.rigid": V,
    "vehicle.construction": V,
    "vehicle.emergency.ambulance": V,
    "vehicle.emergency.police": V,
    "vehicle.trailer": V,
    "human.pedestrian.adult": P,
    "human.pedestrian.child": P,
    "human.pedestrian.construction_worker": P,
    "human.pedestrian.police_officer": P,
    "human.pedestrian.personal_mobility": P,
    "human.pedestrian.wheelchair": P,
    "vehicle.bicycle": C,
    "vehicle.motorcycle": C,
    "animal": O,
    "human.pedestrian.stroller": O,
    "movable_object.barrier": O,
    "movable_object.debris": O,
    "movable_object.pushable_pullable": O,
    "movable_object.trafficcone": O,
    "static_object.bicycle_rack": O,
}

CATEGORY_MAPS = {"av2": AV2_CATEGORIES, "nuscenes": NUSCENES_CATEGORIES}
