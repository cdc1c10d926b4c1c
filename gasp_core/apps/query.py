"""Query a pre-trained GASP / UnO field on a stored sample, score it against that sample's labels, draw it.

    python -m gasp_core.apps.query --model models/pretrain/gasp/seed_0 [--store data/store]
        [--occupancy data/targets/occupancy] [--log LOG_ID] [--sample 0] [--out outputs/query_gasp.png]

Prints the occupancy accuracy and average precision on the sample's stored occupancy queries (and the
ego-path ones when the model has that head) and writes a BEV figure of the field at t = 0 .. horizon.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.ipc as ipc

from gasp_core.data.store import LogStore
from gasp_core.models.gasp_model import load_pretrained
from gasp_core.targets import schema
from gasp_core.tasks.metrics import average_precision


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--store", type=Path, default=Path("data/store"))
    parser.add_argument("--occupancy", type=Path, default=Path("data/targets/occupancy"))
    parser.add_argument("--log", default=None, help="default: the store's first log")
    parser.add_argument("--sample", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="figure path (default outputs/query_<model name>.png)")
    args = parser.parse_args(argv)

    model = load_pretrained(args.model)
    store = LogStore(args.store)
    log = store.log(args.log or store.log_ids[0])
    samples = pl.read_parquet(args.occupancy / log.log_id / schema.SAMPLES_FILE)
    row = samples.row(args.sample, named=True)
    t0 = row["t0_ns"]
    past = [log.sweep_points_in(ts, t0, intensity=True) for ts in row["past_ns"]]

    with ipc.open_file(args.occupancy / log.log_id / schema.OCCUPANCY_FILE) as f:
        occ = f.get_batch(row["batch"])
    q = np.column_stack([occ.column(c).to_numpy().astype(np.float64) for c in ("x_m", "y_m", "z_m", "t_s")])
    labels = occ.column("occupied").to_numpy()
    pred = model.query(past, q)
    print(f"model {args.model} ({'+'.join(k for k, v in vars(model.variant).items() if v)}), log {log.log_id}, t0 {t0}")
    print(
        f"  occupancy: {len(labels)} stored queries, accuracy {((pred['occupancy'] > 0.5) == labels).mean():.3f}, "
        f"AP {average_precision(pred['occupancy'], labels):.3f} (occupied fraction {labels.mean():.3f})"
    )
    if "ego" in pred:
        with ipc.open_file(args.occupancy / log.log_id / schema.EGO_PATH_FILE) as f:
            ego = f.get_batch(row["batch"])
        xyt = np.column_stack([ego.column(c).to_numpy().astype(np.float64) for c in ("x_m", "y_m", "t_s")])
        inside = ego.column("inside").to_numpy()
        p = model.query(past, np.column_stack([xyt[:, :2], np.zeros(len(xyt)), xyt[:, 2]]))["ego"]
        print(
            f"  ego path : {len(inside)} stored queries, accuracy {((p > 0.5) == inside).mean():.3f}, "
            f"AP {average_precision(p, inside):.3f}"
        )

    from gasp_core.tasks.bev import BevGrid
    from gasp_core.viz.field import plot_field

    scene = model.scene
    grid = BevGrid(tuple(scene.extent_m[:4]), 0.5)
    xy, shape = grid.centres(), grid.shape
    times = np.linspace(0.0, scene.horizon_s, 4)
    panels: dict[str, list] = {"occupancy (max over z 0-2 m)": [], "ego path": []}
    for t in times:
        heights = [
            model.query(past, np.column_stack([xy, np.full(len(xy), z), np.full(len(xy), t)]))
            for z in (0.25, 0.75, 1.25, 1.75)
        ]
        panels["occupancy (max over z 0-2 m)"].append(
            (t, np.max([h["occupancy"] for h in heights], axis=0).reshape(shape))
        )
        if "ego" in heights[0]:
            panels["ego path"].append((t, heights[0]["ego"].reshape(shape)))
    panels = {k: v for k, v in panels.items() if v}
    out = args.out or Path("outputs") / f"query_{args.model.name}.png"
    plot_field(panels, past[-1], scene.extent_m, out, f"{args.model} on log {log.log_id[:8]}, sample {args.sample}")
    print(f"  figure   : {out}")


if __name__ == "__main__":
    main()
