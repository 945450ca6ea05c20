"""Redis backend: Streams consumer groups, one Lua script per operation (one round trip).

Layout under the hash-tagged prefix P = "{name}" (all keys in one cluster slot):
    P:stream:<queue>:<priority>  ready/in-flight entries (field id), group "w"
    P:prios:<queue>              zset of the priority levels in use, claimed highest first
    P:delayed:<queue>            zset id -> run_at; due ids are promoted at claim time
    P:dead:<queue>               dead-letter stream
    P:job:<id>                   hash with the job's state, so get()/list() work
    P:idem:<queue>:<key>         idempotency key -> job id
    P:leases:<queue>             zset id -> lease deadline of each delivered (pending) entry
    P:index, P:index:<queue>     zset id -> enqueued_at, for list()
    P:workers:<queue>            zset worker -> presence deadline (announce/retire/workers)
    P:worker:<name>              set of the queues a worker announced; expires with its ttl

Leases are explicit deadlines rather than XAUTOCLAIM's min-idle, so each claim's own lease
applies (a 60 s job is not stolen by a worker that claims with 10 s): a claim XCLAIMs the
entries whose deadline passed, a heartbeat moves the deadline. Settled entries are XACKed and
XDELed, so XLEN - pending = ready. The job hash's `claims` counter is the fencing receipt.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, cast

import redis

from madbwpu_r.queue.errors import QueueConfigError, QueueError, QueueUnavailable
from madbwpu_r.queue.port import (
    DEFAULT_LEASE,
    Depth,
    Job,
    JobInfo,
    Queue,
    RawJob,
    RetryPolicy,
    loads,
)

__all__ = ["RedisQueue"]

_GROUP = "w"
_RETENTION = 7 * 24 * 3600

_LIB = """
local P = ARGV[1]
local function push(q, prio, id, jk)
  local sk = P .. ':stream:' .. q .. ':' .. prio
  if redis.call('ZADD', P .. ':prios:' .. q, 'NX', prio, prio) == 1 then
    redis.pcall('XGROUP', 'CREATE', sk, 'w', '0', 'MKSTREAM')
  end
  local entry = redis.call('XADD', sk, '*', 'id', id)
  redis.call('HSET', jk, 'state', 'ready', 'stream', sk, 'entry', entry)
end
local function fenced(id, token)
  local jk = P .. ':job:' .. id
  local cur = redis.call('HMGET', jk, 'claims', 'state', 'stream', 'entry', 'queue', 'priority',
    'consumer')
  if cur[1] ~= token or cur[2] ~= 'running' then return nil end
  return jk, cur
end
local function settle(cur, id)
  redis.call('XACK', cur[3], 'w', cur[4])
  redis.call('XDEL', cur[3], cur[4])
  redis.call('ZREM', P .. ':leases:' .. cur[5], id)
end
"""

_ENQUEUE = """
local id, q, key, now, run_at, prio = ARGV[2], ARGV[3], ARGV[5], ARGV[7], ARGV[6], ARGV[8]
if redis.call('EXISTS', P .. ':job:' .. id) == 1 then return id end
if key ~= '' then
  local ik = P .. ':idem:' .. q .. ':' .. key
  local existing = redis.call('GET', ik)
  if existing then return existing end
  redis.call('SET', ik, id, 'EX', ARGV[10])
end
local jk = P .. ':job:' .. id
redis.call('HSET', jk, 'queue', q, 'payload', ARGV[4], 'priority', prio, 'attempts', 0,
  'max_attempts', ARGV[9], 'claims', 0, 'enqueued_at', now, 'updated_at', now, 'run_at', run_at)
redis.call('ZADD', P .. ':index', now, id)
redis.call('ZADD', P .. ':index:' .. q, now, id)
if tonumber(run_at) > tonumber(now) then
  redis.call('HSET', jk, 'state', 'scheduled')
  redis.call('ZADD', P .. ':delayed:' .. q, run_at, id)
else
  push(q, prio, id, jk)
