"""The whole DAG (ingest -> ... -> report) on the ``smoke`` preset, through ``dvc repro`` in a fresh project."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gasp_core.presets import deep_merge, load_preset, materialize
from gasp_core.tasks.config import TASKS


def _dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)


def _finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return not (isinstance(obj, float) and math.isinf(obj))


def test_preset_overrides_only_existing_keys():
    params, world = load_preset("smoke")
    assert params["finetune"]["steps"] == 3 and world["logs"] == 3
    with pytest.raises(KeyError, match="finetune.stpes"):
        deep_merge(params, {"finetune": {"stpes": 1}})


@pytest.mark.slow
def test_smoke_dag_end_to_end(tmp_path):
    project = materialize("smoke", tmp_path / "smoke")
    run = _dvc(project, "repro")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    # every stage ran, and a second look finds nothing stale
    status = _dvc(project, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout
    # one evaluation per task, with every init x budget x seed scored
    params = json.loads(json.dumps(__import__("yaml").safe_load((project / "params.yaml").read_text())))
    ft = params["finetune"]
    for task in TASKS:
        metrics = json.loads((project / "metrics" / "evaluate" / f"{task}.json").read_text())
        assert set(metrics["results"]) == set(ft["inits"])
        for init in ft["inits"]:
            assert set(metrics["results"][init]) == set(ft["budgets"])
            for budget in ft["budgets"]:
                assert set(metrics["results"][init][budget]["seeds"]) == {str(s) for s in ft["seeds"]}
        assert _finite(metrics)
    report = (project / "reports" / "README.md").read_text()
    for title in ("BEV semantic forecasting", "4D occupancy", "4D semantic occupancy", "Map segmentation", "Ego trajectory"):
        assert title in report
    for fig in ("radar.png", "forecast.png", "map.png", "trajectory.png", "occupancy.png", "semantic_occupancy.png",
                "dino_bev.png"):
        assert (project / "reports" / fig).stat().st_size > 1000, fig
    shown = _dvc(project, "metrics", "show", "--json")
    assert shown.returncode == 0 and "evaluate" in shown.stdout
    plots = _dvc(project, "plots", "show", "--json")
    assert plots.returncode == 0, plots.stderr
    # the same DAG from Dagster: DVC skips an up-to-date asset, reruns a stale one, and dvc status stays clean
    import dagster as dg

    from orchestration.definitions import build_assets

    assets, _ = build_assets(project)

    def materialize_asset(key: str) -> bool:
        res = dg.materialize(assets, selection=dg.AssetSelection.keys(dg.AssetKey([key])), instance=dg.DagsterInstance.ephemeral())
        assert res.success
        (event,) = res.get_asset_materialization_events()
        return event.materialization.metadata["dvc_skipped"].value

    assert materialize_asset("report") is True
    (project / "reports" / "radar.png").unlink()
    assert materialize_asset("report") is False
    assert (project / "reports" / "radar.png").is_file()
    status = _dvc(project, "status", "--json")
    assert json.loads(status.stdout) == {}, status.stdout
