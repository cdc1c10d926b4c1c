"""Labels against independent references: the simulator's true agent states, analytic tracks with closed-form
motion, and shapely polygons of hand-computed rotated boxes and holed map areas."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pytest
import shapely
from shapely.geometry import Polygon

from gasp_core.data.ingest import IngestConfig, ingest
from gasp_core.data.schema import MapLayer, UnifiedCategory
from gasp_core.data.store import LogStore, StoredLog
from gasp_core.sim.world import SimLog
from gasp_core.tasks import labels
from gasp_core.tasks.bev import BevGrid
from gasp_core.tasks.forecast.labels import FORECAST_CLASSES, forecast_labels
from gasp_core.tasks.labels import objects_at
from gasp_core.tasks.map.labels import map_labels
from gasp_core.tasks.semantic_occupancy.labels import semantic_occupancy

T0_NS = 1_700_000_000_000_000_000  # start of the analytic log
DELTA_M = 0.03  # how far test points lie inside or outside a box face


def _ns(t_s: float) -> int:
    return T0_NS + int(round(t_s * 1e9))


def _rot(a: float) -> np.ndarray:
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _wrap(a: np.ndarray) -> np.ndarray:
    return np.arctan2(np.sin(a), np.cos(a))


@dataclass(frozen=True)
class _Track:
    """An analytic agent: centre linear in time and yaw at a constant rate, so linear interpolation is exact."""

    track_id: str
    category: UnifiedCategory
    size_lwh: tuple[float, float, float]
    times_s: tuple[float, ...]
    centre0: tuple[float, float, float]
    velocity: tuple[float, float]
    yaw0: float
    yaw_rate: float

    def state(self, t_s: float) -> tuple[np.ndarray, float]:
        """City centre (3,) and yaw at ``t_s`` (also outside the annotated span: where the box would be)."""
        c = np.array(self.centre0) + np.array([*self.velocity, 0.0]) * t_s
        return c, self.yaw0 + self.yaw_rate * t_s

    def present(self, t_s: float, max_gap_s: float = 0.6) -> bool:
        """Annotated exactly at ``t_s``, or at two consecutive times around it at most ``max_gap_s`` apart."""
        ns = [_ns(t) for t in self.times_s]
        q = _ns(t_s)
        if q in ns:
            return True
        return any(a < q < b and b - a <= max_gap_s * 1e9 for a, b in zip(ns[:-1], ns[1:]))


TRACKS = (
    _Track(
        "car",
        UnifiedCategory.VEHICLE,
        (4.5, 1.8, 1.5),
        (0.0, 0.1, 0.2, 0.3, 0.4),
        (20.0, 4.0, 0.75),
        (5.4, 8.4),
        0.98,
        0.4,
    ),
    _Track(
        "van",
        UnifiedCategory.VEHICLE,
        (5.2, 2.0, 2.1),
        (0.05, 0.15, 0.25, 0.35),
        (8.0, 15.0, 1.05),
        (-6.0, 3.0),
        2.6,
        -0.3,
    ),
    _Track(
        "ped",
        UnifiedCategory.PEDESTRIAN,
        (0.6, 0.5, 1.8),
        (0.1, 0.2, 0.3, 0.4),
        (12.0, -6.0, 0.9),
        (1.2, 0.5),
        -0.4,
        0.0,
    ),
    _Track(
        "bike",
        UnifiedCategory.CYCLIST,
        (1.9, 0.7, 1.6),
        (0.0, 0.1, 0.9, 1.0),
        (25.0, -10.0, 0.8),
        (4.0, 3.0),
        0.64,
        0.2,
    ),
)
ANNOTATION_S = sorted({t for tr in TRACKS for t in tr.times_s})


def _boxes_table(tracks: tuple[_Track, ...]) -> pl.DataFrame:
    """The store's boxes schema, written from the analytic tracks (quaternion of a yaw about z by hand)."""
    rows = []
    for tr in tracks:
        for t in tr.times_s:
            c, yaw = tr.state(t)
            rows.append(
                {
                    "timestamp_ns": _ns(t),
                    "track_id": tr.track_id,
                    "category": tr.category.label,
                    "tx_m": c[0],
                    "ty_m": c[1],
                    "tz_m": c[2],
                    "qw": np.cos(yaw / 2),
                    "qx": 0.0,
                    "qy": 0.0,
                    "qz": np.sin(yaw / 2),
                    "length_m": tr.size_lwh[0],
                    "width_m": tr.size_lwh[1],
                    "height_m": tr.size_lwh[2],
                }
            )
    schema = {
        "timestamp_ns": pl.Int64,
        "track_id": pl.Utf8,
        "category": pl.Utf8,
        **{k: pl.Float64 for k in ("tx_m", "ty_m", "tz_m", "qw", "qx", "qy", "qz", "length_m", "width_m", "height_m")},
    }
    return pl.DataFrame(rows, schema=schema)


