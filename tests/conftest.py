"""Fixtures shared across test packages: one moto S3 server per session, and the AWS settings
that point boto3 at it (the blob suite, the audit and release tests on S3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.blobs.conftest import AWS_ENV, S3Server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Point boto3 at an endpoint through the standard AWS settings only."""

    def point(endpoint: str) -> None:
        for name, value in AWS_ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)

    return point
