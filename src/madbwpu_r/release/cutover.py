"""Production's side of a cutover: check the pipeline's grant, move the pointer, purge the edges.

The grant's consumption, the cutover's chained log entry, its audit entry, the pointer move and
the purge of what changed commit in one transaction of the environment's store (the purge as
an outbox row, `PointerStore.switch`): an API process killed right after the commit still has
the edges purged, by the relay of whichever process runs next, so no edge keeps serving the
release before for its cache lifetime.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from madbwpu_r.release.errors import Refused
from madbwpu_r.release.grant import PIPELINE_IDENTITY, CutoverGrant, verify_grant
from madbwpu_r.release.keyring import LocalKeyring
from madbwpu_r.release.manifest import Manifest, diff
from madbwpu_r.release.pointer import PointerStore
from madbwpu_r.release.serving import ReleaseGuard
from madbwpu_r.release.store import ProjectStore

__all__ = ["CutoverDone", "Cutovers", "stale_keys"]


def stale_keys(before: Manifest | None, after: Manifest) -> list[str]:
    """The surrogate keys that a switch from `before` to `after` makes stale at the edges."""
    return [f"dataset:{name}" for name in diff(before, after).touched] + ["datasets", "release"]


@dataclass(frozen=True)
class CutoverDone:
    release_id: str
    seq: int  # in the environment's cutover log
    keys: list[str]  # purged at the edges
    purge: Any  # the purge's report when it was delivered at once, else None (the relay's)
    changes: dict[str, Any]


class Cutovers:
    """Accepts a cutover only with a valid grant the pipeline signed for this project, release
    and environment; everything it changes commits at once or not at all."""

    def __init__(
        self,
        pointers: PointerStore,
        guard: ReleaseGuard,
        keys: LocalKeyring,
        events: ProjectStore,
        project: str,
        deliver: Callable[[], dict[int, Any]],
    ):
        self.pointers = pointers
        self.guard = guard
        self.keys = keys
        self.events = events
        self.project = project
        self.env = pointers.env
        self.deliver = deliver  # the outbox, delivered now where it can be

    def accept(self, grant: CutoverGrant, manifest: Manifest) -> CutoverDone:
        pipeline = self.keys.public_key(PIPELINE_IDENTITY)
        if pipeline is None:
            raise Refused("no-pipeline-key", "the project's pipeline identity is not registered")
        verify_grant(
            grant,
            pipeline,
            project=self.project,
            environment=self.env,
            release_id=manifest.release_id,
            now=time.time(),
        )
        self.guard.trust_files(manifest)
        before = self.guard.refresh()  # not the last decision: another process may have cut over
        previous = before.manifest if before else None
        keys = stale_keys(previous, manifest)
        done, outbox = self.pointers.switch(grant, manifest, purge=keys)
        self.guard.refresh()  # this process serves the new release before the edges are purged
        self.events.record(
            f"{PIPELINE_IDENTITY}:{grant.deploy_id}",
            f"cutover.{grant.action}",
            self.env,
            "ok",
            {
                "release_id": manifest.release_id,
                "grant_id": grant.grant_id,
                "cutover": done.seq,
                "entry_hash": done.hash,
                "previous_release": before.release_id if before else None,
            },
        )
        purge = self.deliver().get(outbox) if outbox is not None else None
        return CutoverDone(
            manifest.release_id, done.seq, keys, purge, diff(previous, manifest).to_json()
        )
