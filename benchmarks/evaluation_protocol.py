"""What the evaluation fixes change, measured on the trained runs of the current DAG, in one run.

    python benchmarks/evaluation_protocol.py [--params params.yaml]

Needs ``dvc repro`` to have run (task labels, fine-tuned runs). For each initialisation's fine-tuned 4D-occupancy
heads (test split, mean over runs and budgets) it prints AP under the old protocol (every stored query after
t = 0: the t0 sweep's own rays included, missing-ray negatives mixed in) and under the new one (future lidar
queries only), and the two halves of that change apart. It also prints how many semantic-occupancy labels of the
test logs the old 0.1 s binning got wrong, and what the hand-written AP of the old code gave on tied scores
(the persistence baseline's) against scikit-learn's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from gasp_core.config import from_dict
from gasp_core.data.samples import SceneConfig
from gasp_core.data.store import LogStore
from gasp_core.targets.occupancy import QuerySource
from gasp_core.tasks import metrics as M
from gasp_core.tasks.base import batched_queries, sigmoid
from gasp_core.tasks.build import TaskLabels, stored_samples
from gasp_core.tasks.config import SplitsConfig, finetune_config_from_dict
from gasp_core.tasks.finetune import Features, items_of, load_encoder, load_run, pretrained_dir, run_dir
from gasp_core.tasks.occupancy.task import OccupancyTask
from gasp_core.tasks.semantic_occupancy.labels import semantic_occupancy


def _old_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """The hand-written AP the evaluation used before: order-dependent on tied scores."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def _binned_semantic(log, t0_ns: int, xyzt: np.ndarray, bin_s: float = 0.1) -> np.ndarray:
    """The old labelling: objects at each query's 0.1 s bin centre."""
    out = np.zeros(len(xyzt), np.int64)
    bins = np.floor(xyzt[:, 3] / bin_s).astype(np.int64)
    for b in np.unique(bins):
        m = np.flatnonzero(bins == b)
        t = np.full(len(m), (b + 0.5) * bin_s)
        out[m] = semantic_occupancy(log, t0_ns, np.column_stack([xyzt[m, :3], t]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = yaml.safe_load(open(args.params))
    scene = from_dict(SceneConfig, params["scene"], "scene")
    splits = from_dict(SplitsConfig, params["splits"], "splits")
    cfg = finetune_config_from_dict(params["finetune"])
    device = torch.device("cpu")
    labels = TaskLabels(Path("data/tasks/labels"))
    task = OccupancyTask(labels, Path("data/targets/occupancy"), scene, cfg)
    items = items_of(labels, splits.test)
    rows = []
    for init in cfg.inits:
        res: dict[str, list[float]] = {}
        for p in params["pretrain"]["seeds"]:
            enc_dir = pretrained_dir(Path("models/pretrain") / init, p)
            feats = Features(load_encoder(enc_dir, device), labels, device, True)
            for budget in cfg.budgets:
                for seed in cfg.seeds:
                    head, _ = load_run(
                        task, run_dir(Path("models/finetune/occupancy") / init, budget, p, seed), enc_dir, device
                    )
                    pooled: dict[str, tuple[list, list]] = {
                        k: ([], []) for k in ("old", "t>0 lidar", "future+missing", "new")
                    }
                    with torch.no_grad():
                        for it in items:
                            q, y, src = task._queries(it)
                            pick = np.random.default_rng([it[1], len(q)]).choice(
                                len(q), min(len(q), task.eval_queries), replace=False
                            )
                            q, y, src = q[pick], y[pick], src[pick]
                            s = sigmoid(batched_queries(head, feats([it]), q)[:, 0])
                            future = q[:, 3] > task.sample_array(it, "occ_t_min")
                            lidar = src != QuerySource.MISSING
                            for name, keep in (
                                ("old", q[:, 3] > 0),
                                ("t>0 lidar", lidar),
                                ("future+missing", future),
                                ("new", future & lidar),
                            ):
                                pooled[name][0].append(s[keep])
                                pooled[name][1].append(y[keep])
                    for name, (s_, y_) in pooled.items():
                        res.setdefault(name, []).append(M.average_precision(np.concatenate(s_), np.concatenate(y_)))
        rows.append((init, {k: float(np.mean(v)) for k, v in res.items()}))
    print("4D occupancy AP on the test split (mean over runs and budgets; the same draw of stored queries):")
    print(f"{'init':<10} {'old (t>0, +missing)':>20} {'t0 sweep out':>14} {'missing out':>12} {'new':>8}")
    for init, r in rows:
        print(f"{init:<10} {r['old']:>20.4f} {r['future+missing']:>14.4f} {r['t>0 lidar']:>12.4f} {r['new']:>8.4f}")
    base = task.baseline(items)
    print(f"persistence baseline, new protocol: AP {base.metrics['AP']:.4f}")

    store = LogStore(Path("data/store"))
    changed = total = inside = 0
    for lid in splits.test:
        arrays, lg = labels.log(lid), store.log(lid)
        for s, sample in enumerate(stored_samples(Path("data/targets/occupancy"), lid)):
            q = arrays["sem_xyzt"][arrays["sem_sample"] == s].astype(np.float64)
            new = arrays["sem_class"][arrays["sem_sample"] == s]
            old = _binned_semantic(lg, sample.t0_ns, q)
            changed += int((old != new).sum())
            inside += int(((old > 0) | (new > 0)).sum())
            total += len(q)
    print(
        f"semantic occupancy, test logs: {changed} of {total} labels ({100 * changed / total:.2f}%) differ between the "
        f"0.1 s bins and each query's own time; {100 * changed / max(inside, 1):.1f}% of the object labels"
    )
    rng = np.random.default_rng(0)
    y = rng.uniform(size=2000) < 0.3
    tied = np.where(
        y, rng.choice([0.0, 0.5, 1.0], 2000, p=[0.3, 0.4, 0.3]), rng.choice([0.0, 0.5, 1.0], 2000, p=[0.6, 0.3, 0.1])
    )
    order_a, order_b = np.argsort(~y, kind="stable"), np.argsort(y, kind="stable")  # positives first / last among ties
    print(
        f"AP on 3-level tied scores: old hand-written {_old_ap(tied[order_a], y[order_a]):.4f} (positives listed first) vs "
        f"{_old_ap(tied[order_b], y[order_b]):.4f} (listed last); scikit-learn {M.average_precision(tied, y):.4f} either way"
    )


if __name__ == "__main__":
    main()
