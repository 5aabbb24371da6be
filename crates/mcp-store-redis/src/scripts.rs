//! The Lua scripts of the store's writes, each checked whole before it writes anything (Redis
//! keeps what a failing script wrote), and their arguments.

use redis::Script;

/// The Lua scripts of the writes (loaded once per connection, then called by digest).
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) update: Script,
    pub(crate) replay: Script,
    pub(crate) remove: Script,
    pub(crate) save_task: Script,
    pub(crate) remove_task: Script,
    pub(crate) renew: Script,
    pub(crate) release: Script,
    pub(crate) renew_all: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            create: Script::new(CREATE),
            update: Script::new(UPDATE),
            replay: Script::new(REPLAY),
            remove: Script::new(REMOVE),
            save_task: Script::new(SAVE_TASK),
            remove_task: Script::new(REMOVE_TASK),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            renew_all: Script::new(RENEW_ALL),
        }
    }
}

/// KEYS: session, active, owned, usage. ARGV: json, owner, last active, next position, id.
/// 0 when the session exists already.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'v', 1, 'owner', ARGV[2], 'oldest', ARGV[4], 'logbytes', 0)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('HINCRBY', KEYS[4], 'sessions', 1)
redis.call('HINCRBY', KEYS[4], 'bytes', string.len(ARGV[1]))
return 1
";

/// KEYS: session, log, active, usage. ARGV: the version read, the new json, last active,
/// id, keep-from (0: no trimming), then position and text of each message. -1: no such
/// session; -2: the version moved (read again); 1: written. Checked whole before anything
/// is written: a script that fails half-way keeps what it wrote.
const UPDATE: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] then return -2 end
local oldest = tonumber(redis.call('HGET', KEYS[1], 'oldest'))
local len = redis.call('LLEN', KEYS[2])
local first, count = oldest, len
for i = 6, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if count == 0 then first = seq end
  local at = seq - first
  if at == count then count = count + 1
  elseif at > count then
    return redis.error_reply('a gap in the log of ' .. ARGV[4] .. ': position ' .. seq .. ' after ' .. (first + count - 1))
  end
end
local added = string.len(ARGV[2])
local removed = redis.call('HSTRLEN', KEYS[1], 'json')
local logged = tonumber(redis.call('HGET', KEYS[1], 'logbytes'))
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'v', tonumber(v) + 1)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
for i = 6, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  local text = ARGV[i + 1]
  if len == 0 then oldest = seq end
  local at = seq - oldest
  if at >= 0 and at < len then
    local old = string.len(redis.call('LINDEX', KEYS[2], at))
    redis.call('LSET', KEYS[2], at, text)
    added = added + string.len(text)
    removed = removed + old
    logged = logged + string.len(text) - old
  elseif at == len then
    redis.call('RPUSH', KEYS[2], text)
    len = len + 1
    added = added + string.len(text)
    logged = logged + string.len(text)
  end
end
local keep_from = tonumber(ARGV[5])
if keep_from > oldest and len > 0 then
  local n = math.min(keep_from - oldest, len)
  for _ = 1, n do
    local old = string.len(redis.call('LPOP', KEYS[2]))
    removed = removed + old
    logged = logged - old
  end
  oldest = oldest + n
end
redis.call('HSET', KEYS[1], 'oldest', oldest, 'logbytes', logged)
redis.call('HINCRBY', KEYS[4], 'bytes', added - removed)
return 1
";

/// KEYS: session, log. ARGV: the position after which the client wants the log. The
/// record's json, the position of the first message returned, then the messages, read
/// together; nothing when there is no such session.
const REPLAY: &str = r"
local fields = redis.call('HMGET', KEYS[1], 'json', 'oldest')
if not fields[1] then return {} end
local oldest = tonumber(fields[2])
local from = math.max(tonumber(ARGV[1]) + 1 - oldest, 0)
local out = {fields[1], tostring(oldest + from)}
for _, text in ipairs(redis.call('LRANGE', KEYS[2], from, -1)) do table.insert(out, text) end
return out
";

/// KEYS: session, log, active, owned, usage, quarantine. ARGV: id, owner, the quarantine
/// field ('' to drop the record). Removes a session whose owner is `owner`; 0 when there is
/// none, -1 when its owner is another (read again).
const REMOVE: &str = r"
local fields = redis.call('HMGET', KEYS[1], 'json', 'owner', 'logbytes')
if not fields[1] then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
if fields[2] ~= ARGV[2] then return -1 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[6], ARGV[3], fields[1]) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'sessions', -1)
redis.call('HINCRBY', KEYS[5], 'bytes', -(string.len(fields[1]) + tonumber(fields[3] or '0')))
return 1
";

/// KEYS: task, tasks, usage. ARGV: json, id, owner.
const SAVE_TASK: &str = r"
local old = redis.call('HSTRLEN', KEYS[1], 'json')
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'owner', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'bytes', string.len(ARGV[1]) - old)
return 1
";

/// KEYS: task, tasks, usage, quarantine. ARGV: id, owner, the quarantine field ('' to drop
/// the record). 0 when there is no such task, -1 when its owner is another (read again).
const REMOVE_TASK: &str = r"
local fields = redis.call('HMGET', KEYS[1], 'json', 'owner')
if not fields[1] then
  redis.call('SREM', KEYS[2], ARGV[1])
  return 0
end
if fields[2] ~= ARGV[2] then return -1 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[4], ARGV[3], fields[1]) end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'bytes', -string.len(fields[1]))
return 1
";

/// KEYS: lease. ARGV: holder, ttl in ms. 1 when the holder's lease was extended, 0 when
/// the lease is another's or gone.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// KEYS: leases. ARGV: holder, ttl in ms. For each lease, 1 when the holder's lease was
/// extended, 0 when it is another's or gone.
const RENEW_ALL: &str = r"
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
";

/// How many leases one renewal script takes: a script blocks Redis while it runs.
pub(crate) const RENEWALS_PER_SCRIPT: usize = 500;

/// KEYS: lease. ARGV: holder. Removes the lease if it is the holder's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";
