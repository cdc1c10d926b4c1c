"""The `gasp` command: its help lists every subcommand, each reaches its module, `gasp report` prints a table."""

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from gasp_core.apps.command import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_the_subcommands_and_the_script_is_declared():
    out = subprocess.run(
        [sys.executable, "-m", "gasp_core", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in [*COMMANDS, "report"]:
        assert f"\n    {name}" in out, name
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"gasp": "gasp_core.apps.command:main"}


def test_subcommands_reach_their_modules(capsys):
    """Each subcommand's --help is its own module's parser (their usage lines all differ)."""
    usages = {}
    for name in COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0
        usages[name] = capsys.readouterr().out.split("\n")[0]
        assert usages[name].startswith("usage:"), name
    assert len(set(usages.values())) == len(COMMANDS)


def test_report_prints_the_main_table_and_names_a_missing_report(tmp_path, capsys):
    (tmp_path / "README.md").write_text(
        "# r\n\nintro\n\n## Main metric per task\n\n| a | b |\n\n## Does it hold\n\nx\n\n## Secondary metrics\n\ny\n"
    )
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Main metric per task") and "## Does it hold" in out and "Secondary" not in out
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "nowhere")])
    assert "nowhere/README.md is missing" in capsys.readouterr().err