end
return id
"""

_CLAIM = """
local now, deadline, n, consumer = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local streams = {}
for i = 6, #ARGV do
  local q = ARGV[i]
  local dk = P .. ':delayed:' .. q
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, 500)) do
    redis.call('ZREM', dk, id)
    local jk = P .. ':job:' .. id
    local prio = redis.call('HGET', jk, 'priority')
    if prio then push(q, prio, id, jk) end
  end
  local prios = redis.call('ZREVRANGE', P .. ':prios:' .. q, 0, -1, 'WITHSCORES')
  for j = 1, #prios, 2 do
    table.insert(streams, {tonumber(prios[j + 1]), P .. ':stream:' .. q .. ':' .. prios[j], q})
  end
end
table.sort(streams, function(a, b) return a[1] > b[1] end)
local out = {}
local function take(sk, q, entries)
  for _, e in ipairs(entries) do
    if e and e[2] then
      local id = e[2][2]
      local jk = P .. ':job:' .. id
      if redis.call('EXISTS', jk) == 1 then
        local attempts = redis.call('HINCRBY', jk, 'attempts', 1)
        local token = redis.call('HINCRBY', jk, 'claims', 1)
        redis.call('HSET', jk, 'state', 'running', 'stream', sk, 'entry', e[1],
          'consumer', consumer, 'updated_at', now)
        redis.call('ZADD', P .. ':leases:' .. q, deadline, id)
        local f = redis.call('HMGET', jk, 'payload', 'max_attempts', 'priority', 'enqueued_at')
        -- One JSON document for the whole batch (payload embedded as is): cheap to parse.
        table.insert(out, '["' .. id .. '","' .. q .. '",' .. f[1] .. ',' .. attempts .. ',' ..
          f[2] .. ',' .. f[3] .. ',' .. f[4] .. ',' .. token .. ']')
      else
        redis.call('XACK', sk, 'w', e[1])
        redis.call('XDEL', sk, e[1])
      end
    end
  end
end
-- First take over entries whose holder's lease has run out (its worker died or stalled).
for i = 6, #ARGV do
  local q = ARGV[i]
  local need = n - #out
  if need <= 0 then break end
  local lk = P .. ':leases:' .. q
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', lk, '-inf', now, 'LIMIT', 0, need)) do
    local where = redis.call('HMGET', P .. ':job:' .. id, 'stream', 'entry')
    local got = {}
    if where[1] then got = redis.call('XCLAIM', where[1], 'w', consumer, 0, where[2]) end
    if #got == 0 then redis.call('ZREM', lk, id) else take(where[1], q, got) end
  end
end
for _, s in ipairs(streams) do
  local need = n - #out
  if need <= 0 then break end
  local fresh = redis.call('XREADGROUP', 'GROUP', 'w', consumer, 'COUNT', need, 'STREAMS', s[2], '>')
  if fresh then take(s[2], s[3], fresh[1][2]) end
end
return '[' .. table.concat(out, ',') .. ']'
"""

_EXTEND = """
local out = {}
for i = 2, #ARGV, 3 do
  local jk, cur = fenced(ARGV[i], ARGV[i + 1])
  if jk then
    redis.call('ZADD', P .. ':leases:' .. cur[5], 'XX', ARGV[i + 2], ARGV[i])
    -- also reset the entry's idle time, so XPENDING shows live workers' entries as fresh
    redis.call('XCLAIM', cur[3], 'w', cur[7], 0, cur[4], 'JUSTID')
    table.insert(out, 1)
  else
    table.insert(out, 0)
  end
end
return out
"""

_COMPLETE = """
local now, retention = ARGV[2], ARGV[3]
-- list() covers the retention window: forget index entries whose hashes have expired
local horizon = tostring(tonumber(now) - tonumber(retention))
redis.call('ZREMRANGEBYSCORE', P .. ':index', '-inf', '(' .. horizon)
local trimmed = {}
local out = {}
for i = 4, #ARGV, 3 do
  local jk, cur = fenced(ARGV[i], ARGV[i + 1])
  if jk then
    settle(cur, ARGV[i])
    if not trimmed[cur[5]] then
      trimmed[cur[5]] = true
      redis.call('ZREMRANGEBYSCORE', P .. ':index:' .. cur[5], '-inf', '(' .. horizon)
    end
    redis.call('HSET', jk, 'state', 'succeeded', 'updated_at', now)
    if ARGV[i + 2] ~= '' then redis.call('HSET', jk, 'result', ARGV[i + 2]) end
    redis.call('EXPIRE', jk, retention)
    table.insert(out, 1)
  else
    table.insert(out, 0)
  end
