"""`madbwpu-r edge`: one caching edge process in front of any HTTP origin."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

import typer

from madbwpu_r.body_timeout import DEFAULT_BODY_TIMEOUT
from madbwpu_r.cli.options import BodyTimeout, check_redis_url

_SIZE = re.compile(r"^\s*(\d+)\s*(k|ki|kib|kb|m|mi|mib|mb|g|gi|gib|gb)?\s*$", re.IGNORECASE)
_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30}


class HttpImpl(StrEnum):
    httptools = "httptools"
    h11 = "h11"


class LoopImpl(StrEnum):
    uvloop = "uvloop"
    asyncio = "asyncio"
    auto = "auto"


def parse_size(value: str) -> int:
    """'64MiB', '64m', '1048576' -> bytes (binary units)."""
    match = _SIZE.match(value)
    if not match:
        raise typer.BadParameter(f"{value!r} is not a size such as 1048576, 512KiB or 64MiB")
    number, unit = int(match.group(1)), (match.group(2) or "").lower()
    return number * (_UNITS[unit[0]] if unit else 1)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_origin(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter(f"{value!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
    return value.rstrip("/")


def parse_origins(values: list[str]) -> list[str]:
    return [parse_origin(value) for value in values]


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _field_name(value: str) -> str:
    if not _TOKEN.match(value) or value.lower() in ("cache-control", "cdn-cache-control"):
        raise typer.BadParameter(
            f"not a field name: {value!r} (use one of its own, e.g. Edge7-Cache-Control)",
            param_hint="--targeted-cache-control",
        )
    return value.lower()


def _forwarded_host(value: str | None) -> str | None:
    from madbwpu_r.edge.host import valid

    if value is None:
        return None
    if not valid(value.encode("latin-1", "replace")):
        raise typer.BadParameter(f"{value!r} is not host[:port]", param_hint="--forwarded-host")
    return value


def register(app: typer.Typer) -> None:
    @app.command("edge")
    def edge(
        origin: Annotated[
            list[str],
            typer.Option(
                help="Origin base URL to forward misses to; repeat to balance misses over "
                "several (health-checked on GET /v1/heartbeat, a failed one skipped until it "
                "answers).",
                callback=parse_origins,
            ),
        ],
        listen: str = typer.Option("127.0.0.1:8080", help="HOST:PORT to serve on."),
        purge_token: str | None = typer.Option(
            None,
            envvar="MADBWPU_R_PURGE_TOKEN",
            help="Bearer token required by POST /_edge/purge (purges are refused without one).",
        ),
        max_bytes: str = typer.Option("64MiB", help="Cache size limit (headers + bodies)."),
        max_object_bytes: str = typer.Option(
            "1MiB", help="Larger responses are streamed, not cached."
        ),
        redis_url: str | None = typer.Option(
            None, envvar="MADBWPU_R_REDIS_URL", help="Subscribe to purges over Redis pub/sub."
        ),
        redis_channel: str = typer.Option("madbwpu-r:edge:purge", help="Pub/sub channel."),
        name: str = typer.Option("edge", help="Name of this edge in metrics and logs."),
        http: Annotated[HttpImpl, typer.Option(help="HTTP/1.1 parser.")] = HttpImpl.httptools,
        loop: Annotated[LoopImpl, typer.Option(help="Event loop.")] = LoopImpl.uvloop,
        keep_alive: float = typer.Option(
            75.0,
            "--keep-alive",
            min=1.0,
            max=3600.0,
            metavar="SECONDS",
            help="Close an idle client connection after this long (nginx's default is 75 s; "
            "keep it above the idle timeout of any load balancer in front).",
        ),
        header_timeout: float = typer.Option(
            20.0,
            "--header-timeout",
            min=0.1,
            max=3600.0,
            metavar="SECONDS",
            help="A request head must arrive whole within this long (from the accept, or from its "
            "first byte on a kept-alive connection); else 408 and the connection is closed "
            "(slowloris).",
        ),
        body_timeout: BodyTimeout = DEFAULT_BODY_TIMEOUT,
        max_header_bytes: str = typer.Option(
            "32KiB", help="Largest request head (request line + header fields); larger: 431."
        ),
        max_headers: int = typer.Option(
            100, min=1, max=10_000, help="Most header field lines in a request; more: 431."
        ),
        max_url_bytes: str = typer.Option("8KiB", help="Longest request target; longer: 414."),
        max_body_bytes: str = typer.Option(
            "1GiB",
            help="Largest request body, streamed to the origin; larger: 413 (up front when "
            "Content-Length says so, else as soon as it is exceeded).",
        ),
        targeted_cache_control: Annotated[
            list[str] | None,
            typer.Option(
                "--targeted-cache-control",
                metavar="FIELD",
                help="A response field targeted at this edge by name (RFC 9213), obeyed before "
                "CDN-Cache-Control and Cache-Control; repeat for more, most specific first.",
            ),
        ] = None,
        forward_targeted_cache_control: bool = typer.Option(
            False, help="Pass the targeted fields this edge obeys on to clients (default: removed)."
        ),
        forwarded_host: str | None = typer.Option(
            None,
            help="Public host[:port] sent to the origin as X-Forwarded-Host and Forwarded host= "
            "(default: none; the client's Host is never forwarded).",
        ),
        admin_token: str | None = typer.Option(
            None,
            envvar="MADBWPU_R_EDGE_ADMIN_TOKEN",
            help="Bearer token that opens /_edge/stats (the purge token does too).",
        ),
        log_level: str = typer.Option("warning", help="Log level."),
    ) -> None:
        """Run one caching edge process (RFC 9111 shared cache) in front of ORIGIN."""
        import uvicorn

        from madbwpu_r.edge.app import create_app
        from madbwpu_r.edge.config import EdgeConfig
        from madbwpu_r.edge.fastpath import protocol_class
        from madbwpu_r.logs import configure_logging

        host, port = parse_listen(listen)
        check_redis_url(redis_url)
        limit, object_limit = parse_size(max_bytes), parse_size(max_object_bytes)
        if object_limit > limit:
            raise typer.BadParameter("--max-object-bytes must not exceed --max-bytes")
        head_limit, url_limit = parse_size(max_header_bytes), parse_size(max_url_bytes)
        if head_limit < 1024:
            raise typer.BadParameter("must be at least 1KiB", param_hint="--max-header-bytes")
        if url_limit < 256:
            raise typer.BadParameter("must be at least 256", param_hint="--max-url-bytes")
        targeted = tuple(_field_name(n) for n in targeted_cache_control or [])
        configure_logging("edge", log_level.upper())
        config = EdgeConfig(
            origin=origin[0],
            extra_origins=tuple(origin[1:]),
            purge_token=purge_token or None,
            max_bytes=limit,
            max_object_bytes=object_limit,
            redis_url=redis_url or None,
            redis_channel=redis_channel,
            name=name,
            max_header_bytes=head_limit,
            max_headers=max_headers,
            max_url_bytes=min(url_limit, head_limit),  # the target is part of the head
            max_body_bytes=parse_size(max_body_bytes),
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            targeted_cache_control=(*targeted, "cdn-cache-control"),
            forward_targeted_cache_control=forward_targeted_cache_control,
            forwarded_host=_forwarded_host(forwarded_host),
            admin_token=admin_token or None,
        )
        uvicorn.run(
            create_app(config),
            host=host,
            port=port,
            http=protocol_class(http.value),
            loop=loop.value,
            access_log=False,
            server_header=False,
            date_header=False,
            log_config=None,
            log_level=log_level.lower(),
            lifespan="on",
            proxy_headers=False,
            backlog=4096,
            # uvicorn's 5 s default closes idle connections just as clients reuse them.
            timeout_keep_alive=keep_alive,  # type: ignore[arg-type]  # a float works; stubs say int
        )