def _map_table(rows: list[tuple[str, str, int, np.ndarray]]) -> pl.DataFrame:
    """The store's map schema from (layer, element, part, (N, 2) ring) rows."""
    return pl.DataFrame(
        {
            "layer": [r[0] for r in rows],
            "element_id": [r[1] for r in rows],
            "part": [r[2] for r in rows],
            "closed": [True] * len(rows),
            "x_m": [r[3][:, 0].tolist() for r in rows],
            "y_m": [r[3][:, 1].tolist() for r in rows],
        },
        schema={
            "layer": pl.Utf8,
            "element_id": pl.Utf8,
            "part": pl.Int32,
            "closed": pl.Boolean,
            "x_m": pl.List(pl.Float64),
            "y_m": pl.List(pl.Float64),
        },
    )


@dataclass(eq=False)
class AnalyticStore:
    """Stands in for a :class:`StoredLog`: a boxes table, a map table and an ego turning at a constant rate."""

    boxes: pl.DataFrame
    map: pl.DataFrame = field(default_factory=lambda: _map_table([]))

    @staticmethod
    def ego(t_s: float) -> tuple[np.ndarray, float]:
        return np.array([2.0 + 9.0 * t_s, -1.0 + 1.5 * t_s]), 0.3 + 0.8 * t_s

    def city_T_ego(self, ts_ns) -> np.ndarray:
        ts = np.atleast_1d(np.asarray(ts_ns, np.int64))
        out = np.tile(np.eye(4), (len(ts), 1, 1))
        for i, t in enumerate(ts):
            xy, yaw = self.ego((int(t) - T0_NS) / 1e9)
            out[i, :2, :2], out[i, :2, 3] = _rot(yaw), xy
        return out


def _to_t0(t0_s: float, centre: np.ndarray, yaw: float) -> tuple[np.ndarray, float]:
    """A city box in the ego frame at ``t0_s``, by hand."""
    p, psi = AnalyticStore.ego(t0_s)
    return np.r_[_rot(-psi) @ (centre[:2] - p), centre[2]], yaw - psi


def _footprint(centre_xy: np.ndarray, yaw: float, length: float, width: float) -> Polygon:
    corners = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * [length / 2, width / 2]
    return Polygon(corners @ _rot(yaw).T + centre_xy)


def _probe_points(centre: np.ndarray, yaw: float, size_lwh) -> np.ndarray:
    """(75, 3) points just inside and just outside each face of a box, on its axes and near its corners."""
    length, width, height = size_lwh
    lx = [-length / 2 - DELTA_M, -length / 2 + DELTA_M, 0.0, length / 2 - DELTA_M, length / 2 + DELTA_M]
    ly = [-width / 2 - DELTA_M, -width / 2 + DELTA_M, 0.0, width / 2 - DELTA_M, width / 2 + DELTA_M]
    lz = [0.0, height / 2 - DELTA_M, height / 2 + DELTA_M]
    local = np.array(np.meshgrid(lx, ly, lz, indexing="ij")).reshape(3, -1).T
    return np.column_stack([local[:, :2] @ _rot(yaw).T + centre[:2], local[:, 2] + centre[2]])


def _reference_labels(points: np.ndarray, boxes: list[tuple[np.ndarray, float, tuple, int]]) -> np.ndarray:
    """1 + category of the box (shapely footprint and |dz| <= h / 2) holding each point, 0 for none; -1 where boxes
    of different categories overlap (any of them is right)."""
    out = np.zeros(len(points), np.int64)
    for centre, yaw, (length, width, height), cat in boxes:
        inside = shapely.contains_xy(_footprint(centre[:2], yaw, length, width), points[:, 0], points[:, 1])
        inside &= np.abs(points[:, 2] - centre[2]) <= height / 2
        out[inside] = np.where((out[inside] == 0) | (out[inside] == cat + 1), cat + 1, -1)
    return out


@pytest.fixture
def analytic() -> AnalyticStore:
    return AnalyticStore(_boxes_table(TRACKS))


