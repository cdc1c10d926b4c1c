"""``gasp view``: a stored log, and what a pre-trained model predicts in it, as a rerun recording.

    gasp view --store data/store [--log ID] [--model models/pretrain/gasp/seed_0] [--out scene.rrd] [--spawn]

Records, on the timeline ``time`` (seconds since the log's first pose), in the city frame:

* ``world/ego`` (the ego pose per sweep) with ``world/ego/lidar`` (each sweep's points in the ego frame, coloured by
  surface class where the store has labels, by height otherwise); ``world/ego_path`` (the whole path, static);
* ``world/boxes`` (annotated cuboids per timestamp, labelled with their category); ``world/map/<layer>`` (static
  polylines and rings of the HD map); ``camera/<name>`` (each camera frame, where the images are on disk);
* with ``--model``, at sample ``--sample`` (the t0 sweep): ``world/prediction`` posed at t0 holding
  ``occupancy`` (queried cells with P(occupied) > 0.5 at each future time), ``ego_path`` (cells with P > 0.5) and
  ``dino`` (the t0 sweep's points coloured by the first three principal components of the predicted DINO field).

``--out`` writes an ``.rrd`` file (open it with ``rerun scene.rrd``); ``--spawn`` starts the viewer instead. The
summary (entity -> number of logged rows) is printed; :func:`record` returns it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gasp_core.data.store import LogStore, StoredLog

TIMELINE = "time"
HEIGHTS_M = (0.25, 0.75, 1.25, 1.75)
"""Heights at which the occupancy field is queried (a BEV column per cell)."""


def _colours(values: np.ndarray, n: int | None = None) -> np.ndarray:
    """(N, 3) uint8 colours of integer classes (``n`` known) or of scalar values (min-max over turbo)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20" if n is not None else "turbo"]
    if n is not None:
        x = (np.asarray(values) % 20) / 19.0
    else:
        v = np.asarray(values, np.float64)
        x = (v - v.min()) / max(float(np.ptp(v)), 1e-9) if len(v) else v
    return (np.asarray(cmap(x))[:, :3] * 255).astype(np.uint8)


def _seconds(log: StoredLog, ts_ns) -> float:
    return (int(ts_ns) - log.pose_range_ns()[0]) * 1e-9


def record(
    store_dir: Path,
    log_id: str | None = None,
    out: Path | None = None,
    model_dir: Path | None = None,
    sample: int = 0,
    max_sweeps: int | None = None,
    spawn: bool = False,
    cell_m: float = 1.0,
) -> dict[str, int]:
    """Record one stored log (and, with ``model_dir``, the model's predictions at sweep ``sample`` + its history);
    returns the rows logged per entity path."""
    import rerun as rr

    store = LogStore(store_dir)
    log = store.log(log_id or store.log_ids[0])
    rec = rr.RecordingStream(application_id="gasp", recording_id=f"gasp-{log.log_id}")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        rec.save(str(out))
    elif spawn:
        rec.spawn()
    counts: dict[str, int] = {}

    def put(path: str, item, static: bool = False) -> None:
        rec.log(path, item, static=static)
        counts[path] = counts.get(path, 0) + 1

    rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    poses = log.city_T_ego(log.poses["timestamp_ns"].to_numpy())
    put("world/ego_path", rr.LineStrips3D([poses[:, :3, 3]], colors=[[255, 200, 0]]), static=True)
    for layer in sorted(set(log.map["layer"].to_list())):
        rows = log.map.filter(log.map["layer"] == layer)
        strips = []
        for x, y, z, closed in zip(rows["x_m"], rows["y_m"], rows["z_m"], rows["closed"]):
            xyz = np.column_stack([x, y, z if z is not None else np.zeros(len(x))])
            strips.append(np.vstack([xyz, xyz[:1]]) if closed else xyz)
        put(f"world/map/{layer}", rr.LineStrips3D(strips), static=True)

    sweeps = log.sweep_timestamps_ns[: max_sweeps or None]
    classes = log.meta.surface_classes if getattr(log.meta, "surface_classes", None) else None
    for ts in sweeps:
        rec.set_time(TIMELINE, duration=_seconds(log, ts))
        T = log.city_T_ego(ts)[0]
        put("world/ego", rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]))
        sw = log.sweep(int(ts))
        colours = (
            _colours(sw.surface, len(classes)) if sw.surface is not None and classes else _colours(sw.points_ego[:, 2])
        )
        put("world/ego/lidar", rr.Points3D(sw.points_ego, colors=colours, radii=0.05))
    boxes = log.boxes
    if max_sweeps:
        boxes = boxes.filter(boxes["timestamp_ns"] <= int(sweeps[-1]))
    categories = sorted(set(boxes["category"].to_list()))
    for (ts,), frame in sorted(boxes.group_by("timestamp_ns"), key=lambda g: g[0][0]):
        rec.set_time(TIMELINE, duration=_seconds(log, ts))
        q = frame.select("qx", "qy", "qz", "qw").to_numpy()
        put(
            "world/boxes",
            rr.Boxes3D(
                centers=frame.select("tx_m", "ty_m", "tz_m").to_numpy(),
                half_sizes=frame.select("length_m", "width_m", "height_m").to_numpy() / 2,
                quaternions=q.astype(np.float32),
                labels=frame["category"].to_list(),
                class_ids=[categories.index(c) for c in frame["category"].to_list()],
            ),
        )
    last = int(sweeps[-1]) if len(sweeps) else None
    for cam, ts, rel in log.camera_frames.select("camera", "timestamp_ns", "image_path").iter_rows():
        path = log.image_path(rel)
        if (last is not None and ts > last) or not path.is_file():
            continue
        from PIL import Image

        rec.set_time(TIMELINE, duration=_seconds(log, ts))
        put(f"camera/{cam}", rr.Image(np.asarray(Image.open(path).convert("RGB"))))

    if model_dir is not None:
        _predictions(rec, put, log, Path(model_dir), sample, cell_m)
    rec.flush()
    if out is not None:
        rec.disconnect()
    return counts


