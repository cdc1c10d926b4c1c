"""Dagster's view of DVC state on a tiny DVC repository made here (no smoke DAG): a stage's code version is what
`dvc status` compares (its deps, from the workspace or from dvc.lock), its data version what it made (its outs'
hashes in dvc.lock), and the sync records exactly the lock entries the instance has not seen."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestration.definitions import dvc_stages, sync_from_dvc

DVC_YAML = {
    "stages": {
        "a": {
            "cmd": "python -c \"open('mid.txt','w').write(open('in.txt').read().upper())\"",
            "deps": ["in.txt"],
            "outs": ["mid.txt"],
        },
        "b": {
            "cmd": "python -c \"open('out.txt','w').write(open('mid.txt').read()[::-1])\"",
            "deps": ["mid.txt"],
            "outs": ["out.txt"],
        },
    }
}


def _run(repo: Path, *cmd: str) -> str:
    res = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=None)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _dvc(repo: Path, *args: str) -> str:
    return _run(repo, sys.executable, "-m", "dvc", *args)


@pytest.fixture
def repo(tmp_path) -> Path:
    _run(tmp_path, "git", "init", "-q")
    _dvc(tmp_path, "init", "-q")
    _dvc(tmp_path, "config", "core.analytics", "false")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    (tmp_path / "in.txt").write_text("abc")
    _dvc(tmp_path, "repro")
    return tmp_path


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_versions_follow_dvc_status_and_the_lock(repo):
    nodes = {n.name: n for n in dvc_stages(repo, wait_s=5)}
    assert json.loads(_dvc(repo, "status", "--json")) == {}
    assert not nodes["a"].changed and not nodes["b"].changed
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for name, out in (("a", "mid.txt"), ("b", "out.txt")):
        assert lock[name]["outs"][0]["md5"] == _md5(repo / out)
    # the data version is made of the outs' hashes: another out, another data version, same deps
    data_a = nodes["a"].lock_data_version
    assert data_a and data_a != nodes["b"].lock_data_version
    (repo / "in.txt").write_text("abd")  # an input changes: `dvc status` and the workspace version see it
    changed = {n.name: n for n in dvc_stages(repo, wait_s=5)}
    assert set(json.loads(_dvc(repo, "status", "--json"))) == {"a"}
    assert changed["a"].changed and changed["a"].workspace_version != changed["a"].lock_version
    assert changed["a"].lock_version == nodes["a"].lock_version and not changed["b"].changed
    _dvc(repo, "repro")
    rerun = {n.name: n for n in dvc_stages(repo, wait_s=5)}
    assert rerun["a"].lock_version != nodes["a"].lock_version  # another input: another code version
    assert rerun["a"].lock_data_version != data_a  # another output: another data version
    assert rerun["b"].lock_version != nodes["b"].lock_version  # b's dep (a's out) changed
    (repo / "in.txt").write_text("abD")  # another input, the same upper-cased output
    _dvc(repo, "repro")
    same_out = {n.name: n for n in dvc_stages(repo, wait_s=5)}
    assert same_out["a"].lock_version != rerun["a"].lock_version  # what a is made from changed...
    assert same_out["a"].lock_data_version == rerun["a"].lock_data_version  # ...what it made did not
    assert same_out["b"].lock_version == rerun["b"].lock_version


def test_sync_records_exactly_the_unseen_lock_entries(repo):
    instance = dg.DagsterInstance.ephemeral()
    assert sorted(sync_from_dvc(instance, repo)) == ["a", "b"]
    assert sync_from_dvc(instance, repo) == []  # nothing new in dvc.lock
    (repo / "in.txt").write_text("xyz")
    _dvc(repo, "repro")
    assert sorted(sync_from_dvc(instance, repo)) == ["a", "b"]
    (repo / "in.txt").write_text("xyZ")  # same upper-case output: b's lock entry does not change
    _dvc(repo, "repro")
    assert sync_from_dvc(instance, repo) == ["a"]
