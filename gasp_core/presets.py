"""Presets of the whole DAG: ``configs/presets/<name>.yaml`` holds ``params`` (deep-merged onto params.yaml) and
``world`` (the generator config of its embedded world).

``python -m gasp_core.presets smoke DEST`` writes a self-contained project at DEST (dvc.yaml, stages, gasp_core,
the merged params.yaml, a generated world under data/raw), ready for ``python -m dvc repro``: what
``tests/test_smoke_dag.py`` runs.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def deep_merge(base: dict, override: dict, where: str = "") -> dict:
    """``base`` with ``override``'s values; nested mappings merge, and every overridden key must exist in base."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in out:
            raise KeyError(f"preset overrides {where}{key}, which params.yaml does not have")
        if isinstance(value, dict) and isinstance(out[key], dict) and key not in ("budgets",):
            out[key] = deep_merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_preset(name: str, root: Path = ROOT) -> tuple[dict, dict]:
    """(merged params, world generator config) of a preset."""
    path = root / "configs" / "presets" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such preset")
    preset = yaml.safe_load(path.read_text())
    params = yaml.safe_load((root / "params.yaml").read_text())
    return deep_merge(params, preset.get("params") or {}), preset["world"]


def materialize(name: str, dest: Path, root: Path = ROOT, generate_world: bool = True) -> Path:
    """A runnable copy of the project at ``dest`` with the preset's params (and world, when asked)."""
    from gasp_core.sim.generate import generate

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    params, world = load_preset(name, root)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("stages", "gasp_core", "configs"):
        shutil.copytree(root / folder, dest / folder, ignore=ignore, dirs_exist_ok=True)
    shutil.copy2(root / "dvc.yaml", dest / "dvc.yaml")
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dest / ".gitignore").write_text("/data\n/models\n/outputs\n")
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                [sys.executable, "-m", "dvc", "config", "core.analytics", "false"], ["git", "add", "-A"],
                ["git", "-c", "user.name=gasp", "-c", "user.email=gasp@localhost", "commit", "-q", "-m", f"{name} preset"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)  # dvclive wants a commit to stand on
    if generate_world:
        generate(world["format"], dest / world["out"], int(world["logs"]), float(world["seconds"]), int(world["seed"]),
                 int(world.get("workers", 1)), world.get("world") or {}, world.get("split", "train"))
    return dest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset")
    p.add_argument("dest", type=Path)
    a = p.parse_args(argv)
    print(f"wrote {materialize(a.preset, a.dest)}; run `python -m dvc repro` there")


if __name__ == "__main__":
    main()
