"""The real AV2 log in ../shared reads through the same loader code as the simulated logs."""

import numpy as np
import pytest
from av2.datasets.sensor.av2_sensor_dataloader import AV2SensorDataLoader
from av2.utils.io import read_city_SE3_ego

from gasp_core.data.av2_reader import AV2LogReader

LOG_ID = "7fab2350-7eaf-3b7e-a39d-6937a4c1bede"


def test_real_av2_log_reads(av2_sample):
    assert LOG_ID in AV2LogReader.log_ids(av2_sample)
    reader = AV2LogReader(av2_sample, LOG_ID)
    ts = reader.lidar_timestamps_ns
    assert ts == [315966265259836000, 315966265360032000]
    sweep = reader.sweep(ts[0])
    assert 90_000 < len(sweep.points_ego) < 110_000
    assert np.isfinite(sweep.points_ego).all()
    assert sweep.laser_number.max() == 63 and sweep.offset_ns.min() >= 0
    # poses and boxes agree with what the av2 API itself returns
    api = AV2SensorDataLoader(data_dir=av2_sample, labels_dir=av2_sample)
    np.testing.assert_allclose(reader.city_T_ego(ts[0]), api.get_city_SE3_ego(LOG_ID, ts[0]).transform_matrix)
    cuboids = api.get_labels_at_lidar_timestamp(LOG_ID, ts[0])
    boxes = reader.boxes(ts[0])
    assert len(boxes.center) == len(cuboids) > 0
    np.testing.assert_allclose(boxes.center, np.stack([c.dst_SE3_object.translation for c in cuboids]), atol=1e-9)
    np.testing.assert_allclose(boxes.rotation, np.stack([c.dst_SE3_object.rotation for c in cuboids]), atol=1e-9)
    m = reader.static_map
    assert (len(m.vector_lane_segments), len(m.vector_pedestrian_crossings), len(m.vector_drivable_areas)) == (
        183,
        11,
        13,
    )


def test_real_av2_log_ingests_to_what_the_av2_api_returns(av2_sample, tmp_path):
    import polars as pl
    from av2.map.map_api import ArgoverseStaticMap
    from av2.structures.sweep import Sweep
    from shapely.geometry import Polygon

    from gasp_core.data.ingest import IngestConfig, ingest
    from gasp_core.data.store import LogStore
    from gasp_core.geometry import quat_wxyz_to_rotation

    metrics = ingest(
        IngestConfig(format="av2", root=str(av2_sample.parent), split=av2_sample.name, map_margin_m=1e4),
        tmp_path,
        progress=False,
    )
    assert (metrics["logs_ingested"], metrics["sweeps"], metrics["sweeps_skipped"]) == (1, 2, 0)
    log = LogStore(tmp_path).log(LOG_ID)
    api = AV2SensorDataLoader(data_dir=av2_sample, labels_dir=av2_sample)
    assert list(log.sweep_timestamps_ns) == [315966265259836000, 315966265360032000]
    for ts in log.sweep_timestamps_ns:
        ts = int(ts)
        # sweeps: av2's own Sweep (float16 on disk, exact in float32)
        sweep = Sweep.from_feather(api.get_lidar_fpath(LOG_ID, ts))
        got = log.sweep(ts)
        np.testing.assert_array_equal(got.points_ego, sweep.xyz.astype(np.float32))
        np.testing.assert_array_equal(got.offset_ns, sweep.offset_ns)
        np.testing.assert_array_equal(got.lidar, (sweep.laser_number >= 32).astype(np.uint8))
        # poses
        city_SE3_ego = api.get_city_SE3_ego(LOG_ID, ts)
        np.testing.assert_allclose(log.city_T_ego(ts)[0], city_SE3_ego.transform_matrix, atol=1e-9)
        # boxes: av2's cuboids, moved to the city frame
        cuboids = api.get_labels_at_lidar_timestamp(LOG_ID, ts)
        rows = log.boxes.filter(pl.col("timestamp_ns") == ts)
        assert rows.height == len(cuboids) > 50
        centers = rows.select("tx_m", "ty_m", "tz_m").to_numpy()
        rots = quat_wxyz_to_rotation(rows.select("qw", "qx", "qy", "qz").to_numpy())
        for c in cuboids:
            city = city_SE3_ego.compose(c.dst_SE3_object)
            k = int(np.argmin(np.linalg.norm(centers - city.translation, axis=1)))
            np.testing.assert_allclose(centers[k], city.translation, atol=1e-6)
            np.testing.assert_allclose(rots[k], city.rotation, atol=1e-6)
            np.testing.assert_allclose(rows.row(k, named=True)["length_m"], c.length_m)
    assert log.poses.height == len(read_city_SE3_ego(av2_sample / LOG_ID))
    assert set(log.calibration.filter(pl.col("kind") == "camera")["sensor_name"]) >= {
        "ring_front_center",
        "stereo_front_left",
    }
    assert log.camera_frames.height == 0  # the sample ships no images
    # map layers against av2's ArgoverseStaticMap
    m = ArgoverseStaticMap.from_map_dir(av2_sample / LOG_ID / "map", build_raster=False)
    crossings = log.map.filter(pl.col("layer") == "ped_crossing")
    assert crossings.height == len(m.vector_pedestrian_crossings) == 11
    stored = [Polygon(np.column_stack([x, y])) for x, y in zip(crossings["x_m"], crossings["y_m"])]
    for pc in m.vector_pedestrian_crossings.values():
        assert min(Polygon(pc.polygon[:, :2]).symmetric_difference(s).area for s in stored) < 1e-6
    areas = log.map.filter(pl.col("layer") == "drivable_area")
    assert areas.height == len(m.vector_drivable_areas) == 13
    assert sum(Polygon(np.column_stack([x, y])).area for x, y in zip(areas["x_m"], areas["y_m"])) == pytest.approx(
        sum(Polygon(a.xyz[:, :2]).area for a in m.vector_drivable_areas.values()), rel=1e-9
    )
    dividers = log.map.filter(pl.col("layer") == "lane_divider")
    marks = {
        (seg.id, side): mark.value
        for seg in m.vector_lane_segments.values()
        for side, mark in (("left", seg.left_mark_type), ("right", seg.right_mark_type))
    }
    for eid, mark in zip(dividers["element_id"], dividers["mark_type"]):
        seg_id, side = eid.rsplit("_", 1)
        assert marks[(int(seg_id), side)] == mark != "NONE"
    assert dividers.height > 40 and log.map.filter(pl.col("layer") == "road_boundary").height >= 1
