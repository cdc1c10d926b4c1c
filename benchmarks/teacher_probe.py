"""Which teacher's targets carry the world's semantics? The surface-class probe of each option, measured in one run.

    python benchmarks/teacher_probe.py [--params params.yaml] [--store data/store] [--teachers random models/teacher]
                                       [--frame-stride 3] [--out /tmp/teacher_probe]

For each teacher (``random``: the DINOv2 architecture with random weights; a ``teacher`` stage folder: the in-domain
teacher; a checkpoint path; ``hub``), builds the DINO targets exactly as the ``dino_targets`` stage does (its params,
with ``teacher.weights`` replaced) into a scratch folder and prints the linear probe of the surface class, fitted on
the training logs' points and scored on the test logs': from the colour at the pixel (the floor, identical for every
teacher) and from the teacher's targets. Needs a store with surface labels (the embedded world's sidecar).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import yaml

from gasp_core.targets.dino import build_dino_targets, dino_targets_config_from_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--store", type=Path, default=Path("data/store"))
    parser.add_argument("--teachers", nargs="+", default=["random", "models/teacher"])
    parser.add_argument("--frame-stride", type=int, default=None, help="default: the params' dino_targets.frame_stride")
    parser.add_argument("--out", type=Path, default=Path("/tmp/teacher_probe"))
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    rows = []
    for weights in args.teachers:
        section = copy.deepcopy(params["dino_targets"])
        section["teacher"]["weights"] = weights
        if args.frame_stride:
            section["frame_stride"] = args.frame_stride
        cfg = dino_targets_config_from_dict(section, strict=True)
        start = time.perf_counter()
        m = build_dino_targets(
            args.store,
            out=args.out / weights.replace("/", "_"),
            cfg=cfg,
            fit_logs=params["splits"]["train"],
            progress=False,
            test_logs=params["splits"]["test"],
        )
        if "probe" not in m:
            raise SystemExit(f"{args.store}: no surface labels, nothing to probe")
        rows.append((weights, m, time.perf_counter() - start))
    classes = list(rows[0][1]["probe"]["teacher"]["IoU"])
    present = [c for c in classes if rows[0][1]["probe"]["teacher"]["IoU"][c] is not None]
    print(f"\nsurface-class probe, fitted on {params['splits']['train']}, scored on {params['splits']['test']}")
    print(f"{'features':<28} {'acc':>6} {'mIoU':>6}  " + " ".join(f"{c[:7]:>7}" for c in present) + "   seconds")
    table = [("rgb at the pixel", rows[0][1]["probe"]["rgb"], 0.0)]
    table += [(f"teacher {w} ({m['teacher_weights'].split(':sha')[0]})", m["probe"]["teacher"], s) for w, m, s in rows]
    for name, p, s in table:
        print(
            f"{name[:28]:<28} {p['accuracy']:>6.3f} {p['mIoU']:>6.3f}  "
            + " ".join(f"{p['IoU'][c]:>7.3f}" for c in present)
            + f"   {s:7.1f}"
        )
    (args.out / "probe.json").write_text(json.dumps({n: p for n, p, _ in table}, indent=1))


if __name__ == "__main__":
    main()
