"""The Lua scripts of the Redis broker: every step that must be atomic.

Each script is one round trip and runs atomically on the server, so a message
is always in exactly one place: a ready list, a schedule, a consumer's held
hash or the dead-letter store. No message ever exists only in a client's memory
(except on transient queues, which promise nothing).

Keys (``P`` is the ``global_keyprefix`` transport option, empty by default;
``SEP`` is kombu's priority separator ``"\\x06\\x16"``; ``US`` is ``"\\x1f"``):

==================================  ======  ================================================
key                                 type    contents
==================================  ======  ================================================
``P<queue>``                        list    ready messages of priority 0-2: kombu JSON
                                            envelopes; producers LPUSH, consumers pop the
                                            right end (Celery's layout)
``P<queue>SEP<3|6|9>``              list    ready messages of priority 3-5, 6-8, 9
``P_kombu.binding.<exchange>``      set     ``<routing key>SEP<pattern>SEP<queue>``: kombu's
                                            binding table, so Celery producers find the queue
``Pceleriac.queues``                hash    queue -> JSON declaration (durable, exchange)
``Pceleriac.schedule.<queue>``      zset    ``<list key>US<envelope>`` scored by ETA
``Pceleriac.leases``                zset    consumer -> lease deadline (server time)
``Pceleriac.held.<consumer>``       hash    tag -> ``<deliveries>US<queue>US<list key>US<env>``;
                                            field ``~wait`` -> ``<queue>US<list key>`` the
                                            consumer blocks on
``Pceleriac.started.<consumer>``    set     tags started under early ack
``Pceleriac.landing.<consumer>``    list    a message a blocked consumer just received
``Pceleriac.redelivered``           hash    SHA-1 of an envelope -> deliveries so far
``Pceleriac.seq``                   string  counter for delivery tags
``Pceleriac.dead``                  hash    id -> ``<queue>US<list key>US<deliveries>US<time>``
                                            ``US<reason>US<envelope>``
``Pceleriac.dead.index``            zset    dead-letter id -> time it was dead-lettered
``Pceleriac.dead.seq``              string  counter for dead-letter ids
``Pceleriac.nodes``                 hash    worker node -> heartbeat document
``Pceleriac.nodes.expiry``          zset    worker node -> when its heartbeat expires
==================================  ======  ================================================

Producers write the ready lists, the schedules, the binding table and the queue
registry. Consumers (worker children) run ``FETCH``, ``REJECT`` and
``MARK_STARTED`` (which marks only what the consumer still holds under an
unexpired lease); masters run ``EXTEND``, ``LOST`` and ``RECOVER``. Times
inside scripts come from the server's clock (``TIME``), so leases do not depend
on the clocks of the machines running workers.
"""

from __future__ import annotations

