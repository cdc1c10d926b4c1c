"""The Dagster definitions mirror dvc.yaml's graph: same stages, same edges, grouped by stage."""

import subprocess
import sys

from orchestration.definitions import REPO, build_definitions, dvc_stages


def _dvc_dag_edges() -> set[tuple[str, str]]:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "dag", "--dot"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    edges = set()
    for line in out.splitlines():
        if "->" in line:
            a, b = (part.strip().strip(";").strip('"') for part in line.split("->"))
            edges.add((a, b))
    return edges


def test_definitions_load_with_one_asset_per_stage():
    defs = build_definitions()
    stages = dvc_stages()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {s.key.to_user_string() for s in stages}
    assert {"ingest", "pretrain/gasp-0", "finetune/map-uno", "evaluate/trajectory", "report"} <= keys
    groups = {graph.get(s.key).group_name for s in stages if s.name.startswith("finetune@")}
    assert groups == {"finetune"}


def test_asset_graph_equals_dvc_dag():
    stages = {s.name: s for s in dvc_stages()}
    ours = {(up, s.name) for s in stages.values() for up in s.deps}
    theirs = {(a, b) for a, b in _dvc_dag_edges() if a in stages and b in stages}
    assert len(ours) > 20 and ours == theirs
    graph = build_definitions().resolve_asset_graph()
    for s in stages.values():
        assert {k for k in graph.get(s.key).parent_keys} == {stages[d].key for d in s.deps}
