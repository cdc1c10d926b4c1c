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
from safetensors.torch import load_file

from gasp_core.data.store import LogStore
from gasp_core.models import GaspModel, LossConfig, load_pretrained, variant
from gasp_core.models.losses import pretrain_losses
from gasp_core.train.dataset import PretrainDataset, QueryCounts
from gasp_core.train.pretrain import pretrain
from tests.train.conftest import TINY_MODEL, TINY_SCENE, stage_params, tiny_config

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
    inputs = dict(
        store_dir=pretrain_inputs["store"], occupancy_dir=pretrain_inputs["occupancy"], dino_dir=pretrain_inputs["dino"]
    )
    full = pretrain(
        "gasp",
        **inputs,
        out_dir=tmp_path / "full",
        scene=TINY_SCENE,
        cfg=cfg,
        ckpt_dir=tmp_path / "ckpt_full",
        progress=False,
    )
    # the interrupted run stops after its step-3 checkpoint, as a crash would, then resumes from it
    pretrain(
        "gasp",
        **inputs,
        out_dir=tmp_path / "split",
        scene=TINY_SCENE,
        cfg=cfg,
        ckpt_dir=tmp_path / "ckpt_split",
        stop_after=3,
        progress=False,
    )
    assert not (tmp_path / "split").exists()  # an unfinished run leaves no model behind
    assert sorted(p.name for p in (tmp_path / "ckpt_split").iterdir()) == ["step_3.pt"]
    resumed = pretrain(
        "gasp",
        **inputs,
        out_dir=tmp_path / "split",
        scene=TINY_SCENE,
        cfg=cfg,
        ckpt_dir=tmp_path / "ckpt_split",
        progress=False,
    )
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert resumed["final_loss_total"] == pytest.approx(full["final_loss_total"], rel=1e-4)
    # a checkpoint from other settings is never resumed
    other = tiny_config(steps=6, lr=1e-3)
    pretrain(
        "gasp",
        **inputs,
        out_dir=tmp_path / "other",
        scene=TINY_SCENE,
        cfg=other,
        ckpt_dir=tmp_path / "ckpt_split",
        stop_after=1,
        progress=False,
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
    # pre-training reads the training split's logs only
    stage_params(pretrain_inputs, tmp_path / "params.yaml", world_size=2)
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
        str(pretrain_inputs["dino_sources"]),
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
    inputs = dict(
        store_dir=pretrain_inputs["store"], occupancy_dir=pretrain_inputs["occupancy"], dino_dir=pretrain_inputs["dino"]
    )
    pretrain(
        "gasp",
        **inputs,
        out_dir=tmp_path / "gasp",
        scene=TINY_SCENE,
        cfg=tiny_config(steps=2),
        ckpt_dir=tmp_path / "ckpt",
        progress=False,
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "gasp_core.apps.query",
            "--model",
            str(tmp_path / "gasp"),
            "--store",
            str(pretrain_inputs["store"]),
            "--occupancy",
            str(pretrain_inputs["occupancy"]),
            "--out",
            str(tmp_path / "q.png"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "occupancy: 1800 stored queries" in res.stdout and "ego path : 250 stored queries" in res.stdout
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"


def test_model_cards_say_what_was_trained_on_what_and_stay_deterministic(pretrain_inputs, tmp_path):
    """Every pre-trained folder carries a README.md card: variant, seed, the store's logs, the teacher (loudly random
    here), steps and how to load it; the wall time goes to timing.json, which DVC ignores, so the card itself is
    identical across reruns (DVC then skips what depends on a rebuilt-identical model)."""
    inputs = dict(
        store_dir=pretrain_inputs["store"], occupancy_dir=pretrain_inputs["occupancy"], dino_dir=pretrain_inputs["dino"]
    )
    logs = LogStore(pretrain_inputs["store"]).log_ids
    pretrain(
        "gasp",
        **inputs,
        out_dir=tmp_path / "gasp",
        scene=TINY_SCENE,
        cfg=tiny_config(steps=2),
        ckpt_dir=tmp_path / "ckpt",
        progress=False,
    )
    card = (tmp_path / "gasp" / "README.md").read_text()
    assert "`gasp`: occupancy, ego, dino" in card and "| seed | 0 |" in card
    assert all(f"`{x}`" in card for x in logs) and f"{len(logs)} logs" in card
    assert "RANDOM weights" in card  # the test teacher is the seeded random ViT
    assert "2 steps x batch 2" in card and f'load_pretrained("{tmp_path / "gasp"}")' in card
    assert "| loss_total |" in card
    assert json.loads((tmp_path / "gasp" / "timing.json").read_text())["wall_seconds"] > 0
    for run in ("a", "b"):
        pretrain(
            "scratch",
            **inputs,
            out_dir=tmp_path / run,
            scene=TINY_SCENE,
            cfg=tiny_config(steps=2),
            ckpt_dir=tmp_path / "c",
            progress=False,
        )
    scratch = (tmp_path / "a" / "README.md").read_text()
    assert scratch == (tmp_path / "b" / "README.md").read_text().replace(str(tmp_path / "b"), str(tmp_path / "a"))
    assert "no objective" in scratch and "not used" in scratch and "RANDOM" not in scratch


def test_card_tells_the_embedded_world_from_real_data_and_trained_teachers_from_random(tmp_path):
    from gasp_core.card import data_description, teacher_description

    for name, embedded in (("sim", True), ("real", False)):
        root = tmp_path / name / "raw"
        root.mkdir(parents=True)
        if embedded:
            (root / "gasp_sim_manifest.json").write_text("{}")
        store = tmp_path / name / "store"
        store.mkdir()
        (store / "manifest.json").write_text(
            json.dumps({"dataset": "av2", "config": {"root": str(root)}, "logs": ["x"]})
        )
        text = data_description(store, None)
        assert ("embedded procedural world" in text) == embedded and ("real data" in text) != embedded
        assert text.endswith("1 logs: `x`")
    dino = tmp_path / "dino"
    dino.mkdir()
    (dino / "teacher.json").write_text(json.dumps({"model": "m", "weights": "in_domain:mae", "random_weights": False}))
    assert teacher_description(dino)[1] is None and "in_domain:mae" in teacher_description(dino)[0]
    (dino / "teacher.json").write_text(json.dumps({"model": "m", "weights": "random", "random_weights": True}))
    assert "RANDOM" in teacher_description(dino)[1]
    (dino / "teacher.json").write_text(json.dumps({"model": "oracle", "weights": "oracle:surface-class"}))
    assert "ORACLE" in teacher_description(dino)[1] and "real data cannot have" in teacher_description(dino)[1]


def test_gasp_view_records_the_log_and_the_models_field_and_rerun_reads_it_back(pretrain_inputs, tmp_path):
    """`gasp view` on the tiny store with a tiny GASP model: rerun's own dataframe API reads back every entity, one
    lidar row per recorded sweep at its time with all its points, boxes, cameras, the map, and the model's
    occupancy / ego-path fields at t0 + each of 4 times and its DINO colours on the t0 sweep."""
    import rerun as rr

    from gasp_core.apps.view import main as view_main

    inputs = dict(
        store_dir=pretrain_inputs["store"], occupancy_dir=pretrain_inputs["occupancy"], dino_dir=pretrain_inputs["dino"]
    )
    pretrain(
        "gasp",
        **inputs,
        out_dir=tmp_path / "gasp",
        scene=TINY_SCENE,
        cfg=tiny_config(steps=2),
        ckpt_dir=tmp_path / "ckpt",
        progress=False,
    )
    store = LogStore(pretrain_inputs["store"])
    log = store.log(store.log_ids[0])
    out = tmp_path / "scene.rrd"
    view_main(
        ["--store", str(pretrain_inputs["store"]), "--model", str(tmp_path / "gasp"), "--max-sweeps", "4"]
        + ["--out", str(out)]
    )
    recording = rr.dataframe.load_recording(str(out))
    paths = {c.entity_path for c in recording.schema().component_columns()}
    cameras = set(log.camera_frames["camera"].to_list())
    layers = set(log.map["layer"].to_list())
    assert {"/world/ego", "/world/ego/lidar", "/world/boxes", "/world/ego_path"} <= paths
    assert {f"/camera/{c}" for c in cameras} <= paths and {f"/world/map/{x}" for x in layers} <= paths
    assert {"/world/prediction/occupancy", "/world/prediction/ego_path", "/world/prediction/dino"} <= paths

    def table(entity: str):
        return recording.view(index="time", contents=entity).select().read_all()

    stamps = log.sweep_timestamps_ns[:4]
    start = log.pose_range_ns()[0]
    lidar = table("/world/ego/lidar")
    assert lidar["time"].to_numpy().astype(np.int64).tolist() == (stamps - start).tolist()
    sizes = [len(p) for p in lidar["/world/ego/lidar:Position3D"].to_pylist()]
    assert sizes == [len(log.sweep(int(ts)).points_ego) for ts in stamps]
    n_box_times = log.boxes.filter(log.boxes["timestamp_ns"] <= int(stamps[-1]))["timestamp_ns"].n_unique()
    boxes = table("/world/boxes")
    assert boxes.num_rows == n_box_times > 0
    # each box keeps its rotation (xyzw, as the store's qx qy qz qw) and its category label
    first = log.boxes.filter(log.boxes["timestamp_ns"] == log.boxes["timestamp_ns"].min())
    quats = np.array(boxes["/world/boxes:PoseRotationQuat"].to_pylist()[0], np.float64)
    np.testing.assert_allclose(quats, first.select("qx", "qy", "qz", "qw").to_numpy(), atol=1e-6)
    assert boxes["/world/boxes:Text"].to_pylist()[0] == first["category"].to_list()
    occ = table("/world/prediction/occupancy")["time"].to_numpy().astype(np.int64)
    t0 = int(stamps[TINY_SCENE.past_sweeps - 1]) - start
    expected = t0 + np.round(np.linspace(0.0, TINY_SCENE.horizon_s, 4) * 1e9).astype(np.int64)
    assert np.abs(occ - expected).max() <= 1
    dino = table("/world/prediction/dino")["/world/prediction/dino:Position3D"].to_pylist()
    assert len(dino) == 1 and len(dino[0]) == len(log.sweep(int(stamps[TINY_SCENE.past_sweeps - 1])).points_ego)


def test_card_of_a_variant_ignores_the_weights_of_objectives_it_lacks(pretrain_inputs, tmp_path):
    """Sweeping dino_weight must leave UnO's and scratch's folders identical, or DVC reruns their heads for nothing."""
    from dataclasses import replace

    from gasp_core import card

    base = tiny_config(steps=2)
    swept = replace(base, loss=replace(base.loss, dino_weight=base.loss.dino_weight * 2))
    for name in ("uno", "scratch", "gasp"):
        texts = []
        for cfg in (base, swept):
            card.pretrain_card(tmp_path, name, variant(name), cfg, 0, pretrain_inputs["store"], None, None, {}, 2, None)
            texts.append((tmp_path / "README.md").read_text())
        assert (texts[0] == texts[1]) == (name != "gasp"), name