#: Shared helpers, prepended to every script.
PRELUDE = r"""
local P = ARGV[1]
local US = '\31'
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
-- split 'a US b US c US rest' into its first n-1 fields and the rest (the envelope)
local function fields(s, n)
  local out, start = {}, 1
  for _ = 1, n - 1 do
    local i = string.find(s, US, start, true)
    if not i then return nil end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
  out[#out + 1] = string.sub(s, start)
  return out
end
-- returns the dead letter's id and its record (as stored in celeriac.dead)
local function dead_letter(queue, listkey, deliveries, reason, raw, at)
  local id = redis.call('INCR', P .. 'celeriac.dead.seq')
  reason = string.gsub(reason, US, ' ')
  local record = table.concat({queue, listkey, deliveries, string.format('%.6f', at), reason, raw}, US)
  redis.call('HSET', P .. 'celeriac.dead', id, record)
  redis.call('ZADD', P .. 'celeriac.dead.index', at, id)
  return id, record
end
-- hand a message back to the front of its list, remembering how often it was delivered
local function requeue(listkey, raw, deliveries)
  if deliveries > 0 then
    redis.call('HSET', P .. 'celeriac.redelivered', redis.sha1hex(raw), deliveries)
  end
  redis.call('RPUSH', listkey, raw)
end
-- release everything a consumer holds. running: set of tags it was running;
-- running_to: 'queue' | 'ack' | 'dead'; started_to: 'ack' (finished, ack lost) |
-- 'keep' (leave started messages for RECOVER) | 'dead'; uncount: 1 when the consumer
-- reported what it ran (its unstarted messages were not really delivered), 0 when its
-- lease ran out (any of them may have been running). Returns dead {tag, id} pairs.
local function release(consumer, running, running_to, started_to, reason, limit, at, uncount)
  local held = P .. 'celeriac.held.' .. consumer
  local started_key = P .. 'celeriac.started.' .. consumer
  local landing = P .. 'celeriac.landing.' .. consumer
  local entries = redis.call('HGETALL', held)
  local back, dead, kept, wait = {}, {}, 0, nil
  for i = 1, #entries, 2 do
    local tag, record = entries[i], entries[i + 1]
    if tag == '~wait' then
      wait = record
    else
      local f = fields(record, 4)
      local d = tonumber(f[1])
      local was_running = running[tag]
      local started = redis.call('SISMEMBER', started_key, tag) == 1
      local drop = true
      if was_running then
        if running_to == 'ack' then
          -- settled as failed: nothing to keep
        elseif running_to == 'dead' or d >= limit then
          local suffix = ''
          if running_to ~= 'dead' then suffix = ' (delivered ' .. d .. ' times)' end
          dead[#dead + 1] = tag
          dead[#dead + 1] = dead_letter(f[2], f[3], d, reason .. suffix, f[4], at)
        else
          back[#back + 1] = {tonumber(tag), f[3], f[4], d}
        end
      elseif started then
        if started_to == 'dead' then
          dead[#dead + 1] = tag
          dead[#dead + 1] = dead_letter(f[2], f[3], d, reason, f[4], at)
        elseif started_to == 'keep' then
          drop = false
          kept = kept + 1
        end
      else
        back[#back + 1] = {tonumber(tag), f[3], f[4], d - uncount}
      end
      if drop then
        redis.call('HDEL', held, tag)
        redis.call('SREM', started_key, tag)
      end
    end
  end
  -- newest first, so the oldest ends up at the front
  table.sort(back, function(a, b) return a[1] > b[1] end)
  for _, m in ipairs(back) do requeue(m[2], m[3], m[4]) end
  if wait then
    local w = fields(wait, 2)
    local landed = redis.call('LRANGE', landing, 0, -1)
    for _, raw in ipairs(landed) do redis.call('RPUSH', w[2], raw) end
    redis.call('DEL', landing)
  end
  if kept == 0 then
    redis.call('DEL', held, started_key)
    redis.call('ZREM', P .. 'celeriac.leases', consumer)
  else
    redis.call('HDEL', held, '~wait')
  end
  return dead
end
-- requeue the unstarted messages of consumers whose lease ran out
local function reclaim_expired(at, limit)
  local expired = redis.call('ZRANGEBYSCORE', P .. 'celeriac.leases', '-inf', at, 'LIMIT', 0, 16)
  for _, consumer in ipairs(expired) do
    release(consumer, {}, 'queue', 'keep', 'lease expired', limit, at, 0)
  end
end
"""

