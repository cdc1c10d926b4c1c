"""Fine-tuning and evaluation on hand-made task labels: losses fall, metrics move, depth rendering is exact."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from gasp_core.models.config import DecoderConfig
from gasp_core.tasks.build import TaskLabels
from gasp_core.tasks.config import FinetuneConfig
from gasp_core.tasks.evaluation import evaluate_runs, split_stats
from gasp_core.tasks.finetune import (
    Features,
    budget_logs,
    finetune,
    items_of,
    load_encoder,
    make_task,
    train_run,
)
from gasp_core.tasks.heads import constant_velocity
from gasp_core.tasks.occupancy.task import OccupancyTask
from tests.tasks.synthetic import LOGS, SCENE, make_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("ft"))


def _cfg(**kw) -> FinetuneConfig:
    base = dict(
        tasks=["map"],
        inits=["scratch"],
        budgets={"low": 0.5, "full": 1.0},
        seeds=[0],
        steps=60,
        batch_size=2,
        lr=1e-2,
        warmup_steps=5,
        device="cpu",
    )
    return FinetuneConfig(**{**base, **kw})


@pytest.mark.parametrize("encoder", ["frozen", "full"])
def test_map_head_learns_and_evaluates(project, encoder):
    root, splits = project
    cfg = _cfg(encoder=encoder, steps=120)
    out = root / f"runs_{encoder}" / "scratch"
    res = finetune(
        "map",
        "scratch",
        labels_dir=root / "labels",
        occupancy_dir=root,
        init_dir=root / "models" / "scratch",
        out_dir=out,
        scene=SCENE,
        splits=splits,
        cfg=cfg,
        progress=False,
    )
    for run in res["runs"].values():
        assert run["loss_final"] < 0.7 * run["loss_first"]
    saved = {p.name for p in (out / "full" / "pretrain_0" / "seed_0").iterdir()}
    assert ("encoder.safetensors" in saved) == (encoder == "full")
    assert {"README.md", "timing.json", "head.safetensors", "run.json"} <= saved
    card = (out / "low" / "pretrain_0" / "seed_0" / "README.md").read_text()
    low_logs = budget_logs(splits.train, 0.5)
    assert f"budget `low` (0.5 of {len(splits.train)} training logs): {len(low_logs)} logs" in card
    assert all(f"`{x}`" in card for x in low_logs) and f"{encoder};" in card and "load_run(task, " in card
    metrics, qual, stats = evaluate_runs(
        "map",
        inits={"scratch": root / "models" / "scratch"},
        runs_root=out.parent,
        labels_dir=root / "labels",
        occupancy_dir=root,
        scene=SCENE,
        splits=splits,
        cfg=cfg,
        progress=False,
    )
    full = metrics["results"]["scratch"]["full"]["mean"]
    assert metrics["samples"] == LOGS["test"]
    assert full["IoU/drivable_area"] > 0.5  # the blobs are learnt; an untrained head scores ~0
    assert qual["scratch"]["prob"].shape == (4, 32, 32)
    runs = split_stats(stats)["scratch"]["full"]
    assert list(runs) == ["pretrain_0/seed_0"] and runs["pretrain_0/seed_0"]["iou_counts"].shape == (LOGS["test"], 3, 2)


def test_budgets_are_nested_and_fixed():
    logs = [f"log{i}" for i in range(8)]
    low, full = budget_logs(logs, 0.25), budget_logs(logs, 1.0)
    assert len(low) == 2 and set(low) <= set(full) and sorted(full) == logs
    assert budget_logs(logs, 0.25) == low and budget_logs(logs, 0.01) == low[:1]


class _Wall(nn.Module):
    """Occupied for x >= 7 m (a logit field of the queries only)."""

    def forward(self, bev, q):
        return (q[..., :1] >= 7.0).float() * 20.0 - 10.0


def test_depth_rendering_finds_the_wall(project):
    root, splits = project
    labels = TaskLabels(root / "labels")
    arrays = labels.log("test")
    dirs = np.array([[1.0, 0.0, 0.0], [np.cos(0.3), np.sin(0.3), 0.0]], np.float32)
    arrays.update(
        ray_origin=np.zeros((2, 3), np.float32),
        ray_dir=dirs,
        ray_t=np.full(2, 0.5, np.float32),
        ray_range=np.array([7.0, 7.0 / np.cos(0.3)], np.float32),
        ray_sample=np.zeros(2, np.int32),
    )
    task = make_task("occupancy", labels, root, SCENE, _cfg())
    assert isinstance(task, OccupancyTask)
    wall = _Wall()
    depth, true = task.render(lambda q: torch.sigmoid(wall(None, torch.from_numpy(q))).numpy()[:, 0], ("test", 0))
    # the first 0.5 m step at or past the wall, interpolated between the steps around it
    np.testing.assert_allclose(depth, true, atol=task.step_m)
    assert items_of(labels, ["test"]) == [("test", 0), ("test", 1), ("test", 2)]


def test_trajectory_selection_never_ends_worse_than_constant_velocity_on_val(project):
    """The future path turns at random: the odometry head can only overfit the training turns. Selected on
    validation, it ends no worse there than the constant-velocity extrapolation it starts from."""
    root, splits = project
    labels = TaskLabels(root / "labels")
    task = make_task("trajectory", labels, root, SCENE, _cfg(val_every={"trajectory": 5}, lr=3e-2, steps=40))
    val = items_of(labels, splits.val)
    past = torch.from_numpy(np.stack([labels.log("val")["ego_past"][s] for _, s in val]))
    cv = constant_velocity(past, torch.tensor([0.5, 1.0])).numpy()
    true = np.stack([labels.log("val")["waypoints"][s] for _, s in val])
    cv_l2 = np.linalg.norm(cv - true, axis=-1)[:, 1].mean()  # the horizon (1 s) is the only L2 time here
    items = items_of(labels, splits.train)
    head, _, losses, selection = train_run(
        task, root / "models" / "scratch" / "seed_0", items, task.cfg, 0, torch.device("cpu"), val_items=val
    )
    features = Features(
        load_encoder(root / "models" / "scratch" / "seed_0", torch.device("cpu")), labels, torch.device("cpu"), True
    )
    scored = task.evaluate(head, features, val).metrics
    assert scored["L2_avg"] <= cv_l2 + 1e-6
    assert selection["history"][0]["step"] == 0 and selection["history"][0]["L2_avg"] == pytest.approx(cv_l2, abs=1e-5)
    assert {"odometry", "blind"} == set(selection["selected_step"])


def test_selection_ties_go_to_the_later_step(project):
    """With lr = 0 the heads never move (their last layers start at zero), so every validation scores the same:
    ties go to the later step."""
    root, splits = project
    labels = TaskLabels(root / "labels")
    task = make_task("trajectory", labels, root, SCENE, _cfg(val_every={"trajectory": 5}, lr=0.0, steps=10))
    _, _, _, selection = train_run(
        task,
        root / "models" / "scratch" / "seed_0",
        items_of(labels, splits.train),
        task.cfg,
        0,
        torch.device("cpu"),
        val_items=items_of(labels, splits.val),
    )
    assert [r["step"] for r in selection["history"]] == [0, 5, 10]
    assert len({r["L2_avg"] for r in selection["history"]}) == 1  # all tied
    assert selection["selected_step"] == {"odometry": 10, "blind": 10}


def test_trajectory_head_starts_at_constant_velocity():
    from gasp_core.tasks.heads import TrajectoryHead

    times = [0.5, 1.0, 3.0]
    past_t = torch.tensor([-0.4, -0.3, -0.2, -0.1, 0.0])
    # 8 m/s along a heading of 30 degrees, arriving at the origin at t = 0
    v = 8.0 * torch.tensor([np.cos(np.pi / 6), np.sin(np.pi / 6)], dtype=torch.float32)
    past = torch.cat([past_t[:, None] * v, past_t[:, None]], dim=1)[None]
    expected = torch.tensor(times)[:, None] * v
    torch.testing.assert_close(constant_velocity(past, torch.tensor(times))[0], expected, atol=1e-5, rtol=0)
    head = TrajectoryHead(8, times, 5, DecoderConfig(hidden=8))
    torch.testing.assert_close(head(torch.randn(1, 8, 16, 16), past)[0], expected, atol=1e-5, rtol=0)


def test_trajectory_kinematics_of_a_braking_ego():
    """The odometry head's derived inputs on x(t) = v0 t + a t^2 / 2 sampled at the input sweeps: the average
    velocity over the past, the newest step's and the constant acceleration, exact."""
    from gasp_core.tasks.heads import kinematics

    v0, a = 10.0, -4.0
    t = torch.tensor([-0.4, -0.3, -0.2, -0.1, 0.0], dtype=torch.float64)
    x = v0 * t + a * t**2 / 2
    past = torch.stack([x, torch.zeros_like(t), t], dim=1)[None]
    k = kinematics(past)[0]
    v_avg = (x[-1] - x[0]) / 0.4  # = v0 + a * (-0.2)
    v_new = (x[-1] - x[-2]) / 0.1  # = v0 + a * (-0.05)
    torch.testing.assert_close(k, torch.tensor([v_avg, 0, v_new, 0, a, 0], dtype=torch.float64), atol=1e-9, rtol=0)
    assert float(v_new) < float(v_avg)  # braking: the newest step is slower than the average


