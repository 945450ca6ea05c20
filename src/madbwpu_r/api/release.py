"""Release routes: which release an environment serves, production's cutover, and refusals.

Production's data changes only through `POST /v1/release/cutover` with a cutover grant the
pipeline signed; a direct ingest into production is refused. Every refusal is an event.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from madbwpu_r.api.jobs import require_token
from madbwpu_r.api.responses import NO_STORE, ORJSONResponse
from madbwpu_r.api.state import ApiState
from madbwpu_r.bodies import read_limited
from madbwpu_r.problems import ProblemError
from madbwpu_r.release.cutover import Cutovers, stale_keys
from madbwpu_r.release.decisions import QaDecision, verify_decision
from madbwpu_r.release.errors import Refused
from madbwpu_r.release.grant import CutoverGrant
from madbwpu_r.release.manifest import Manifest, ManifestError
from madbwpu_r.release.pointer import PointerStore
from madbwpu_r.release.project import open_keyring, open_release_store, project_name
from madbwpu_r.release.serving import ReleaseGuard, ReleaseView, ServedRelease
from madbwpu_r.security import bearer_token, tokens_equal

log = logging.getLogger(__name__)

PRODUCTION = "production"
PIPELINE_HINT = (
    "production's data changes only through the release pipeline: cut a release from staging, "
    "get it signed off by QA, then run `madbwpu-r deploy RELEASE --to production --guardrail TOKEN`"
)
MAX_CUTOVER_BODY = 4 << 20
MAX_DECISION_BODY = 64 << 10


class ReleaseState:
    def __init__(self, api: ApiState):
        data_dir = api.settings.data_dir
        self.api = api
        self.env = api.settings.env
        self.keys = open_keyring(data_dir)
        self.events = open_release_store(data_dir)
        self.project = project_name(data_dir, self.events)
        self.pointers = PointerStore(api.store, self.env)
        self.guard = ReleaseGuard(
            self.pointers,
            self.keys,
            api.versions,
            project=self.project,
            env=self.env,
            report=self._report_tamper,
            moved=self._moved,
        )
        self.cutovers = Cutovers(
            self.pointers, self.guard, self.keys, self.events, self.project,
            deliver=api.catalog.deliver_outbox,
        )  # fmt: skip

    def close(self) -> None:
        self.events.close()
        self.keys.close()

    def _report_tamper(self, problem: str) -> None:
        self.events.record(
            "production-api", "release.tamper_detected", self.env, "refused", {"problem": problem}
        )

    def _moved(self, before: ServedRelease, after: ServedRelease) -> None:
        """A cutover made through another API process, seen at this one's re-check: until now
        this process served the release before, which the edges may have cached since that
        cutover's purge, so purge them again for what changed."""
        self.api.catalog.invalidate(stale_keys(before.manifest, after.manifest))

    def refuse(
        self, request: Request, action: str, status: int, code: str, detail: str
    ) -> ProblemError:
        """Record who tried what and why it was refused, then build the problem to answer."""
        actor = _actor(request)
        self.events.record(
            actor,
            action,
            self.env,
            "refused",
            {
                "refusal": code,
                "reason": detail,
                "client": request.client.host if request.client else "",
            },
        )
        return ProblemError(status, detail=detail, refusal=code, pipeline="madbwpu-r deploy")


def _actor(request: Request) -> str:
    state: ApiState = request.app.state.api
    token = bearer_token(request)
    if token is None:
        return "anonymous"
    if tokens_equal(token, state.settings.write_token):
        return "write-token holder"
    return "unknown credential"


def _release(request: Request) -> ReleaseState:
    return request.app.state.release


def _served_json(rel: ReleaseState) -> dict[str, Any]:
    served = rel.guard.current()
    body: dict[str, Any] = {"environment": rel.env, "mode": "release"}
    if served is not None:
        body.update(
            release_id=served.release_id,
            cutover=served.cutover_seq,
            deploy_id=served.deploy_id,
            grant_id=served.grant_id,
            switched_at=served.switched_at,
            datasets={d.name: d.to_json() for d in served.manifest.datasets},
        )
    else:
        body.update(release_id=None, datasets={})
    body["verified"] = rel.guard.problem is None
    if rel.guard.problem:
        body["problem"] = rel.guard.problem
    return body


async def get_release(request: Request) -> Response:
    rel = _release(request)
    api: ApiState = request.app.state.api
    if rel.env != PRODUCTION:
        datasets = {
            d.name: d.current.to_json() for d in api.store.datasets() if d.current is not None
        }
        body = {"environment": rel.env, "mode": "current", "release_id": None, "datasets": datasets}
        return ORJSONResponse(body, headers={"Cache-Control": NO_STORE})
    body = await run_in_threadpool(_served_json, rel)
    status = 200 if body["verified"] else 503
    return ORJSONResponse(body, status_code=status, headers={"Cache-Control": NO_STORE})


