"""The worker's side of the seed's "write results / events" arrow: HTTP calls to its API.

With several API processes (`up --apis N`) the worker knows each one: an event that cannot be
delivered to one (connection refused, reset, 5xx) goes to the next at once, so an API that dies
while a job runs costs no retry of the job. Events are idempotent, so a second delivery of one
that did arrive changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

import httpx


class ApiUnavailable(Exception):
    """The API did not accept an event; the job is retried later, nothing is lost."""


class ApiClient:
    def __init__(
        self,
        base_url: str | list[str],
        worker_token: str,
        attempts: int = 5,
        client: httpx.Client | None = None,
    ):
        bases = [base_url] if isinstance(base_url, str) else list(base_url)
        self._bases = [b.rstrip("/") for b in bases] or [""]
        self._next = 0
        self._client = client or httpx.Client(timeout=30.0)
        self._client.headers["Authorization"] = f"Bearer {worker_token}"
        self._attempts = attempts

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        delay = 0.2
        # Each round tries every API once before backing off.
        for attempt in range(1, self._attempts * len(self._bases) + 1):
            base = self._bases[self._next % len(self._bases)]
            try:
                response = self._client.post(base + path, json=body)
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    return response.json()
                if response.status_code < 500:
                    raise ApiUnavailable(
                        f"API refused {path}: {response.status_code} {response.text}"
                    )
                error = f"{response.status_code} {response.text[:200]}"
            self._next += 1  # this API failed: the next call starts at another
            if attempt % len(self._bases) == 0 and attempt < self._attempts * len(self._bases):
                time.sleep(delay)
                delay *= 2
        raise ApiUnavailable(f"API did not accept {path}: {error}")

    def job_event(self, job_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Events are keyed by job id and attempt, so sending one twice changes nothing twice."""
        return self._post(f"/v1/internal/jobs/{job_id}/events", event)

    def close(self) -> None:
        self._client.close()
