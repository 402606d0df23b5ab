-- The ingest step of store/transfers.py (TransferStore.ingest): a batch of stream events in one atomic step.
-- KEYS: cursor, cursor_at, hints, hint_seq, deadletters, leader, key prefix
-- ARGV: token, cursor id, now (unix s), n_hints, hint ids..., n_dead, memory (s),
--       (dead-letter identity, json)..., n_journals, (journal id, status, idempotency key or '')...,
--       n_dates, (transfer id, system date)...
-- Returns -1 if the lease is lost, else the positions (1-based) of the dead letters kept.
if ARGV[1] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[1] then
  return -1
end
local n = tonumber(ARGV[4])
local i = 5
if n > 0 then
  local seq = redis.call('INCRBY', KEYS[4], n) - n
  for j = 1, n do
    redis.call('ZADD', KEYS[3], seq + j, ARGV[i])
    i = i + 1
  end
end
local d = tonumber(ARGV[i])
local memory = ARGV[i + 1]
i = i + 2
local kept = {}
for j = 1, d do
  if redis.call('SET', KEYS[7] .. 'deadletter_seen:' .. ARGV[i], '1', 'NX', 'EX', memory) then
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', 100000, '*', 'entry', ARGV[i + 1])
    table.insert(kept, j)
  end
  i = i + 2
end
local m = tonumber(ARGV[i])
i = i + 1
for j = 1, m do
  redis.call('HSET', KEYS[7] .. 'journal:' .. ARGV[i], 'status', ARGV[i + 1], 'at', ARGV[3])
  if ARGV[i + 2] ~= '' then
    local by_key = KEYS[7] .. 'journal_key:' .. ARGV[i + 2]
    redis.call('HSET', by_key, 'journal_id', ARGV[i], 'status', ARGV[i + 1], 'at', ARGV[3])
    redis.call('EXPIRE', by_key, 1209600)
  end
  i = i + 3
end
local h = tonumber(ARGV[i])
i = i + 1
for j = 1, h do
  redis.call('HSET', KEYS[7] .. 'hint_dates', ARGV[i], ARGV[i + 1])
  i = i + 2
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], ARGV[3])
end
return kept
