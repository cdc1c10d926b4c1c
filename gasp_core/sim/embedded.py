"""Materialise the embedded default raw data tracked by ``data.dvc``.

``python -m gasp_core.sim.embedded`` (what ``make data`` runs):
1. nothing to do when ``data/raw`` already matches ``data.dvc``;
2. ``dvc pull data.dvc`` when a DVC remote is configured;
3. otherwise generate the world from ``configs/world/demo.yaml`` (deterministic per seed)
   and ``dvc add data/raw``, so ``data.dvc`` tracks exactly what was generated.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from gasp_core.sim.generate import generate

RAW_DIR = Path("data/raw")


def _dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], check=check, capture_output=True, text=True)


def _raw_matches_dvc_file() -> bool:
    if not (RAW_DIR.exists() and Path("data.dvc").exists()):
        return False
    status = _dvc("status", "data.dvc", "--json", check=False)
    return status.returncode == 0 and status.stdout.strip() in ("{}", "")


def track_raw_dir() -> None:
    """``dvc add data/raw``, with the .dvc file kept at the repository root as ``data.dvc``.

    ``dvc add`` always writes ``data/raw.dvc`` beside its target; DVC accepts the same record at the
    root with the out path relative to it, which is where the project layout puts it.
    """
    _dvc("add", str(RAW_DIR))
    beside = RAW_DIR.parent / "raw.dvc"
    if not beside.exists():
        return  # data/raw was already tracked by data.dvc, which dvc updated in place
    record = yaml.safe_load(beside.read_text())
    record["outs"][0]["path"] = str(RAW_DIR)
    Path("data.dvc").write_text(yaml.safe_dump(record, sort_keys=False))
    beside.unlink()
    (RAW_DIR.parent / ".gitignore").unlink(missing_ok=True)  # the root .gitignore lists /data/raw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path("configs/world/demo.yaml"))
    p.add_argument("--force", action="store_true", help="regenerate even when data/raw is up to date")
    a = p.parse_args(argv)
    if not Path(".dvc").is_dir():
        raise SystemExit("run from the repository root (no .dvc/ folder here)")
    if not a.force and _raw_matches_dvc_file():
        print("data/raw is up to date with data.dvc")
        return 0
    if not a.force and Path("data.dvc").exists() and _dvc("remote", "list", check=False).stdout.strip():
        pulled = _dvc("pull", "data.dvc", check=False)
        if pulled.returncode == 0:
            print("pulled data/raw from the DVC remote")
            return 0
        print(f"dvc pull failed, generating instead:\n{pulled.stderr.strip()}", file=sys.stderr)
    cfg = yaml.safe_load(a.config.read_text())
    old_md5 = Path("data.dvc").read_text() if Path("data.dvc").exists() else None
    if RAW_DIR.exists():
        shutil.rmtree(RAW_DIR)
    manifest = generate(
        cfg["format"],
        Path(cfg["out"]),
        int(cfg["logs"]),
        float(cfg["seconds"]),
        int(cfg["seed"]),
        int(cfg.get("workers", 1)),
        cfg.get("world") or {},
        cfg.get("split", "train"),
    )
    print(f"generated {manifest['logs']} {manifest['format']} logs in {manifest['generation_s']} s")
    track_raw_dir()
    new = Path("data.dvc").read_text()
    if old_md5 is not None and new != old_md5:
        print(
            "note: data.dvc changed: the regenerated data differs from the committed hash "
            "(a different config, or a platform with different floating-point results)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