#: ARGV: P, consumer, n, lease_seconds, delivery_limit, wait_queue, wait_key, n_acks,
#: ack tags..., then (queue, key, key, ...) groups: queue name, count of keys, keys in
#: priority order. Returns {seconds_to_next_wake, n_dead, tag1, queue1, deliveries1, raw1,
#: ..., dead_id1, dead_record1, ...}: the messages leased, then the n_dead messages it moved
#: to the dead letters (delivered ``delivery_limit`` times already) with their records.
FETCH = (
    PRELUDE
    + r"""
local consumer = ARGV[2]
local n = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local wait_queue, wait_key = ARGV[6], ARGV[7]
local n_acks = tonumber(ARGV[8])
local held = P .. 'celeriac.held.' .. consumer
local started_key = P .. 'celeriac.started.' .. consumer
local landing = P .. 'celeriac.landing.' .. consumer
local at = now()
-- 1. ack the settled window
if n_acks > 0 then
  local tags = {}
  for i = 9, 8 + n_acks do tags[#tags + 1] = ARGV[i] end
  redis.call('HDEL', held, unpack(tags))
  redis.call('SREM', started_key, unpack(tags))
end
-- 2. the queues: {name, keys}
local queues = {}
local i = 9 + n_acks
while i <= #ARGV do
  local name, count = ARGV[i], tonumber(ARGV[i + 1])
  local keys = {}
  for k = 1, count do keys[k] = ARGV[i + 1 + k] end
  queues[#queues + 1] = {name, keys}
  i = i + 2 + count
end
-- 3. scheduled messages that are due become ready
local next_wake = -1
for _, q in ipairs(queues) do
  local schedule = P .. 'celeriac.schedule.' .. q[1]
  local due = redis.call('ZRANGEBYSCORE', schedule, '-inf', at, 'LIMIT', 0, 1000)
  for _, member in ipairs(due) do
    local f = fields(member, 2)
    redis.call('LPUSH', f[1], f[2])
  end
  if #due > 0 then redis.call('ZREM', schedule, unpack(due)) end
  local nxt = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')
  if nxt[2] and (next_wake < 0 or tonumber(nxt[2]) < next_wake) then next_wake = tonumber(nxt[2]) end
end
-- 4. messages of consumers whose lease ran out are ready again
reclaim_expired(at, limit)
-- 5. lease: first what landed while blocked, then the ready lists, priority-major
local out = {0, 0}
local got = 0
local dead = {}
local redelivered = P .. 'celeriac.redelivered'
local check = redis.call('EXISTS', redelivered) == 1
local function take(queue, listkey, raw)
  local d = 0
  if check then
    local sha = redis.sha1hex(raw)
    d = tonumber(redis.call('HGET', redelivered, sha) or '0')
    if d > 0 then redis.call('HDEL', redelivered, sha) end
  end
  if d >= limit then
    local reason = 'delivered ' .. d .. ' times without being settled (the workers holding it died '
      .. 'or lost their lease); task_delivery_limit=' .. limit
    local id, record = dead_letter(queue, listkey, d, reason, raw, at)
    dead[#dead + 1] = id
    dead[#dead + 1] = record
    return
  end
  local tag = tostring(redis.call('INCR', P .. 'celeriac.seq'))
  redis.call('HSET', held, tag, table.concat({d + 1, queue, listkey, raw}, US))
  out[#out + 1] = tag
  out[#out + 1] = queue
  out[#out + 1] = d + 1
  out[#out + 1] = raw
  got = got + 1
end
local wait = redis.call('HGET', held, '~wait')
if wait then
  local w = fields(wait, 2)
  local landed = redis.call('LRANGE', landing, 0, -1)
  for j = #landed, 1, -1 do take(w[1], w[2], landed[j]) end
  redis.call('DEL', landing)
  redis.call('HDEL', held, '~wait')
end
local step = 1
while got < n do
  local any_key = false
  for _, q in ipairs(queues) do
    local key = q[2][step]
    if key then
      any_key = true
      if got < n then
        local popped = redis.call('RPOP', key, n - got)
        if popped then
          for _, raw in ipairs(popped) do take(q[1], key, raw) end
        end
      end
    end
  end
  if not any_key then break end
  step = step + 1
end
-- 6. the lease covers what is held and the landing list of a blocked consumer
if got == 0 and wait_key ~= '' then
  redis.call('HSET', held, '~wait', wait_queue .. US .. wait_key)
end
if redis.call('EXISTS', held) == 1 then
  redis.call('ZADD', P .. 'celeriac.leases', at + lease, consumer)
else
  redis.call('ZREM', P .. 'celeriac.leases', consumer)
end
local first_lease = redis.call('ZRANGE', P .. 'celeriac.leases', 0, 0, 'WITHSCORES')
if first_lease[2] then
  local t = tonumber(first_lease[2])
  if next_wake < 0 or t < next_wake then next_wake = t end
end
-- seconds until something may become ready (an ETA, a lease running out), -1: nothing
if next_wake >= 0 then next_wake = math.max(next_wake - at, 0) end
out[1] = tostring(next_wake)
if #dead > 0 then
  out[2] = #dead / 2
  for _, v in ipairs(dead) do out[#out + 1] = v end
end
return out
"""
)

#: ARGV: P, consumer, how, reason, tags... Settles deliveries of one consumer. how: 'dead'
#: (to the dead letters with reason), 'requeue' (their task asked to run again: the delivery
#: counts, the next one is a redelivery) or 'hand_back' (never started: it does not count).
REJECT = (
    PRELUDE
    + r"""
local consumer, how, reason = ARGV[2], ARGV[3], ARGV[4]
local held = P .. 'celeriac.held.' .. consumer
local started_key = P .. 'celeriac.started.' .. consumer
local at = now()
local back = {}
local dead = 0
for i = 5, #ARGV do
  local tag = ARGV[i]
  local record = redis.call('HGET', held, tag)
  if record then
    local f = fields(record, 4)
    if how == 'requeue' then
      back[#back + 1] = {tonumber(tag), f[3], f[4], tonumber(f[1])}
    elseif how == 'hand_back' then
      back[#back + 1] = {tonumber(tag), f[3], f[4], tonumber(f[1]) - 1}
    else
      dead_letter(f[2], f[3], tonumber(f[1]), reason, f[4], at)
      dead = dead + 1
    end
    redis.call('HDEL', held, tag)
    redis.call('SREM', started_key, tag)
  end
end
table.sort(back, function(a, b) return a[1] > b[1] end)
for _, m in ipairs(back) do requeue(m[2], m[3], m[4]) end
return #back + dead
"""
)

