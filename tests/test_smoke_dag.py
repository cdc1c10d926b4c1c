"""The whole DAG (ingest -> ... -> report) on the ``smoke`` preset, in a fresh git + DVC project, driven three ways
that share one cache: ``dvc repro``, ``dvc exp run`` (a swept key reruns exactly its readers; a queued sweep) and
Dagster (in process, and a headless ``dagster-webserver`` over GraphQL). The tests run in file order on one
project; each leaves ``dvc status`` clean for the next."""

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gasp_core.apps.presets import materialize, world_config
from gasp_core.models.config import VARIANTS
from gasp_core.params import compose
from gasp_core.tasks.config import TASKS
from gasp_core.tasks.registry import main_metrics

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.dag]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def _dvc(cwd: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _status(project: Path) -> dict:
    res = _dvc(project, "status", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return not (isinstance(obj, float) and not math.isfinite(obj))


# A per-class score of a class the test split holds no object of is undefined by design (the embedded world spawns no
# ``other`` objects; a small world may have no cyclist in its test logs). Vehicles, the main metric's class, and every
# aggregate (mAP, mIoU, AP, L2, ...) must be defined.
OPTIONAL_CLASS_METRIC = re.compile(r"^(AP|IoU)/(pedestrian|cyclist|other)(/|$)")


def _undefined_metrics(metrics: dict, task: str, main: str) -> list[str]:
    """Metrics the evaluation could not compute anywhere. The metrics file writes an undefined value (NaN) as null,
    so a metric that is NaN in every run shows up as null in every run; the main metric must be a number in each."""
    runs = [r for init in metrics["results"].values() for b in init.values() for r in b["runs"].values()]
    keys = {k for k in set().union(*runs) if not OPTIONAL_CLASS_METRIC.match(k)}
    bad = [k for k in sorted(keys) if all(r.get(k) is None for r in runs)]
    bad += [f"{main} in some run" for r in runs if not isinstance(r.get(main), (int, float))][:1]
    return bad


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    project = materialize("smoke", tmp_path_factory.mktemp("smoke") / "project")
    run = _dvc(project, "repro")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    # commit what the main repository commits (dvc.lock, metrics, reports/): the baseline experiments start from
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "dvc repro"], cwd=project, check=True)
    return project


def test_smoke_preset_project_is_composed_by_hydra(smoke):
    params = yaml.safe_load((smoke / "params.yaml").read_text())
    assert params["finetune"]["steps"] == 3 and world_config("smoke")["logs"] == 3
    assert "- preset: smoke" in (smoke / "configs" / "config.yaml").read_text()
    with pytest.raises(FileNotFoundError, match="world/paper.yaml"):
        world_config("paper")


