"""Pre-training: one batch over-fits, a resumed run matches an uninterrupted one, DDP on CPU trains, the stage CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from gasp_core.data.store import LogStore
from gasp_core.models import GaspModel, LossConfig, load_pretrained, variant
from gasp_core.models.losses import pretrain_losses
from gasp_core.train.dataset import PretrainDataset, QueryCounts
from gasp_core.train.pretrain import pretrain
from tests.train.conftest import TINY_MODEL, TINY_SCENE, tiny_config

REPO = Path(__file__).resolve().parents[2]


def test_one_batch_overfits(pretrain_inputs):
    torch.manual_seed(0)
    data = PretrainDataset(
        pretrain_inputs["store"],
        pretrain_inputs["occupancy"],
        pretrain_inputs["dino"],
        TINY_SCENE,
        TINY_MODEL.voxelizer,
        QueryCounts(occupancy=128, ego=64, dino=32),
        variant("gasp_no_rotation"),
    )
    batch = {k: v[None] for k, v in data[(0, 7)].items()}
    model = GaspModel(TINY_SCENE, TINY_MODEL, variant("gasp"), data.dino_dim)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(400):
        out = model(batch["voxels"], batch["occupancy_q"], batch["ego_q"], batch["dino_q"])
        losses = pretrain_losses(out, batch, LossConfig())
        first = first or {k: float(v.detach()) for k, v in losses.items()}
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
    last = {k: float(v.detach()) for k, v in losses.items()}
    for head in ("occupancy", "ego", "dino"):
        assert last[head] < first[head] / 10, (head, first[head], last[head])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_resumed_run_matches_uninterrupted(pretrain_inputs, tmp_path):
    cfg = tiny_config(steps=6)
    args = (pretrain_inputs["store"], pretrain_inputs["occupancy"], pretrain_inputs["dino"])
    full = pretrain("gasp", *args, tmp_path / "full", TINY_SCENE, cfg, tmp_path / "ckpt_full", progress=False)
    # the interrupted run stops after its step-3 checkpoint, as a crash would, then resumes from it
    pretrain("gasp", *args, tmp_path / "split", TINY_SCENE, cfg, tmp_path / "ckpt_split", stop_after=3, progress=False)
    assert not (tmp_path / "split").exists()  # an unfinished run leaves no model behind
    assert sorted(p.name for p in (tmp_path / "ckpt_split").iterdir()) == ["step_3.pt"]
    resumed = pretrain("gasp", *args, tmp_path / "split", TINY_SCENE, cfg, tmp_path / "ckpt_split", progress=False)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert resumed["final_loss_total"] == pytest.approx(full["final_loss_total"], rel=1e-4)
    # a checkpoint from other settings is never resumed
    other = tiny_config(steps=6, lr=1e-3)
    pretrain(
        "gasp", *args, tmp_path / "other", TINY_SCENE, other, tmp_path / "ckpt_split", stop_after=1, progress=False
    )
    assert (tmp_path / "ckpt_split" / "step_1.pt").is_file()


def test_checkpoints_refuse_pickled_objects(tmp_path):
    from gasp_core.train.pretrain import _latest_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"fingerprint": "x", "model": Evil()}, tmp_path / "step_1.pt")
    with pytest.raises(Exception, match="Weights only load failed|Unsupported"):
        _latest_checkpoint(tmp_path, "x")


def test_pretrain_stage_cli_with_two_ddp_processes(pretrain_inputs, tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    tc = tiny_config(steps=4).train
    params["scene"] = {"extent_m": list(TINY_SCENE.extent_m), "past_sweeps": 2, "horizon_s": 0.5}
    params["pretrain"]["model"] = json.loads(json.dumps(TINY_MODEL, default=lambda o: o.__dict__))
    params["pretrain"]["train"].update(
        steps=4,
        batch_size=1,
        num_workers=0,
        device="cpu",
        checkpoint_every=2,
        log_every=1,
        queries={"occupancy": 128, "ego": 32, "dino": 32},
        warmup_steps=tc.warmup_steps,
    )
    # pre-training reads the training split's logs only
    params["splits"] = {
        "train": LogStore(pretrain_inputs["store"]).log_ids,
        "val": ["unused-val"],
        "test": ["unused-test"],
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(REPO / "stages" / "pretrain.py"),
        "--params",
        str(tmp_path / "params.yaml"),
        "--variant",
        "gasp",
        "--seed",
        "0",
        "--store",
        str(pretrain_inputs["store"]),
        "--occupancy",
        str(pretrain_inputs["occupancy"]),
        "--dino",
        str(pretrain_inputs["dino"]),
        "--out",
        str(tmp_path / "model"),
        "--live",
        str(tmp_path / "live"),
        "--metrics",
        str(tmp_path / "metrics.json"),
        "--checkpoints",
        str(tmp_path / "ckpt"),
    ]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["samples_seen"] == 4 * 1 * 2  # 4 steps x batch 1 x 2 processes
    assert "cpu x2" in res.stderr
    model = load_pretrained(tmp_path / "model")
    assert model.variant == variant("gasp")
    live = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert live["step"] == 4 and np.isfinite(live["loss"]["total"])
    assert (tmp_path / "live" / "plots" / "metrics" / "loss" / "occupancy.tsv").is_file()


def test_average_precision_by_hand():
    from gasp_core.tasks.metrics import average_precision

    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.1, 0.9]), np.array([1, 0])) == pytest.approx(0.5)


def test_query_cli_scores_and_draws(pretrain_inputs, tmp_path):
    args = (pretrain_inputs["store"], pretrain_inputs["occupancy"], pretrain_inputs["dino"])
    pretrain("gasp", *args, tmp_path / "gasp", TINY_SCENE, tiny_config(steps=2), tmp_path / "ckpt", progress=False)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "gasp_core.query",
            "--model",
            str(tmp_path / "gasp"),
            "--store",
            str(args[0]),
            "--occupancy",
            str(args[1]),
            "--out",
            str(tmp_path / "q.png"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "occupancy: 1800 stored queries" in res.stdout and "ego path : 250 stored queries" in res.stdout
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"
