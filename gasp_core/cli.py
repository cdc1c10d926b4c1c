"""What every stage script shares: its argument parser, its params file, its metrics file."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import yaml

from gasp_core.io import write_json_atomic


def stage_parser(doc: str, out: bool = True) -> argparse.ArgumentParser:
    """A parser with the stage's docstring and ``--params``, ``--out`` (unless the stage writes metrics only) and
    ``--metrics``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    if out:
        parser.add_argument("--out", type=Path, required=True, help="the stage's output (a DVC out)")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON (a DVC metric)")
    return parser


class Params(dict):
    """params.yaml's top level; a section it lacks is named with the file, not a bare KeyError."""

    path: Path = Path("params.yaml")

    def __missing__(self, key: str):
        from gasp_core.config import ConfigError

        raise ConfigError(
            f"{self.path}: no `{key}` section (sections: {sorted(self)}); "
            "params.yaml is composed from configs/ (`make params`)"
        )


def read_params(path: Path) -> Params:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    params = Params(data)
    params.path = Path(path)
    return params


def write_metrics(path: Path, metrics: dict) -> None:
    """Written by the main process only (under torchrun every rank runs the script)."""
    if int(os.environ.get("RANK", "0")) == 0:
        write_json_atomic(path, metrics)
        print(json.dumps(metrics, indent=1))


def compute_config(params: dict):
    """How this stage runs its per-log jobs: params.yaml's ``compute`` section (defaults where it has none). It is read
    here and declared by no stage in dvc.yaml, so changing it reruns nothing; no output records it."""
    from gasp_core.parallel import compute_config_from_dict

    return compute_config_from_dict(params.get("compute"), strict=False)


def pretrain_pool(splits: dict):
    """The logs self-supervision reads (the teacher, the DINO PCA): ``splits.train`` + ``splits.pool``. An unset
    ``splits.train`` (``???``) passes through as is, for the reader's own error naming it."""
    train = splits.get("train")
    if not isinstance(train, list):
        return train
    return [*train, *(splits.get("pool") or [])]