def test_smoke_dag_end_to_end(smoke):
    assert _status(smoke) == {}  # every stage ran, and a second look finds nothing stale
    params = yaml.safe_load((smoke / "params.yaml").read_text())
    ft = params["finetune"]
    runs = {f"pretrain_{p}/seed_{s}" for p in params["pretrain"]["seeds"] for s in ft["seeds"]}
    for task in TASKS:  # one evaluation per task, with every init x budget x run scored
        metrics = json.loads((smoke / "metrics" / "evaluate" / f"{task}.json").read_text())
        assert set(metrics["results"]) == set(ft["inits"])
        for init in ft["inits"]:
            # 4D occupancy is also scored zero-shot, from each pre-trained model's own occupancy decoder
            zero_shot = task == "occupancy" and VARIANTS[init].occupancy
            assert set(metrics["results"][init]) == set(ft["budgets"]) | ({"zero_shot"} if zero_shot else set())
            for budget in ft["budgets"]:
                assert set(metrics["results"][init][budget]["runs"]) == runs
            if zero_shot:
                expected = {f"pretrain_{p}" for p in params["pretrain"]["seeds"]}
                assert set(metrics["results"][init]["zero_shot"]["runs"]) == expected
        assert _finite(metrics)
        assert _undefined_metrics(metrics, task, main_metrics()[task][0]) == [], task
        assert (task in ("occupancy", "trajectory")) == ("baseline" in metrics)
        assert (smoke / "data" / "eval" / task / "stats.npz").stat().st_size > 100
    report = (smoke / "reports" / "README.md").read_text()
    for title in (
        "BEV semantic forecasting",
        "4D occupancy",
        "4D semantic occupancy",
        "Map segmentation",
        "Ego trajectory",
        "Paired differences",
        "non-learned baseline",
        "GASP vs UnO",
        "UnO vs scratch",
    ):
        assert title in report
    summary = json.loads((smoke / "reports" / "summary.json").read_text())
    for task, s in summary["tasks"].items():
        for budget in ft["budgets"]:
            assert set(s[budget]["interval"]) == set(ft["inits"])
            assert {"gasp>uno", "uno>scratch"} <= set(s[budget]["pairs"])
            for d in s[budget]["pairs"].values():
                # one pre-training seed: estimates without verdicts (tests/tasks/test_report.py)
                assert d["verdict"] in (
                    ("better", "worse", "inconclusive", "n/a")
                    if len(params["pretrain"]["seeds"]) > 1
                    else ("no verdict", "n/a")
                )
    for fig in (
        "radar.png",
        "forecast.png",
        "map.png",
        "trajectory.png",
        "occupancy.png",
        "semantic_occupancy.png",
        "dino_bev.png",
    ):
        assert (smoke / "reports" / fig).stat().st_size > 1000, fig
    shown = _dvc(smoke, "metrics", "show", "--json")
    assert shown.returncode == 0 and "evaluate" in shown.stdout
    plots = _dvc(smoke, "plots", "show", "--json")
    assert plots.returncode == 0, plots.stderr


