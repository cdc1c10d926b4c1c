"""AV2 ingest throughput against the bare cost of reading the same sweep files with pyarrow.

    python benchmarks/ingest_av2.py [--root data/raw/av2 --split train] [--workers 2]

Both are measured in this run on warm page cache: (1) ``pyarrow.feather.read_table`` (all columns,
no memory map) of every sweep file of the selected logs, nothing else; (2) the full ingest of the same logs in one process
(validation, ego poses, calibration, boxes, map, compressed Arrow output); (3) the same ingest with
``--workers`` processes. Prints sweeps/s for each and the ratio ingest / bare read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow.feather as feather

from gasp_core.data.ingest import IngestConfig, ingest, list_logs
from gasp_core.parallel import ComputeConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/raw/av2")
    parser.add_argument("--split", default="train")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="bare reads are repeated and the best taken")
    args = parser.parse_args()
    cfg = IngestConfig(format="av2", root=args.root, split=args.split)
    logs = list_logs(cfg)
    files = [
        p
        for log_id in logs
        for p in sorted((Path(args.root) / args.split / log_id / "sensors" / "lidar").glob("*.feather"))
    ]
    if not files:
        raise SystemExit(f"no AV2 sweeps under {args.root}/{args.split} (run `make data` first)")
    points = sum(feather.read_table(p).num_rows for p in files)  # also warms the page cache

    bare = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for p in files:
            feather.read_table(p, memory_map=False)  # reads every byte (a memory map would defer the work)
        bare = min(bare, time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m1 = ingest(cfg, Path(tmp) / "serial", progress=False, compute=ComputeConfig(backend="sequential"))
        serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        local = ComputeConfig(backend="local", workers=args.workers)
        ingest(cfg, Path(tmp) / "parallel", progress=False, compute=local)
        parallel = time.perf_counter() - t0

    n = len(files)
    print(
        f"AV2 ingest benchmark: {len(logs)} logs, {n} sweeps, {points / n:,.0f} points/sweep ({args.root}/{args.split})"
    )
    mib = sum(p.stat().st_size for p in files) / 2**20
    print(f"  bare pyarrow feather read      : {n / bare:9.1f} sweeps/s   {mib / bare:8.1f} MiB/s of sweep files")
    print(
        f"  ingest, 1 process              : {n / serial:9.1f} sweeps/s   ratio to bare read {bare / serial:.3f} "
        f"(ingest costs {serial / bare:.1f}x the bare read), {mib / serial:.1f} MiB/s of sweep files"
    )
    print(f"  ingest, {args.workers} workers              : {n / parallel:9.1f} sweeps/s")
    print(
        f"  store size                     : {m1['store_bytes_per_sweep'] / 1024:9.1f} KiB/sweep "
        f"(raw sweep feather {sum(p.stat().st_size for p in files) / n / 1024:.1f} KiB/sweep)"
    )


if __name__ == "__main__":
    main()
