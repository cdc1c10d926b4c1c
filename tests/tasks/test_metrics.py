"""Trajectory metrics against independent references: the collision check against footprints built with shapely's
own affine transforms (rotated egos and boxes, near misses the rear overhang or a box's own axis decides), and L2
read at the production waypoint times."""

from __future__ import annotations

import numpy as np
import pytest
from shapely import affinity
from shapely.geometry import box

from gasp_core.tasks.metrics import collides, l2_at

EGO_LW, OVERHANG = (4.6, 1.9), 1.1
WAYPOINT_TIMES = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])  # TaskLabelsConfig's default (production) times


def _ego_ref(
    x: float, y: float, yaw: float, length: float = EGO_LW[0], width: float = EGO_LW[1], overhang: float = OVERHANG
):
    """The ego footprint in the rear-axle frame (overhang behind the axle, the rest ahead), rotated about the axle
    and moved to (x, y)."""
    local = box(-overhang, -width / 2, length - overhang, width / 2)
    return affinity.translate(affinity.rotate(local, yaw, origin=(0, 0), use_radians=True), x, y)


def _box_ref(cx: float, cy: float, yaw: float, length: float, width: float):
    local = box(-length / 2, -width / 2, length / 2, width / 2)
    return affinity.translate(affinity.rotate(local, yaw, origin=(0, 0), use_radians=True), cx, cy)


def _to_world(pose_x: float, pose_y: float, pose_yaw: float, local_xy) -> np.ndarray:
    """A point given in the ego's (rear axle, heading) frame, in the world."""
    c, s = np.cos(pose_yaw), np.sin(pose_yaw)
    lx, ly = local_xy
    return np.array([pose_x + c * lx - s * ly, pose_y + s * lx + c * ly])


def _one(x, y, yaw, centre, box_yaw, lw) -> bool:
    step = (np.array([centre], float), np.array([box_yaw], float), np.array([lw], float))
    return bool(collides(np.array([[x, y]]), np.array([yaw]), EGO_LW, OVERHANG, [step])[0])


@pytest.mark.parametrize("yaw", [0.3, 1.2, 2.5, -2.0])
def test_near_misses_decided_by_the_overhang_and_the_box_axes(yaw):
    """Each case is placed in the ego's frame (so the outcome is known by construction), then the whole scene is
    turned by ``yaw`` and moved; shapely's reference must agree with the construction and with ``collides``."""
    ex, ey = 3.0, -7.0
    length, width = EGO_LW
    obj = (1.0, 1.0)  # a 1 m x 1 m box
    cases = [
        # behind the rear axle: the overhang (to x = -1.1) reaches a box spanning x in [-2.0, -1.0]; a footprint
        # without the overhang, or one pushed forward by it, does not
        ((-OVERHANG - 0.4, 0.0), 0.0, True),
        ((-OVERHANG - 0.6, 0.0), 0.0, False),  # x in [-2.2, -1.2]: just clear of the overhang
        # ahead of the nose (length - overhang = 3.5 m): a footprint pushed forward (or not pulled back) by the
        # overhang reaches a box spanning x in [3.6, 4.6]
        ((length - OVERHANG + 0.6, 0.0), 0.0, False),
        ((length - OVERHANG + 0.4, 0.0), 0.0, True),  # x in [3.4, 4.4]
        # a diamond off the front-left corner: it overlaps the footprint on both of the ego's axes (by 0.1 m), but
        # its own (45 degree) axis separates them (0.85 m apart along it, half-extent 0.5 m)
        ((length - OVERHANG + 0.6, width / 2 + 0.6), np.pi / 4, False),
        ((length - OVERHANG + 0.3, width / 2 + 0.3), np.pi / 4, True),
        # the same off the rear-right corner (the overhang's end)
        ((-OVERHANG - 0.6, -width / 2 - 0.6), np.pi / 4, False),
        ((-OVERHANG - 0.3, -width / 2 - 0.3), np.pi / 4, True),
        # beside the ego, turned 0.4 rad: its lowest corner is 0.5 (cos 0.4 + sin 0.4) = 0.655 m below its centre
        ((1.0, width / 2 + 0.3), 0.4, True),
        ((1.0, width / 2 + 0.7), 0.4, False),
    ]
    for (lx, ly), rel_yaw, expected in cases:
        centre = _to_world(ex, ey, yaw, (lx, ly))
        ref = _ego_ref(ex, ey, yaw).intersects(_box_ref(*centre, yaw + rel_yaw, *obj))
        assert ref == expected, ((lx, ly), rel_yaw)  # the construction and shapely agree
        assert _one(ex, ey, yaw, centre, yaw + rel_yaw, obj) == expected, ((lx, ly), rel_yaw, yaw)


