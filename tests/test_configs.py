"""params.yaml is the Hydra composition of configs/, every key in it is read by a stage that declares it, and
stage scripts reject unknown, missing and unset keys."""

import ast
import itertools
from pathlib import Path

import pytest
import yaml

from gasp_core.config import ConfigError, from_dict
from gasp_core.data.ingest import ingest_config_from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.params import ROOT, compose, stale_diff
from gasp_core.targets.build import occupancy_labels_config_from_dict
from gasp_core.targets.dino import dino_targets_config_from_dict
from gasp_core.tasks.config import SplitsConfig, TaskLabelsConfig, finetune_config_from_dict
from gasp_core.train.pretrain import pretrain_config_from_dict

GROUPS = {g: sorted(p.stem for p in (ROOT / "configs" / g).glob("*.yaml")) for g in ("dataset", "model", "preset")}


def _leaves(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "budgets":  # budgets: a name -> fraction table, swept as a whole
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def _declared() -> dict[str, set[str]]:
    """stage name -> the params keys dvc.yaml declares for it (read through DVC itself)."""
    from orchestration.definitions import dvc_stages

    return {s.name: set(s.params) for s in dvc_stages(ROOT)}


def _parse_all(p: dict) -> None:
    """What the stage scripts do with each section (strict)."""
    ingest_config_from_dict(p["ingest"], strict=True)
    dino_targets_config_from_dict(p["dino_targets"], strict=True)
    occupancy_labels_config_from_dict(p["occupancy_labels"], strict=True)
    pretrain_config_from_dict(p["pretrain"], strict=True)
    from_dict(SceneConfig, p["scene"], "scene", strict=True)
    from_dict(TaskLabelsConfig, p["task_labels"], "task_labels", strict=True)
    finetune_config_from_dict(p["finetune"], strict=True)
    from_dict(SplitsConfig, p["splits"], "splits", strict=True)


def test_committed_params_yaml_is_the_composition_of_configs():
    diff = stale_diff(ROOT / "params.yaml")
    assert diff == "", f"params.yaml is stale; run `make params`:\n{diff}"


def test_a_stale_params_yaml_is_caught(tmp_path):
    edited = tmp_path / "params.yaml"
    edited.write_text((ROOT / "params.yaml").read_text().replace("dino_weight: 0.5", "dino_weight: 0.7"))
    diff = stale_diff(edited)
    assert "-    dino_weight: 0.7" in diff and "+    dino_weight: 0.5" in diff


@pytest.mark.parametrize("dataset,model,preset", list(itertools.product(*GROUPS.values())))
def test_every_group_combination_composes_and_parses(tmp_path, dataset, model, preset):
    p = yaml.safe_load(
        compose(tmp_path / "p.yaml", [f"dataset={dataset}", f"model={model}", f"preset={preset}"]).read_text()
    )
    # presets with a world of their own (smoke, study) bring its splits
    if dataset == "embedded" or "splits" in yaml.safe_load((ROOT / "configs/preset" / f"{preset}.yaml").read_text()):
        _parse_all(p)
    else:  # real datasets leave the log splits to the user, and the stages say so
        with pytest.raises(ConfigError, match=r"splits\.train is not set"):
            _parse_all(p)
    assert (
        p["pretrain"]["model"]
        == yaml.safe_load((ROOT / "configs/model" / f"{model}.yaml").read_text())["pretrain"]["model"]
    )


def test_overrides_compose_and_typos_fail(tmp_path):
    p = yaml.safe_load(compose(tmp_path / "p.yaml", ["pretrain.loss.dino_weight=0.25", "preset=smoke"]).read_text())
    assert p["pretrain"]["loss"]["dino_weight"] == 0.25 and p["pretrain"]["train"]["steps"] == 3
    with pytest.raises(Exception, match="dino_wieght"):
        compose(tmp_path / "q.yaml", ["pretrain.loss.dino_wieght=0.25"])
    assert not (tmp_path / "q.yaml").exists()  # nothing half-written


def test_every_param_is_declared_by_a_stage_that_reads_it():
    """No key of params.yaml is dead: a sweep over any of them changes what runs."""
    from orchestration.definitions import dvc_stages

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = dvc_stages(ROOT)
    templated = {
        "pretrain.variants",
        "finetune.tasks",
        "finetune.inits",
        "ingest.root",
    }  # dvc.yaml's foreach/matrix/deps
    templated |= {"dino_targets.sources"}
    # how per-log work runs (gasp_core/parallel.py) is read by the per-log stages and declared by none: changing it
    # must rerun nothing and change no output
    how = [k for k in _leaves(params) if k.startswith("compute.")]
    assert how and not any(s.reads(k) for s in stages for k in how)
    dead = [k for k in _leaves(params) if k not in templated and k not in how and not any(s.reads(k) for s in stages)]
    assert dead == [], f"params nobody declares (a sweep over them would be a no-op): {dead}"


def _params_read_by(script: Path) -> set[str]:
    """Dotted keys a stage script subscripts out of ``params`` / ``read_params(...)``: params["a"]["b"] -> a.b."""
    keys = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if not isinstance(node, ast.Subscript):
            continue
        chain, cur = [], node
        while isinstance(cur, ast.Subscript) and isinstance(cur.slice, ast.Constant):
            chain.append(cur.slice.value)
            cur = cur.value
        base = cur.id if isinstance(cur, ast.Name) else getattr(getattr(cur, "func", None), "id", None)
        if base in ("params", "read_params") and chain:
            keys.add(".".join(reversed(chain)))
    return {k for k in keys if not any(o != k and o.startswith(k + ".") for o in keys)}


def test_every_stage_declares_the_params_it_reads():
    declared = _declared()
    checked = 0
    for name, keys in declared.items():
        script = ROOT / "stages" / f"{name.split('@')[0]}.py"
        for read in _params_read_by(script):
            # a whole section read for one key (pretrain reads splits for splits.train) must declare that key
            assert any(read == d or read.startswith(d + ".") or d.startswith(read + ".") for d in keys), (
                f"{script.name} reads params[{read!r}] but dvc.yaml's {name} declares only {sorted(keys)}"
            )
            checked += 1
    assert checked > 20


def test_strict_parsing_names_missing_unknown_and_unset_keys():
    full = yaml.safe_load((ROOT / "params.yaml").read_text())["task_labels"]
    from_dict(TaskLabelsConfig, full, "task_labels", strict=True)
    partial = {k: v for k, v in full.items() if k != "render_rays"}
    from_dict(TaskLabelsConfig, partial, "task_labels")  # a library caller may lean on the defaults
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['render_rays'\] in task_labels"):
        from_dict(TaskLabelsConfig, partial, "task_labels", strict=True)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['render_ray'\]"):
        from_dict(TaskLabelsConfig, {**full, "render_ray": 3}, "task_labels", strict=True)
    with pytest.raises(ConfigError, match=r"splits\.val is not set"):
        from_dict(SplitsConfig, {"train": ["a"], "val": "???", "test": ["b"], "pool": []}, "splits", strict=True)


def test_read_params_names_the_file_and_the_missing_section(tmp_path):
    from gasp_core.cli import read_params

    path = tmp_path / "params.yaml"
    path.write_text("scene: {}\n")
    with pytest.raises(ConfigError, match=r"params.yaml: no `finetune` section"):
        read_params(path)["finetune"]


def test_study_preset_wiring(tmp_path):
    """The study composes into a full DAG at its promised size, on splits of its own world's logs, without running."""
    from gasp_core.apps.presets import world_config
    from gasp_core.sim.config import world_config_from_dict
    from gasp_core.sim.generate import log_seeds
    from gasp_core.sim.manoeuvres import ego_summary
    from gasp_core.sim.world import log_id_for
    from gasp_core.tasks.config import TASKS

    p = yaml.safe_load(compose(tmp_path / "p.yaml", ["preset=study"]).read_text())
    _parse_all(p)
    demo = yaml.safe_load((ROOT / "params.yaml").read_text())
    world, demo_world = world_config("study"), world_config("demo")
    assert world["logs"] * world["seconds"] >= 2 * demo_world["logs"] * demo_world["seconds"]
    splits = p["splits"]
    ids = [log_id_for(s) for s in log_seeds(world["seed"], world["logs"])]
    assert sorted(splits["train"] + splits["val"] + splits["test"] + splits["pool"]) == sorted(ids)  # once each
    # the papers' protocol: a pre-training pool at least 10x the low budget's labelled logs, encoders fine-tuned,
    # the oracle-teacher control beside the in-domain teacher, and the uno_enhanced rung
    from gasp_core.tasks.config import SplitsConfig
    from gasp_core.tasks.finetune import budget_logs

    pool = SplitsConfig(**splits).pretrain_logs()
    assert len(pool) >= 10 * len(budget_logs(splits["train"], min(p["finetune"]["budgets"].values())))
    assert not set(pool) & set(splits["val"] + splits["test"])
    assert p["finetune"]["encoder"] == "full" and set(p["finetune"]["encoder_lrs"]) == set(p["finetune"]["inits"])
    assert (
        {"uno", "uno_enhanced", "gasp", "gasp_oracle"} <= set(p["pretrain"]["variants"]) == set(p["finetune"]["inits"])
    )
    assert p["dino_targets"]["sources"] == ["teacher", "oracle"]
    assert len(splits["test"]) >= 6 and len(p["pretrain"]["seeds"]) >= 2 and len(p["finetune"]["seeds"]) >= 3
    assert set(p["finetune"]["val_every"]) == set(TASKS) and all(v > 0 for v in p["finetune"]["val_every"].values())
    assert p["pretrain"]["train"]["steps"] >= 2 * demo["pretrain"]["train"]["steps"]
    assert len(splits["train"]) > len(splits["val"]) >= 1
    # every test log holds a manoeuvre (a stop, a start or a turn) of the ego, surveyed as the generator drives it
    cfg = world_config_from_dict({**world["world"], "seconds": world["seconds"]})
    by_id = dict(zip(ids, log_seeds(world["seed"], world["logs"])))
    assert all(ego_summary(cfg, by_id[log_id]).manoeuvres > 0 for log_id in splits["test"] + splits["val"])
    # and the heads can learn them: the training logs hold stops, starts and turns too (the first study's did not)
    train = [ego_summary(cfg, by_id[log_id]) for log_id in splits["train"]]
    assert sum(s.stops for s in train) >= 1 and sum(s.starts for s in train) >= 1 and sum(s.turns for s in train) >= 2
    # the study's input carries lidar intensity (paint and curbs are invisible to occupancy alone)
    assert p["pretrain"]["model"]["voxelizer"]["intensity_levels"]


def test_reseeded_splits_move_by_position_onto_the_other_world():
    """`presets --world-seed`: the i-th log of the world is replaced by the i-th log of the reseeded one."""
    from gasp_core.apps.presets import reseed_splits, world_config
    from gasp_core.sim.generate import log_seeds
    from gasp_core.sim.world import log_id_for

    world = world_config("demo")
    splits = yaml.safe_load((ROOT / "params.yaml").read_text())["splits"]
    assert reseed_splits(splits, world, world["seed"]) == splits
    moved = reseed_splits(splits, world, 1)
    old = [log_id_for(s) for s in log_seeds(world["seed"], world["logs"])]
    new = [log_id_for(s) for s in log_seeds(1, world["logs"])]
    assert not set(new) & set(old)
    assert all(moved[part] == [new[old.index(x)] for x in ids] for part, ids in splits.items())
    with pytest.raises(ValueError, match="not-a-log"):
        reseed_splits({"train": ["not-a-log"]}, world, 1)


def _stage_scripts() -> dict[str, tuple[str, list[str]]]:
    """dvc.yaml stage -> (its script, its gasp_core deps)."""
    import re

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, st in stages.items():
        body = st.get("do", st)
        script = re.search(r"python (stages/\w+\.py)", body["cmd"]).group(1)
        out[name] = (script, [d for d in body["deps"] if d.startswith("gasp_core")])
    return out


def test_stage_deps_are_exactly_the_import_closure():
    """Each stage depends on the gasp_core files its script's imports reach, in their minimal cover: never on the
    whole package (an edit anywhere would rerun everything), never missing a file (a change could go unseen)."""
    from gasp_core.closure import import_closure, minimal_cover

    for name, (script, deps) in _stage_scripts().items():
        closure = import_closure(script)
        assert "gasp_core" not in deps, name
        assert deps == minimal_cover(closure), (
            f"{name}: dvc.yaml deps differ: run `python -m gasp_core.closure --write dvc.yaml`"
        )
        covered = [f for f in closure if not any(f.as_posix() == d or f.as_posix().startswith(d + "/") for d in deps)]
        assert not covered, f"{name} misses {covered}"
    # what a head or the simulator reaches: task stages see tasks/heads.py, no stage sees the town
    reach = {name: {f.as_posix() for f in import_closure(s)} for name, (s, _) in _stage_scripts().items()}
    assert {n for n, files in reach.items() if "gasp_core/tasks/heads.py" in files} == {
        "finetune",
        "evaluate",
        "report",
    }
    assert not any("gasp_core/sim/town.py" in files for files in reach.values())


@pytest.mark.parametrize(
    "script, argv",
    [
        ("stages/ingest.py", ""),
        ("stages/task_labels.py", "--store s --occupancy o"),
        ("stages/finetune.py", "--task t --init i --labels l --occupancy o --models m"),
    ],
)
def test_import_closure_holds_what_python_loads(script, argv):
    """The static closure holds every gasp_core module that running the script really loads (its imports, up to
    reading a params file that is not there), and the lazy model classes stay out of a stage that never asks for
    them."""
    import subprocess
    import sys

    from gasp_core.closure import import_closure

    code = (
        "import runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except FileNotFoundError:\n    pass\nprint('\\n'.join(sorted(m.__file__ for n, m in list(sys.modules.items())\n"
        "    if (n == 'gasp_core' or n.startswith('gasp_core.')) and getattr(m, '__file__', None))))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, script, "--params", "missing.yaml", "--out", "x", "--metrics", "y", *argv.split()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    loaded = {
        Path(line).resolve().relative_to(ROOT).as_posix() for line in res.stdout.split("\n") if line.endswith(".py")
    }
    closure = {f.as_posix() for f in import_closure(script)}
    assert loaded and loaded <= closure, sorted(loaded - closure)
    if script == "stages/task_labels.py":
        assert "gasp_core/models/gasp_model.py" not in closure | loaded


def test_import_closure_on_a_package_built_for_it(tmp_path):
    """Imports in function bodies count, relative ones resolve, parent __init__s are in, a package's lazy
    attribute (PEP 562) pulls its module only into a file that asks for that name, and the minimal cover takes a
    folder only when every file in it is needed."""
    from gasp_core.closure import import_closure, minimal_cover

    files = {
        "gasp_core/__init__.py": "def __getattr__(name):\n    from gasp_core.heavy import Big\n    return Big\n",
        "gasp_core/heavy.py": "Big = 1\n",
        "gasp_core/a/__init__.py": "",
        "gasp_core/a/one.py": "from . import two\n",
        "gasp_core/a/two.py": "def f():\n    from gasp_core.b.lazy import g\n",
        "gasp_core/b/__init__.py": "",
        "gasp_core/b/lazy.py": "from ..a import one\n",
        "gasp_core/b/unused.py": "",
        "gasp_core/c.py": "from gasp_core import Big\n",
        "stages/plain.py": "from gasp_core.a.one import two\n",
        "stages/wants_big.py": "import gasp_core\nprint(gasp_core.Big)\n",
        "stages/from_c.py": "import gasp_core.c\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    plain = [p.as_posix() for p in import_closure("stages/plain.py", tmp_path)]
    assert plain == [
        "gasp_core/__init__.py",
        "gasp_core/a/__init__.py",
        "gasp_core/a/one.py",
        "gasp_core/a/two.py",
        "gasp_core/b/__init__.py",
        "gasp_core/b/lazy.py",
    ]
    assert minimal_cover(import_closure("stages/plain.py", tmp_path), tmp_path) == [
        "gasp_core/__init__.py",
        "gasp_core/a",
        "gasp_core/b/__init__.py",
        "gasp_core/b/lazy.py",
    ]
    assert "gasp_core/heavy.py" in {p.as_posix() for p in import_closure("stages/wants_big.py", tmp_path)}
    assert "gasp_core/heavy.py" in {p.as_posix() for p in import_closure("stages/from_c.py", tmp_path)}


LAYERS = {
    0: {"config", "io", "parallel", "perf", "progress", "cli", "params", "closure", "geometry", "optim", "card"},
    1: {"data", "teacher", "viz"},
    2: {"sim", "targets", "models"},
    3: {"train", "tasks"},
    4: {"apps"},
}


def test_layering():
    """Every import in gasp_core (module level, in functions, lazy) points to the same package, a lower layer or,
    in the foundation, a neighbour: data never imports sim, models never import tasks, nothing imports a stage."""
    from gasp_core.closure import _parse

    layer_of = {pkg: layer for layer, pkgs in LAYERS.items() for pkg in pkgs}
    root = ROOT / "gasp_core"
    top = {
        p.stem if p.is_file() else p.name
        for p in root.iterdir()
        if p.name != "__pycache__" and (p.is_dir() or p.suffix == ".py")
    }
    assert top - {"__init__", "__main__"} <= set(layer_of), f"unlayered: {sorted(top - set(layer_of) - {'__init__'})}"
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == "__init__.py":
            continue
        here = rel.parts[0].removesuffix(".py")
        here = "apps" if here == "__main__" else here  # python -m gasp_core runs the gasp command
        modules, _, _, lazy = _parse(path, ROOT)
        for module in modules | lazy:
            parts = module.split(".")
            if len(parts) < 2 or parts[1] == here:
                continue
            there = parts[1]
            ok = layer_of[there] < layer_of[here] or (layer_of[here] == layer_of[there] == 0)
            if not ok:
                bad.append(f"{rel} imports {module}")
    assert not bad, bad


def test_dvc_ignores_model_timings_but_not_model_cards():
    """Model folders' timing.json (wall time) is out of DVC's hashes, their README.md card is in: a rerun that rebuilds
    identical weights leaves the stage's outputs identical (gasp_core/card.py)."""
    from dvc.repo import Repo

    ignore = Repo(str(ROOT)).dvcignore
    for folder in ("models/pretrain/gasp/seed_0", "models/finetune/map/gasp/low/pretrain_0/seed_0"):
        assert ignore.is_ignored_file(str(ROOT / folder / "timing.json"))
        assert not ignore.is_ignored_file(str(ROOT / folder / "README.md"))
        assert not ignore.is_ignored_file(str(ROOT / folder / "model.safetensors"))


def test_dvc_model_artifacts_are_pretrain_outputs_of_the_default_variants():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    arts = dvc["artifacts"]
    assert {a["type"] for a in arts.values()} == {"model"}
    assert {a["path"] for a in arts.values()} == {
        f"models/pretrain/{v}/seed_{params['pretrain']['seeds'][0]}" for v in params["pretrain"]["variants"]
    }
    # what the pretrain stage writes: models/pretrain/<variant>/seed_<seed>
    assert "--out models/pretrain/${item.variant}/seed_${item.seed}" in dvc["stages"]["pretrain"]["cmd"]


def test_committed_studies_live_outside_every_stage_output():
    """A stage's output folder belongs to DVC: `dvc repro` deletes it before the stage runs. The study's committed
    report once sat in reports/study/, inside the report stage's `reports` output, and `make demo` deleted it."""
    from dvc.repo import Repo

    outs = {str(Path(o.def_path)) for stage in Repo(str(ROOT)).index.stages for o in stage.outs}
    for committed in ("studies/study", "studies/study_frozen_probe", "studies/ladder", "studies/world_seed_1"):
        assert (ROOT / committed).is_dir(), committed
        assert not any(committed == o or committed.startswith(o.rstrip("/") + "/") for o in outs), committed
    assert "studies/study" in (ROOT / "Makefile").read_text()
