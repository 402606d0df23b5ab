-- The alert state machine of store/alert_state.py: one state change of one alert, recorded once.
-- KEYS: alert hash, alerts stream, delivery outbox
-- ARGV: action, severity rank, payload json, now, dedup key, severity, state record prefix, record ttl,
--       then (field, value)... for the stream entry
-- A change is recorded as a state: 'trigger' (a new incident), 'escalate-<severity>' (the open incident
-- at a higher severity) or 'resolve'. Its payload is kept in <prefix><seq>:<state> for the delivery job,
-- and the outbox entry ("<dedup>|<seq>|<state>") stays until a delivery job for it is enqueued.
local state = redis.call('HGET', KEYS[1], 'state')
local rank = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
local name = ARGV[1]
local record
if ARGV[1] == 'resolve' then
  if state ~= 'triggered' then return {0, '', ''} end
  redis.call('HSET', KEYS[1], 'state', 'resolved', 'resolved_at', ARGV[4])
  record = {'payload', redis.call('HGET', KEYS[1], 'payload'), 'resolution', ARGV[3]}
else
  if state == 'triggered' then
    if tonumber(ARGV[2]) <= rank then return {0, '', ''} end
    name = 'escalate-' .. ARGV[6]
  else
    redis.call('HINCRBY', KEYS[1], 'seq', 1)
  end
  redis.call('HSET', KEYS[1], 'state', 'triggered', 'rank', ARGV[2], 'payload', ARGV[3], 'triggered_at', ARGV[4])
  record = {'payload', ARGV[3]}
end
local seq = redis.call('HGET', KEYS[1], 'seq')
local record_key = ARGV[7] .. seq .. ':' .. name
redis.call('DEL', record_key)
redis.call('HSET', record_key, unpack(record))
redis.call('EXPIRE', record_key, ARGV[8])
local entry = {'action', ARGV[1], 'seq', seq}
for i = 9, #ARGV do table.insert(entry, ARGV[i]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', unpack(entry))
redis.call('SADD', KEYS[3], ARGV[5] .. '|' .. seq .. '|' .. name)
return {1, seq, name}
