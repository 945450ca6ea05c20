"""`madbwpu-r demo`: the whole release story on embedded defaults, told step by step.

Start the stack, ingest into staging, cut a release, try to deploy without a QA signoff (it
waits), try a direct ingest into production (refused), QA signs off, deploy with the seed's
token, read production through its edge, compliance signs the archive off, verify the trail.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urljoin

import httpx
import typer

from madbwpu_r.cli._release_common import console, err, refusals
from madbwpu_r.cli.deploy import run_with_checklist
from madbwpu_r.config import load_or_create_secrets
from madbwpu_r.guardrail.example import SEED_TOKEN
from madbwpu_r.release.archive import sign_off_deploy, verified_signoff
from madbwpu_r.release.service import Releases

PEOPLE = b"id,name,team\n1,ann,data\n2,bob,api\n3,cyd,edge\n"
PLACES = b"id,city\n1,oslo\n2,lima\n"


def say(n: int, text: str) -> None:
    console.print(f"\n== {n}. {text}")


def ingest(http: httpx.Client, api: str, token: str, name: str, body: bytes) -> str:
    r = http.post(
        f"{api}/v1/datasets/{name}/ingest",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
    )
    r.raise_for_status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = http.get(urljoin(api, r.json()["status_url"])).json()
        if job["status"] in ("succeeded", "failed"):
            return job["status"]
        time.sleep(0.1)
    return "timed out"


def story(data_dir: Path) -> None:
    from madbwpu_r.launcher import Stack

    say(1, f"Start the stack (edge, API, workers for staging and production) in {data_dir}")
    stack = Stack(data_dir, max_workers=2)
    stack.start()
    try:
        stack.wait_ready(300)
        for env, urls in stack.endpoints.items():
            console.print(f"  {env}: edge {urls['edge']}  api {urls['api']}")
        tell(data_dir, stack.endpoints)
    finally:
        say(12, "Stop the stack")
        stack.stop()


def tell(data_dir: Path, endpoints: dict) -> None:
    token = load_or_create_secrets(data_dir, "staging")["write_token"]
    production_token = load_or_create_secrets(data_dir, "production")["write_token"]
    http = httpx.Client(timeout=30)
    with Releases(data_dir, endpoints) as svc:
        say(2, f"madbwpu-r init: identities and the guardrail {SEED_TOKEN}")
        for line in svc.init():
            console.print(f"  {line}")
        staging, production = endpoints["staging"], endpoints["production"]

        say(3, "Ingest two datasets into staging")
        for name, body in (("people", PEOPLE), ("places", PLACES)):
            console.print(f"  {name}: {ingest(http, staging['api'], token, name, body)}")

        say(4, "Cut a release from staging (as deployer)")
        manifest, _ = svc.cut("staging", "deployer")
        rid = manifest.release_id
        console.print(f"  release {rid}")
        for d in manifest.datasets:
            console.print(f"    {d.name}: {d.row_count} rows, version {d.digest[:12]}")

        say(5, "Try to deploy before QA has signed off")
        record = svc.start(rid, "production", SEED_TOKEN, "deployer", "deploy")
        record = run_with_checklist(svc, record, False, None)
        console.print(
            f"  -> {record.status}: nothing moved; production serves {svc.served('production')}"
        )

        say(6, "Try to bypass the pipeline: a direct ingest into production, with its write token")
        r = http.post(
            f"{production['api']}/v1/datasets/people/ingest",
            content=b"id,name\n1,mallory\n",
            headers={"Authorization": f"Bearer {production_token}", "Content-Type": "text/csv"},
        )
        console.print(f"  -> {r.status_code}: {r.json()['detail']}")

        say(7, "Try a self-signoff by the deployer, then QA signs off")
        try:
            svc.decide(rid, "deployer", "signoff")
        except Exception as exc:  # noqa: BLE001 - shown to the reader, as the CLI would
            console.print(f"  -> refused: {exc}")
        svc.decide(rid, "qa", "signoff", "rows and schema checked")
        console.print("  QA signoff by 'qa' recorded")

        say(8, f"Deploy with guardrail token {SEED_TOKEN}: the rollout is triggered by the signoff")
        record = run_with_checklist(svc, record, False, None)
        if record.status != "succeeded":
            raise RuntimeError(f"the deploy ended {record.status}")

        say(9, "Query production through its edge")
        for _ in range(2):
            r = http.get(f"{production['edge']}/v1/datasets/people/rows")
            console.print(f"  X-Cache: {r.headers.get('x-cache')}  rows: {r.json()['rows']}")

        say(10, "Compliance signs off the deploy's archive (`audit signoff`)")
        sign_off_deploy(data_dir, svc.store, svc.keys, record.deploy_id, "compliance")
        console.print(
            f"  archive of {record.deploy_id}: signed off = {verified_signoff(svc.store, svc.keys, record.deploy_id)}"
        )

        say(11, "Verify the audit trail")
        broken = svc.store.verify_chain()
        events = svc.store.events()
        console.print(
            f"  {len(events)} events, hash chain {'intact' if broken is None else f'broken at {broken}'}; "
            f"refusals recorded: {sum(e.outcome == 'refused' for e in events)}"
        )
        if broken is not None:
            raise RuntimeError("the event chain does not verify")
    http.close()


DemoDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Keep the demo here (default: a temporary directory)."),
]


def demo(data_dir: DemoDir = None) -> None:
    """Tell the whole story: stack, staging, release, QA, guarded deploy, edge, audit."""
    with refusals():
        if data_dir is None:
            with tempfile.TemporaryDirectory(prefix="madbwpu-r-demo-") as tmp:
                story(Path(tmp))
        else:
            story(data_dir)
    err.print("demo finished")


def register(root: typer.Typer) -> None:
    root.command("demo")(demo)
