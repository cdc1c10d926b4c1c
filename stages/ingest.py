"""DVC stage ``ingest``: raw AV2 / nuScenes logs -> the normalized log store.

Reads the ``ingest`` section of params.yaml (``gasp_core.data.ingest.IngestConfig``), writes one
folder per log under ``--out`` (schema: ``gasp_core/data/schema.py``) and the stage metrics to
``--metrics``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import yaml

from gasp_core.data.ingest import ingest, ingest_config_from_dict
from gasp_core.io import write_json_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, required=True, help="the log store folder (a DVC out)")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON (a DVC metric)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = ingest_config_from_dict(yaml.safe_load(args.params.read_text())["ingest"])
    metrics = ingest(cfg, args.out)
    write_json_atomic(args.metrics, metrics)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
