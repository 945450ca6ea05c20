"""The queue package's public surface, URL handling, error mapping and retry policy."""

from __future__ import annotations

import pytest

import madbwpu_r.queue as queue_pkg
import madbwpu_r.worker.runner as runner
from madbwpu_r.queue import (
    QueueConfigError,
    QueueError,
    QueueUnavailable,
    RetryPolicy,
    open_queue,
)


def test_exported_names_are_locked() -> None:
    assert sorted(queue_pkg.__all__) == sorted([
        "DEFAULT_LEASE", "STATES", "Depth", "InvalidJob", "Job", "JobInfo", "PermanentJobError", "Queue",
        "QueueConfigError", "QueueError", "QueueUnavailable", "RetryPolicy", "open_queue",
    ])  # fmt: skip
    assert sorted(runner.__all__) == ["Handler", "PermanentError", "Worker"]
    for name in queue_pkg.__all__:
        assert hasattr(queue_pkg, name)


@pytest.mark.parametrize(
    "url",
    [
        "amqp://localhost/",
        "sqlite://",
        "sqlite:////tmp/x.sqlite?lease=abc",
        "sqlite:////tmp/x.sqlite?lease=0",
        "sqlite:////tmp/x.sqlite?colour=blue",
        "redis://127.0.0.1:6379/0?prefix=a:b",
    ],
)
def test_bad_urls_name_the_problem(url: str) -> None:
    with pytest.raises(QueueConfigError):
        open_queue(url)


def test_missing_driver_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_redis(name: str, *args, **kwargs):
        if name == "redis":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_redis)
    monkeypatch.setattr("importlib.import_module", lambda name: no_redis(name))
    with pytest.raises(QueueConfigError, match="uv add redis"):
        open_queue("redis://127.0.0.1:6379/0")


def test_unreachable_redis_is_a_queue_error_not_a_driver_error() -> None:
    q = open_queue("redis://127.0.0.1:1/0?socket_connect_timeout=0.5")
    with pytest.raises(QueueUnavailable):
        q.enqueue("work", {})
    with pytest.raises(QueueError):
        q.depth("work")
    q.close()


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_base=1.0, backoff_max=10.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (30, 10.0)]:
        delays = {policy.backoff(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered, so retries of many jobs spread out
    assert not policy.exhausted(4, 5) and policy.exhausted(5, 5)
