"""The README's "Your own data, step by step" commands, run on the real AV2 sample as far as it allows (ingest: the
sample has 2 sweeps, fewer than one training sample needs), so the walkthrough cannot drift from the code."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO.parent / "shared" / "data" / "av2_sensor_sample"


def walkthrough_commands(readme: str) -> list[str]:
    """The shell commands between the README's walkthrough markers (continuation lines joined)."""
    m = re.search(r"<!-- walkthrough:start -->\s*```bash\n(.*?)```\s*<!-- walkthrough:end -->", readme, re.S)
    assert m, "README.md lost its walkthrough block"
    return [c.strip() for c in m.group(1).replace("\\\n", " ").splitlines() if c.strip()]


@pytest.mark.slow
def test_readme_walkthrough_ingests_the_real_av2_sample(tmp_path):
    if not (SAMPLE / "val").is_dir():
        pytest.skip(f"{SAMPLE} is absent (CI and the project machines have it)")
    (log_id,) = [p.name for p in (SAMPLE / "val").iterdir() if p.is_dir()]
    project = tmp_path / "gasp-av2"
    weights = tmp_path / "dinov2_vitb14_pretrain.pth"  # ingest never reads it; the params must name it
    subs = {
        "/data/gasp-av2": str(project),
        "/data/av2/sensor": str(SAMPLE),
        "ingest.split=train": "ingest.split=val",
        "/data/weights/dinov2_vitb14_pretrain.pth": str(weights),
        "LOG_TRAIN": log_id,
        "LOG_VAL": log_id,
        "LOG_TEST": log_id,
    }
    commands = walkthrough_commands((REPO / "README.md").read_text())
    assert commands[0].startswith("gasp preset paper") and commands[-1] == "python -m dvc repro"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cwd = REPO
    for command in commands[:-1]:  # the last one is the full DAG: beyond what a 2-sweep log allows
        for old, new in subs.items():
            command = command.replace(old, new)
        argv = shlex.split(command)
        if argv[0] == "cd":
            cwd = Path(argv[1])
            continue
        if argv[0] == "gasp":
            argv = [sys.executable, "-m", "gasp_core", *argv[1:]]
        elif argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"{command}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["splits"] == {"train": [log_id], "val": [log_id], "test": [log_id], "pool": []}
    assert params["ingest"]["format"] == "av2" and params["ingest"]["root"] == str(SAMPLE)
    assert params["dino_targets"]["teacher"]["weights"] == str(weights)
    assert params["pretrain"]["train"]["steps"] >= 10000  # the paper preset's sizes, not the demo's
    assert not (project / "data" / "raw").exists()  # no embedded world was generated for a real-data project
    manifest = json.loads((project / "data" / "store" / "manifest.json").read_text())
    assert manifest["dataset"] == "av2" and manifest["logs"] == [log_id]
    assert manifest["metrics"]["sweeps"] == 2 and manifest["metrics"]["points"] > 100_000
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "ingest"], cwd=project, env=env, capture_output=True, text=True
    )
    assert status.returncode == 0 and "changed" not in status.stdout, status.stdout  # ingest is up to date