def test_curves_reach_dvclive_with_validation_loss(project, tmp_path):
    """`finetune(live_dir=...)` writes each run's curves as dvclive plots: the training loss at every step (the same
    values the metrics summarise), the validation loss and metric at each validation, and the validation loss is
    the training loss's own formula on validation samples: it falls as the map head learns."""
    import polars as pl

    root, splits = project
    cfg = _cfg(val_every={"map": 20}, budgets={"full": 1.0})
    live = tmp_path / "live"
    res = finetune(
        "map",
        "scratch",
        labels_dir=root / "labels",
        occupancy_dir=root,
        init_dir=root / "models" / "scratch",
        out_dir=tmp_path / "out",
        scene=SCENE,
        splits=splits,
        cfg=cfg,
        progress=False,
        live_dir=live,
    )
    plots = live / "plots" / "metrics" / "full" / "pretrain_0" / "seed_0"
    train = pl.read_csv(plots / "train_loss.tsv", separator="\t")
    val = pl.read_csv(plots / "val_loss.tsv", separator="\t")
    assert train["step"].to_list() == list(range(1, cfg.steps + 1))
    run = res["runs"]["full/pretrain_0/seed_0"]
    assert train["train_loss"][0] == pytest.approx(run["loss_first"], abs=1e-5)
    assert float(train["train_loss"][-10:].mean()) == pytest.approx(run["loss_final"], abs=1e-5)
    assert val["step"].to_list() == [0, 20, 40, 60]
    assert val["val_loss"][-1] < 0.7 * val["val_loss"][0]
    # the selection metric (mIoU of the thin layers): logged where finite; these labels have no thin layers, so a
    # head that learnt to predict none scores nan (empty over empty) after step 0
    metric = pl.read_csv(plots / "val_mIoU.tsv", separator="\t")
    assert metric["step"].to_list() == [0] and np.isfinite(metric["val_mIoU"].to_numpy().astype(float)).all()


