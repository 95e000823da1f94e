//! The catalog in Redis: one hash per session (`PREFIX session:ID`) and one
//! set of session ids per owner (`PREFIX owner:HEX(OWNER)`), every change
//! one Lua script (atomic on the server), leases and times judged by the
//! server's clock. The scripts name keys they build from the prefix, so
//! the catalog is a single Redis server (or a primary with replicas), not
//! a Redis Cluster.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::catalog::{Catalog, CatalogError, Claim, Lease, PausedRef, Record};

/// The time in milliseconds by the Redis server's clock.
const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// The routing catalog in a Redis server (`redis://HOST:PORT`).
#[derive(Clone)]
pub struct RedisCatalog {
    connection: ConnectionManager,
    prefix: String,
    scripts: std::sync::Arc<Scripts>,
}

struct Scripts {
    create: Script,
    claim: Script,
    renew: Script,
    record_paused: Script,
    release: Script,
    remove: Script,
    lookup: Script,
    list: Script,
}

/// A record's fields as `lookup` and `list` answer them, in order.
const FIELDS: &str = "'owner', 'worker', 'epoch', 'lease_until', 'paused_key', 'paused_epoch', 'paused_turn',
                      'lost', 'profile', 'opened', 'paused_at'";

/// Lua that turns `r`, a record's FIELDS, into its answer (at `now`).
const ANSWER: &str = "local function answer(r, now)
  local left = 0
  if r[2] and r[2] ~= '' then left = math.max(0, (tonumber(r[4] or 0) or 0) - now) end
  local paused_ago = ''
  if r[11] then paused_ago = string.format('%d', math.max(0, now - (tonumber(r[11]) or now))) end
  return {r[1], r[2] or '', r[3] or '', string.format('%d', left), r[5] or '', r[6] or '', r[7] or '',
          r[8] or '0', r[9] or '', string.format('%d', math.max(0, now - (tonumber(r[10] or now) or now))),
          paused_ago}
end
";

/// Lua: the hex spelling of a string (owner names go into key names so).
const HEX: &str = "local function hex(s)
  return (s:gsub('.', function(c) return string.format('%02x', string.byte(c)) end))
end
";

impl RedisCatalog {
    /// Connects to the Redis server at `url`; the sessions' keys start
    /// with `prefix` (say `mimobox:`), so that fleets can share a server.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisCatalog, CatalogError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let connection = client.get_connection_manager().await.map_err(unavailable)?;
        let script = |body: &str| Script::new(&format!("{NOW}{body}"));
        let scripts = Scripts {
            create: script(
                "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
                 redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'worker', ARGV[2], 'epoch', 1,
                            'lease_until', now + tonumber(ARGV[3]), 'profile', ARGV[4], 'opened', now)
                 redis.call('SADD', KEYS[2], ARGV[5])
                 return 1",
            ),
            claim: script(
                "local r = redis.call('HMGET', KEYS[1], 'owner', 'worker', 'epoch', 'lease_until')
                 if not r[1] or r[1] ~= ARGV[1] then return {'none'} end
                 local epoch = tonumber(r[3])
                 local held = r[2] and r[2] ~= '' and tonumber(r[4]) > now
                 if held and r[2] ~= ARGV[2] then return {'held', r[2], tostring(epoch)} end
                 -- Not held, or held by the claimant itself, which claims
                 -- only a session it does not hold (it let it go when its
                 -- own deadline passed): a new epoch either way, so that
                 -- nothing of an earlier hold is taken for the new one.
                 epoch = epoch + 1
                 -- A holder that did not release the session was lost,
                 -- and turns with it. That stays said until a holder
                 -- records a state of its own: a claimant that lets go
                 -- without one (it could not take the session up) leaves
                 -- the loss for the next to report.
                 if r[2] and r[2] ~= '' then redis.call('HSET', KEYS[1], 'lost', 1) end
                 redis.call('HSET', KEYS[1], 'worker', ARGV[2], 'epoch', epoch,
                            'lease_until', now + tonumber(ARGV[3]))
                 return {'granted', tostring(epoch)}",
            ),
            renew: script(
                "local r = redis.call('HMGET', KEYS[1], 'worker', 'epoch')
                 if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return 0 end
                 redis.call('HSET', KEYS[1], 'lease_until', now + tonumber(ARGV[3]))
                 return 1",
            ),
            record_paused: script(
                "local r = redis.call('HMGET', KEYS[1], 'worker', 'epoch', 'paused_turn')
                 if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return 0 end
                 if r[3] and tonumber(r[3]) > tonumber(ARGV[3]) then return 0 end
                 redis.call('HSET', KEYS[1], 'paused_key', ARGV[4], 'paused_epoch', ARGV[2],
                            'paused_turn', ARGV[3], 'paused_at', now, 'lost', 0)
                 return 1",
            ),
            release: script(
                "local r = redis.call('HMGET', KEYS[1], 'worker', 'epoch')
                 if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return 0 end
                 redis.call('HSET', KEYS[1], 'worker', '', 'lease_until', 0)
                 return 1",
            ),
            remove: script(&format!(
                "{HEX}local r = redis.call('HMGET', KEYS[1], 'worker', 'epoch', 'paused_key', 'paused_epoch',
                                      'paused_turn', 'owner')
                 if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return {{0}} end
                 redis.call('DEL', KEYS[1])
                 if r[6] then redis.call('SREM', ARGV[3] .. 'owner:' .. hex(r[6]), ARGV[4]) end
                 if r[3] then return {{1, r[3], r[4], r[5]}} end
                 return {{1}}"
            )),
            lookup: script(&format!(
                "{ANSWER}local r = redis.call('HMGET', KEYS[1], {FIELDS})
                 if not r[1] then return {{}} end
                 return answer(r, now)"
            )),
            // The owner's sessions, each id followed by its answer, read a
            // page at a time (SSCAN) up to the limit; an id whose record is
            // gone leaves the set.
            list: script(&format!(
                "{ANSWER}local out = {{}}
                 local seen = {{}}
                 local n = 0
                 local limit = tonumber(ARGV[2])
                 local cursor = '0'
                 repeat
                   local page = redis.call('SSCAN', KEYS[1], cursor, 'COUNT', 256)
                   cursor = page[1]
                   for _, id in ipairs(page[2]) do
                     if n >= limit then break end
                     if not seen[id] then
                       seen[id] = true
                       local r = redis.call('HMGET', ARGV[1] .. 'session:' .. id, {FIELDS})
                       if r[1] then
                         table.insert(out, id)
                         for _, v in ipairs(answer(r, now)) do table.insert(out, v) end
                         n = n + 1
                       else
                         redis.call('SREM', KEYS[1], id)
                       end
                     end
                   end
                 until cursor == '0' or n >= limit
                 return out"
            )),
        };
        Ok(RedisCatalog { connection, prefix: prefix.to_owned(), scripts: std::sync::Arc::new(scripts) })
    }

    fn key(&self, id: &str) -> String {
        format!("{}session:{id}", self.prefix)
    }

    fn owner_key(&self, owner: &str) -> String {
        let hex: String = owner.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{}owner:{hex}", self.prefix)
    }

    async fn run(&self, script: &Script, id: &str, args: &[String]) -> Result<Value, CatalogError> {
        self.run_keys(script, &[self.key(id)], args).await
    }

    async fn run_keys(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, CatalogError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut connection = self.connection.clone();
        invocation.invoke_async(&mut connection).await.map_err(unavailable)
    }
}

