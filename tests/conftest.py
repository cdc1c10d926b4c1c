"""Shared fixtures: one small simulated log, written once per session in both dataset layouts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gasp_core.sim.config import world_config_from_dict
from gasp_core.sim.world import SimLog, simulate_log

REPO = Path(__file__).resolve().parents[1]
AV2_SAMPLE = REPO.parent / "shared" / "data" / "av2_sensor_sample" / "val"

SMALL_WORLD = {
    "seconds": 1.0,
    "traffic": {"warmup_s": 6.0},
    "camera": {"width_px": 160, "height_px": 120, "rate_hz": 5.0},
}


@pytest.fixture(scope="session")
def small_cfg():
    return world_config_from_dict(SMALL_WORLD)


@pytest.fixture(scope="session")
def sim_log(small_cfg) -> SimLog:
    return simulate_log(small_cfg, seed=11)


@pytest.fixture(scope="session")
def av2_split(sim_log, tmp_path_factory) -> Path:
    from gasp_core.sim.writers.av2_writer import write_av2_log

    split = tmp_path_factory.mktemp("av2") / "train"
    write_av2_log(sim_log, split)
    return split


@pytest.fixture(scope="session")
def nuscenes_root(sim_log, tmp_path_factory) -> Path:
    from gasp_core.sim.writers.nuscenes_writer import write_nuscenes

    root = tmp_path_factory.mktemp("nus") / "nuscenes"
    write_nuscenes([sim_log], root, version="v1.0-test")
    return root


def in_ci() -> bool:
    """CI sets ``CI=true`` (.ci/run): there, missing shared data is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() == "true"


def require_shared(path: Path, what: str) -> Path:
    """``path`` (data under ../shared beside the checkout) or, when it is absent, a skip locally and a failure in CI."""
    if not path.exists():
        message = f"{what} not found at {path} (it lives in ../shared beside the checkout)"
        if in_ci():
            pytest.fail(f"CI=true and {message}: CI must provide it, tests needing it may not skip", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def av2_sample() -> Path:
    return require_shared(AV2_SAMPLE, "real AV2 sample")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole test run (started by the first test that wants it)."""
    ray = pytest.importorskip("ray") if not in_ci() else __import__("ray")
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},  # workers import gasp_core and tests from here
        )
    yield ray
    ray.shutdown()