async def cutover(request: Request) -> Response:
    rel = _release(request)
    if rel.env != PRODUCTION:
        raise rel.refuse(
            request,
            "cutover.refused",
            409,
            "not-production",
            f"{rel.env} serves its current versions; only production moves a release pointer",
        )
    raw = await read_limited(request, MAX_CUTOVER_BODY, "a cutover request")
    try:
        body = orjson.loads(raw)
        grant = CutoverGrant.from_json(body["grant"])
        manifest = Manifest.from_json(body["manifest"], expected_id=grant.release_id)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise rel.refuse(
            request,
            "cutover.refused",
            400,
            "no-grant",
            "a cutover needs {'grant': <cutover grant>, 'manifest': <release manifest>}; "
            + PIPELINE_HINT,
        ) from None
    except Refused as exc:
        raise rel.refuse(request, "cutover.refused", 403, exc.code, exc.message) from None
    except ManifestError as exc:
        raise rel.refuse(request, "cutover.refused", 403, "manifest-altered", str(exc)) from None

    try:
        done = await run_in_threadpool(rel.cutovers.accept, grant, manifest)
    except Refused as exc:
        status = 409 if exc.code == "grant-replayed" else 403
        raise rel.refuse(request, "cutover.refused", status, exc.code, exc.message) from None
    served = await run_in_threadpool(rel.guard.current)
    return ORJSONResponse(
        {
            "release_id": done.release_id,
            "cutover": done.seq,
            "served": served.release_id if served else None,
            "purged": done.keys,
            "purge": done.purge,
            "changes": done.changes,
        },
        headers={"Cache-Control": NO_STORE},
    )


async def refuse_ingest(request: Request) -> Response:
    """A credential that is not production's write token is refused as such (401/403) first;
    with the right one, the ingest is still refused: production changes only by a cutover."""
    rel = _release(request)
    api: ApiState = request.app.state.api
    try:
        require_token(request, api.settings.write_token, "write token")
    except ProblemError as exc:
        await run_in_threadpool(
            rel.events.record, _actor(request), "ingest.refused", rel.env, "refused",
            {"refusal": "bad-credential", "reason": exc.detail},
        )  # fmt: skip
        raise
    raise rel.refuse(
        request,
        "ingest.refused",
        409,
        "production-ingest",
        f"a direct ingest into production is refused: {PIPELINE_HINT}",
    )


async def post_decision(request: Request) -> Response:
    """A QA signoff or rejection arriving as a signed document (verifies with its signer's key)."""
    rel = _release(request)
    release_id = request.path_params["release_id"]
    try:
        raw = await read_limited(request, MAX_DECISION_BODY, "a QA decision")
        decision = QaDecision.from_json(orjson.loads(raw))
        if decision.release_id != release_id:
            raise Refused("decision-other-release", "the decision is for another release")
        if rel.events.release(release_id) is None:
            raise Refused("unknown-release", f"no release {release_id[:12]} was cut")
        verify_decision(decision, rel.keys)
    except orjson.JSONDecodeError:
        raise ProblemError(400, detail="the body is not a JSON QA decision") from None
    except Refused as exc:
        raise rel.refuse(request, "qa.refused", 403, exc.code, exc.message) from None
    await run_in_threadpool(rel.events.add_decision, decision)
    return ORJSONResponse(decision.to_json(), status_code=201, headers={"Cache-Control": NO_STORE})


def attach(app: Starlette, api: ApiState) -> None:
    """Give the app its release state; in production, reads go through the verified release."""
    rel = ReleaseState(api)
    app.state.release = rel
    if rel.env == PRODUCTION:
        api.store = ReleaseView(  # type: ignore[assignment]
            api.store,
            rel.guard,
            lambda problem: ProblemError(
                503, detail=f"production serves no verified release: {problem}"
            ),
        )


def routes_for(env: str) -> list[Route]:
    routes = [
        Route("/v1/release", get_release, methods=["GET"]),
        Route("/v1/release/cutover", cutover, methods=["POST"]),
        Route("/v1/releases/{release_id}/decisions", post_decision, methods=["POST"]),
    ]
    if env == PRODUCTION:
        routes.append(Route("/v1/datasets/{name}/ingest", refuse_ingest, methods=["POST"]))
    return routes


routes = routes_for(PRODUCTION)
