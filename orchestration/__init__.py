"""Dagster definitions derived from dvc.yaml (issue #7); no second copy of the DAG lives here."""