#: ARGV: P, consumer, delivery_limit, tags... Early ack: marks started the tags the
#: consumer still holds under an unexpired lease; returns the others (lost). A lease
#: that ran out is released here, as a FETCH would: the unstarted messages go back.
MARK_STARTED = (
    PRELUDE
    + r"""
local consumer = ARGV[2]
local held = P .. 'celeriac.held.' .. consumer
local at = now()
local deadline = redis.call('ZSCORE', P .. 'celeriac.leases', consumer)
local lost, ok = {}, {}
if not deadline or tonumber(deadline) <= at then
  for i = 4, #ARGV do lost[#lost + 1] = ARGV[i] end
  if deadline then release(consumer, {}, 'queue', 'keep', 'lease expired', tonumber(ARGV[3]), at, 0) end
  return lost
end
for i = 4, #ARGV do
  if redis.call('HEXISTS', held, ARGV[i]) == 1 then ok[#ok + 1] = ARGV[i] else lost[#lost + 1] = ARGV[i] end
end
if #ok > 0 then redis.call('SADD', P .. 'celeriac.started.' .. consumer, unpack(ok)) end
return lost
"""
)

#: ARGV: P, lease_seconds, consumers... Returns how many messages they hold.
EXTEND = (
    PRELUDE
    + r"""
local deadline = now() + tonumber(ARGV[2])
local count = 0
for i = 3, #ARGV do
  local consumer = ARGV[i]
  if redis.call('ZSCORE', P .. 'celeriac.leases', ARGV[i]) then
    redis.call('ZADD', P .. 'celeriac.leases', deadline, consumer)
    local held = P .. 'celeriac.held.' .. consumer
    count = count + redis.call('HLEN', held) - redis.call('HEXISTS', held, '~wait')
  end
end
return count
"""
)

#: ARGV: P, consumer, reason, running_to, delivery_limit, uncount (1: an unstarted message's
#: delivery does not count, 0: it does), running tags... Returns dead tags.
LOST = (
    PRELUDE
    + r"""
local running = {}
for i = 7, #ARGV do running[ARGV[i]] = true end
local dead = release(ARGV[2], running, ARGV[4], 'ack', ARGV[3], tonumber(ARGV[5]), now(), tonumber(ARGV[6]))
local tags = {}
for i = 1, #dead, 2 do tags[#tags + 1] = dead[i] end
return tags
"""
)

#: ARGV: P, reason, delivery_limit. Dead-letters started messages of expired consumers,
#: requeues the rest. Returns the dead-letter ids.
RECOVER = (
    PRELUDE
    + r"""
local at = now()
local expired = redis.call('ZRANGEBYSCORE', P .. 'celeriac.leases', '-inf', at, 'LIMIT', 0, 64)
local ids = {}
for _, consumer in ipairs(expired) do
  local dead = release(consumer, {}, 'queue', 'dead', ARGV[2], tonumber(ARGV[3]), at, 0)
  for i = 2, #dead, 2 do ids[#ids + 1] = dead[i] end
end
return ids
"""
)

#: ARGV: P, queue, keys... Returns {ready, scheduled, reserved, running}.
LENGTH = (
    PRELUDE
    + r"""
local queue = ARGV[2]
local ready = 0
for i = 3, #ARGV do ready = ready + redis.call('LLEN', ARGV[i]) end
local scheduled = redis.call('ZCARD', P .. 'celeriac.schedule.' .. queue)
local reserved, running = 0, 0
for _, consumer in ipairs(redis.call('ZRANGE', P .. 'celeriac.leases', 0, -1)) do
  local held = P .. 'celeriac.held.' .. consumer
  local started_key = P .. 'celeriac.started.' .. consumer
  local entries = redis.call('HGETALL', held)
  for i = 1, #entries, 2 do
    if entries[i] ~= '~wait' then
      local f = fields(entries[i + 1], 4)
      if f and f[2] == queue then
        if redis.call('SISMEMBER', started_key, entries[i]) == 1 then
          running = running + 1
        else
          reserved = reserved + 1
        end
      end
    end
  end
end
return {ready, scheduled, reserved, running}
"""
)

#: ARGV: P, ids... (none: all). Puts dead letters back at the end of their lists.
REQUEUE_DEAD = (
    PRELUDE
    + r"""
local ids = {}
if #ARGV == 1 then
  ids = redis.call('ZRANGE', P .. 'celeriac.dead.index', 0, -1)
else
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local count = 0
for _, id in ipairs(ids) do
  local record = redis.call('HGET', P .. 'celeriac.dead', id)
  if record then
    local f = fields(record, 6)
    redis.call('HDEL', P .. 'celeriac.redelivered', redis.sha1hex(f[6]))
    redis.call('LPUSH', f[2], f[6])
    redis.call('HDEL', P .. 'celeriac.dead', id)
    redis.call('ZREM', P .. 'celeriac.dead.index', id)
    count = count + 1
  end
end
return count
"""
)

#: ARGV: P, queue, list key, deliveries, reason, envelope. Returns the dead-letter id.
DEAD = (
    PRELUDE
    + r"""
local t = redis.call('TIME')
return (dead_letter(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(t[1]) + tonumber(t[2]) / 1000000))
"""
)
