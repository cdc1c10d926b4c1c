"""params.yaml is the Hydra composition of ``configs/`` (config groups: dataset, model, preset).

DVC composes it itself on every ``dvc exp run`` (``.dvc/config``: ``hydra.enabled``, ``hydra.config_dir``), but
``dvc repro`` reads params.yaml as it stands. This module runs the very function DVC runs
(``dvc.utils.hydra.compose_and_dump``), so the file it writes is byte-for-byte what ``dvc exp run`` would write:

    python -m gasp_core.params                       # rewrite params.yaml from configs/   (make params)
    python -m gasp_core.params --check               # exit 1 with a diff if params.yaml is stale
    python -m gasp_core.params preset=smoke model=paper -o /tmp/params.yaml   # any Hydra overrides
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

from gasp_core.io import atomic_path

ROOT = Path(__file__).resolve().parents[1]


def hydra_settings(root: Path = ROOT) -> dict:
    """The ``[hydra]`` section of the repository's DVC config, with DVC's defaults filled in."""
    from dvc.config import Config

    cfg = Config(dvc_dir=str(Path(root) / ".dvc")).get("hydra", {})
    if not cfg.get("enabled", False):
        raise RuntimeError(f"{root}/.dvc/config: hydra.enabled is not true; `dvc config hydra.enabled true`")
    return {
        "config_dir": str(Path(root) / cfg.get("config_dir", "conf")),
        "config_name": cfg.get("config_name", "config"),
        "plugins_path": str(Path(root) / cfg.get("plugins_path", "")),
    }


def compose(out: Path, overrides: list[str] | tuple[str, ...] = (), root: Path = ROOT) -> Path:
    """Compose ``configs/`` with Hydra ``overrides`` into ``out`` exactly as ``dvc exp run`` does (atomically)."""
    from dvc.utils.hydra import compose_and_dump

    settings = hydra_settings(root)
    with atomic_path(out, suffix=Path(out).suffix) as tmp:  # DVC's dumper goes by the file's ending
        compose_and_dump(
            tmp, settings["config_dir"], None, settings["config_name"], settings["plugins_path"], list(overrides)
        )
    return Path(out)


def stale_diff(params: Path, overrides: list[str] | tuple[str, ...] = (), root: Path = ROOT) -> str:
    """A unified diff from ``params`` to the composition of ``configs/``; empty when they agree byte for byte."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compose(Path(tmp) / "params.yaml", overrides, root).read_text()
    current = Path(params).read_text() if Path(params).is_file() else ""
    return "".join(
        difflib.unified_diff(current.splitlines(True), fresh.splitlines(True), str(params), "composition of configs/")
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides: preset=smoke, pretrain.train.steps=500, ...")
    p.add_argument("-o", "--out", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when they differ")
    a = p.parse_args(argv)
    if a.check:
        diff = stale_diff(a.out, a.overrides)
        if diff:
            sys.stdout.write(diff)
            print(f"\n{a.out} is not the composition of configs/: run `make params`", file=sys.stderr)
            return 1
        print(f"{a.out} is the composition of configs/")
        return 0
    print(f"wrote {compose(a.out, a.overrides)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
