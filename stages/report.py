"""DVC stage ``report``: the comparison table, radar chart and qualitative figures of the downstream runs.

Reads the ``evaluate`` stages' metrics (``--metrics-dir``) and predictions (``--eval``), the task labels and the
GASP model (its DINO field for the BEV PCA figure); the ``splits`` and ``finetune`` params. Writes ``--out``
(README.md, summary.json, main_metrics.csv, PNGs), committed to git so the results are readable without a
rebuild.
"""

import json
from pathlib import Path

import numpy as np

from gasp_core.cli import read_params, stage_parser, write_metrics
from gasp_core.config import from_dict
from gasp_core.models.gasp_model import load_pretrained
from gasp_core.tasks.build import TaskLabels
from gasp_core.tasks.config import SplitsConfig, finetune_config_from_dict
from gasp_core.tasks.report import dino_bev, write_report


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--metrics-dir", type=Path, required=True, help="evaluate stages' metrics (<task>.json)")
    parser.add_argument("--eval", type=Path, required=True, help="evaluate stages' outputs (<task>/qualitative.npz)")
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--plot", type=Path, default=None, help="main metrics as CSV for dvc plots")
    parser.add_argument("--gasp", type=Path, default=None, help="pre-trained GASP model folder (DINO figure)")
    args = parser.parse_args()
    params = read_params(args.params)
    splits = from_dict(SplitsConfig, params["splits"], "splits")
    cfg = finetune_config_from_dict(params["finetune"])
    metrics, qualitative = {}, {}
    for task in cfg.tasks:
        path = args.metrics_dir / f"{task}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run the evaluate@{task} stage first")
        metrics[task] = json.loads(path.read_text())
        with np.load(args.eval / task / "qualitative.npz", allow_pickle=False) as z:
            for key in z.files:
                init, name = key.split("/", 1)
                qualitative.setdefault(task, {}).setdefault(init, {})[name] = z[key]
    if args.gasp is not None and (args.gasp / "config.json").is_file():
        model = load_pretrained(args.gasp)
        if model.dino is not None:
            voxels = TaskLabels(args.labels).log(splits.test[0])["voxels"][0]
            qualitative["dino_bev"] = dino_bev(model, voxels)
    extras = {"encoder": cfg.encoder, "label budgets": ", ".join(f"{k} = {v:g} of the training logs" for k, v in cfg.budgets.items()),
              "seeds": len(cfg.seeds), "test logs": len(splits.test),
              "test samples": metrics[cfg.tasks[0]]["samples"]}
    summary = write_report(metrics, qualitative, args.out, cfg.inits, list(cfg.budgets), extras, args.plot)
    flat = {}
    for task, s in summary["tasks"].items():
        for b, per in s["mean"].items():
            for init, v in per.items():
                flat[f"{task}/{b}/{init}/{s['metric']}"] = v
    write_metrics(args.metrics, flat)


if __name__ == "__main__":
    main()
