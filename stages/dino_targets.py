"""DVC stage ``dino_targets``: DINOv2 (timm) features of every camera frame, PCA-reduced and lifted onto lidar points.

Reads the ``dino_targets`` section of params.yaml and the log store at ``--store``; writes the PCA,
the teacher's identity and per-log point targets under ``--out`` (schema: ``gasp_core/targets/schema.py``)
and the stage metrics to ``--metrics``. Offline unless ``teacher.weights`` is ``hub``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import yaml

from gasp_core.io import write_json_atomic
from gasp_core.targets.dino import build_dino_targets, dino_targets_config_from_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--store", type=Path, required=True, help="the log store (ingest's output)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = dino_targets_config_from_dict(yaml.safe_load(args.params.read_text())["dino_targets"])
    metrics = build_dino_targets(args.store, args.out, cfg)
    write_json_atomic(args.metrics, metrics)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
