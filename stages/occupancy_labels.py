"""DVC stage ``occupancy_labels``: occupancy queries (returned and missing rays) and ego-path queries per sample.

Reads the ``scene`` and ``occupancy_labels`` sections of params.yaml, the log store at ``--store``,
and writes per-log shards under ``--out`` (schema: ``gasp_core/targets/schema.py``) and the stage
metrics to ``--metrics``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import yaml

from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.io import write_json_atomic
from gasp_core.targets.build import build_occupancy_labels, occupancy_labels_config_from_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--store", type=Path, required=True, help="the log store (ingest's output)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = yaml.safe_load(args.params.read_text())
    scene = from_dict(SceneConfig, params["scene"], "scene")
    cfg = occupancy_labels_config_from_dict(params["occupancy_labels"])
    metrics = build_occupancy_labels(args.store, args.out, scene, cfg)
    write_json_atomic(args.metrics, metrics)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
