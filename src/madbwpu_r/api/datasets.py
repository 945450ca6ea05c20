"""Dataset reads: the cacheable part of the API, each response tagged for precise purges."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from madbwpu_r.api.responses import (
    CURRENT_CACHE_CONTROL,
    IMMUTABLE_CACHE_CONTROL,
    ORJSONResponse,
    etag_for,
    etag_matches,
    surrogate_keys,
)
from madbwpu_r.api.rowquery import parse_query
from madbwpu_r.api.state import ApiState
from madbwpu_r.problems import ProblemError
from madbwpu_r.store.port import VersionInfo
from madbwpu_r.store.versions import QueryError

DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_dataset_name(name: str) -> str:
    if not DATASET_NAME.fullmatch(name):
        raise ProblemError(
            400,
            detail=f"{name!r} is not a valid dataset name: use 1-64 letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
        )
    return name


def _state(request: Request) -> ApiState:
    return request.app.state.api


def _resolve(state: ApiState, name: str, digest: str | None) -> VersionInfo:
    check_dataset_name(name)
    version = state.store.version(name, digest) if digest else state.store.current(name)
    if version is None:
        if digest and state.store.current(name) is not None:
            raise ProblemError(404, detail=f"dataset {name!r} has no version {digest!r}")
        raise ProblemError(404, detail=f"no dataset named {name!r}; ingest a file to create it")
    return version


def _cached(request: Request, body: object, etag: str, cache_control: str, keys: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": cache_control, "Surrogate-Key": keys}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return ORJSONResponse(body, headers=headers)


def list_datasets(request: Request) -> Response:
    state = _state(request)
    items: list[dict[str, Any]] = [
        {
            "name": d.name,
            "versions": d.versions,
            "current": d.current.to_json() if d.current else None,
        }
        for d in state.store.datasets()
    ]
    state_tag = ",".join(
        f"{d['name']}={d['current']['digest'] if d['current'] else ''}" for d in items
    )
    keys = " ".join(["datasets"] + [f"dataset:{d['name']}" for d in items])
    return _cached(
        request, {"datasets": items}, etag_for("datasets", state_tag), CURRENT_CACHE_CONTROL, keys
    )


def get_dataset(request: Request) -> Response:
    name = request.path_params["name"]
    version = _resolve(_state(request), name, None)
    body = {"name": name, "current": version.to_json()}
    return _cached(
        request,
        body,
        etag_for("dataset", version.digest),
        CURRENT_CACHE_CONTROL,
        surrogate_keys(name, version.digest),
    )


def list_versions(request: Request) -> Response:
    state = _state(request)
    name = check_dataset_name(request.path_params["name"])
    current = _resolve(state, name, None)
    versions = [v.to_json() for v in state.store.versions(name)]
    body = {"name": name, "current": current.digest, "versions": versions}
    return _cached(
        request,
        body,
        etag_for("versions", current.digest, str(len(versions))),
        CURRENT_CACHE_CONTROL,
        surrogate_keys(name, current.digest),
    )


def rows(request: Request) -> Response:
    state = _state(request)
    name = request.path_params["name"]
    raw = parse_query(request.scope["query_string"])
    version = _resolve(state, name, raw.version)
    query = raw.bind(version.schema)
    try:
        page = state.versions.reader(version).page(
            fields=query.fields,
            filters=query.filters,
            sort=query.sort,
            descending=query.descending,
            after=query.after,
            limit=query.limit,
        )
    except QueryError as exc:
        extra: dict[str, Any] = {"parameter": exc.parameter} if exc.parameter else {}
        raise ProblemError(400, detail=str(exc), **extra) from None
    next_url = None
    if page.next_cursor:
        link = [*query.without_after(), ("_after", page.next_cursor)]
        next_url = f"{request.url.path}?{urlencode(link)}"
    body = {
        "dataset": name,
        "version": version.digest,
        "columns": page.columns,
        "rows": page.rows,
        "next": next_url,
    }
    canonical = urlencode(sorted(query.items))
    return _cached(
        request,
        body,
        etag_for("rows", version.digest, canonical),
        IMMUTABLE_CACHE_CONTROL if raw.version else CURRENT_CACHE_CONTROL,
        surrogate_keys(name, version.digest),
    )


routes = [
    Route("/v1/datasets", list_datasets, methods=["GET", "HEAD"]),
    Route("/v1/datasets/{name}", get_dataset, methods=["GET", "HEAD"]),
    Route("/v1/datasets/{name}/versions", list_versions, methods=["GET", "HEAD"]),
    Route("/v1/datasets/{name}/rows", rows, methods=["GET", "HEAD"]),
]