def test_curves_of_a_metric_and_its_sub_metric_both_reach_dvclive(tmp_path):
    """Trajectory selects on L2_avg and L2_avg/no_odometry: dvclive nests names at '/', so the parent is logged as
    L2_avg/main beside L2_avg/no_odometry (logging both as they are fails in dvclive's summary)."""
    from dvclive import Live
    from gasp_core.tasks.finetune import write_curves

    history = [
        {"step": 0, "loss": 2.0, "L2_avg": 1.0, "L2_avg/no_odometry": 3.0},
        {"step": 2, "loss": 1.0, "L2_avg": 0.5},
    ]
    with Live(str(tmp_path), resume=False, save_dvc_exp=False, dvcyaml=None, report=None) as live:
        write_curves(live, "full/pretrain_0/seed_0", [2.5, 1.5], history)
    plots = tmp_path / "plots" / "metrics" / "full" / "pretrain_0" / "seed_0"
    assert (plots / "val_L2_avg" / "main.tsv").read_text().split() == ["step", "main", "0", "1.0", "2", "0.5"]
    assert (plots / "val_L2_avg" / "no_odometry.tsv").read_text().split() == ["step", "no_odometry", "0", "3.0"]
    assert (plots / "train_loss.tsv").read_text().split() == ["step", "train_loss", "1", "2.5", "2", "1.5"]


