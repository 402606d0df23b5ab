-- The record step of store/transfers.py (TransferStore.record): one transfer as the Broker API returned it.
-- KEYS: transfer, statuses (the set a transfer recorded before 2026-12-03 has), records, outbox, leader
-- ARGV: token, json record, prefix, retention, action ttl, records maxlen, n actions, then per action:
--       kind, job id, account no, deadline, pending key, sequence key
if ARGV[1] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[1] then
  return {-1, ''}
end
local r = cjson.decode(ARGV[2])
local p = ARGV[3]
local rank = {PENDING = 0, EXECUTED = 1, COMPLETED = 2, CANCELED = 2, FAILED = 2}
local old = redis.call('HMGET', KEYS[1], 'status', 'deadline', 'due_cents', 'interest_cents', 'statuses')
local old_status = old[1] or ''
-- every status the transfer was recorded in, space-separated, in the hash (the (id, status) de-duplication);
-- a transfer recorded before they moved there has them in a set of its own (KEYS[2]): read, folded in, deleted
local seen = old[5] or ''
local migrating = not old[5] and old_status ~= ''
if migrating then
  seen = table.concat(redis.call('SMEMBERS', KEYS[2]), ' ')
end
local duplicate = string.find(' ' .. seen .. ' ', ' ' .. r.status .. ' ', 1, true) ~= nil
local statuses = seen
if not duplicate then
  statuses = (seen == '') and r.status or (seen .. ' ' .. r.status)
end
if old_status ~= '' and rank[r.status] < rank[old_status] then
  return {0, old_status}  -- a stale read: never move backwards
end
if duplicate and tonumber(r.interest_cents) <= tonumber(old[4] or '0') then
  return {0, old_status}  -- nothing new (interest only ever grows; an older snapshot has less)
end
-- index bookkeeping: take the old due amount out, put the new one in
if old_status == 'PENDING' or old_status == 'EXECUTED' then
  redis.call('SREM', p .. 'due:' .. old[2], r.id)
  redis.call('DECRBY', p .. 'due_cents:' .. old[2], old[3])
end
local unsettled = r.status == 'PENDING' or r.status == 'EXECUTED'
if unsettled then
  redis.call('SADD', p .. 'unsettled', r.id)
  redis.call('SADD', p .. 'due:' .. r.deadline, r.id)
  redis.call('INCRBY', p .. 'due_cents:' .. r.deadline, r.due_cents)
end
redis.call('HSET', KEYS[1],
  'id', r.id, 'account_no', r.account_no, 'source_account_no', r.source_account_no,
  'amount', r.amount, 'status', r.status, 'system_date', r.system_date, 'deadline', r.deadline,
  'remaining_payable', r.remaining_payable, 'total_interest', r.total_interest,
  'interest_cents', r.interest_cents,
  'due_cents', unsettled and r.due_cents or '0', 'created_at', r.created_at,
  'updated_at', r.observed_at, 'source', r.source,
  'statuses', statuses)
if migrating then
  redis.call('DEL', KEYS[2])
end
if r.settlement_id ~= '' then
  redis.call('HSET', KEYS[1], 'settlement_id', r.settlement_id)
end
local account_id = redis.call('HGET', p .. 'account_ids', r.account_no)
if account_id then
  redis.call('HSET', KEYS[1], 'account_id', account_id)
end
if r.status == 'COMPLETED' then
  local intent = redis.call('HGET', p .. 'settled_by', r.id)
  redis.call('HSET', KEYS[1], 'settled_by', intent and 'settlekeeper' or 'partner')
  if intent then
    redis.call('HSET', KEYS[1], 'settle_intent', intent)
  end
end
redis.call('SADD', p .. 'account:' .. r.account_no .. ':transfers', r.id)
if redis.call('SADD', p .. 'system_date:' .. r.system_date .. ':transfers', r.id) == 1 then
  redis.call('EXPIRE', p .. 'system_date:' .. r.system_date .. ':transfers', ARGV[4])
end
if duplicate then
  return {2, old_status}  -- same status, new interest: fields updated, no record, no action
end
if not unsettled then
  redis.call('SREM', p .. 'unsettled', r.id)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*',
  'transfer_id', r.id, 'from', old_status, 'to', r.status, 'at', r.observed_at, 'source', r.source,
  'account_no', r.account_no, 'deadline', r.deadline)
-- the actions Python decided for this change (jobs/registry.py actions_for), appended once per action id;
-- a coalesced one (a pending key given) only while none of its kind is pending, numbered by its sequence
local n = tonumber(ARGV[7])
local i = 8
for _ = 1, n do
  local kind, job_id, account_no, deadline = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local pending, seq = ARGV[i + 4], ARGV[i + 5]
  i = i + 6
  if pending ~= '' then
    if redis.call('SET', pending, '1', 'NX', 'EX', 86400) then
      job_id = job_id .. '-' .. redis.call('INCR', seq)
    else
      job_id = ''
    end
  end
  if job_id ~= '' and redis.call('SET', p .. 'action:' .. job_id, '1', 'NX', 'EX', ARGV[5]) then
    redis.call('XADD', KEYS[4], '*', 'job_id', job_id, 'kind', kind, 'account_no', account_no, 'deadline', deadline)
  end
end
return {1, old_status}
