"""Dagster definitions built from the DVC graph itself: one asset per expanded stage of dvc.yaml, the same
dependencies, grouped by stage. Nothing here repeats the DAG.

Materialising an asset runs ``python -m dvc --wait-for-lock repro --single-item <stage>`` with this
interpreter's bin first on PATH, so DVC's cache decides what actually reruns and ``dvc status`` always agrees
with the UI. Each materialisation records what DVC did (``dvc_action``: ran, restored from the run cache, or
skipped as up to date; ``dvc_skipped`` is true unless the command ran), its duration and its metrics; asset
checks flag missing outputs and NaN metrics.

    dagster-webserver -m orchestration.definitions     # what `make dagster` starts
"""

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

REPO = Path(os.environ.get("GASP_REPO", Path(__file__).resolve().parents[1]))


@dataclass
class StageNode:
    """What the UI needs of one expanded DVC stage."""

    name: str  # DVC's address: "ingest", "pretrain@gasp-0", "finetune@map-uno"
    deps: list[str] = field(default_factory=list)  # upstream stage names
    outs: list[str] = field(default_factory=list)  # output paths relative to the repo
    metrics: list[str] = field(default_factory=list)  # metrics files relative to the repo
    cmd: str = ""
    params: list[str] = field(default_factory=list)  # the params.yaml keys dvc.yaml declares for the stage

    def reads(self, key: str) -> bool:
        """Whether a change of ``key`` ("pretrain.loss.dino_weight") changes this stage's declared params."""
        return any(key == p or key.startswith(p + ".") for p in self.params)

    @property
    def group(self) -> str:
        return self.name.split("@")[0]

    @property
    def key(self) -> dg.AssetKey:
        base, _, item = self.name.partition("@")
        return dg.AssetKey([base, item] if item else [base])


def dvc_stages(repo: Path = REPO, wait_s: float = 60.0) -> list[StageNode]:
    """The stages of dvc.yaml with their upstream stages, read under DVC's repository lock (so never from a
    half-written dvc.lock), waiting up to ``wait_s`` for a running ``dvc repro`` to release it."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    deadline = time.monotonic() + wait_s
    while True:
        try:
            with Repo(str(repo)) as r, r.lock:
                graph = r.index.graph
                nodes = []
                for stage in graph.nodes:
                    if not stage.cmd:  # .dvc files (data.dvc): sources, not stages
                        continue
                    ups = sorted(s.name for s in graph.successors(stage) if s.cmd)
                    root = Path(repo).resolve()
                    outs = [str(Path(o.fs_path).relative_to(root)) for o in stage.outs]
                    metrics = [str(Path(o.fs_path).relative_to(root)) for o in stage.outs if o.metric]
                    params = sorted(k for d in stage.deps if hasattr(d, "params") for k in (d.params or []))
                    nodes.append(StageNode(stage.name, ups, outs, metrics, stage.cmd, params))
                return sorted(nodes, key=lambda n: n.name)
        except LockError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def _read_metrics(node: StageNode, repo: Path = REPO) -> dict[str, float]:
    flat: dict[str, float] = {}

    def walk(prefix: str, obj) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            flat[prefix] = float(obj)

    for path in node.metrics:
        full = repo / path
        if full.suffix == ".json" and full.is_file():
            walk(Path(path).stem, json.loads(full.read_text()))
    return flat


ACTIONS = {"ran": "ran", "restored": "restored from DVC's run cache", "skipped": "skipped by DVC (up to date)"}


def run_stage(node: StageNode, repo: Path = REPO) -> dict:
    """``dvc repro --single-item`` of one stage; returns what DVC did with it (``action``: "ran", "restored" from the
    run cache, or "skipped" as up to date), the seconds it took and the output's tail."""
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", node.name],
        cwd=repo,
        env=_env(),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        raise dg.Failure(
            description=f"dvc repro {node.name} failed (exit {res.returncode})",
            metadata={"stderr": dg.MetadataValue.text(res.stderr[-4000:])},
        )
    if "Running stage" in res.stdout:
        action = "ran"
    elif "is cached - skipping run" in res.stdout:
        action = "restored"
    else:
        action = "skipped"
    return {"action": action, "skipped": action != "ran", "seconds": seconds, "stdout": res.stdout[-2000:]}


def _asset(node: StageNode, by_name: dict[str, StageNode], repo: Path) -> dg.AssetsDefinition:
    @dg.asset(
        key=node.key,
        group_name=node.group,
        deps=[by_name[d].key for d in node.deps if d in by_name],
        description=f"DVC stage `{node.name}`: {node.cmd}",
        metadata={"dvc_stage": node.name, "outs": ", ".join(node.outs), "params": ", ".join(node.params)},
    )
    def _materialize(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        done = run_stage(node, repo)
        context.log.info("%s: %s in %.1f s", node.name, ACTIONS[done["action"]], done["seconds"])
        meta = {
            "dvc_action": ACTIONS[done["action"]],
            "dvc_skipped": done["skipped"],
            "seconds": round(done["seconds"], 2),
            "dvc_output": dg.MetadataValue.text(done["stdout"]),
        }
        meta.update({f"metric/{k}": v for k, v in list(_read_metrics(node, repo).items())[:40]})
        return dg.MaterializeResult(metadata=meta)

    return _materialize


def _checks(node: StageNode, repo: Path) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=node.key, name="outputs_exist", description="every DVC out of the stage exists")
    def outputs_exist() -> dg.AssetCheckResult:
        missing = [p for p in node.outs if not (repo / p).exists()]
        return dg.AssetCheckResult(passed=not missing, metadata={"missing": ", ".join(missing) or "none"})

    @dg.asset_check(
        asset=node.key, name="metrics_finite", description="no NaN or infinite value in the stage's metrics"
    )
    def metrics_finite() -> dg.AssetCheckResult:
        bad = [k for k, v in _read_metrics(node, repo).items() if not math.isfinite(v)]
        return dg.AssetCheckResult(passed=not bad, metadata={"non_finite": ", ".join(bad[:20]) or "none"})

    return [outputs_exist, metrics_finite]


def build_assets(repo: Path = REPO) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """One asset (and its two checks) per stage of the DVC project at ``repo``."""
    repo = Path(repo).resolve()
    nodes = dvc_stages(repo)
    by_name = {n.name: n for n in nodes}
    return [_asset(n, by_name, repo) for n in nodes], [c for n in nodes for c in _checks(n, repo)]


def build_definitions(repo: Path = REPO) -> dg.Definitions:
    assets, checks = build_assets(repo)
    everything = dg.define_asset_job("dvc_repro_all", selection=dg.AssetSelection.all())
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[everything],
        executor=dg.multiprocess_executor.configured({"max_concurrent": 1}),
    )


defs = build_definitions()
