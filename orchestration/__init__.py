"""Dagster definitions derived from dvc.yaml; no second copy of the DAG lives here."""
