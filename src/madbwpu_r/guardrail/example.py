"""The example project's guardrail, under the seed's token `2gr-uugjyishz-f0`.

`madbwpu-r init` signs this policy with the project's security identity. Its scaling rules are
the seed's table: the edge and the API scale horizontally, workers scale with queue depth.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["SEED_TOKEN", "example_policy_toml"]

SEED_TOKEN = "2gr-uugjyishz-f0"


def example_policy_toml(now: datetime | None = None, project: str = "madbwpu-r") -> str:
    """The policy text, valid from now for one year (a policy always has a validity window)."""
    start = (now or datetime.now(UTC)).replace(microsecond=0)
    end = start + timedelta(days=365)
    return f'''# Guardrail policy of project mAdbWpu-R: the security and scaling rules a release must
# satisfy before production cutover. Signed by a `security` identity; revocable.
token = "{SEED_TOKEN}"
project = "{project}"
description = "Security and scaling rules for moving the data product from staging to production"
environments = ["production"]
valid_from = {start.strftime("%Y-%m-%dT%H:%M:%SZ")}
valid_until = {end.strftime("%Y-%m-%dT%H:%M:%SZ")}

[security]
# Roles that must sign off a release, and how many distinct identities of each.
# The requester of a deploy never counts as an approver (not configurable).
signoffs = {{ qa = 1 }}
# A QA signoff older than this no longer counts.
max_signoff_age_hours = 72
# Optional deploy windows; none means any time. Example:
# [[security.windows]]
# days = ["mon", "tue", "wed", "thu"]
# hours = "09:00-17:00"
# timezone = "Europe/Paris"

[scaling]
# "Request handling: horizontal scaling"
api_replicas = {{ min = 1, max = 16 }}
# "Async processing: dynamic scaling per queue depth"
workers = {{ min = 1, max = 32, target_queue_depth = 50 }}
# "CDN & latency reduction: auto-scale globally"
edge_nodes = {{ min = 1 }}
'''
