"""The purge message: one type shared by every sender (the Purger) and every edge."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_CHANNEL", "MAX_ITEMS", "PurgeMessage"]

# Redis pub/sub channel edges subscribe to unless told otherwise (`up` names one per env).
DEFAULT_CHANNEL = "madbwpu-r:edge:purge"
MAX_ITEMS = 10_000


class PurgeMessage(BaseModel):
    """The body of POST /_edge/purge and of every Redis pub/sub purge message.

    `epoch` (random per sender) and `seq` (+1 per purge) let an edge notice a purge it never
    received and drop its whole cache instead of serving what that purge removed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    urls: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    soft: bool = False
    all: bool = False
    epoch: str | None = Field(default=None, max_length=200)
    seq: int | None = Field(default=None, ge=1)

    def body(self) -> bytes:
        """The wire form (JSON) sent over HTTP and published on Redis."""
        return self.model_dump_json(exclude_defaults=True).encode()