fn unavailable(error: redis::RedisError) -> CatalogError {
    CatalogError::Unavailable(error.to_string())
}

fn malformed(what: &str) -> CatalogError {
    CatalogError::Malformed(what.to_owned())
}

/// The longest lease asked for; longer ones are asked for as this.
const MAX_LEASE: Duration = Duration::from_secs(86_400);

/// A lease in whole milliseconds for the catalog, rounded up (the
/// catalog's lease never ends before this worker's deadline).
fn millis(duration: Duration) -> String {
    duration.min(MAX_LEASE).as_micros().div_ceil(1000).max(1).to_string()
}

/// This worker's deadline for a lease asked for at `asked`: the lease
/// counted from before the request, less 2% for clocks that run apart.
fn lease_from(asked: Instant, epoch: u64, lease: Duration) -> Lease {
    let lease = lease.min(MAX_LEASE);
    Lease { epoch, serve_until: asked + (lease - lease / 50) }
}

fn strings(value: Value) -> Result<Vec<String>, CatalogError> {
    let Value::Array(items) = value else { return Err(malformed("not a list")) };
    items
        .into_iter()
        .map(|item| match item {
            Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|_| malformed("not UTF-8")),
            Value::SimpleString(text) => Ok(text),
            Value::Int(n) => Ok(n.to_string()),
            _ => Err(malformed("an unexpected value")),
        })
        .collect()
}

fn number(text: &str) -> Result<u64, CatalogError> {
    text.parse().map_err(|_| malformed("a number that is not one"))
}

fn flag(value: Value) -> Result<bool, CatalogError> {
    match value {
        Value::Int(n) => Ok(n == 1),
        _ => Err(malformed("not a flag")),
    }
}