def test_objects_at_follow_the_analytic_tracks(analytic):
    """Which tracks are returned (before a first annotation, exact, between, over a gap) and their pose in the t0
    frame, against the closed-form tracks and ego; annotation times differ from track to track."""
    t0_s = 0.2
    for t_s in (0.0, 0.02, 0.05, 0.1, 0.13, 0.15, 0.33, 0.4, 0.5, 0.93, 1.0, 1.05):
        for gap in (0.6, 1.0):
            obj = objects_at(analytic, _ns(t0_s), _ns(t_s), max_gap_s=gap)
            expected = {tr.track_id: tr for tr in TRACKS if tr.present(t_s, gap)}
            assert sorted(obj.track_id) == sorted(expected), (t_s, gap)
            n = len(expected)
            assert len(obj.category) == len(obj.center) == len(obj.yaw) == len(obj.size_lwh) == n
            for tid, cat, c, yaw, size in zip(obj.track_id, obj.category, obj.center, obj.yaw, obj.size_lwh):
                tr = expected[tid]
                centre, heading = _to_t0(t0_s, *tr.state(t_s))
                np.testing.assert_allclose(c, centre, atol=1e-9)
                assert abs(_wrap(yaw - heading)) < 1e-9, (tid, t_s)
                assert cat == tr.category.value
                np.testing.assert_array_equal(size, tr.size_lwh)
    assert objects_at(analytic, _ns(t0_s), _ns(0.5)).track_id == []  # the bike's 0.8 s gap is not bridged


def test_no_annotation_gives_consistent_empty_objects(analytic):
    """No track around the time (and an empty boxes table): every field is empty, with its own trailing shape."""
    empty = AnalyticStore(_boxes_table(()))
    for log, t_s in ((analytic, 0.5), (analytic, -0.05), (analytic, 1.05), (empty, 0.1)):
        obj = objects_at(log, _ns(0.2), _ns(t_s))
        assert obj.track_id == []
        assert obj.category.shape == (0,) and obj.yaw.shape == (0,)
        assert obj.center.shape == (0, 3) and obj.size_lwh.shape == (0, 3)
    assert labels.tracks_of(empty).yaw.shape == (0,)
    assert not semantic_occupancy(empty, _ns(0.2), np.array([[0.0, 0.0, 0.0, 0.0]])).any()


