"""The Lua scripts of the Redis adapter: each runs atomically on the server (EVALSHA).

Every write that must happen together is one script, not a MULTI/EXEC: a script declares its
keys, so on a Redis Cluster it runs on the one node of their (shared) slot, and redis-py's
cluster client follows a failover for it like for any command.
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

_RESERVE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], slot + interval, 'PX', interval + 60000)
return slot - now
"""

_MOVE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, tok in ipairs(due) do
  local f = redis.call('HMGET', KEYS[2], tok .. ':b', tok .. ':h', tok .. ':i', tok .. ':a')
  if f[1] then
    local a = {KEYS[3], 'MAXLEN', '~', ARGV[1], '*', 'b', f[1], 'h', f[2] or '{}', 'a', f[4] or '0'}
    if f[3] then a[#a + 1] = 'id'; a[#a + 1] = f[3] end
    redis.call('XADD', unpack(a))
  end
  redis.call('HDEL', KEYS[2], tok .. ':b', tok .. ':h', tok .. ':i', tok .. ':a')
  redis.call('ZREM', KEYS[1], tok)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then return {#due, math.max(0, tonumber(nxt[2]) - now)} end
return {#due, -1}
"""
# Re-claim an entry to its owner (heartbeat; TIME 1 = back-dated for nack) only while this
# delivery still holds it: same consumer and same delivery count.
_RECLAIM_OWN = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] or tonumber(p[1][4]) ~= tonumber(ARGV[4]) then return 0 end
if ARGV[5] == '1' then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'TIME', 1, 'JUSTID')
else
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
end
return 1
"""
_PUBLISH_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'b', ARGV[3], 'h', ARGV[4],
                    'id', ARGV[5])
end
return false
"""
# Forget consumers with nothing pending (atomically, so no entry can be orphaned).
_REAP = """
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if tonumber(f['pending']) == 0 and tonumber(f['idle']) >= tonumber(ARGV[2])
     and (ARGV[3] == '' or f['name'] == ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    n = n + 1
  end
end
return n
"""
# Drop waiting entries (never delivered or delayed); entries in flight stay with their workers.
_PURGE = """
local dropped = redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[2], KEYS[3])
local s = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(s) ~= 'table' or s.err or s[1] == 0 then
  dropped = dropped + redis.call('XLEN', KEYS[1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
  return dropped
end
local busy = {}
for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', s[1])) do busy[p[1]] = true end
local start = '-'
while true do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1000)
  for _, e in ipairs(batch) do
    if not busy[e[1]] then redis.call('XDEL', KEYS[1], e[1]); dropped = dropped + 1 end
  end
  if #batch < 1000 then return dropped end
  start = '(' .. batch[#batch][1]
end
"""

# Settling: XACK + XDEL, so a stream only holds its backlog. ARGV[1] is the group; the entries
# follow (ack), or ARGV[2] is the one entry, acked with what replaces it written first.
_ACK = """
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
"""
# The copy of a delayed retry (hash KEYS[3], due time in sorted set KEYS[2]), then the ack.
_RETRY_LATER = """
local t = ARGV[3]
redis.call('HSET', KEYS[3], t .. ':b', ARGV[5], t .. ':a', ARGV[6], t .. ':h', ARGV[7])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[3], t .. ':i', ARGV[8]) end
redis.call('ZADD', KEYS[2], ARGV[4], t)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
"""
# The dead letter into stream KEYS[2] (capped by ARGV[3] with trim mode ARGV[4], older than
# ARGV[5] trimmed), then the ack.
_DEAD_LETTER = """
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], ARGV[3], '*', 'b', ARGV[6], 'h', ARGV[7])
if ARGV[5] ~= '' then redis.call('XTRIM', KEYS[2], 'MINID', ARGV[5]) end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
"""

# A topic message: into the durable subscriptions' stream KEYS[1] if one exists (capped at
# ARGV[2] entries, approximately), then to the live subscribers of channel ARGV[3].
_TOPIC = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'b', ARGV[1])
end
return redis.call('PUBLISH', ARGV[3], ARGV[1])
"""

# Many topic messages as _TOPIC sends one: ARGV[1] the cap, then (channel, body) pairs. One
# command for a worker's whole batch: a command per message cost more client CPU than the jobs.
_TOPIC_MANY = """
local durable = redis.call('EXISTS', KEYS[1]) == 1
for i = 2, #ARGV, 2 do
  if durable then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'b', ARGV[i + 1])
  end
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return (#ARGV - 1) / 2
"""

SCRIPTS = {"move": _MOVE_DUE, "reclaim": _RECLAIM_OWN, "publish": _PUBLISH_ONCE, "reap": _REAP,
           "purge": _PURGE, "slot": _RESERVE_SLOT, "ack": _ACK, "retry_later": _RETRY_LATER,
           "dead_letter": _DEAD_LETTER, "topic": _TOPIC, "topic_many": _TOPIC_MANY}  # fmt: skip


class ClusterScript(AsyncScript):
    """A script on a Redis Cluster: EVALSHA (loaded on demand, also on a replica promoted since)
    when called alone; EVAL inside a cluster pipeline, which can neither EVALSHA nor load one."""

    async def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if isinstance(client, ClusterPipeline):
            keys = list(keys or [])
            return client.eval(cast(str, self.script), len(keys), *keys, *(args or []))
        return await super().__call__(keys, args, client)


_Calls = dict[int, tuple[AsyncScript, list[Any], list[Any]]]  # a pipeline's scripts by position


class ServerScript(AsyncScript):
    """A script on one Redis server. In a pipeline it is queued as a bare EVALSHA: redis-py's own
    way asks the server ``SCRIPT EXISTS`` before every such pipeline, one round trip more per
    batch of results. A script the server lost (it restarted) is loaded by :func:`run_pipeline`."""

    async def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if not isinstance(client, Pipeline) or isinstance(client, ClusterPipeline):
            return await super().__call__(keys, args, client)
        keys, args = list(keys or []), list(args or [])
        calls: _Calls = client.__dict__.setdefault("_orq_scripts", {})
        calls[len(client.command_stack)] = (self, keys, args)
        return client.evalsha(self.sha, len(keys), *keys, *args)


async def run_pipeline(pipe: Any) -> list[Any]:
    """``pipe.execute()``; each of its scripts the server did not know (NOSCRIPT) is then run alone
    (which loads it), and only that one: the pipeline's other commands ran already. The first
    other error is raised, as ``execute()`` does."""
    calls: _Calls = pipe.__dict__.pop("_orq_scripts", {})
    if not calls:
        return cast(list[Any], await pipe.execute())
    replies = list(await pipe.execute(raise_on_error=False))
    for i, (script, keys, args) in calls.items():
        if isinstance(replies[i], NoScriptError):
            replies[i] = await script(keys=keys, args=args)  # EVALSHA, SCRIPT LOAD, EVALSHA
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def bind(client: Any, clustered: bool) -> dict[str, AsyncScript]:
    """The scripts, callable on ``client`` (or a pipeline of it: then run it with :func:`run_pipeline`)."""
    kind = ClusterScript if clustered else ServerScript
    return {name: kind(client, source) for name, source in SCRIPTS.items()}
