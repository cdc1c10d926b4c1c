"""The cluster templates parse: bash -n on the SLURM script, YAML on the Kubernetes files, and they name the pieces
docs/scaling.md promises (Ray on the allocation, srun + torchrun, dvc, KubeRay's RayJob, Dagster's K8s launcher)."""

import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_slurm_script_parses_and_launches_ray_torchrun_and_dvc():
    script = DEPLOY / "slurm" / "gasp.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for needle in ("ray start --head", "srun", "torchrun", "--rdzv_endpoint", "python -m dvc repro", "compute=ray"):
        assert needle in text, needle


def test_kubernetes_files_parse_and_are_a_rayjob_and_a_k8s_run_launcher():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "rayjob.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert job["apiVersion"].startswith("ray.io/") and "dvc repro" in job["spec"]["entrypoint"]
    assert "compute=ray" in job["spec"]["entrypoint"] and "dvc push" in job["spec"]["entrypoint"]
    launcher = yaml.safe_load((DEPLOY / "k8s" / "dagster-instance.yaml").read_text())["run_launcher"]
    assert launcher["class"] == "K8sRunLauncher"
