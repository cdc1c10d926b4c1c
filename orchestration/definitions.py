"""Dagster definitions built from the DVC graph itself: one asset per expanded stage of dvc.yaml, the same
dependencies, grouped by stage. Nothing here repeats the DAG.

Materialising an asset runs ``python -m dvc --wait-for-lock repro --single-item <stage>`` with this
interpreter's bin first on PATH (its output streamed live to the run's log), so DVC's cache decides what actually
reruns. Each materialisation records what DVC did (``dvc_action``: ran, restored from the run cache, or skipped as
up to date; ``dvc_skipped`` is true unless the command ran), its duration and its metrics; asset checks flag
missing outputs and NaN metrics.

The UI shows DVC's state, not only the runs it launched. Each asset's code version is the hash of what DVC
compares for its stage's inputs (command, the workspace's dependency and params hashes) and its data version the
hash of the outputs in ``dvc.lock``. :func:`sync_from_dvc` (the ``dvc_lock_sync`` sensor, every 30 s
under the daemon that ``make dagster`` starts, or ``python -m orchestration.definitions sync``) records every stage
that ``dvc.lock`` holds as materialised with the lock's versions. A stage that ``dvc status`` calls changed then
shows as stale (its code version differs from the recorded one), an up-to-date one as fresh, and after any
``dvc repro``, from Dagster or a shell, the next sync makes them agree again.

    dagster-webserver -m orchestration.definitions     # what `make dagster` starts (with dagster-daemon)
"""

import hashlib
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
CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
INPUT_DATA_VERSION_PREFIX = "dagster/input_data_version"
INPUT_EVENT_POINTER_PREFIX = "dagster/input_event_pointer"


class DvcRepo(dg.ConfigurableResource):
    """The DVC project the assets run in (``GASP_REPO``, else this checkout)."""

    path: str = str(REPO)


@dataclass
class StageNode:
    """What the UI needs of one expanded DVC stage."""

    name: str  # DVC's address: "ingest", "pretrain@gasp-0", "finetune@map-uno"
    deps: list[str] = field(default_factory=list)  # upstream stage names
    outs: list[str] = field(default_factory=list)  # output paths relative to the repo
    metrics: list[str] = field(default_factory=list)  # metrics files relative to the repo
    cmd: str = ""
    params: list[str] = field(default_factory=list)  # the params.yaml keys dvc.yaml declares for the stage
    workspace_version: str | None = None  # hash of cmd + the workspace's dep and params hashes
    lock_version: str | None = None  # the same from dvc.lock (None: the stage never ran)
    lock_data_version: str | None = None  # hash of the outs' hashes in dvc.lock

    @property
    def changed(self) -> bool:
        """What ``dvc status`` says of the stage's inputs: they differ from dvc.lock (or the stage never ran)."""
        return self.workspace_version != self.lock_version

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


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _hash_value(info) -> str | None:
    return None if info is None or not getattr(info, "value", None) else f"{info.name}:{info.value}"


def _versions(stage, with_workspace: bool) -> tuple[str | None, str | None, str | None]:
    """(workspace code version, lock code version, lock data version) of a DVC stage. The code version hashes what
    a stage is made from (its command, dependency and params hashes), the data version what it made (its outs'
    hashes in dvc.lock): a rerun that rewrites the outs changes the data version, never the code version."""
    deps = {d.def_path: _hash_value(d.hash_info) for d in stage.deps}
    outs = {o.def_path: _hash_value(o.hash_info) for o in stage.outs}
    lock = None if None in deps.values() or None in outs.values() else _digest([stage.cmd, sorted(deps.items())])
    data = None if lock is None else _digest(sorted(outs.items()))
    if not with_workspace:
        return None, lock, data
    current = {}
    for d in stage.deps:
        try:
            current[d.def_path] = _hash_value(d.get_hash())
        except Exception:  # noqa: BLE001 - a missing or unreadable dependency is simply "changed"
            current[d.def_path] = None
    work = None if None in current.values() else _digest([stage.cmd, sorted(current.items())])
    return work, lock, data


