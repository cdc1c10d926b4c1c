"""Bad input: each defect gives an error naming the log and the file, or a counted skip where configured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from gasp_core.config import ConfigError
from gasp_core.data.errors import BadSweepError, InputError
from gasp_core.data.ingest import IngestConfig, ingest, ingest_config_from_dict
from gasp_core.data.store import LogStore


@pytest.fixture
def split(av2_split, tmp_path) -> Path:
    """A private copy of the simulated AV2 split, free to damage."""
    dst = tmp_path / "raw" / "train"
    shutil.copytree(av2_split, dst)
    return dst


def log_dir(split: Path) -> Path:
    return next(p for p in split.iterdir() if p.is_dir())


def sweeps(split: Path) -> list[Path]:
    return sorted((log_dir(split) / "sensors" / "lidar").glob("*.feather"))


def run(split: Path, out: Path, **kw) -> dict:
    cfg = IngestConfig(format="av2", root=str(split.parent), split=split.name, **kw)
    return ingest(cfg, out, progress=False)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_feather(path: Path, edit) -> None:
    table = feather.read_table(path)
    cols = {name: table[name].to_numpy().copy() for name in table.column_names}
    edit(cols)
    feather.write_feather(pa.table(cols, schema=table.schema), path)


def expect_error(split, out, match, exc=InputError, **kw):
    with pytest.raises(exc, match=match) as info:
        run(split, out, **kw)
    assert log_dir(split).name in str(info.value)  # the message names the log ...
    assert not (out / log_dir(split).name).exists()  # ... and no partial log is left
    assert not (out / "manifest.json").exists()
    return info.value


def test_missing_pose_file(split, tmp_path):
    (log_dir(split) / "city_SE3_egovehicle.feather").unlink()
    err = expect_error(split, tmp_path / "s", "city_SE3_egovehicle.feather: file is missing")
    assert err.file.endswith("city_SE3_egovehicle.feather")


def test_truncated_pose_file(split, tmp_path):
    truncate(log_dir(split) / "city_SE3_egovehicle.feather")
    expect_error(split, tmp_path / "s", "city_SE3_egovehicle.feather: unreadable or truncated")


def test_nan_pose(split, tmp_path):
    edit_feather(log_dir(split) / "city_SE3_egovehicle.feather", lambda c: c["tx_m"].__setitem__(5, np.nan))
    expect_error(split, tmp_path / "s", "NaN or inf in poses")


def test_non_monotonic_pose_timestamps(split, tmp_path):
    def swap(c):
        c["timestamp_ns"][[3, 4]] = c["timestamp_ns"][[4, 3]]

    edit_feather(log_dir(split) / "city_SE3_egovehicle.feather", swap)
    expect_error(split, tmp_path / "s", "city_SE3_egovehicle.feather: pose timestamps are not strictly increasing")


def test_missing_lidar_calibration(split, tmp_path):
    path = log_dir(split) / "calibration" / "egovehicle_SE3_sensor.feather"
    table = feather.read_table(path)
    keep = np.array([n != "down_lidar" for n in table["sensor_name"].to_pylist()])
    feather.write_feather(table.filter(pa.array(keep)), path)
    expect_error(split, tmp_path / "s", "egovehicle_SE3_sensor.feather: no extrinsics for sensor 'down_lidar'")


def test_missing_camera_intrinsics(split, tmp_path):
    path = log_dir(split) / "calibration" / "intrinsics.feather"
    table = feather.read_table(path)
    feather.write_feather(table.slice(1), path)
    expect_error(split, tmp_path / "s", "intrinsics.feather: no intrinsics for camera")


def test_unknown_category_errors_or_maps_to_other(split, tmp_path):
    def alien(c):
        c["category"][:3] = "FLYING_SAUCER"

    edit_feather(log_dir(split) / "annotations.feather", alien)
    expect_error(split, tmp_path / "s", r"annotations.feather: unknown category \['FLYING_SAUCER'\]")
    metrics = run(split, tmp_path / "t", on_unknown_category="other")
    assert metrics["unknown_category_boxes"] == 3
    boxes = LogStore(tmp_path / "t").log(log_dir(split).name).boxes
    saucers = boxes.filter(boxes["category_raw"] == "FLYING_SAUCER")
    assert saucers.height == 3 and set(saucers["category"]) == {"other"}


@pytest.mark.parametrize(
    "defect, reason",
    [
        ("truncate", "unreadable or truncated sweep"),
        ("nan", "points with NaN or inf coordinates"),
        ("empty", "sweep has no points"),
        ("delete_columns", "unreadable or truncated sweep"),
    ],
)
def test_bad_sweep_is_skipped_and_counted_or_stops(split, tmp_path, defect, reason):
    bad = sweeps(split)[4]
    if defect == "truncate":
        truncate(bad)
    elif defect == "nan":
        edit_feather(bad, lambda c: c["x"].__setitem__(slice(0, 7), np.nan))
    elif defect == "empty":
        table = feather.read_table(bad)
        feather.write_feather(table.slice(0, 0), bad)
    else:
        feather.write_feather(feather.read_table(bad).drop(["offset_ns"]), bad)
    metrics = run(split, tmp_path / "s", max_bad_sweep_fraction=0.2)
    assert metrics["sweeps"] == 9 and metrics["sweeps_skipped"] == 1
    assert sum(metrics["sweeps_skipped_by_reason"].values()) == 1
    assert reason.split(" (")[0] in next(iter(metrics["sweeps_skipped_by_reason"]))
    log = LogStore(tmp_path / "s").log(log_dir(split).name)
    assert int(bad.stem) not in log.sweep_timestamps_ns
    assert [s.file for s in log.meta.skipped] == [str(bad)] and reason in log.meta.skipped[0].reason
    err = expect_error(split, tmp_path / "e", reason, exc=BadSweepError, on_bad_sweep="error")
    assert err.file == str(bad)


def test_too_many_bad_sweeps_fail_the_log(split, tmp_path):
    for path in sweeps(split)[:3]:
        truncate(path)
    expect_error(split, tmp_path / "s", r"3 of 10 sweeps unusable \(more than max_bad_sweep_fraction=0.1\)")


def test_bad_log_can_be_skipped_and_counted(split, tmp_path):
    good = log_dir(split)
    twin = split / "00000000-0000-0000-0000-00000000beef"
    shutil.copytree(good, twin)
    (twin / "annotations.feather").unlink()
    metrics = run(split, tmp_path / "s", on_bad_log="skip")
    assert (metrics["logs_ingested"], metrics["logs_failed"]) == (1, 1)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["logs"] == [good.name] and "annotations.feather: file is missing" in manifest["failed"][twin.name]
    assert not (tmp_path / "s" / twin.name).exists()


def test_unknown_or_missing_log_selection(split, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"log\(s\) \['nope'\] not found"):
        run(split, tmp_path / "s", logs=["nope"])


def test_config_rejects_unknown_and_invalid_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['wokers'\] in ingest"):
        ingest_config_from_dict({"wokers": 3})
    with pytest.raises(ConfigError, match="ingest.on_bad_sweep: 'ignore' is not one of"):
        ingest_config_from_dict({"on_bad_sweep": "ignore"})


# --- nuScenes-specific defects -------------------------------------------------------------------


@pytest.fixture
def nus_root(nuscenes_root, tmp_path) -> Path:
    dst = tmp_path / "nus"
    shutil.copytree(nuscenes_root, dst)
    return dst


def nus_run(root: Path, out: Path, **kw) -> dict:
    from gasp_core.data import nuscenes_reader

    nuscenes_reader._NUSC_CACHE.clear()
    cfg = IngestConfig(format="nuscenes", root=str(root), version="v1.0-test", split="all", **kw)
    return ingest(cfg, out, progress=False)


def test_nuscenes_missing_sweep_file_is_skipped(nus_root, tmp_path):
    victim = sorted((nus_root / "sweeps" / "LIDAR_TOP").glob("*.pcd.bin"))[2]
    victim.unlink()
    metrics = nus_run(nus_root, tmp_path / "s", max_bad_sweep_fraction=0.2)
    assert metrics["sweeps"] == 9 and metrics["sweeps_skipped_by_reason"] == {"sweep file is missing": 1}
    with pytest.raises(BadSweepError, match=f"{victim.name}: sweep file is missing"):
        nus_run(nus_root, tmp_path / "e", on_bad_sweep="error")


def test_nuscenes_truncated_sweep(nus_root, tmp_path):
    victim = sorted((nus_root / "sweeps" / "LIDAR_TOP").glob("*.pcd.bin"))[0]
    victim.write_bytes(victim.read_bytes()[:-6])
    with pytest.raises(BadSweepError, match="truncated"):
        nus_run(nus_root, tmp_path / "e", on_bad_sweep="error")


def test_nuscenes_non_monotonic_timestamps(nus_root, tmp_path):
    path = nus_root / "v1.0-test" / "sample_data.json"
    records = json.loads(path.read_text())
    lidar = sorted((r for r in records if "LIDAR_TOP" in r["filename"]), key=lambda r: r["timestamp"])
    lidar[3]["timestamp"], lidar[4]["timestamp"] = lidar[4]["timestamp"], lidar[3]["timestamp"]
    path.write_text(json.dumps(records))
    with pytest.raises(InputError, match="sample_data.json: LIDAR_TOP timestamps not increasing"):
        nus_run(nus_root, tmp_path / "e")


def test_ego_dims_come_from_the_world_manifest(tmp_path):
    """The generator writes the ego's box into its manifest and ingest reads it there (the data layer never imports
    the simulator); a manifest without it is an error that names the file, never a silent default."""
    import json

    from gasp_core.data.ingest import IngestConfig, ego_dims
    from gasp_core.data.schema import EgoDims
    from gasp_core.sim.config import world_config_from_dict
    from gasp_core.sim.generate import generate

    world = world_config_from_dict({"ego_length_m": 5.2, "ego_rear_overhang_m": 1.3, "seconds": 0.3})
    generate("av2", tmp_path / "av2", 1, 0.3, 0, config={"ego_length_m": 5.2, "ego_rear_overhang_m": 1.3})
    assert ego_dims(IngestConfig(root=str(tmp_path / "av2"))) == EgoDims(
        5.2, world.ego_width_m, world.ego_height_m, 1.3
    )
    manifest = tmp_path / "av2" / "gasp_sim_manifest.json"
    data = json.loads(manifest.read_text())
    del data["ego"]
    manifest.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="gasp_sim_manifest.json: no 'ego' entry"):
        ego_dims(IngestConfig(root=str(tmp_path / "av2")))