def test_random_rotated_scenes_match_shapely():
    """Random egos and boxes near them (every yaw, sizes mixed): per-waypoint agreement with shapely."""
    rng = np.random.default_rng(14)
    k, n = 400, 3
    xy = rng.uniform(-20, 20, (k, 2))
    yaw = rng.uniform(-np.pi, np.pi, k)
    steps, expected = [], []
    for i in range(k):
        # boxes around the ego's footprint centre, at distances where both outcomes are common
        mid = _to_world(*xy[i], yaw[i], ((EGO_LW[0] / 2 - OVERHANG), 0.0))
        centres = mid + rng.uniform(-4.5, 4.5, (n, 2))
        yaws = rng.uniform(-np.pi, np.pi, n)
        lw = np.column_stack([rng.uniform(0.5, 5.0, n), rng.uniform(0.5, 2.5, n)])
        steps.append((centres, yaws, lw))
        ego = _ego_ref(*xy[i], yaw[i])
        expected.append(any(ego.intersects(_box_ref(*c, a, *s)) for c, a, s in zip(centres, yaws, lw)))
    expected = np.array(expected)
    assert 0.25 < expected.mean() < 0.75  # both outcomes are well represented
    got = collides(xy, yaw, EGO_LW, OVERHANG, steps)
    assert got.dtype == bool and got.shape == (k,)
    np.testing.assert_array_equal(got, expected)


def test_collision_steps_are_per_waypoint_and_empty_steps_are_clear():
    """Waypoint k is checked only against the boxes of step k."""
    xy = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    yaw = np.zeros(3)
    at = lambda c: (np.array([c], float), np.zeros(1), np.array([[1.0, 1.0]]))  # noqa: E731
    empty = (np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)))
    # step 0 has a box on waypoint 1's position, step 1 one on waypoint 1, step 2 none
    got = collides(xy, yaw, EGO_LW, OVERHANG, [at([10.0, 0.0]), at([11.0, 0.0]), empty])
    np.testing.assert_array_equal(got, [False, True, False])


def test_l2_reads_the_production_waypoints():
    true = np.column_stack([WAYPOINT_TIMES * 8.0, np.zeros(6)])
    err = np.array([0.11, 0.23, 0.37, 0.41, 0.59, 0.67])  # distinct per waypoint
    ang = np.linspace(0.0, 2.5, 6)
    pred = true + err[:, None] * np.column_stack([np.cos(ang), np.sin(ang)])
    got = l2_at(pred, true, WAYPOINT_TIMES)
    assert list(got) == ["l2_1s", "l2_2s", "l2_3s"]
    assert got["l2_1s"] == pytest.approx(0.23, abs=1e-12)
    assert got["l2_2s"] == pytest.approx(0.41, abs=1e-12)
    assert got["l2_3s"] == pytest.approx(0.67, abs=1e-12)
    half = l2_at(pred, true, WAYPOINT_TIMES, at_s=(0.5, 1.5, 2.5))
    assert list(half.values()) == pytest.approx([0.11, 0.37, 0.59], abs=1e-12)
    # times given as float32 (as the labels store them) still match
    assert l2_at(pred, true, WAYPOINT_TIMES.astype(np.float32)) == got


def test_l2_without_the_requested_time_raises():
    true = np.zeros((4, 2))
    with pytest.raises(ValueError):
        l2_at(true, true, WAYPOINT_TIMES[:4])  # no 3 s waypoint
    with pytest.raises(ValueError):
        l2_at(true, true, np.array([0.5, 0.9, 1.9, 2.9]))  # near, but not at, 1 / 2 / 3 s
    with pytest.raises(ValueError):
        l2_at(np.zeros((6, 2)), np.zeros((6, 2)), WAYPOINT_TIMES, at_s=(1.25,))


def test_ratio_is_undefined_exactly_where_nothing_was_counted():
    """IoU and rates are count ratios: 0 / 0 and n / 0 are undefined (nan), never inf, 0 or 1."""
    from gasp_core.tasks.metrics import ratio

    out = ratio(np.array([3, 0, 2, 0, 1]), np.array([0, 0, 4, 5, 1]))
    np.testing.assert_array_equal(np.isnan(out), [True, True, False, False, False])
    np.testing.assert_allclose(out[2:], [0.5, 0.0, 1.0])


def test_iou_counts_are_intersection_and_union_as_sklearn_counts_them():
    from sklearn.metrics import jaccard_score

    from gasp_core.tasks.metrics import iou_counts, ratio

    rng = np.random.default_rng(0)
    pred, target = rng.random((40, 30)) < 0.3, rng.random((40, 30)) < 0.5
    inter, union = iou_counts(pred, target)
    assert (inter, union) == ((pred & target).sum(), (pred | target).sum()) and 0 < inter < union
    assert ratio(inter, union) == pytest.approx(jaccard_score(target.ravel(), pred.ravel()))


