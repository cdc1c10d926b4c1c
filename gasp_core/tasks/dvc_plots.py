"""The ``plots:`` section of ``dvc.yaml``, generated from the task registry.

Each task with AP histograms (:attr:`~gasp_core.tasks.base.Task.pr_curve`) gets one precision-recall plot over the
``pr_<init>.csv`` files its ``evaluate`` stage writes: one per initialisation of ``params.yaml``'s
``finetune.inits``, and the non-learned baseline's first where the task has one. ``python -m
gasp_core.tasks.dvc_plots`` prints the section; ``--write dvc.yaml`` puts it there (every other line is kept).
``tests/tasks/test_registry.py`` fails when ``dvc.yaml`` differs from it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gasp_core.tasks import registry

ROOT = Path(__file__).resolve().parents[2]


def plots_section(inits: list[str]) -> str:
    """The ``plots:`` section's lines (no trailing newline) for initialisations ``inits``."""
    lines = ["plots:"]
    for plot in registry.pr_plots(inits):
        for name, spec in plot.items():
            lines += [f"  - {name}:", f"      template: {spec['template']}", f"      x: {spec['x']}", "      y:"]
            lines += [f"        {path}: {column}" for path, column in spec["y"].items()]
    return "\n".join(lines)


def params_inits(params: Path) -> list[str]:
    return list(yaml.safe_load(Path(params).read_text())["finetune"]["inits"])


def rewrite_plots(path: Path, params: Path) -> bool:
    """Replace the top-level ``plots:`` section of ``path`` (up to the next top-level key or the end) with
    :func:`plots_section` for ``params``' inits; returns whether the file changed."""
    text = Path(path).read_text()
    found = re.search(r"^plots:\n(?:(?:[ #].*)?\n)*?(?=^\S|\Z)", text, re.M)
    if found is None:
        raise ValueError(f"{path}: no top-level plots: section to replace")
    rest = text[found.end() :]
    new = text[: found.start()] + plots_section(params_inits(params)) + "\n" + ("\n" + rest if rest else "")
    changed = new != text
    if changed:
        Path(path).write_text(new)
    return changed


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="where finetune.inits is read")
    parser.add_argument(
        "--write", type=Path, default=None, metavar="DVC_YAML", help="rewrite the plots: section of this dvc.yaml"
    )
    args = parser.parse_args(argv)
    if args.write is not None:
        print(f"{args.write}: {'updated' if rewrite_plots(args.write, args.params) else 'already up to date'}")
        return
    print(plots_section(params_inits(args.params)))


if __name__ == "__main__":
    main()
