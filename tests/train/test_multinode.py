"""Pre-training on two torchrun "nodes" (two launches of one process each on localhost, gloo, separate checkpoint
folders, as on nodes without a shared disk): interrupted after step 2 and relaunched, rank 0 decides the resume step
for both, and the weights equal those of an uninterrupted run. A launch or a checkpoint of another world size is
refused."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gasp_core.config import ConfigError
from gasp_core.train.pretrain import _latest_checkpoint, pretrain
from tests.train.conftest import TINY_SCENE, stage_params, tiny_config

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(pretrain_inputs, params: Path, root: Path, stop_after: int | None = None) -> list[str]:
    """Both nodes' stderr; node k keeps its checkpoints in root/ckpt_<k> and writes (rank 0 only) root/out_<k>."""
    port = _free_port()
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1"]
        cmd += [f"--node_rank={node}", "--master_addr=127.0.0.1", f"--master_port={port}"]
        cmd += [str(REPO / "stages" / "pretrain.py"), "--params", str(params), "--variant", "gasp", "--seed", "0"]
        cmd += ["--store", str(pretrain_inputs["store"]), "--occupancy", str(pretrain_inputs["occupancy"])]
        cmd += ["--dino", str(pretrain_inputs["dino_sources"]), "--out", str(root / f"out_{node}")]
        cmd += ["--live", str(root / f"live_{node}"), "--metrics", str(root / f"metrics_{node}.json")]
        cmd += ["--checkpoints", str(root / f"ckpt_{node}")]
        cmd += [] if stop_after is None else ["--stop-after", str(stop_after)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs.append(
            subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        errs.append(err)
    return errs


def test_two_nodes_resume_where_rank0_says_and_match_an_uninterrupted_run(pretrain_inputs, tmp_path):
    params = stage_params(pretrain_inputs, tmp_path / "params.yaml", world_size=2, checkpoint_every=1)
    (tmp_path / "straight").mkdir()
    _two_nodes(pretrain_inputs, params, tmp_path / "straight")
    (tmp_path / "cut").mkdir()
    _two_nodes(pretrain_inputs, params, tmp_path / "cut", stop_after=2)
    assert sorted(p.name for p in (tmp_path / "cut" / "ckpt_0").iterdir()) == ["step_1.pt", "step_2.pt"]
    assert not (tmp_path / "cut" / "ckpt_1").exists()  # only rank 0 saves: node 1 has nothing to resume from
    errs = _two_nodes(pretrain_inputs, params, tmp_path / "cut")
    assert all("resuming gasp from step 2" in err for err in errs), [e[-1500:] for e in errs]  # both ranks agree
    straight = load_file(str(tmp_path / "straight" / "out_0" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "out_0" / "model.safetensors"))
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_another_world_size_is_refused(pretrain_inputs, tmp_path):
    with pytest.raises(ConfigError, match="world_size = 2, but this run was launched on 1"):
        cfg = tiny_config(steps=2)
        cfg.train.world_size = 2
        inputs = dict(
            store_dir=pretrain_inputs["store"],
            occupancy_dir=pretrain_inputs["occupancy"],
            dino_dir=pretrain_inputs["dino"],
        )
        pretrain(
            "gasp",
            **inputs,
            out_dir=tmp_path / "m",
            scene=TINY_SCENE,
            cfg=cfg,
            ckpt_dir=tmp_path / "ckpt",
            progress=False,
        )
    torch.save({"fingerprint": "f", "world_size": 2, "step": 1}, tmp_path / "step_1.pt")
    with pytest.raises(ValueError, match="written by a run on 2 processes; this one has 1"):
        _latest_checkpoint(tmp_path, "f", world_size=1)