end
return out
"""

_RETRY = """
local id, now, err, run_at = ARGV[2], ARGV[4], ARGV[5], ARGV[6]
local jk, cur = fenced(id, ARGV[3])
if not jk then return 0 end
settle(cur, id)
redis.call('HSET', jk, 'last_error', err, 'updated_at', now, 'run_at', run_at)
if tonumber(run_at) > tonumber(now) then
  redis.call('HSET', jk, 'state', 'scheduled')
  redis.call('ZADD', P .. ':delayed:' .. cur[5], run_at, id)
else
  push(cur[5], cur[6], id, jk)
end
return 1
"""

_BURY = """
local id, now, err = ARGV[2], ARGV[4], ARGV[5]
local jk, cur = fenced(id, ARGV[3])
if not jk then return 0 end
settle(cur, id)
local entry = redis.call('XADD', P .. ':dead:' .. cur[5], '*', 'id', id)
redis.call('HSET', jk, 'state', 'dead', 'last_error', err, 'updated_at', now, 'dead_entry', entry)
return 1
"""

_RELEASE = """
local id, now = ARGV[2], ARGV[4]
local jk, cur = fenced(id, ARGV[3])
if not jk then return 0 end
settle(cur, id)
redis.call('HINCRBY', jk, 'attempts', -1)
redis.call('HSET', jk, 'updated_at', now)
push(cur[5], cur[6], id, jk)
return 1
"""

_SWEEP = """
local before, limit, n = tonumber(ARGV[2]), tonumber(ARGV[3]), 0
local ids = redis.call('ZRANGEBYSCORE', P .. ':index', '-inf', '(' .. ARGV[2])
for _, id in ipairs(ids) do
  if n >= limit then break end
  local jk = P .. ':job:' .. id
  local f = redis.call('HMGET', jk, 'state', 'updated_at', 'queue')
  if f[1] == 'succeeded' and tonumber(f[2]) < before then
    redis.call('DEL', jk)
    redis.call('ZREM', P .. ':index', id)
    redis.call('ZREM', P .. ':index:' .. f[3], id)
    n = n + 1
  elseif not f[1] then
    redis.call('ZREM', P .. ':index', id)
  end
end
return n
"""

_EXPIRE = """
local now, consumer = ARGV[2], ARGV[3]
local n = 0
for i = 4, #ARGV do
  local lk = P .. ':leases:' .. ARGV[i]
  for _, id in ipairs(redis.call('ZRANGE', lk, 0, -1)) do
    local cur = redis.call('HMGET', P .. ':job:' .. id, 'consumer', 'state')
    if cur[1] == consumer and cur[2] == 'running' then
      redis.call('ZADD', lk, 'XX', now, id)
      n = n + 1
    end
  end
end
return n
"""

_REVIVE = """
local id, now = ARGV[2], ARGV[3]
local jk = P .. ':job:' .. id
local cur = redis.call('HMGET', jk, 'state', 'queue', 'priority', 'dead_entry')
if cur[1] ~= 'dead' then return 0 end
if cur[4] then redis.call('XDEL', P .. ':dead:' .. cur[2], cur[4]) end
redis.call('HSET', jk, 'attempts', 0, 'updated_at', now, 'run_at', now)
push(cur[2], cur[3], id, jk)
return 1
"""

_ANNOUNCE = """
local worker, deadline, now, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local wk = P .. ':worker:' .. worker
for _, q in ipairs(redis.call('SMEMBERS', wk)) do
  redis.call('ZREM', P .. ':workers:' .. q, worker)
end
redis.call('DEL', wk)
for i = 6, #ARGV do
  local zk = P .. ':workers:' .. ARGV[i]
  redis.call('ZREMRANGEBYSCORE', zk, '-inf', now)  -- killed workers' deadlines passed
  redis.call('ZADD', zk, deadline, worker)
  redis.call('SADD', wk, ARGV[i])
end
if #ARGV >= 6 then redis.call('PEXPIRE', wk, ttl) end
return 1
"""

_RETIRE = """
local wk = P .. ':worker:' .. ARGV[2]
for _, q in ipairs(redis.call('SMEMBERS', wk)) do
  redis.call('ZREM', P .. ':workers:' .. q, ARGV[2])