impl Catalog for RedisCatalog {
    async fn create(
        &self,
        id: &str,
        owner: &str,
        profile: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Lease>, CatalogError> {
        let asked = Instant::now();
        let keys = [self.key(id), self.owner_key(owner)];
        let args = [owner.into(), worker.into(), millis(lease), profile.into(), id.into()];
        let created = flag(self.run_keys(&self.scripts.create, &keys, &args).await?)?;
        Ok(created.then(|| lease_from(asked, 1, lease)))
    }

    async fn claim(
        &self,
        id: &str,
        owner: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<Claim, CatalogError> {
        let asked = Instant::now();
        let answer =
            strings(self.run(&self.scripts.claim, id, &[owner.into(), worker.into(), millis(lease)]).await?)?;
        match answer.as_slice() {
            [none] if none == "none" => Ok(Claim::NotFound),
            [held, worker, epoch] if held == "held" => {
                Ok(Claim::HeldBy { worker: worker.clone(), epoch: number(epoch)? })
            }
            [granted, epoch] if granted == "granted" => {
                Ok(Claim::Granted(lease_from(asked, number(epoch)?, lease)))
            }
            _ => Err(malformed("an unknown answer to a claim")),
        }
    }

    async fn renew(
        &self,
        id: &str,
        worker: &str,
        epoch: u64,
        lease: Duration,
    ) -> Result<Option<Lease>, CatalogError> {
        let asked = Instant::now();
        let renewed = flag(
            self.run(&self.scripts.renew, id, &[worker.into(), epoch.to_string(), millis(lease)]).await?,
        )?;
        Ok(renewed.then(|| lease_from(asked, epoch, lease)))
    }

    async fn record_paused(&self, id: &str, worker: &str, paused: &PausedRef) -> Result<bool, CatalogError> {
        let args = [worker.into(), paused.epoch.to_string(), paused.turn.to_string(), paused.key.clone()];
        flag(self.run(&self.scripts.record_paused, id, &args).await?)
    }

    async fn release(&self, id: &str, worker: &str, epoch: u64) -> Result<bool, CatalogError> {
        flag(self.run(&self.scripts.release, id, &[worker.into(), epoch.to_string()]).await?)
    }

    async fn remove(
        &self,
        id: &str,
        worker: &str,
        epoch: u64,
    ) -> Result<Option<Option<PausedRef>>, CatalogError> {
        let Value::Array(items) = self
            .run(
                &self.scripts.remove,
                id,
                &[worker.into(), epoch.to_string(), self.prefix.clone(), id.into()],
            )
            .await?
        else {
            return Err(malformed("not a list"));
        };
        let answer = strings(Value::Array(items))?;
        match answer.as_slice() {
            [removed] if removed == "0" => Ok(None),
            [removed] if removed == "1" => Ok(Some(None)),
            [removed, key, epoch, turn] if removed == "1" => {
                Ok(Some(Some(PausedRef { key: key.clone(), epoch: number(epoch)?, turn: number(turn)? })))
            }
            _ => Err(malformed("an unknown answer to a removal")),
        }
    }

    async fn lookup(&self, id: &str) -> Result<Option<Record>, CatalogError> {
        let answer = strings(self.run(&self.scripts.lookup, id, &[]).await?)?;
        if answer.is_empty() {
            return Ok(None);
        }
        record(&answer).map(Some)
    }

    async fn sessions_of(&self, owner: &str, limit: usize) -> Result<Vec<(String, Record)>, CatalogError> {
        let args = [self.prefix.clone(), limit.to_string()];
        let answer = strings(self.run_keys(&self.scripts.list, &[self.owner_key(owner)], &args).await?)?;
        if !answer.len().is_multiple_of(1 + RECORD_FIELDS) {
            return Err(malformed("a listing of an unknown shape"));
        }
        // A record this worker cannot read is left out of the listing
        // rather than failing it.
        Ok(answer
            .chunks(1 + RECORD_FIELDS)
            .filter_map(|chunk| {
                let (id, fields) = chunk.split_first()?;
                match record(fields) {
                    Ok(record) => Some((id.clone(), record)),
                    Err(e) => {
                        tracing::warn!(session = %mimobox_core::text::one_line_bounded(id), "left out of a listing: {e}");
                        None
                    }
                }
            })
            .collect())
    }
}

/// Fields of a record as the scripts answer it.
const RECORD_FIELDS: usize = 11;

/// A record from its answer.
fn record(answer: &[String]) -> Result<Record, CatalogError> {
    let [owner, worker, epoch, left, key, paused_epoch, turn, lost, profile, age, paused_ago] = answer else {
        return Err(malformed("an unknown record"));
    };
    Ok(Record {
        owner: owner.clone(),
        profile: profile.clone(),
        age: Duration::from_millis(number(age)?),
        paused_ago: if paused_ago.is_empty() {
            None
        } else {
            Some(Duration::from_millis(number(paused_ago)?))
        },
        worker: (!worker.is_empty() && left != "0").then(|| worker.clone()),
        epoch: number(epoch)?,
        lease_left: Duration::from_millis(number(left)?),
        last_holder_lost: lost == "1",
        paused: if key.is_empty() {
            None
        } else {
            Some(PausedRef { key: key.clone(), epoch: number(paused_epoch)?, turn: number(turn)? })
        },
    })
}
