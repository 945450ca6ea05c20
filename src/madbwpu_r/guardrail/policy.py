"""The guardrail policy document: TOML written by people, validated strictly, signed by `security`.

Rules that protect the pipeline itself (the requester is never an approver, earlier production
deploys' archives are signed off by compliance, at least one `qa` signoff) are not settings: a
policy can make them stricter, never turn them off.
"""

from __future__ import annotations

import re
import tomllib
from datetime import datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from madbwpu_r.release.errors import Refused

__all__ = [
    "DeployWindow",
    "Policy",
    "ScalingRules",
    "SecurityRules",
    "SIGNOFF_ROLES",
    "TOKEN_PATTERN",
    "check_token",
    "parse_policy_toml",
]

TOKEN_PATTERN = re.compile(r"^[0-9a-z][0-9a-z-]{2,62}$")
SIGNOFF_ROLES = ("qa", "security", "compliance")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def check_token(token: str) -> str:
    if not TOKEN_PATTERN.fullmatch(token):
        raise Refused(
            "bad-token",
            f"{token!r} is not a guardrail token (lowercase letters, digits and '-', 3-63 long)",
        )
    return token


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeployWindow(_Strict):
    """Deploys may start on these days, between these hours, in this time zone."""

    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = Field(min_length=1)
    hours: str = "00:00-24:00"
    timezone: str = "UTC"

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        match = _HOURS.fullmatch(value)
        if not match or (match[3] == "24" and match[4] != "00"):
            raise ValueError("hours are 'HH:MM-HH:MM' (24-hour clock, end may be 24:00)")
        if value[:5] >= value[6:]:
            raise ValueError("a window's hours end after they start")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone))
        if DAYS[local.weekday()] not in self.days:
            return False
        start, end = self.hours.split("-")
        now = local.time()
        begins = time.fromisoformat(start)
        return now >= begins and (end == "24:00" or now < time.fromisoformat(end))

    def describe(self) -> str:
        return f"{','.join(self.days)} {self.hours} {self.timezone}"


class SecurityRules(_Strict):
    signoffs: dict[str, int] = Field(default_factory=lambda: {"qa": 1})
    max_signoff_age_hours: float = Field(default=72, gt=0, le=24 * 90)
    windows: tuple[DeployWindow, ...] = ()

    @field_validator("signoffs")
    @classmethod
    def _signoffs(cls, value: dict[str, int]) -> dict[str, int]:
        for role, count in value.items():
            if role not in SIGNOFF_ROLES:
                raise ValueError(f"{role!r} cannot sign off a release (one of {SIGNOFF_ROLES})")
            if not 1 <= count <= 20:
                raise ValueError(f"signoffs.{role} must be between 1 and 20")
        if value.get("qa", 0) < 1:
            raise ValueError("a release needs at least one qa signoff; a policy cannot waive it")
        return value


class Range(_Strict):
    min: int = Field(ge=0)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _order(self) -> Range:
        if self.min > self.max:
            raise ValueError("min is above max")
        return self


class WorkerRules(Range):
    target_queue_depth: int = Field(ge=1)


class EdgeRules(_Strict):
    min: int = Field(ge=1)


class ScalingRules(_Strict):
    api_replicas: Range
    workers: WorkerRules
    edge_nodes: EdgeRules


class Policy(_Strict):
    token: str
    project: str = Field(min_length=1, max_length=100)
    description: str = ""
    environments: tuple[str, ...] = Field(min_length=1)
    valid_from: datetime
    valid_until: datetime
    security: SecurityRules = Field(default_factory=SecurityRules)
    scaling: ScalingRules

    @field_validator("token")
    @classmethod
    def _token(cls, value: str) -> str:
        if not TOKEN_PATTERN.fullmatch(value):
            raise ValueError("a token is lowercase letters, digits and '-', 3-63 characters")
        return value

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2026-01-01T00:00:00Z)")
        return value

    @model_validator(mode="after")
    def _window(self) -> Policy:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Any) -> Policy:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise Refused("policy-invalid", _explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "policy"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"the policy is invalid: {where}: {first['msg']}{more}"


def parse_policy_toml(text: str) -> Policy:
    """A policy file as people write it; every mistake is one sentence naming the field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Refused("policy-invalid", f"the policy is not valid TOML: {exc}") from None
    return Policy.from_json(data)
