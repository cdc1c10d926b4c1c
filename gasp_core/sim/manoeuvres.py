"""What the ego vehicle does in each log of a world: distance, stops, starts and turns, from the traffic alone.

A study's test logs should hold manoeuvres (a parked ego makes constant velocity unbeatable and every trajectory
verdict empty). The traffic simulation is the cheap part of a log (no ray casting), so the whole world can be
surveyed before it is generated, and the splits chosen on the ego's motion, never on any evaluation result:

    python -m gasp_core.sim.manoeuvres --config configs/world/study.yaml
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

import numpy as np
import yaml

from gasp_core.sim.config import WorldConfig, world_config_from_dict
from gasp_core.sim.generate import log_seeds
from gasp_core.sim.town import Town
from gasp_core.sim.traffic import simulate_traffic
from gasp_core.sim.world import log_id_for

STOPPED_MPS = 0.5
"""Below this speed the ego counts as stopped."""
TURN_RAD = np.pi / 4
"""A heading change of at least this much over the log counts as a turn."""


@dataclass
class EgoSummary:
    log_id: str
    seed: int
    distance_m: float
    """Path length over the log."""
    moving_fraction: float
    """Share of the log's time the ego moves faster than ``STOPPED_MPS``."""
    stops: int
    """Moving -> stopped transitions."""
    starts: int
    """Stopped -> moving transitions."""
    heading_change_rad: float
    """Largest absolute heading change from the log's first pose."""

    @property
    def turns(self) -> bool:
        return self.heading_change_rad >= TURN_RAD

    @property
    def manoeuvres(self) -> int:
        """Stops, starts and a turn: what a constant-velocity extrapolation gets wrong."""
        return self.stops + self.starts + int(self.turns)


def summarize(log_id: str, seed: int, times_s: np.ndarray, xy: np.ndarray, yaw_rad: np.ndarray) -> EgoSummary:
    """The motion summary of an ego track sampled at ``times_s`` (positions (T, 2), headings (T,))."""
    step = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    moving = step / np.diff(times_s) > STOPPED_MPS
    change = np.diff(moving.astype(np.int8))
    yaw = np.unwrap(yaw_rad)
    return EgoSummary(
        log_id,
        seed,
        float(step.sum()),
        float(moving.mean()) if len(moving) else 0.0,
        int((change < 0).sum()),
        int((change > 0).sum()),
        float(np.abs(yaw - yaw[0]).max()),
    )


def ego_summary(cfg: WorldConfig, seed: int) -> EgoSummary:
    """The ego's motion in the log of ``seed`` (the same traffic simulation the generator runs)."""
    ego, _ = simulate_traffic(Town(cfg.town, seed), cfg, np.random.default_rng(seed))
    keep = ego.times_s <= cfg.seconds + 1e-9
    return summarize(log_id_for(seed), seed, ego.times_s[keep], ego.xy[keep], ego.yaw_rad[keep])


def survey(world: dict) -> list[EgoSummary]:
    """Every log of a world config (``configs/world/<name>.yaml``), in generation order."""
    cfg = world_config_from_dict({**(world.get("world") or {}), "seconds": world["seconds"]})
    return [ego_summary(cfg, s) for s in log_seeds(int(world["seed"]), int(world["logs"]))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a world config (configs/world/<name>.yaml)")
    args = parser.parse_args(argv)
    rows = survey(yaml.safe_load(open(args.config)))
    print(
        f"{'log':<40} {'seed':>6} {'dist_m':>7} {'moving':>6} {'stops':>5} {'starts':>6} {'turn_deg':>8} "
        f"{'manoeuvres':>10}"
    )
    for r in rows:
        d = asdict(r)
        print(
            f"{d['log_id']:<40} {d['seed']:>6} {d['distance_m']:>7.1f} {d['moving_fraction']:>6.2f} {d['stops']:>5} "
            f"{d['starts']:>6} {np.degrees(d['heading_change_rad']):>8.0f} {r.manoeuvres:>10}"
        )


if __name__ == "__main__":
    main()
