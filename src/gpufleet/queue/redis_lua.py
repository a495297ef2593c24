"""The Lua scripts behind the Redis Streams queue: each queue operation is one atomic script.

Every script gets the same keys, all under one hash tag so they also work on a
Redis Cluster: ``KEYS = stream, delayed, parked, dead, seq`` and starts its
``ARGV`` with ``group, consumer``. See ``gpufleet.queue.redis`` for the model.
"""

from __future__ import annotations

_COMMON = """
local stream, delayed, parked, dead, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, consumer = ARGV[1], ARGV[2]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- How many times the pending entry eid has been delivered, or -1 if it is not pending.
local function deliveries(eid)
  local p = redis.call('XPENDING', stream, group, eid, eid, 1)
  if #p == 0 then return -1 end
  return tonumber(p[1][4])
end

-- The entry's fields as a table, or nil if it is gone from the stream.
local function entry(eid)
  local e = redis.call('XRANGE', stream, eid, eid)
  if #e == 0 then return nil end
  local f, flat = {}, e[1][2]
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  return f
end

local function settle(eid)
  redis.call('XACK', stream, group, eid)
  redis.call('XDEL', stream, eid)
end
"""

# ARGV: group, consumer, delay_ms, body...  -> number enqueued
ENQUEUE = _COMMON + """
local n = #ARGV - 3
local first = redis.call('INCRBY', seq, n) - n
local delay = tonumber(ARGV[3])
local due = now_ms() + delay
for i = 1, n do
  local tid = tostring(first + i)
  if delay > 0 then
    redis.call('HSET', parked, tid, '0 ' .. ARGV[3 + i])
    redis.call('ZADD', delayed, due, tid)
  else
    redis.call('XADD', stream, '*', 'id', tid, 'r', '0', 'b', ARGV[3 + i])
  end
end
return n
"""

# ARGV: group, consumer, max_tasks, horizon_ms, lease_ms
# -> {{entry id, {field, value, ...}, deliveries}, ...}, entries dropped because deleted
RECEIVE = _COMMON + """
local n, horizon, lease = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- Tasks whose delay or backoff is over go back on the stream.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now_ms(), 'LIMIT', 0, 1000)
for _, tid in ipairs(due) do
  local v = redis.call('HGET', parked, tid)
  if v then
    local sp = string.find(v, ' ', 1, true)
    redis.call('XADD', stream, '*', 'id', tid, 'r', string.sub(v, 1, sp - 1),
               'b', string.sub(v, sp + 1))
    redis.call('HDEL', parked, tid)
  end
  redis.call('ZREM', delayed, tid)
end
-- Leases that ran out: pending entries idle for the whole horizon.
local out, dropped, cursor = {}, 0, '0-0'
repeat
  local res = redis.call('XAUTOCLAIM', stream, group, consumer, horizon, cursor,
                         'COUNT', n - #out)
  cursor = res[1]
  for _, e in ipairs(res[2]) do
    if e[2] then table.insert(out, {e[1], e[2], deliveries(e[1])}) end
  end
  if res[3] then dropped = dropped + #res[3] end  -- deleted under a pending id: PEL cleaned
until cursor == '0-0' or #out >= n
-- Then tasks never delivered.
if #out < n then
  local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n - #out,
                         'STREAMS', stream, '>')
  if res then
    for _, e in ipairs(res[1][2]) do table.insert(out, {e[1], e[2], 1}) end
  end
end
-- Each lease ends `lease` ms from now: its idle time starts at horizon - lease.
for _, e in ipairs(out) do
  redis.call('XCLAIM', stream, group, consumer, 0, e[1], 'IDLE', horizon - lease, 'JUSTID')
end
return {out, dropped}
"""

# ARGV: group, consumer, entry id, deliveries, idle_ms  -> 1 if the lease was held
EXTEND = _COMMON + """
if deliveries(ARGV[3]) ~= tonumber(ARGV[4]) then return 0 end
redis.call('XCLAIM', stream, group, consumer, 0, ARGV[3], 'IDLE', ARGV[5], 'JUSTID')
return 1
"""

# ARGV: group, consumer, entry id, deliveries  -> 1 if the lease was held
ACK = _COMMON + """
if deliveries(ARGV[3]) ~= tonumber(ARGV[4]) then return 0 end
settle(ARGV[3])
return 1
"""

# ARGV: group, consumer, entry id, deliveries, delay_ms  -> 1 if the lease was held
RELEASE = _COMMON + """
local k = tonumber(ARGV[4])
if deliveries(ARGV[3]) ~= k then return 0 end
local f = entry(ARGV[3])
settle(ARGV[3])
if not f then return 0 end
redis.call('HSET', parked, f.id, (tonumber(f.r) + k) .. ' ' .. f.b)
redis.call('ZADD', delayed, now_ms() + tonumber(ARGV[5]), f.id)
return 1
"""

# ARGV: group, consumer, entry id, deliveries, error  -> 1 if the lease was held
DEAD_LETTER = _COMMON + """
local k = tonumber(ARGV[4])
if deliveries(ARGV[3]) ~= k then return 0 end
local f = entry(ARGV[3])
settle(ARGV[3])
if not f then return 0 end
redis.call('XADD', dead, '*', 'id', f.id, 'b', f.b, 'r', tonumber(f.r) + k, 'e', ARGV[5],
           't', now_ms())
return 1
"""

# ARGV: group, consumer, batch  -> how many dead letters went back on the stream
REDRIVE = _COMMON + """
local got = redis.call('XRANGE', dead, '-', '+', 'COUNT', tonumber(ARGV[3]))
for _, e in ipairs(got) do
  local f, flat = {}, e[2]
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  redis.call('XADD', stream, '*', 'id', f.id, 'r', '0', 'b', f.b)
  redis.call('XDEL', dead, e[1])
end
return #got
"""

# ARGV: group, consumer, horizon_ms  -> {queued, in flight, dead}
DEPTH = _COMMON + """
local pending = redis.call('XPENDING', stream, group)[1]
local expired = 0
if pending > 0 then
  expired = #redis.call('XPENDING', stream, group, 'IDLE', tonumber(ARGV[3]), '-', '+', pending)
end
local held = pending - expired
return {redis.call('XLEN', stream) - held + redis.call('ZCARD', delayed), held,
        redis.call('XLEN', dead)}
"""
