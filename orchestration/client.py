"""Drive a running `make dagster` webserver from a shell or a script (no browser needed).

Launching a run and waiting for it use Dagster's own client (``dagster_graphql.DagsterGraphQLClient``); the two
summaries it lacks (the served asset keys with their groups, and what each materialisation recorded) are one
GraphQL query each.

    python -m orchestration.client assets                          # the asset keys it serves, with their groups
    python -m orchestration.client materialize report evaluate/map # launch one run of these assets, wait, report

``--url`` defaults to http://127.0.0.1:3000 (``make dagster``'s address; ``DAGSTER_PORT`` changes the port there).
A launched run materialises the assets exactly as the UI's *Materialize selected* does: each runs
``dvc repro --single-item`` of its stage, so DVC decides what actually reruns.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:3000"
DONE = ("SUCCESS", "FAILURE", "CANCELED")


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
    req = urllib.request.Request(
        f"{url.rstrip('/')}/graphql",
        method="POST",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = json.loads(resp.read())
    if body.get("errors"):
        raise RuntimeError(f"{url}: GraphQL errors: {body['errors']}")
    return body["data"]


def wait_until_up(url: str, timeout_s: float = 180.0, alive=lambda: True) -> None:
    """Poll until the webserver answers (``alive`` lets a caller stop early when its process died)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            graphql(url, "{ version }", timeout=5)
            return
        except (OSError, urllib.error.URLError, RuntimeError):
            if not alive():
                raise RuntimeError(f"{url}: the webserver exited before it answered") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: no answer in {timeout_s:.0f} s") from None
            time.sleep(2)


def assets(url: str) -> dict[str, str]:
    """asset key ("finetune/map-uno") -> group ("finetune")."""
    nodes = graphql(url, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    return {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}


def _client(url: str):
    """Dagster's own GraphQL client for ``url`` (dagster-graphql, installed with dagster-webserver)."""
    from urllib.parse import urlparse

    from dagster_graphql import DagsterGraphQLClient

    u = urlparse(url)
    return DagsterGraphQLClient(u.hostname or "127.0.0.1", port_number=u.port, use_https=u.scheme == "https")


def launch(url: str, keys: list[str]) -> str:
    """Start one run materialising ``keys`` (user strings, "pretrain/gasp-0") with Dagster's client; returns its run
    id."""
    import dagster as dg

    return _client(url).submit_job_execution("__ASSET_JOB", asset_selection=[dg.AssetKey(k.split("/")) for k in keys])


def wait(url: str, run_id: str, timeout_s: float = 3600.0, poll_s: float = 2.0) -> str:
    """Poll a run (Dagster's client) until it ends; returns its final status (SUCCESS, FAILURE or CANCELED)."""
    client = _client(url)
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get_run_status(run_id).value
        if status in DONE:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def materializations(url: str, run_id: str) -> dict[str, dict]:
    """asset key -> the metadata its materialisation in ``run_id`` recorded (dvc_action, dvc_skipped, seconds,
    metrics)."""
    data = graphql(
        url,
        """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
        __typename ... on MaterializationEvent { assetKey { path } metadataEntries { label
          ... on BoolMetadataEntry { boolValue } ... on FloatMetadataEntry { floatValue }
          ... on TextMetadataEntry { text } } } } } } }""",
        {"id": run_id},
    )
    out = {}
    for ev in data["logsForRun"]["events"]:
        if ev["__typename"] == "MaterializationEvent":
            out["/".join(ev["assetKey"]["path"])] = {
                m["label"]: next(m[f] for f in ("boolValue", "floatValue", "text") if f in m)
                for m in ev["metadataEntries"]
                if {"boolValue", "floatValue", "text"} & set(m) and m["label"] != "dvc_output"
            }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=DEFAULT_URL)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("assets", help="list the served asset keys and groups")
    m = sub.add_parser("materialize", help="launch one run of the given assets and wait for it")
    m.add_argument("keys", nargs="+", help='asset keys as the UI writes them: "report", "finetune/map-uno"')
    m.add_argument("--timeout", type=float, default=3600.0)
    a = p.parse_args(argv)
    if a.cmd == "assets":
        served = assets(a.url)
        for key in sorted(served):
            print(f"{served[key]:<18} {key}")
        print(f"{len(served)} assets in {len(set(served.values()))} groups")
        return 0
    run_id = launch(a.url, a.keys)
    print(f"launched run {run_id} for {', '.join(a.keys)}")
    status = wait(a.url, run_id, a.timeout)
    for key, meta in materializations(a.url, run_id).items():
        print(f"{key}: {meta.get('dvc_action', '?')} in {meta.get('seconds', float('nan')):.1f} s")
    print(f"run {run_id}: {status}")
    return 0 if status == "SUCCESS" else 1


if __name__ == "__main__":
    sys.exit(main())
