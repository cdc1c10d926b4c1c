"""The CLI writes logs the datasets' own loaders open."""

import json
import subprocess
import sys
from pathlib import Path

from nuscenes.nuscenes import NuScenes

from gasp_core.data.av2_reader import AV2LogReader

ARGS = ["--logs", "2", "--seconds", "0.5", "--seed", "9", "--workers", "2"]


def _run(*args: str, config: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "gasp_core.sim", *args, *ARGS, "--config", str(config)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_writes_both_formats(tmp_path):
    config = tmp_path / "world.yaml"
    config.write_text("traffic: {warmup_s: 2.0}\ncamera: {width_px: 48, height_px: 32, rate_hz: 10.0}\n")
    summary = _run("--format", "av2", "--out", str(tmp_path / "av2"), config=config)
    assert summary["logs"] == 2
    split = tmp_path / "av2" / "train"
    ids = AV2LogReader.log_ids(split)
    assert len(ids) == 2
    assert len(AV2LogReader(split, ids[0]).lidar_timestamps_ns) == 5
    _run("--format", "nuscenes", "--out", str(tmp_path / "nus"), config=config)
    nusc = NuScenes(version="v1.0-gasp", dataroot=str(tmp_path / "nus"), verbose=False)
    assert len(nusc.scene) == 2 and len(nusc.sample) == 2
    manifest = json.loads((tmp_path / "nus" / "gasp_sim_manifest.json").read_text())
    assert manifest["log_seeds"] == [9000, 9001]
