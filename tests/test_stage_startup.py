"""Every stage script parses its arguments before it imports the library: ``--help`` loads no heavy package, so it
answers at once (``benchmarks/stage_help.py`` times it)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "stages").glob("*.py"))
# packages that take seconds to import; none is needed to parse arguments
HEAVY = ("torch", "timm", "torchvision", "numpy", "polars", "pyarrow", "scipy", "sklearn", "dagster", "dvclive")


@pytest.mark.parametrize("script", STAGES)
def test_stage_help_loads_no_heavy_package(script):
    code = (
        "import runpy, sys\nsys.argv = [sys.argv[1], '--help']\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit:\n    pass\nprint(' '.join(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    res = subprocess.run([sys.executable, "-c", code, script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    loaded = set(res.stdout.split("\n")[-2].split())
    assert "usage:" in res.stdout
    assert not loaded & set(HEAVY), f"{script} --help imports {sorted(loaded & set(HEAVY))}"