def test_every_model_the_dag_writes_has_a_card_and_gasp_view_records_the_smoke_project(smoke, tmp_path):
    """Model cards in every model folder; `gasp view` on the smoke project's store and GASP model writes a rerun
    recording that rerun's own dataframe API reads back: every entity, one lidar row per sweep at its time."""
    import rerun as rr

    from gasp_core.data.store import LogStore

    folders = {p.parent for p in (smoke / "models").rglob("*.safetensors")}
    assert len(folders) > 10 and all((f / "README.md").is_file() for f in folders), sorted(folders)
    assert "RANDOM" not in (smoke / "models" / "pretrain" / "gasp" / "seed_0" / "README.md").read_text()
    out = tmp_path / "smoke.rrd"
    res = subprocess.run(
        [sys.executable, "-m", "gasp_core", "view", "--model", "models/pretrain/gasp/seed_0", "--out", str(out)],
        cwd=smoke,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    store = LogStore(smoke / "data" / "store")
    log = store.log(store.log_ids[0])
    recording = rr.dataframe.load_recording(str(out))
    paths = {c.entity_path for c in recording.schema().component_columns()}
    expected = {"/world/ego", "/world/ego/lidar", "/world/boxes", "/world/ego_path", "/world/prediction/occupancy"}
    expected |= {"/world/prediction/ego_path", "/world/prediction/dino"}
    expected |= {f"/world/map/{x}" for x in set(log.map["layer"].to_list())}
    assert expected <= paths, sorted(paths)
    lidar = recording.view(index="time", contents="/world/ego/lidar").select().read_all()
    start = log.pose_range_ns()[0]
    assert lidar["time"].to_numpy().astype("int64").tolist() == (log.sweep_timestamps_ns - start).tolist()
    assert f"world/ego/lidar: {len(log.sweep_timestamps_ns)}\n" in res.stdout


def test_smoke_teacher_is_trained_distilled_and_probed(smoke):
    """The preset's in-domain teacher: trained on the training logs' images, used by dino_targets (its weights' hash
    recorded), and the surface-class probe scored on the pixel colours, the targets and GASP's distilled field."""
    teacher = json.loads((smoke / "metrics" / "teacher.json").read_text())
    params = yaml.safe_load((smoke / "params.yaml").read_text())
    assert teacher["trained"] and teacher["steps_done"] == params["teacher"]["steps"]
    assert teacher["logs"] == len(params["splits"]["train"])
    assert (smoke / "models" / "teacher" / "model.safetensors").stat().st_size > 10_000
    dino = json.loads((smoke / "metrics" / "dino_targets" / "teacher.json").read_text())
    assert dino["teacher_weights"].startswith("in_domain:mae:") and dino["teacher_random_weights"] is False
    assert set(dino["probe"]) == {"rgb", "teacher"}
    probe = json.loads((smoke / "metrics" / "probe.json").read_text())
    assert probe["labelled"] and set(probe["variants"]) == {
        v for v in params["pretrain"]["variants"] if VARIANTS[v].dino
    }
    for result in [*dino["probe"].values(), *(r for v in probe["variants"].values() for r in v.values())]:
        assert 0.0 <= result["mIoU"] <= 1.0 and result["test_points"] > 0


def test_dagster_materialize_reruns_only_the_stale_asset(smoke):
    import dagster as dg

    from orchestration.definitions import DvcRepo, build_assets

    assets, _ = build_assets(smoke)

    def materialize_asset(*key: str) -> str:
        res = dg.materialize(
            assets,
            selection=dg.AssetSelection.assets(dg.AssetKey(list(key))),
            instance=dg.DagsterInstance.ephemeral(),
            resources={"dvc": DvcRepo(path=str(smoke))},
        )
        assert res.success
        (event,) = res.get_asset_materialization_events()
        meta = event.materialization.metadata
        assert meta["dvc_skipped"].value == (meta["dvc_action"].value != "ran")
        return meta["dvc_action"].value

    assert materialize_asset("report").startswith("skipped")
    (smoke / "reports" / "radar.png").unlink()
    assert materialize_asset("report") == "ran"  # reports/ is cache: false, so DVC reruns it
    assert (smoke / "reports" / "radar.png").is_file()
    shutil.rmtree(smoke / "data" / "eval" / "map")
    assert materialize_asset("evaluate", "map").startswith("restored")  # a cached out comes back from the run cache
    assert (smoke / "data" / "eval" / "map" / "qualitative.npz").is_file()
    assert _status(smoke) == {}


def _stale_in_dagster(instance, repo: Path) -> dict[str, str]:
    """Stage -> Dagster's stale status, for the stages stale by their own code version (what `dvc status` lists;
    their downstream stages are stale in Dagster too, through their inputs, as DVC would rerun them)."""
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleCauseCategory
    from dagster._core.loader import LoadingContextForTest  # Dagster's own test-side loading context

    from orchestration.definitions import build_definitions, dvc_stages

    graph = build_definitions(repo).resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    out = {}
    for node in dvc_stages(repo):
        causes = resolver.get_stale_root_causes(node.key)
        own = [c for c in causes if c.category == StaleCauseCategory.CODE and c.key.asset_key == node.key]
        out[node.name] = "own code" if own else ("inputs" if causes else str(resolver.get_status(node.key).value))
    return out


def test_dagster_shows_dvc_state_before_and_after_a_partial_rerun(smoke):
    """After `dvc repro`, one sync records every stage as materialised and fresh; an edit shows the stages
    `dvc status` lists as stale in Dagster (by their code version), and only them; a Dagster run of the stale stage
    leaves both clean again. An edit to a task head makes `dvc status` list only task stages; one in the
    simulator's town lists none."""
    import dagster as dg

    from orchestration.definitions import DvcRepo, build_assets, sync_from_dvc

    instance = dg.DagsterInstance.ephemeral()
    assert _status(smoke) == {}
    recorded = sync_from_dvc(instance, smoke)
    assert len(recorded) == len(yaml.safe_load((smoke / "dvc.lock").read_text())["stages"])
    assert sync_from_dvc(instance, smoke) == []  # nothing new the second time
    assert set(_stale_in_dagster(instance, smoke).values()) == {"FRESH"}

    def edited(rel: str) -> dict:
        path = smoke / rel
        text = path.read_text()
        path.write_text(text + "\n# an edit\n")
        try:
            return _status(smoke)
        finally:
            path.write_text(text)

    heads = set(edited("gasp_core/tasks/heads.py"))
    assert heads and {name.split("@")[0] for name in heads} == {"finetune", "evaluate", "report"}
    assert edited("gasp_core/sim/town.py") == {}

    report_py = smoke / "stages" / "report.py"
    original = report_py.read_text()
    report_py.write_text(original + "\n# an edit\n")
    try:
        assert set(_status(smoke)) == {"report"}
        stale = _stale_in_dagster(instance, smoke)
        assert {k for k, v in stale.items() if v == "own code"} == {"report"}
        assert {k for k, v in stale.items() if v != "FRESH"} == {"report"}
        assets, _ = build_assets(smoke)
        res = dg.materialize(
            assets,
            selection=dg.AssetSelection.assets(dg.AssetKey(["report"])),
            instance=instance,
            resources={"dvc": DvcRepo(path=str(smoke))},
        )
        assert res.success
        assert _status(smoke) == {}
        assert set(_stale_in_dagster(instance, smoke).values()) == {"FRESH"}
        assert sync_from_dvc(instance, smoke) == []  # the run recorded dvc.lock's new versions itself
    finally:
        report_py.write_text(original)
    assert set(_status(smoke)) == {"report"}  # the original script differs from what the last run locked
    assert _dvc(smoke, "repro", "report").returncode == 0
    assert _status(smoke) == {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_headless_dagster_webserver_lists_assets_and_runs_one(smoke, tmp_path):
    """What `make dagster` serves, driven over GraphQL (orchestration.client): the asset keys are DVC's stages,
    and a run launched for one stale asset reruns that stage (through DVC) and leaves `dvc status` clean."""
    from orchestration import client
    from orchestration.definitions import dvc_stages

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    url = f"http://127.0.0.1:{_free_port()}"
    log = (tmp_path / "webserver.log").open("w")
    proc = subprocess.Popen(
        [
            str(BIN / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            url.rsplit(":", 1)[1],
            "-m",
            "orchestration.definitions",
        ],
        cwd=ROOT,
        env=_env(DAGSTER_HOME=str(home), GASP_REPO=str(smoke)),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client.wait_until_up(url, 180, alive=lambda: proc.poll() is None)
        served = client.assets(url)
        stages = dvc_stages(smoke)
        assert set(served) == {s.key.to_user_string() for s in stages}
        assert set(served.values()) == {s.group for s in stages}
        (smoke / "reports" / "radar.png").unlink()  # make `report` stale; its upstream stays up to date
        run_id = client.launch(url, ["report"])
        assert client.wait(url, run_id, timeout_s=300) == "SUCCESS", (tmp_path / "webserver.log").read_text()[-3000:]
        meta = client.materializations(url, run_id)
        assert set(meta) == {"report"} and meta["report"]["dvc_action"] == "ran"  # reports/ is not cached: a real rerun
        # launched again with nothing stale, DVC skips it
        again = client.launch(url, ["report"])
        assert client.wait(url, again, timeout_s=300) == "SUCCESS"
        assert client.materializations(url, again)["report"]["dvc_action"].startswith("skipped")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    assert (smoke / "reports" / "radar.png").is_file()
    assert _status(smoke) == {}


def _readers(project: Path, key: str) -> set[str]:
    from orchestration.definitions import dvc_stages

    return {s.name for s in dvc_stages(project) if s.reads(key)}


def _downstream(project: Path, names: set[str]) -> set[str]:
    from orchestration.definitions import dvc_stages

    nodes = dvc_stages(project)
    out, grew = set(names), True
    while grew:
        more = {n.name for n in nodes if n.name not in out and out & set(n.deps)}
        out |= more
        grew = bool(more)
    return out


SHOW = ["exp", "show", "--md", "--drop", ".*", "--keep", r"Experiment|.*dino_weight|.*/(low|full)/gasp/.*"]


def test_how_work_runs_reruns_nothing(smoke):
    """The backend and the worker count are not params of any stage: composing `compute=sequential` with another
    worker count, or `compute=ray`, leaves `dvc status` clean (the byte-identity of the outputs themselves is
    tests/test_parallel.py)."""
    original = (smoke / "params.yaml").read_text()
    try:
        for overrides in (["compute=sequential", "compute.workers=7"], ["compute=ray", "compute.workers=64"]):
            compose(smoke / "params.yaml", overrides, root=smoke)
            assert yaml.safe_load((smoke / "params.yaml").read_text())["compute"]["workers"] in (7, 64)
            assert _status(smoke) == {}, overrides
    finally:
        (smoke / "params.yaml").write_text(original)


def test_swept_key_reruns_exactly_its_readers_and_exp_show_compares(smoke):
    """`dvc exp run --queue -S` over a key: only the stages declaring it (then what their outputs feed) rerun."""
    key = "pretrain.loss.dino_weight"
    readers = _readers(smoke, key)
    assert readers == {"pretrain@scratch-0", "pretrain@uno-0", "pretrain@gasp-0"}
    # composing the override changes the params of exactly the stages that declare the key
    original = (smoke / "params.yaml").read_text()
    compose(smoke / "params.yaml", [f"{key}=1.0"], root=smoke)
    changed = {name for name, entries in _status(smoke).items() if "params.yaml" in json.dumps(entries)}
    (smoke / "params.yaml").write_text(original)
    assert changed == readers and _status(smoke) == {}
    # a queued sweep: the committed value (the baseline, nothing to rerun) and 1.0
    assert yaml.safe_load(original)["pretrain"]["loss"]["dino_weight"] == 0.5
    queued = _dvc(smoke, "exp", "run", "--queue", "-S", f"{key}=0.5,1.0")
    said = queued.stdout + queued.stderr
    assert queued.returncode == 0 and said.count("Queued experiment") == 2, said
    started = _dvc(smoke, "queue", "start")
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 1200
    while True:
        status = _dvc(smoke, "queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        assert time.monotonic() < deadline, status
        time.sleep(5)
    assert status.count("Success") == 2, status
    shown = json.loads(_dvc(smoke, "exp", "show", "--json").stdout)
    by_weight = {}
    for exp in (e for commit in shown for e in (commit.get("experiments") or [])):
        (rev,) = exp["revs"]
        data = rev["data"]
        weight = data["params"]["params.yaml"]["data"]["pretrain"]["loss"]["dino_weight"]
        by_weight[weight] = (rev["name"], data["metrics"]["metrics/pretrain/gasp/seed_0.json"]["data"])
    assert sorted(by_weight) == [0.5, 1.0]
    assert by_weight[0.5][1] != by_weight[1.0][1]  # the swept weight really changed GASP's pre-training

    def ran(name: str) -> set[str]:
        logs = _dvc(smoke, "queue", "logs", name).stdout
        assert "Stage 'ingest'" in logs and "Reproducing experiment" in logs, logs[-3000:]  # skipped or restored
        return set(re.findall(r"Running stage '([^']+)'", logs))

    assert ran(by_weight[0.5][0]) == set()  # the baseline: every stage up to date
    rerun = ran(by_weight[1.0][0])
    assert readers <= rerun <= _downstream(smoke, readers), rerun
    assert {"finetune@map-gasp", "evaluate@map", "report"} <= rerun  # GASP's weights changed, so its heads retrain
    # uno and scratch ignore the DINO weight: their pre-training reran bit-identically, so DVC skipped their heads
    assert not any(s.endswith(("-uno", "-scratch")) for s in rerun), rerun
    md = _dvc(smoke, *SHOW)
    rows = [line for line in md.stdout.splitlines() if line.startswith("|")]
    assert md.returncode == 0 and "pretrain.loss.dino_weight" in rows[0] and "map/full/gasp/mIoU" in rows[0], md.stdout
    weights = {line.rstrip(" |").split("|")[-1].strip() for line in rows[2:]}
    assert {"0.5", "1"} <= weights, md.stdout