def dvc_stages(
    repo: Path = REPO, wait_s: float = 60.0, versions: bool = True, only: set[str] | None = None
) -> list[StageNode]:
    """The stages of dvc.yaml with their upstream stages, read under DVC's repository lock (so never from a
    half-written dvc.lock), waiting up to ``wait_s`` for a running ``dvc repro`` to release it. With
    ``versions``, each stage's workspace and dvc.lock versions (hashing the workspace, as ``dvc status`` does);
    ``only`` limits the result to these stage names."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    deadline = time.monotonic() + wait_s
    while True:
        try:
            with Repo(str(repo)) as r, r.lock:
                graph = r.index.graph
                nodes = []
                for stage in graph.nodes:
                    if not stage.cmd or (only is not None and stage.name not in only):  # .dvc files: sources
                        continue
                    ups = sorted(s.name for s in graph.successors(stage) if s.cmd)
                    root = Path(repo).resolve()
                    outs = [str(Path(o.fs_path).relative_to(root)) for o in stage.outs]
                    metrics = [str(Path(o.fs_path).relative_to(root)) for o in stage.outs if o.metric]
                    params = sorted(k for d in stage.deps if hasattr(d, "params") for k in (d.params or []))
                    work, lock, data = _versions(stage, versions)
                    nodes.append(StageNode(stage.name, ups, outs, metrics, stage.cmd, params, work, lock, data))
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


def run_stage(node: StageNode, repo: Path = REPO, log=None) -> dict:
    """``dvc repro --single-item`` of one stage, its output passed line by line to ``log`` (a run's logger) as it
    comes; returns what DVC did with it (``action``: "ran", "restored" from the run cache, or "skipped" as up to
    date), the seconds it took and the output's tail. Whether DVC had anything to do comes from its status API
    before the run (an up-to-date stage is skipped); whether it ran the command or restored the outputs from its
    run cache, from the stage's "Running stage" line, the one thing only the console says."""
    start = time.perf_counter()
    pending = _dvc_status(repo, node.name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", node.name],
        cwd=repo,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    assert proc.stdout is not None  # stdout=PIPE
    for line in proc.stdout:
        for part in line.replace("\r", "\n").split("\n"):
            if part.strip():
                lines.append(part)
                if log is not None:
                    log.info(part)
    code = proc.wait()
    seconds = time.perf_counter() - start
    tail = "\n".join(lines)[-4000:]
    if code != 0:
        raise dg.Failure(
            description=f"dvc repro {node.name} failed (exit {code})",
            metadata={"output": dg.MetadataValue.text(tail)},
        )
    if not pending:
        action = "skipped"
    elif any(f"Running stage '{node.name}'" in x for x in lines):
        action = "ran"
    else:
        action = "restored"
    return {"action": action, "skipped": action != "ran", "seconds": seconds, "stdout": tail[-2000:]}


def _dvc_status(repo: Path, name: str, wait_s: float = 600.0) -> dict:
    """``dvc status`` of one stage through DVC's Python API (empty when it is up to date), waiting for the
    repository lock like ``--wait-for-lock``."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    deadline = time.monotonic() + wait_s
    while True:
        try:
            with Repo(str(repo)) as r:
                return r.status(targets=[f"{Path(repo).resolve() / 'dvc.yaml'}:{name}"])
        except LockError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _stage_node(repo: Path, name: str) -> StageNode:
    return dvc_stages(repo, only={name})[0]


def sync_from_dvc(instance: dg.DagsterInstance, repo: Path = REPO, nodes: list[StageNode] | None = None) -> list[str]:
    """Record, as a runless materialisation with dvc.lock's versions, every stage whose dvc.lock entry the
    instance has not seen yet (a ``dvc repro`` from a shell, or the first sync after ``make demo``); returns the
    stage names it recorded. Stages without a lock entry stay never-materialised."""
    nodes = dvc_stages(repo) if nodes is None else nodes
    by_name = {n.name: n for n in nodes}
    recorded = []
    for node in _topological(nodes):
        if node.lock_version is None:
            continue
        event = instance.get_latest_materialization_event(node.key)
        tags = (event.asset_materialization.tags or {}) if event is not None and event.asset_materialization else {}
        if tags.get(CODE_VERSION_TAG) == node.lock_version and tags.get(DATA_VERSION_TAG) == node.lock_data_version:
            continue
        # provenance as a run would record it: the upstream outputs (their data versions) this lock entry was made from
        provenance = {CODE_VERSION_TAG: node.lock_version, DATA_VERSION_TAG: node.lock_data_version or "missing"}
        for up in (by_name[d] for d in node.deps if d in by_name):
            records = instance.fetch_materializations(up.key, limit=1).records
            provenance[f"{INPUT_DATA_VERSION_PREFIX}/{up.key.to_user_string()}"] = up.lock_data_version or "missing"
            provenance[f"{INPUT_EVENT_POINTER_PREFIX}/{up.key.to_user_string()}"] = (
                str(records[0].storage_id) if records else "NULL"
            )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=node.key,
                description=f"recorded from dvc.lock (stage `{node.name}`)",
                metadata={"dvc_stage": node.name, "source": "dvc.lock", "dvc_changed": node.changed},
                tags=provenance,
            )
        )
        recorded.append(node.name)
    return recorded


def _topological(nodes: list[StageNode]) -> list[StageNode]:
    by_name, done, order = {n.name: n for n in nodes}, set(), []

    def visit(n: StageNode) -> None:
        if n.name in done:
            return
        done.add(n.name)
        for d in n.deps:
            if d in by_name:
                visit(by_name[d])
        order.append(n)

    for n in nodes:
        visit(n)
    return order


def _asset(node: StageNode, by_name: dict[str, StageNode], repo: Path) -> dg.AssetsDefinition:
    @dg.asset(
        key=node.key,
        group_name=node.group,
        deps=[by_name[d].key for d in node.deps if d in by_name],
        description=f"DVC stage `{node.name}`: {node.cmd}",
        metadata={"dvc_stage": node.name, "outs": ", ".join(node.outs), "params": ", ".join(node.params)},
        code_version=node.workspace_version,
    )
    def _materialize(context: dg.AssetExecutionContext, dvc: DvcRepo) -> dg.MaterializeResult:
        where = Path(dvc.path)
        done = run_stage(node, where, log=context.log)
        context.log.info("%s: %s in %.1f s", node.name, ACTIONS[done["action"]], done["seconds"])
        meta = {
            "dvc_action": ACTIONS[done["action"]],
            "dvc_skipped": done["skipped"],
            "seconds": round(done["seconds"], 2),
            "dvc_output": dg.MetadataValue.text(done["stdout"]),
        }
        if node.name == "report" and (where / "reports" / "README.md").is_file():
            meta["main_table"] = dg.MetadataValue.md(_main_table(where / "reports" / "README.md"))
        meta.update({f"metric/{k}": v for k, v in list(_read_metrics(node, where).items())[:40]})
        after = _stage_node(where, node.name)
        return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(after.lock_data_version or "missing"))

    return _materialize


def _main_table(readme: Path) -> str:
    """The report's main-metric section (its table with intervals), as markdown."""
    text = readme.read_text()
    start = text.find("## Main metric")
    if start < 0:
        return text[:4000]
    end = text.find("\n## ", start + 3)
    return text[start : end if end > 0 else None][:8000]


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
    repo = Path(repo).resolve()
    assets, checks = build_assets(repo)
    everything = dg.define_asset_job("dvc_repro_all", selection=dg.AssetSelection.all())

    @dg.sensor(name="dvc_lock_sync", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
    def dvc_lock_sync(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        """Records what dvc.lock holds as materialisations (a `dvc repro` from a shell shows up here)."""
        recorded = sync_from_dvc(context.instance, repo)
        return dg.SkipReason(f"recorded from dvc.lock: {', '.join(recorded) or 'nothing new'}")

    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[everything],
        sensors=[dvc_lock_sync],
        resources={"dvc": DvcRepo(path=str(repo))},
        executor=dg.multiprocess_executor.configured({"max_concurrent": 1}),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded when Dagster loads the code location, not at import: importing this module never waits on DVC."""
    return build_definitions()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Dagster over the DVC project: record dvc.lock's state now.")
    parser.add_argument("command", choices=["sync"])
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args(argv)
    recorded = sync_from_dvc(dg.DagsterInstance.get(), args.repo)
    print(f"recorded from dvc.lock: {', '.join(recorded) or 'nothing new'}")


if __name__ == "__main__":
    main()