def test_encoder_lr_is_chosen_on_validation(project, monkeypatch):
    """With candidate encoder rates, each budget's runs train at the candidate whose first run scores best on
    validation; the test split is never read for the choice."""
    import gasp_core.tasks.finetune as ft

    root, splits = project
    cfg = _cfg(encoder="full", encoder_lrs={"scratch": [1e-6, 3e-3]}, budgets={"low": 1.0}, steps=40)
    scored: list[tuple[float, list]] = []
    original = ft.train_run

    def spy(task, encoder_dir, items, cfg, seed, device, features=None, val_items=None, encoder_lr=None):
        out = original(task, encoder_dir, items, cfg, seed, device, features, val_items, encoder_lr)
        scored.append((encoder_lr, sorted({lid for lid, _ in val_items or []})))
        return out

    monkeypatch.setattr(ft, "train_run", spy)
    res = finetune(
        "map",
        "scratch",
        labels_dir=root / "labels",
        occupancy_dir=root,
        init_dir=root / "models" / "scratch",
        out_dir=root / "lr",
        scene=SCENE,
        splits=splits,
        cfg=cfg,
        progress=False,
    )
    choice = res["encoder_lr"]["low"]
    metric = "mIoU" if all(v["mIoU"] is not None for v in choice["validation"].values()) else "loss"
    sign = 1.0 if metric == "mIoU" else -1.0
    scores = {float(k): sign * v[metric] for k, v in choice["validation"].items()}
    assert set(scores) == {1e-6, 3e-3} and choice["chosen"] == max(scores, key=scores.get)
    assert [lr for lr, _ in scored] == [1e-6, 3e-3, choice["chosen"]]  # the candidates, then the budget's one seed
    assert all(logs == sorted(splits.val) for _, logs in scored)  # validation decides, never test
    run = json.loads((root / "lr" / "low" / "pretrain_0" / "seed_0" / "run.json").read_text())
    assert run["encoder_lr"] == choice["chosen"]


def test_zero_shot_only_tasks_train_no_heads(project):
    root, splits = project
    with pytest.raises(ValueError, match="no zero-shot protocol"):
        finetune(
            "map",
            "scratch",
            labels_dir=root / "labels",
            occupancy_dir=root,
            init_dir=root / "models" / "scratch",
            out_dir=root / "zs",
            scene=SCENE,
            splits=splits,
            cfg=_cfg(zero_shot_only=["map"]),
            progress=False,
        )


def test_zero_shot_only_writes_the_stage_outputs_without_training(tmp_path):
    """A task scored only zero-shot trains no head, yet its finetune stage leaves every output dvc.yaml declares: the
    run folder and the dvclive log (DVC fails a stage whose declared output is missing)."""
    root, splits = make_project(tmp_path / "p")
    res = finetune(
        "occupancy",
        "scratch",
        labels_dir=root / "labels",
        occupancy_dir=root,
        init_dir=root / "models" / "scratch",
        out_dir=root / "zs",
        scene=SCENE,
        splits=splits,
        cfg=_cfg(tasks=["occupancy"], zero_shot_only=["occupancy"]),
        progress=False,
        live_dir=tmp_path / "live",
    )
    assert res["runs"] == {} and res["zero_shot_only"] and (root / "zs" / "README.md").is_file()
    assert json.loads((tmp_path / "live" / "metrics.json").read_text()) == {"heads_trained": 0}
    assert (tmp_path / "live" / "plots" / "metrics").is_dir()