def test_score_histogram_bins_the_extremes_and_ap_handles_stacks_and_single_positives():
    from sklearn.metrics import average_precision_score

    from gasp_core.tasks.metrics import AP_BINS, ap_from_histogram, score_histogram

    h = score_histogram(np.array([0.0, 1.0, 0.5]), np.array([0, 1, 1]))
    assert h[0, -1] == 1 and h[1, 0] == 1 and h[0, AP_BINS // 2] == 1  # p = 1 in the top bin, p = 0 in the bottom one
    assert score_histogram(np.array([0.99999]), np.array([1]))[0, -1] == 1  # logit 11.5 > 10: clipped to the top bin
    rng = np.random.default_rng(1)
    hists, aps = [], []
    for n_pos in (1, 5, 30):  # a single positive is a defined AP
        y = np.zeros(200, bool)
        y[rng.choice(200, n_pos, replace=False)] = True
        p = np.clip(rng.random(200) * 0.6 + 0.35 * y, 0, 1)
        hists.append(score_histogram(p, y))
        aps.append(average_precision_score(y, np.digitize(p, np.unique(p))))
    stacked = ap_from_histogram(np.stack(hists))  # a batch (the bootstrap's replicates) = each one alone
    np.testing.assert_allclose(stacked, [ap_from_histogram(h) for h in hists])
    np.testing.assert_allclose(stacked, aps, atol=0.03)


def test_compacted_histograms_give_the_same_ap_under_any_resampling():
    """Dropping the bins without positives (their negatives moved to the kept bin below) is exact for AP of every
    weighted sum over samples, however the bootstrap weights them, and keeps only bins with positives."""
    from gasp_core.tasks.metrics import ap_from_histogram, compact_histograms, score_histogram

    rng = np.random.default_rng(3)
    samples, rows, n = 12, 3, 400
    hist = np.stack(
        [
            np.stack(
                [score_histogram(rng.beta(0.4, 2.0, n) ** (1 + r), rng.random(n) < 0.04 * (r + 1)) for r in range(rows)]
            )
            for _ in range(samples)
        ]
    )  # (S, rows, 2, bins)
    # a negative far above every positive, and one below them all: both shape AP (the first lowers precision)
    hist[0, :, 1, -1] += 5
    hist[0, :, 1, 0] += 5
    small = compact_histograms(hist)
    has_pos = hist[..., 0, :].reshape(-1, hist.shape[-1]).any(0)
    assert small.shape == (*hist.shape[:-1], has_pos.sum()) and small[..., 0, :].sum() == hist[..., 0, :].sum()
    weights = np.vstack([np.ones(samples), rng.integers(0, 3, size=(200, samples))]).astype(np.float64)
    full = ap_from_histogram(np.tensordot(weights, hist.astype(np.float64), axes=(1, 0)))
    got = ap_from_histogram(np.tensordot(weights, small.astype(np.float64), axes=(1, 0)))
    np.testing.assert_allclose(got, full, rtol=1e-12, atol=1e-15)
    # replicates without positives stay nan on both sides
    np.testing.assert_array_equal(np.isnan(got), np.isnan(full))
    # no positives at all: AP undefined, one empty bin left
    none = compact_histograms(np.zeros((2, 2, 64), np.int32) + np.array([0, 1])[:, None])
    assert none.shape == (2, 2, 1) and np.isnan(ap_from_histogram(none.sum(0)))


def test_pr_curve_of_a_histogram_is_sklearns_and_integrates_to_the_ap():
    from sklearn.metrics import precision_recall_curve

    from gasp_core.tasks.metrics import ap_from_histogram, pr_from_histogram, score_histogram

    rng = np.random.default_rng(5)
    # scores at distinct bin centres, several per bin (ties, as the histogram sees them)
    centres = 1 / (1 + np.exp(-(np.linspace(-9.99, 9.99, 2048))))
    scores = centres[rng.integers(0, 2048, 3000) // 16 * 16]
    labels = rng.random(3000) < scores * 0.8
    recall, precision = pr_from_histogram(score_histogram(scores, labels))
    p_ref, r_ref, _ = precision_recall_curve(labels, scores)
    # sklearn: increasing thresholds, ending at (recall 0, precision 1); ours: decreasing thresholds
    np.testing.assert_allclose(recall, r_ref[:-1][::-1])
    np.testing.assert_allclose(precision, p_ref[:-1][::-1])
    ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    assert ap == pytest.approx(float(ap_from_histogram(score_histogram(scores, labels))), rel=1e-12)
    assert pr_from_histogram(np.zeros((2, 8)))[0].size == 0