def _predictions(rec, put, log: StoredLog, model_dir: Path, sample: int, cell_m: float) -> None:
    """The model's field at t0 = the sweep ``sample + past_sweeps - 1``, posed at t0, logged at t0 + each time."""
    import rerun as rr

    from gasp_core.models.gasp_model import load_pretrained
    from gasp_core.tasks.bev import BevGrid

    model = load_pretrained(model_dir)
    scene = model.scene
    stamps = log.sweep_timestamps_ns
    k = sample + scene.past_sweeps - 1
    if k >= len(stamps):
        raise ValueError(f"log {log.log_id}: sample {sample} needs sweep {k}, the log has {len(stamps)}")
    t0 = int(stamps[k])
    past = [log.sweep_points_in(int(ts), t0, intensity=True) for ts in stamps[k - scene.past_sweeps + 1 : k + 1]]
    T = log.city_T_ego(t0)[0]
    put("world/prediction", rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]), static=True)
    xy = BevGrid(tuple(scene.extent_m[:4]), cell_m).centres()
    for t in np.linspace(0.0, scene.horizon_s, 4):
        rec.set_time(TIMELINE, duration=_seconds(log, t0) + float(t))
        occupied = []
        for z in HEIGHTS_M:
            q = np.column_stack([xy, np.full(len(xy), z), np.full(len(xy), t)])
            res = model.query(past, q)
            if "occupancy" in res:
                occupied.append(q[res["occupancy"] > 0.5, :3])
            if z == HEIGHTS_M[0] and "ego" in res:
                cells = q[res["ego"] > 0.5, :3] * [1, 1, 0]
                put("world/prediction/ego_path", rr.Points3D(cells, colors=[[255, 120, 0]], radii=cell_m / 2))
        if occupied:
            pts = np.concatenate(occupied)
            put("world/prediction/occupancy", rr.Points3D(pts, colors=_colours(pts[:, 2]), radii=cell_m / 2))
    points = past[-1][:, :3]
    res = model.query(past, np.column_stack([points, np.zeros(len(points))]))
    if "dino" in res:
        f = res["dino"] - res["dino"].mean(0)
        _, _, vt = np.linalg.svd(f, full_matrices=False)
        pcs = f @ vt[:3].T
        rgb = (pcs - pcs.min(0)) / np.maximum(np.ptp(pcs, 0), 1e-9)
        rec.set_time(TIMELINE, duration=_seconds(log, t0))
        put("world/prediction/dino", rr.Points3D(points, colors=(rgb * 255).astype(np.uint8), radii=0.08))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="gasp view", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, default=Path("data/store"))
    parser.add_argument("--log", default=None, help="default: the store's first log")
    parser.add_argument("--model", type=Path, default=None, help="a pre-trained model folder: add its predictions")
    parser.add_argument("--sample", type=int, default=0, help="which t0 the predictions are made at (0: earliest)")
    parser.add_argument("--max-sweeps", type=int, default=None, help="record only the first N sweeps")
    parser.add_argument("--out", type=Path, default=None, help="write an .rrd file (default: outputs/<log>.rrd)")
    parser.add_argument("--spawn", action="store_true", help="start the rerun viewer instead of writing a file")
    args = parser.parse_args(argv)
    out = None if args.spawn else (args.out or Path("outputs") / f"{args.log or 'view'}.rrd")
    counts = record(args.store, args.log, out, args.model, args.sample, args.max_sweeps, args.spawn)
    for path, n in sorted(counts.items()):
        print(f"{path}: {n}")
    if out is not None:
        print(f"recording: {out} (open it with: rerun {out})")


if __name__ == "__main__":
    main()
