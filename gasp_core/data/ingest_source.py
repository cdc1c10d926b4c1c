"""Ingest's inputs: which logs a config selects, opening one as a :class:`~gasp_core.data.source.LogSource`, the ego's
dimensions and the fingerprint that lets a rerun skip a log whose inputs and config have not changed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from gasp_core.data.ingest_config import IngestConfig
from gasp_core.data.schema import DEFAULT_EGO_DIMS, SCHEMA_VERSION, EgoDims
from gasp_core.data.source import LogSource


def list_logs(cfg: IngestConfig) -> list[str]:
    """The log ids the config selects, validated against what the source holds."""
    if cfg.format == "av2":
        from gasp_core.data.av2_reader import AV2LogReader

        available = AV2LogReader.log_ids(Path(cfg.root) / cfg.split)
    else:
        available = [s["name"] for s in _nuscenes_scenes(cfg)]
    if cfg.logs is None:
        return available
    missing = sorted(set(cfg.logs) - set(available))
    if missing:
        raise FileNotFoundError(
            f"log(s) {missing} not found in {cfg.format} {cfg.root} ({cfg.split}); {len(available)} available"
        )
    return list(cfg.logs)


def _nuscenes_scenes(cfg: IngestConfig) -> list[dict]:
    from gasp_core.data.nuscenes_reader import open_nuscenes

    nusc = open_nuscenes(Path(cfg.root), cfg.version)
    scenes = sorted(nusc.scene, key=lambda s: s["name"])
    if cfg.split == "all":
        return scenes
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes(verbose=False)
    if cfg.split not in splits:
        raise ValueError(f"unknown nuScenes split {cfg.split!r}; choose 'all' or one of {sorted(splits)}")
    wanted = set(splits[cfg.split])
    return [s for s in scenes if s["name"] in wanted]


def open_source(cfg: IngestConfig, log_id: str) -> LogSource:
    if cfg.format == "av2":
        from gasp_core.data.av2_reader import AV2LogReader

        return AV2LogReader(Path(cfg.root) / cfg.split, log_id)
    from gasp_core.data.nuscenes_reader import NuScenesLogSource, open_nuscenes

    nusc = open_nuscenes(Path(cfg.root), cfg.version)
    scene = next(s for s in nusc.scene if s["name"] == log_id)
    return NuScenesLogSource(nusc, scene["token"])


def ego_dims(cfg: IngestConfig) -> EgoDims:
    """The config's override, else the embedded world's (the ``ego`` entry of its manifest), else the dataset
    default."""
    if cfg.ego is not None:
        return cfg.ego
    manifest = Path(cfg.root) / "gasp_sim_manifest.json"
    if manifest.is_file():
        ego = json.loads(manifest.read_text()).get("ego")
        fields = ("length_m", "width_m", "height_m", "rear_overhang_m")
        if not isinstance(ego, dict) or any(not isinstance(ego.get(k), (int, float)) for k in fields):
            raise ValueError(
                f"{manifest}: no 'ego' entry with {', '.join(fields)} (an older generator wrote this world): "
                "regenerate it (`make data`) or set ingest.ego"
            )
        return EgoDims(*(float(ego[k]) for k in fields))
    return DEFAULT_EGO_DIMS[cfg.format]


def fingerprint(source: LogSource, cfg: IngestConfig, ego: EgoDims) -> str:
    """Hash of the log's input files (path and size, surface sidecar included), its surface class names and every
    config field that changes the output."""
    root = Path(source.source_root)
    files = []
    for p in source.input_files():
        try:
            rel = str(p.relative_to(root))
        except ValueError:
            rel = str(p)
        files.append((rel, p.stat().st_size if p.exists() else -1))
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("logs", "root")}
    content = {"schema": SCHEMA_VERSION, "files": files, "settings": settings, "ego": asdict(ego)}
    classes = source.surface_classes()
    if classes is not None:  # absent for unlabelled logs, so their fingerprints stay as they were
        content["surface_classes"] = classes
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()
