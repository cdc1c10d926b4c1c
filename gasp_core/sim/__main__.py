"""CLI: ``python -m gasp_core.sim --format av2|nuscenes --out DIR --logs N --seconds S --seed K``.

AV2 logs go to ``DIR/<split>/<log_id>/``; a nuScenes dataset to ``DIR/`` (tables in
``DIR/<version>/``). Log i uses seed ``K * 1000 + i``, so the output is a pure function of the
arguments and the config. Logs are simulated in parallel (``--workers``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

from gasp_core.sim.config import WorldConfig
from gasp_core.sim.generate import generate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gasp_core.sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--format", choices=["av2", "nuscenes"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--logs", type=int, default=1)
    p.add_argument("--seconds", type=float, default=WorldConfig.seconds)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--split", default="train", help="AV2 split folder")
    p.add_argument("--version", default="v1.0-gasp", help="nuScenes version (table folder)")
    p.add_argument("--config", type=Path, help="YAML with WorldConfig overrides (nested: town/traffic/lidar/camera)")
    p.add_argument("--clean", action="store_true", help="remove --out first")
    a = p.parse_args(argv)
    config = yaml.safe_load(a.config.read_text()) if a.config else {}
    if a.clean and a.out.exists():
        shutil.rmtree(a.out)
    manifest = generate(a.format, a.out, a.logs, a.seconds, a.seed, a.workers, config, a.split, a.version)
    print(json.dumps({k: manifest[k] for k in ("format", "logs", "seconds", "seed", "generation_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
