"""The ego-motion survey that study splits are chosen by: counts on hand-made tracks, and the generator's own ego."""

from __future__ import annotations

import numpy as np

from gasp_core.sim.manoeuvres import ego_summary, summarize


def test_stop_and_go_with_a_turn_is_counted_exactly():
    t = np.arange(0, 12.01, 0.1)
    moving = (t < 2.95) | ((t > 4.95) & (t < 7.95))  # cruise, stop for 2 s, go for 3 s, stop to the end
    speed = np.where(moving, 8.0, 0.0)
    x = np.concatenate([[0.0], np.cumsum(speed[:-1] * 0.1)])
    yaw = np.where(t < 6, 0.0, np.pi / 2 * np.minimum(1.0, (t - 6) / 2))  # a left turn while moving again
    s = summarize("log", 0, t, np.column_stack([x, np.zeros_like(x)]), yaw)
    assert (s.stops, s.starts, s.turns, s.manoeuvres) == (2, 1, True, 4)
    np.testing.assert_allclose(s.distance_m, 8.0 * 6.0, atol=1e-9)
    np.testing.assert_allclose(s.moving_fraction, 60 / 120, atol=1e-9)
    np.testing.assert_allclose(s.heading_change_rad, np.pi / 2)


def test_a_parked_ego_has_no_manoeuvre_and_headings_wrap():
    t = np.arange(0, 5.01, 0.1)
    parked = summarize("log", 0, t, np.zeros((len(t), 2)), np.full(len(t), np.pi))
    assert (parked.distance_m, parked.moving_fraction, parked.manoeuvres) == (0.0, 0.0, 0)
    wrapped = np.where(t < 2.5, np.pi - 0.01, -np.pi + 0.01)  # a 0.02 rad wiggle across +-pi is not a turn
    assert not summarize("log", 0, t, np.zeros((len(t), 2)), wrapped).turns


def test_the_survey_follows_the_generated_ego(small_cfg, sim_log):
    s = ego_summary(small_cfg, sim_log.seed)
    keep = sim_log.ego.times_s <= small_cfg.seconds + 1e-9
    path = np.linalg.norm(np.diff(sim_log.ego.xy[keep], axis=0), axis=1).sum()
    assert s.log_id == sim_log.log_id
    np.testing.assert_allclose(s.distance_m, path)