end
redis.call('DEL', wk)
return 1
"""

_DEPTH = """
local q = ARGV[2]
local ready, inflight, oldest = 0, 0, nil
for _, prio in ipairs(redis.call('ZRANGE', P .. ':prios:' .. q, 0, -1)) do
  local sk = P .. ':stream:' .. q .. ':' .. prio
  local len = redis.call('XLEN', sk)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', sk)) do
    local info = {}
    for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
    if info['name'] == 'w' then
      inflight = inflight + info['pending']
      ready = ready + len - info['pending']
      local first = redis.call('XRANGE', sk, '(' .. info['last-delivered-id'], '+', 'COUNT', 1)
      if first[1] then
        local ms = tonumber((string.gsub(first[1][1], '-.*', '')))
        if oldest == nil or ms < oldest then oldest = ms end
      end
    end
  end
end
local dk = P .. ':delayed:' .. q
local due = redis.call('ZCOUNT', dk, '-inf', ARGV[3])
if due > 0 then
  -- due but not yet promoted (promotion happens at claim): already ready
  ready = ready + due
  local first = redis.call('ZRANGE', dk, 0, 0, 'WITHSCORES')
  local ms = math.floor(tonumber(first[2]) * 1000)
  if oldest == nil or ms < oldest then oldest = ms end
