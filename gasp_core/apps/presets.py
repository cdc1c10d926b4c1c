"""Runnable projects for a preset of the config group ``preset`` (``configs/preset/<name>.yaml``).

``python -m gasp_core.apps.presets smoke DEST [overrides...]`` (``gasp preset``) writes a self-contained git + DVC
project at DEST: dvc.yaml, stages, gasp_core and configs (with ``preset: <name>`` as the default, so ``dvc exp run``
there composes the same preset), params.yaml composed by Hydra exactly as ``dvc exp run`` composes it, and the
preset's embedded world (``configs/world/<name>.yaml``) generated and tracked by ``data.dvc``. It is what
``tests/test_smoke_dag.py`` runs; ``python -m dvc repro`` there rebuilds the whole DAG.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from gasp_core.params import ROOT, compose


def presets(root: Path = ROOT) -> list[str]:
    return sorted(p.stem for p in (root / "configs" / "preset").glob("*.yaml"))


def world_config(name: str, root: Path = ROOT) -> dict:
    """The generator config of a preset's embedded world."""
    path = root / "configs" / "world" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: preset {name!r} has no embedded world (it runs on real data: dataset=av2|nuscenes)"
        )
    return yaml.safe_load(path.read_text())


def set_default_preset(config: Path, name: str) -> None:
    """Make ``name`` the ``preset`` default of the primary config, keeping the file's comments."""
    text = config.read_text()
    new, n = re.subn(r"^(\s*-\s*preset:\s*)\S+", rf"\g<1>{name}", text, flags=re.M)
    if n != 1:
        raise ValueError(f"{config}: expected one `- preset: ...` entry in its defaults list, found {n}")
    config.write_text(new)


def _run(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")


def reseed_splits(splits: dict[str, list[str]], world: dict, seed: int) -> dict[str, list[str]]:
    """The splits of a preset's world moved to another world seed by position: the log that was the i-th of the
    world is replaced by the i-th log of the reseeded world (same count, lengths and split sizes)."""
    from gasp_core.sim.generate import log_seeds
    from gasp_core.sim.world import log_id_for

    old = [log_id_for(s) for s in log_seeds(int(world["seed"]), int(world["logs"]))]
    new = [log_id_for(s) for s in log_seeds(int(seed), int(world["logs"]))]
    where = {log_id: i for i, log_id in enumerate(old)}
    missing = sorted({x for ids in splits.values() for x in ids} - set(where))
    if missing:
        raise ValueError(
            f"splits name logs that the world (seed {world['seed']}, {world['logs']} logs) does not hold: {missing}"
        )
    return {part: [new[where[x]] for x in ids] for part, ids in splits.items()}


def materialize(
    name: str,
    dest: Path,
    root: Path = ROOT,
    generate_world: bool | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    world_seed: int | None = None,
) -> Path:
    """A runnable copy of the project at ``dest`` composed with ``preset=name`` (and ``overrides``). ``world_seed``
    generates the preset's world with another seed (another town and traffic, same sizes) and moves the splits
    onto its logs by position (:func:`reseed_splits`). ``generate_world`` defaults to: the preset has a world
    (``configs/world/<name>.yaml``) and the overrides keep the embedded dataset; a project for real data
    (``dataset=av2|nuscenes``, e.g. the ``paper`` preset) gets none."""
    if name not in presets(root):
        raise ValueError(f"unknown preset {name!r}; configs/preset has {presets(root)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("stages", "gasp_core", "configs"):
        shutil.copytree(root / folder, dest / folder, ignore=ignore, dirs_exist_ok=True)
    shutil.copy2(root / "dvc.yaml", dest / "dvc.yaml")
    set_default_preset(dest / "configs" / "config.yaml", name)
    (dest / ".gitignore").write_text(
        "/data/raw\n/data/store\n/data/targets\n/data/tasks\n/data/eval\n/models\n/outputs\n"
    )
    py = sys.executable
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.name", "gasp"],
        ["git", "config", "user.email", "gasp@localhost"],
        [py, "-m", "dvc", "init", "-q"],
        [py, "-m", "dvc", "config", "core.analytics", "false"],
        [py, "-m", "dvc", "config", "core.autostage", "true"],
        [py, "-m", "dvc", "config", "hydra.enabled", "true"],
        [py, "-m", "dvc", "config", "hydra.config_dir", "configs"],
    ):
        _run(cmd, dest)
    # after `dvc init`, which writes a default one: model timings stay out of DVC hashes (gasp_core/card.py)
    shutil.copy2(root / ".dvcignore", dest / ".dvcignore")
    overrides = list(overrides)
    if world_seed is not None:
        path = dest / "configs" / "world" / f"{name}.yaml"
        world = world_config(name, root)
        text, n = re.subn(r"^seed:\s*\d+", f"seed: {int(world_seed)}", path.read_text(), flags=re.M)
        if n != 1:
            raise ValueError(f"{path}: expected one top-level `seed:` line, found {n}")
        path.write_text(text)
        composed = yaml.safe_load(compose(dest / "params.yaml", overrides, root=dest).read_text())
        moved = reseed_splits(composed["splits"], world, world_seed)
        overrides += [f"splits.{part}=[{','.join(repr(x) for x in ids)}]" for part, ids in moved.items()]
    compose(dest / "params.yaml", overrides, root=dest)
    if generate_world is None:
        real = any(o.startswith("dataset=") and o != "dataset=embedded" for o in overrides)
        generate_world = not real and (root / "configs" / "world" / f"{name}.yaml").is_file()
    if generate_world:
        world_config(name, root)  # fails early, naming the file, for a preset without a world
        _run([py, "-m", "gasp_core.sim.embedded", "--config", f"configs/world/{name}.yaml"], dest)
    _run(["git", "add", "-A"], dest)
    _run(["git", "commit", "-q", "-m", f"{name} preset"], dest)  # dvclive and dvc exp want a commit to stand on
    return dest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset")
    p.add_argument("dest", type=Path)
    p.add_argument("overrides", nargs="*", help="Hydra overrides on top of the preset (model=paper, finetune.steps=10)")
    p.add_argument(
        "--world-seed",
        type=int,
        default=None,
        help="generate the preset's world with this seed (splits moved onto its logs by position)",
    )
    a = p.parse_args(argv)
    print(
        f"wrote {materialize(a.preset, a.dest, overrides=a.overrides, world_seed=a.world_seed)}; "
        "run `python -m dvc repro` there"
    )


if __name__ == "__main__":
    main()
