"""The edge's own endpoints: /healthz and /metrics (public), /_edge/stats and purges (a token).

/_edge/stats names the origin and the cache's state: the purge or the admin token opens it.
/metrics holds counters only (no address, URL or key), readable like the API's own, so that
Prometheus scrapes it as the Kubernetes manifests say; purges need the purge token.
"""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from madbwpu_r.edge.node import EdgeNode
from madbwpu_r.edge.rules import header_fields
from madbwpu_r.problems import problem_response
from madbwpu_r.purge.message import PurgeMessage
from madbwpu_r.security import bearer_token, tokens_equal

MAX_PURGE_BODY = 4 * 2**20


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def handle(edge: EdgeNode, scope: dict[str, Any], receive: Any, send: Any) -> None:
    response = await _route(edge, Request(scope, receive))
    await response(scope, receive, send)


def _unauthorized(detail: str) -> Response:
    return problem_response(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _inspection_refused(edge: EdgeNode, request: Request) -> Response | None:
    """None when the purge or the admin token is given; else 401 (none) or 403 (wrong)."""
    given = bearer_token(request)
    if given is None:
        return _unauthorized("A valid 'Authorization: Bearer <purge or admin token>' is required.")
    # Both compared, in constant time each, whichever matches.
    purge = tokens_equal(given, edge.config.purge_token)
    admin = tokens_equal(given, edge.config.admin_token)
    if purge or admin:
        return None
    return problem_response(403, detail="The credential given opens nothing on this edge.")


async def _route(edge: EdgeNode, request: Request) -> Response:
    path, method = request.url.path, request.method
    host = header_fields(request.scope["headers"]).get(b"host")
    problem = edge.hosts.problem(host, request.scope["http_version"])
    if problem is not None:
        return problem_response(400, detail=problem, headers={"Connection": "close"})
    if path == "/_edge/purge":
        if method != "POST":
            return problem_response(405, detail="Use POST.", headers={"Allow": "POST"})
        return await _purge(edge, request)
    if method not in ("GET", "HEAD"):
        return problem_response(405, detail="Use GET.", headers={"Allow": "GET, HEAD"})
    if path == "/healthz":
        return _json({"status": "ok", "edge": edge.config.name})
    if path == "/_edge/stats" and (refused := _inspection_refused(edge, request)) is not None:
        return refused
    if path == "/metrics":
        return Response(
            generate_latest(edge.registry),
            media_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )
    if path == "/_edge/stats":
        return _json(edge.snapshot())
    return problem_response(404, detail=f"No edge endpoint {path}.")


async def _purge(edge: EdgeNode, request: Request) -> Response:
    # As the API: no credential 401, a wrong one 403 (and 403 when purges are disabled).
    if not edge.config.purge_token:
        return problem_response(
            403, detail="This edge has no purge token configured; purges are disabled."
        )
    given = bearer_token(request)
    if given is None:
        return problem_response(
            401,
            detail="A valid 'Authorization: Bearer <purge token>' header is required.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not tokens_equal(given, edge.config.purge_token):
        return problem_response(403, detail="The credential given is not this edge's purge token.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PURGE_BODY:
            return problem_response(413, detail="Purge body larger than 4 MiB.")
    try:
        message = PurgeMessage.model_validate_json(body or b"{}")
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
        ]
        return problem_response(
            400,
            detail="The purge body must be a JSON object: keys, urls, soft, epoch, seq.",
            errors=errors,
        )
    return _json(edge.apply_purge(message))