end
local scheduled = redis.call('ZCARD', dk) - due
local dead = redis.call('XLEN', P .. ':dead:' .. q)
return {ready, inflight, scheduled, dead, oldest and tostring(oldest) or false}
"""


class RedisQueue(Queue):
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "madbwpu",
        *,
        policy: RetryPolicy | None = None,
        lease: float = DEFAULT_LEASE,
        retention: int = _RETENTION,
    ):
        super().__init__(policy=policy, lease=lease)
        if not prefix or any(c in prefix for c in "{}:"):
            raise QueueConfigError("redis queue prefix must be non-empty, without { } or :")
        self._r = client
        self._p = "{" + prefix + "}"
        self.retention = int(retention)
        self._scripts = {
            name: client.register_script(_LIB + body)
            for name, body in (
                ("enqueue", _ENQUEUE),
                ("claim", _CLAIM),
                ("extend", _EXTEND),
                ("complete", _COMPLETE),
                ("retry", _RETRY),
                ("bury", _BURY),
                ("release", _RELEASE),
                ("expire", _EXPIRE),
                ("sweep", _SWEEP),
                ("revive", _REVIVE),
                ("announce", _ANNOUNCE),
                ("retire", _RETIRE),
                ("depth", _DEPTH),
            )
        }

    @classmethod
    def from_url(
        cls, url: str, options: dict[str, str], *, policy: RetryPolicy, lease: float
    ) -> RedisQueue:
        prefix = options.pop("prefix", "madbwpu")
        retention = int(options.pop("retention", _RETENTION))
        base = url.split("?", 1)[0]
        extra = "&".join(f"{k}={v}" for k, v in options.items())  # redis-py's own options
        try:
            client = redis.Redis.from_url(base + ("?" + extra if extra else ""))
        except ValueError as exc:
            raise QueueConfigError(f"bad redis queue URL {url!r}: {exc}") from None
        return cls(client, prefix, policy=policy, lease=lease, retention=retention)

    def close(self) -> None:
        self._r.close()

    # ---- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise QueueUnavailable(f"redis queue unreachable: {exc}") from None
        except redis.RedisError as exc:
            raise QueueError(f"redis queue: {exc}") from None

    def _run(self, name: str, *args: Any) -> Any:
        return self._scripts[name](keys=[self._p], args=[self._p, *args])

    # ---- primitives -------------------------------------------------------------------------

    def _insert(
        self,
        job_id: str,
        queue: str,
        payload: bytes,
        key: str | None,
        run_at: float,
        now: float,
        priority: int,
        max_attempts: int,
    ) -> str:
        found = self._run(
            "enqueue",
            job_id,
            queue,
            payload,
            key or "",
            repr(run_at),
            repr(now),
            priority,
            max_attempts,
            self.retention,
        )
        return cast(bytes, found).decode()

    def _claim(
        self, queues: list[str], n: int, lease: float, consumer: str, now: float
    ) -> list[RawJob]:
        rows = loads(self._run("claim", repr(now), repr(now + lease), n, consumer, *queues))
        return [RawJob(r[0], r[1], r[2], r[3], r[4], r[5], r[6], str(r[7])) for r in rows]

    def _extend(self, jobs: list[Job], now: float) -> list[bool]:
        args: list[Any] = []
        for job in jobs:
            args += [job.id, job.receipt, repr(now + job.lease)]
        return [bool(x) for x in self._run("extend", *args)]

    def _complete(self, items: list[tuple[Job, bytes | None]], now: float) -> list[bool]:
        args: list[Any] = [repr(now), self.retention]
        for job, result in items:
            args += [job.id, job.receipt, result or b""]
        return [bool(x) for x in self._run("complete", *args)]

    def _retry(self, job: Job, error: str, run_at: float, now: float) -> bool:
        return bool(self._run("retry", job.id, job.receipt, repr(now), error, repr(run_at)))

    def _bury(self, job: Job, error: str, now: float) -> bool:
        return bool(self._run("bury", job.id, job.receipt, repr(now), error))

    def _release(self, job: Job, now: float) -> bool:
        return bool(self._run("release", job.id, job.receipt, repr(now)))

    def _expire(self, consumer: str, queues: list[str], now: float) -> int:
        return int(self._run("expire", repr(now), consumer, *queues))

    def _revive(self, job_id: str, now: float) -> bool:
        return bool(self._run("revive", job_id, repr(now)))

    def _sweep(self, before: float, limit: int) -> int:
        """Succeeded jobs also expire by themselves after `?retention=`; this ends them sooner."""
        return int(self._run("sweep", repr(before), limit))

    def _announce(self, worker: str, queues: list[str], until: float, now: float) -> None:
        ttl_ms = max(1, math.ceil((until - now) * 1000))
        self._run("announce", worker, repr(until), repr(now), ttl_ms, *queues)

    def _retire(self, worker: str) -> None:
        self._run("retire", worker)

    def _workers(self, queue: str, now: float) -> int:
        return int(self._r.zcount(f"{self._p}:workers:{queue}", f"({now!r}", "+inf"))

    def _depth(self, queue: str, now: float) -> Depth:
        ready, inflight, scheduled, dead, oldest = self._run("depth", queue, repr(now))
        age = max(0.0, now - int(oldest) / 1000.0) if oldest else 0.0
        return Depth(int(ready), int(inflight), int(scheduled), int(dead), age)

    def _get(self, job_id: str, now: float) -> JobInfo | None:
        fields = cast(dict[bytes, bytes], self._r.hgetall(f"{self._p}:job:{job_id}"))
        return _info(job_id, fields, now)

    def _list(self, queue: str | None, state: str | None, limit: int, now: float) -> list[JobInfo]:
        index = f"{self._p}:index" + (f":{queue}" if queue else "")
        found: list[JobInfo] = []
        start, page = 0, max(limit, 200)
        while len(found) < limit:
            entries = cast(list[bytes], self._r.zrevrange(index, start, start + page - 1))
            ids = [i.decode() for i in entries]
            if not ids:
                break
            pipe = self._r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(f"{self._p}:job:{job_id}")
            gone = []
            for job_id, fields in zip(ids, pipe.execute(), strict=True):
                info = _info(job_id, fields, now)
                if info is None:
                    gone.append(job_id)
                elif state is None or info.state == state:
                    found.append(info)
            if gone:  # hashes expired after their retention: drop them from the index
                self._r.zrem(index, *gone)
                start -= len(gone)
            start += page
        return found[:limit]


def _info(job_id: str, h: dict[bytes, bytes], now: float) -> JobInfo | None:
    if not h or b"queue" not in h:
        return None
    error = h.get(b"last_error")
    state = h[b"state"].decode()
    if state == "scheduled" and float(h[b"run_at"]) <= now:
        state = "ready"  # due; the next claim promotes it into its stream
    return JobInfo(
        id=job_id,
        queue=h[b"queue"].decode(),
        payload=loads(h[b"payload"]),
        state=state,
        attempts=int(h[b"attempts"]),
        max_attempts=int(h[b"max_attempts"]),
        last_error=error.decode() if error is not None else None,
        result=loads(h.get(b"result")),
        enqueued_at=float(h[b"enqueued_at"]),
        updated_at=float(h[b"updated_at"]),
        priority=int(h[b"priority"]),
    )
