"""The worker's side of the seed's "write results / events" arrow: HTTP calls to its API."""

from __future__ import annotations

import time
from typing import Any

import httpx


class ApiUnavailable(Exception):
    """The API did not accept an event; the job is retried later, nothing is lost."""


class ApiClient:
    def __init__(
        self,
        base_url: str,
        worker_token: str,
        attempts: int = 5,
        client: httpx.Client | None = None,
    ):
        self._client = client or httpx.Client(base_url=base_url.rstrip("/"), timeout=30.0)
        self._client.headers["Authorization"] = f"Bearer {worker_token}"
        self._attempts = attempts

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        delay = 0.2
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._client.post(path, json=body)
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
            if attempt < self._attempts:
                time.sleep(delay)
                delay *= 2
        raise ApiUnavailable(f"API did not accept {path}: {error}")

    def job_event(self, job_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Events are keyed by job id and attempt, so sending one twice changes nothing twice."""
        return self._post(f"/v1/internal/jobs/{job_id}/events", event)

    def close(self) -> None:
        self._client.close()
