"""The real AV2 log in ../shared reads through the same loader code as the simulated logs."""

import numpy as np
from av2.datasets.sensor.av2_sensor_dataloader import AV2SensorDataLoader

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
    assert (len(m.vector_lane_segments), len(m.vector_pedestrian_crossings), len(m.vector_drivable_areas)) == (183, 11, 13)
