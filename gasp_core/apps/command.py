"""``gasp``: one command for what a user does by hand (``gasp --help`` is the map; ``python -m gasp_core`` is the same).

Each subcommand is the module it names, with that module's own options (``gasp sim --help``); the modules'
``python -m`` entry points keep working. The pipeline itself runs through DVC (``make demo``, ``dvc repro``,
``dvc exp run``) or Dagster (``make dagster``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# subcommand -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("gasp_core.sim.__main__", "generate procedural driving logs in AV2 or nuScenes format"),
    "data": ("gasp_core.sim.embedded", "make (or pull) a preset's embedded world and track it with DVC"),
    "manoeuvres": ("gasp_core.sim.manoeuvres", "list each log's distance, stops, starts and turns of a world config"),
    "preset": (
        "gasp_core.apps.presets",
        "write a runnable project for a preset (smoke, demo, study, paper), or reseed its world",
    ),
    "params": ("gasp_core.params", "compose configs/ into params.yaml with Hydra, as dvc exp run does"),
    "query": ("gasp_core.apps.query", "load a pre-trained model, answer 4D queries on a sample and draw BEV slices"),
    "view": ("gasp_core.apps.view", "record a stored log and a model's predictions for rerun's 3D viewer (.rrd)"),
    "deps": ("gasp_core.closure", "each stage's gasp_core import closure, or rewrite dvc.yaml's deps with it"),
}


def report(argv: list[str] | None = None) -> None:
    """Print a report's main table and paired verdicts (the report stage's README.md)."""
    parser = argparse.ArgumentParser(prog="gasp report", description=report.__doc__)
    parser.add_argument("folder", type=Path, nargs="?", default=Path("reports"), help="default: reports (the demo)")
    args = parser.parse_args(argv)
    readme = args.folder / "README.md"
    if not readme.is_file():
        parser.error(f"{readme} is missing: run the report stage (dvc repro report) or name a report folder")
    text = readme.read_text()
    start = text.find("## Main metric")
    end = text.find("## Secondary")
    print(text[start if start >= 0 else 0 : end if end > start else None].rstrip())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="gasp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    sub.add_parser(
        "report", help="print a report's main table and verdicts (default: reports/, the demo's)", add_help=False
    )
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name == "report":
        report(rest)
        return 0
    if name not in COMMANDS:
        parser.error(f"unknown command {name!r}; choose from {', '.join([*COMMANDS, 'report'])}")
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv = [f"gasp {name}", *rest]
    code = module.main(rest)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