def test_times_a_key_stride_away_do_not_alias_onto_other_tracks(analytic):
    """Tracks are looked up by one int64 key per (track, time); a query far after the log, at exactly a key stride
    past some track's annotation, and one far before it between annotations, must find nothing."""
    stride = labels._KEY_STRIDE
    for t_s in ANNOTATION_S:
        assert objects_at(analytic, _ns(0.2), _ns(t_s) + stride).track_id == []
    for a, b in zip(ANNOTATION_S[:-1], ANNOTATION_S[1:]):
        assert objects_at(analytic, _ns(0.2), (_ns(a) + _ns(b)) // 2 - stride, max_gap_s=1.0).track_id == []
    for t_s in ANNOTATION_S:  # exactly a stride before an annotation: the key of the previous track's slot
        assert objects_at(analytic, _ns(0.2), _ns(t_s) - stride).track_id == []


def _queries(t0_s: float, times_s: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Probe points around every analytic box (annotated then or not) at each time, with their reference labels."""
    xyzt, ref = [], []
    for t_s in times_s:
        boxes = [(*_to_t0(t0_s, *tr.state(t_s)), tr.size_lwh, tr.category.value) for tr in TRACKS]
        pts = np.vstack([_probe_points(c, yaw, size) for c, yaw, size, _ in boxes])
        present = [b for b, tr in zip(boxes, TRACKS) if tr.present(t_s)]
        xyzt.append(np.column_stack([pts, np.full(len(pts), t_s - t0_s)]))
        ref.append(_reference_labels(pts, present))
    return np.vstack(xyzt), np.concatenate(ref)


EXACT_S = [0.0, 0.1, 0.15, 0.35, 1.0]  # first, shared, one track's own, and the last annotation time
BETWEEN_S = [-0.05, 0.02, 0.07, 0.13, 0.33, 0.5, 0.93, 0.97, 1.05]  # before the first, inside, a gap, after the last


@pytest.mark.parametrize("order", ["exact_first", "between_first", "shuffled"])
def test_semantic_occupancy_matches_hand_made_boxes(analytic, order):
    """Points just inside / outside every face of long, narrow and small boxes, yawed in a t0 frame whose heading is
    not a multiple of 90 degrees, at many times: the label is that of the shapely footprint plus z test of the
    closed-form box at the point's own time (also when queries at annotation times come first in the array)."""
    t0_s = 0.2
    assert abs(_wrap(4 * AnalyticStore.ego(t0_s)[1])) > 0.5  # a half-turn error in the t0 heading would show
    times = {
        "exact_first": EXACT_S + BETWEEN_S,
        "between_first": BETWEEN_S + EXACT_S,
        "shuffled": list(np.random.default_rng(0).permutation(EXACT_S + BETWEEN_S)),
    }[order]
    xyzt, ref = _queries(t0_s, times)
    if order == "shuffled":
        perm = np.random.default_rng(1).permutation(len(xyzt))
        xyzt, ref = xyzt[perm], ref[perm]
    got = semantic_occupancy(analytic, _ns(t0_s), xyzt)
    ok = ref >= 0
    assert (~ok).sum() == 0  # the analytic boxes never overlap
    bad = np.flatnonzero(got != ref)
    assert not len(bad), [(tuple(np.round(xyzt[i], 3)), int(got[i]), int(ref[i])) for i in bad[:5]]
    assert (ref > 0).sum() > 200 and (ref == 0).sum() > 200
    assert set(ref) == {0, 1, 2, 3}


def test_forecast_at_the_last_annotation_time(analytic):
    """A horizon landing exactly on the log's last annotation still draws the box there (one nanosecond later there
    is none): the cyclist raster equals the shapely footprint of the analytic bike at 1.0 s."""
    t0_s = 0.0
    grid = BevGrid((0.0, 40.0, -30.0, 10.0), 0.25)
    f = forecast_labels(analytic, _ns(t0_s), np.array([1.0, 0.5]), grid)
    bike = TRACKS[3]
    c, yaw = _to_t0(t0_s, *bike.state(1.0))
    ref = shapely.contains_xy(_footprint(c[:2], yaw, *bike.size_lwh[:2]), *grid.centres().T).reshape(grid.shape)
    assert ref.sum() > 10
    np.testing.assert_array_equal(f[0, FORECAST_CLASSES.index(UnifiedCategory.CYCLIST)], ref)
    assert not f[1].any()  # 0.5 s: nothing annotated around it


def test_map_polygon_holes(analytic):
    """A drivable area with two holes (parts 1 and 2) beside a plain one, seen from a turned ego: the raster equals
    the shapely polygon-with-holes (rotated into the t0 frame by hand) at every cell centre."""
    outer = np.array([[4.0, -9.0], [26.0, -7.0], [24.0, 12.0], [3.0, 10.0]])
    hole1 = np.array([[8.0, -4.0], [13.0, -4.5], [12.0, 2.0], [8.5, 1.0]])
    hole2 = np.array([[16.0, 3.0], [21.0, 2.5], [21.5, 8.0], [15.5, 7.5]])
    other = np.array([[-15.0, -5.0], [-5.0, -5.0], [-6.0, 5.0]])
    crossing = np.array([[10.0, 14.0], [14.0, 14.0], [14.0, 16.0], [10.0, 16.0]])
    log = AnalyticStore(
        analytic.boxes,
        _map_table(
            [
                (MapLayer.DRIVABLE_AREA, "a", 0, outer),
                (MapLayer.DRIVABLE_AREA, "a", 1, hole1),
                (MapLayer.DRIVABLE_AREA, "a", 2, hole2),
                (MapLayer.DRIVABLE_AREA, "b", 0, other),
                (MapLayer.PED_CROSSING, "c", 0, crossing),
            ]
        ),
    )
    t0_s = 0.35
    grid = BevGrid((-30.0, 30.0, -25.0, 25.0), 0.25)
    maps = map_labels(log, _ns(t0_s), grid)
    p, psi = AnalyticStore.ego(t0_s)
    to_t0 = lambda ring: (ring - p) @ _rot(-psi).T  # noqa: E731
    cx, cy = grid.centres().T
    area = shapely.union(Polygon(to_t0(outer), [to_t0(hole1), to_t0(hole2)]), Polygon(to_t0(other)))
    np.testing.assert_array_equal(maps[0].ravel(), shapely.contains_xy(area, cx, cy))
    np.testing.assert_array_equal(maps[1].ravel(), shapely.contains_xy(Polygon(to_t0(crossing)), cx, cy))
    for hole in (hole1, hole2):  # both holes hold cells, all of them empty
        in_hole = shapely.contains_xy(Polygon(to_t0(hole)), cx, cy)
        assert in_hole.sum() > 100 and not maps[0].ravel()[in_hole].any()


@pytest.fixture(scope="module")
def log(av2_split, tmp_path_factory) -> StoredLog:
    out = tmp_path_factory.mktemp("labels_reference_store")
    ingest(
        IngestConfig(format="av2", root=str(av2_split.parent), split=av2_split.name, map_margin_m=200.0),
        out,
        progress=False,
    )
    store = LogStore(out)
    return store.log(store.log_ids[0])


def _true_box(sim_log: SimLog, t0: int, tid: str, t_ns: int) -> tuple[np.ndarray, float, tuple]:
    """The simulator's box of track ``tid`` at ``t_ns`` in the t0 ego frame (ego pose from the simulator too)."""
    tr = next(tr for tr in sim_log.tracks if tr.track_id == tid)
    to_s = lambda ns: (ns - sim_log.start_ns) / 1e9  # noqa: E731
    xy, yaw, z = tr.state_at(to_s(t_ns))
    t0_T_city = np.linalg.inv(sim_log.city_T_ego(np.array([to_s(t0)]))[0])
    centre = t0_T_city[:3, :3] @ np.array([xy[0], xy[1], float(z)]) + t0_T_city[:3, 3]
    return centre, float(yaw) + np.arctan2(t0_T_city[1, 0], t0_T_city[0, 0]), (tr.length_m, tr.width_m, tr.height_m)


def _annotated_ids(log: StoredLog, t_ns: int) -> set[str]:
    """Tracks of the boxes table annotated at ``t_ns`` or at both annotation times around it (0.1 s apart)."""
    b = log.boxes
    ts = np.unique(b["timestamp_ns"].to_numpy())
    at = lambda t: set(b.filter(pl.col("timestamp_ns") == int(t))["track_id"].to_list())  # noqa: E731
    if t_ns in ts:
        return at(t_ns)
    before, after = ts[ts < t_ns], ts[ts > t_ns]
    return at(before.max()) & at(after.min()) if len(before) and len(after) else set()


def test_objects_yaw_is_the_true_heading(log, sim_log):
    """Every object's yaw and centre in the t0 frame (ego heading 90 degrees) equal the simulator's true heading and
    position, at an annotation time, between two, and at the last one."""
    sweeps = [int(t) for t in log.sweep_timestamps_ns]
    t0 = sweeps[2]
    assert abs(np.sin(_wrap(sim_log.ego.state_at((t0 - sim_log.start_ns) / 1e9)[1]))) > 0.5
    for t in (sweeps[3], sweeps[3] + 50_000_000, sweeps[6] + 17_000_000, sweeps[-1]):
        obj = objects_at(log, t0, t)
        assert len(obj.track_id) > 30 and set(obj.track_id) == _annotated_ids(log, t)
        for tid, c, yaw, size in zip(obj.track_id, obj.center, obj.yaw, obj.size_lwh):
            centre, heading, true_size = _true_box(sim_log, t0, tid, t)
            assert abs(_wrap(yaw - heading)) < 1e-6, tid
            np.testing.assert_allclose(c, centre, atol=1e-5)
            np.testing.assert_allclose(size, true_size, rtol=1e-6)


def test_semantic_occupancy_matches_the_simulated_boxes(log, sim_log):
    """Points just inside / outside every face of every annotated agent's true box at its own time (queries at the
    first and last annotation times first in the array, then between, before and after): the label is that of the
    shapely footprint plus z test of the simulator's boxes."""
    sweeps = [int(t) for t in log.sweep_timestamps_ns]
    t0 = sweeps[2]
    category = dict(zip(log.boxes["track_id"].to_list(), log.boxes["category"].to_list()))
    times = [
        sweeps[0],
        sweeps[3],
        sweeps[-1],
        sweeps[0] - 30_000_000,
        sweeps[0] + 20_000_000,
        sweeps[2] + 60_000_000,
        sweeps[-2] + 70_000_000,
        sweeps[-1] + 40_000_000,
    ]
    probe_ids = _annotated_ids(log, sweeps[0]) | _annotated_ids(log, sweeps[-1])
    xyzt, ref = [], []
    for t in times:
        boxes = {tid: _true_box(sim_log, t0, tid, t) for tid in probe_ids}
        pts = np.vstack([_probe_points(*b) for b in boxes.values()])
        present = [(*boxes[tid], UnifiedCategory[category[tid].upper()].value) for tid in _annotated_ids(log, t)]
        xyzt.append(np.column_stack([pts, np.full(len(pts), (t - t0) / 1e9)]))
        ref.append(_reference_labels(pts, present))
    xyzt, ref = np.vstack(xyzt), np.concatenate(ref)
    got = semantic_occupancy(log, t0, xyzt)
    ok = ref >= 0
    assert ok.mean() > 0.99
    bad = np.flatnonzero(ok & (got != ref))
    assert not len(bad), [(tuple(np.round(xyzt[i], 3)), int(got[i]), int(ref[i])) for i in bad[:5]]
    assert (got[~ok] > 0).all()
    assert (ref == UnifiedCategory.VEHICLE + 1).sum() > 1000 and (ref == 0).sum() > 1000
