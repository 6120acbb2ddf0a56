//! What goes to Redis: the Lua scripts, and routing changes as hash fields and channel
//! messages (tab-separated: provider ids, key ids and model names carry no tabs).

use weir_router::StateChange;

/// Admits a request against a key's limits, atomically.
///
/// KEYS: rate hash (`tat`, `tokens`, `tokens_at`, and the `rpm` and `tpm` they were
/// counted at), leases sorted set, spend of the day. A lowered or raised limit counts
/// what was already used at the new rate, but never longer than the old rate would have
/// (as the in-memory limiter does on reload).
/// ARGV: rpm, tpm, max_concurrent (0 = none), budget USD (-1 = none), estimate, lease id,
/// lease ttl ms. Returns `{verdict, retry_after_ms, detail}`. Time is Redis's own.
pub(crate) const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm, maxc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, estimate = tonumber(ARGV[4]), tonumber(ARGV[5])
local lease, lease_ttl = ARGV[6], tonumber(ARGV[7])
if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[3]) or '0')
  if spent >= budget then
    local day_ms = 86400000
    return {'budget', day_ms - (now % day_ms), tostring(spent)}
  end
end
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local n = redis.call('ZCARD', KEYS[2])
  if n >= maxc then
    return {'max_concurrent', 1000, tostring(n)}
  end
end
local tokens
if tpm > 0 then
  local h = redis.call('HMGET', KEYS[1], 'tokens', 'tokens_at', 'tpm')
  tokens = tonumber(h[1]) or tpm
  local at = tonumber(h[2]) or now
  local was = tonumber(h[3]) or tpm
  if was ~= tpm and was > 0 and h[1] then
    tokens = math.min(was, tokens + math.max(0, now - at) * was / 60000)
    local used = was - tokens
    tokens = math.min(tpm, math.max(tokens - was + tpm, -used * tpm / was))
    at = now
  end
  tokens = math.min(tpm, tokens + math.max(0, now - at) * tpm / 60000)
  if tokens <= 0 then
    return {'tpm', math.ceil((1 - tokens) * 60000 / tpm), ''}
  end
end
if rpm > 0 then
  local interval = 60000 / rpm
  local tau = interval * (rpm - 1)
  local h = redis.call('HMGET', KEYS[1], 'tat', 'rpm')
  local tat = tonumber(h[1]) or now
  local was = tonumber(h[2]) or rpm
  if tat < now then tat = now end
  if was ~= rpm and was > 0 then
    local ahead = tat - now
    tat = now + math.min(ahead * was / rpm, ahead + tau)
  end
  local allowed_at = tat - tau
  if allowed_at > now then
    return {'rpm', math.ceil(allowed_at - now), ''}
  end
  redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', tat + interval), 'rpm', rpm)
end
if tpm > 0 then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.3f', tokens - estimate), 'tokens_at', now, 'tpm', tpm)
end
if rpm > 0 or tpm > 0 then
  redis.call('PEXPIRE', KEYS[1], 120000)
end
if maxc > 0 then
  redis.call('ZADD', KEYS[2], now + lease_ttl, lease)
  redis.call('PEXPIRE', KEYS[2], lease_ttl + 1000)
end
return {'ok', 0, ''}
";

/// Renews leases still held: KEYS: leases sorted set; ARGV: lease id, ttl ms, ... A lease
/// the set lost (it expired during an outage, or Redis restarted empty) is added back:
/// its request still runs. (Releases are queued after renewals, so a released lease is
/// never written back.)
pub(crate) const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local longest = 0
for i = 1, #ARGV, 2 do
  local ttl = tonumber(ARGV[i + 1])
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  if ttl > longest then longest = ttl end
end
local left = redis.call('PTTL', KEYS[1])
if left >= 0 and left < longest + 1000 then
  redis.call('PEXPIRE', KEYS[1], longest + 1000)
end
return 1
";

/// Gives back (or takes) tokens after a call: KEYS: rate hash; ARGV: tpm, delta.
pub(crate) const CHARGE: &str = r"
local delta, tpm = tonumber(ARGV[2]), tonumber(ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'tokens') == 1 then
  local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens')) + delta
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.3f', math.min(tpm, tokens)))
elseif delta < 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.3f', tpm + delta), 'tokens_at', now)
end
redis.call('PEXPIRE', KEYS[1], 120000)
return 1
";

/// Adds to a day's spend, once per write: KEYS: spend key, hash of the last write applied
/// per instance (same hash tag); ARGV: usd, instance, write number. An instance numbers its
/// spend writes in increasing order and replays a write whose call went unanswered (it may
/// have landed) under the same number, before any later write of that key and day: a
/// number not above the instance's last one applied was applied already, and is skipped.
/// Both keys are kept two days (refreshed together): a held write of day `d` is dropped
/// once the day is older than yesterday, so a replay never outlives its record. Returns
/// the day's spend.
pub(crate) const SPEND: &str = r"
local n = tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if n <= last then
  return redis.call('GET', KEYS[1]) or '0'
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], 172800)
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 172800)
return v
";

/// Sets a routing field unless it already holds a later deadline, drops expired fields,
/// and publishes the change. KEYS: routing hash; ARGV: field, until ms, value, channel,
/// message.
pub(crate) const ROUTING_SET: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local until_ms = tonumber(ARGV[2])
if cur then
  local cu = tonumber(string.match(cur, '^(%d+)'))
  if cu and cu >= until_ms then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local latest = until_ms
for i = 1, #all, 2 do
  local u = tonumber(string.match(all[i + 1], '^(%d+)'))
  if u and u < now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif u and u > latest then
    latest = u
  end
end
redis.call('PEXPIREAT', KEYS[1], latest + 60000)
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// Removes a routing field (a breaker closed) and publishes it. KEYS: routing hash; ARGV:
/// field, channel, message.
pub(crate) const ROUTING_DEL: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
";

/// The routing hash field a change sets (none for a response pin, which is only
/// published: see [`encode_message`]).
pub(crate) fn encode_field(c: &StateChange) -> String {
    match c {
        StateChange::ResponseMade { .. } => String::new(),
        // A key's limit for one model: the key id (hex) and the model, `/` between them.
        StateChange::KeyRest {
            provider,
            key,
            model: Some(model),
            ..
        } => format!("rest\t{provider}\t{key}/{model}"),
        StateChange::KeyRest { provider, key, .. } => format!("rest\t{provider}\t{key}"),
        StateChange::KeyRefused { provider, key, .. } => format!("refused\t{provider}\t{key}"),
        StateChange::BreakerOpen {
            provider, model, ..
        }
        | StateChange::BreakerClosed { provider, model } => format!("breaker\t{provider}\t{model}"),
        StateChange::OutputCeiling {
            provider, model, ..
        } => format!("ceiling\t{provider}\t{model}"),
    }
}

/// The deadline and hash value of a change that sets a field; `None` for one that
/// removes it.
pub(crate) fn until_and_value(c: &StateChange) -> Option<(u64, String)> {
    match c {
        // (`2`: no credit left; an instance that predates it reads a limit at zero.)
        StateChange::KeyRest {
            until_ms,
            rate_limited,
            no_credit,
            ..
        } => Some((
            *until_ms,
            format!(
                "{until_ms}\t{}",
                if *no_credit {
                    2
                } else {
                    u8::from(*rate_limited)
                }
            ),
        )),
        StateChange::KeyRefused {
            until_ms, status, ..
        } => Some((*until_ms, format!("{until_ms}\t{status}"))),
        StateChange::BreakerOpen {
            until_ms, opened, ..
        } => Some((*until_ms, format!("{until_ms}\t{opened}"))),
        StateChange::OutputCeiling {
            until_ms, tokens, ..
        } => Some((*until_ms, format!("{until_ms}\t{tokens}"))),
        StateChange::BreakerClosed { .. } | StateChange::ResponseMade { .. } => None,
    }
}

pub(crate) fn until_of(c: &StateChange) -> Option<u64> {
    until_and_value(c).map(|(u, _)| u)
}

/// The channel message of a change: `origin`, the field, then the value (`-` when the
/// field is removed). A response pin is `origin`, `response`, provider, model, then route,
/// key id (`-` for none) and the response id; `None` when one of its names holds a tab or
/// a line break (nothing to share).
pub(crate) fn encode_message(origin: &str, c: &StateChange) -> Option<String> {
    if let StateChange::ResponseMade {
        id,
        route,
        provider,
        model,
        key,
    } = c
    {
        let key = key.as_deref().unwrap_or("-");
        let names = [id, route, provider, model].map(String::as_str);
        if names
            .iter()
            .chain([&key])
            .any(|n| n.contains(['\t', '\n', '\r']))
        {
            return None;
        }
        return Some(format!(
            "{origin}\tresponse\t{provider}\t{model}\t{route}\t{key}\t{id}"
        ));
    }
    let field = encode_field(c);
    // Names come from configuration, but a forwarded model's is the client's: one that
    // would break the fields apart is not shared.
    if field.contains(['\n', '\r']) || field.matches('\t').count() != 2 {
        return None;
    }
    let value = until_and_value(c).map_or_else(|| "-".to_owned(), |(_, v)| v);
    Some(format!("{origin}\t{field}\t{value}"))
}

/// A hash entry as a change.
pub(crate) fn decode_entry(field: &str, value: &str) -> Option<StateChange> {
    let mut f = field.split('\t');
    let (kind, provider, name) = (f.next()?, f.next()?.to_owned(), f.next()?.to_owned());
    if f.next().is_some() {
        return None;
    }
    if value == "-" {
        return (kind == "breaker").then_some(StateChange::BreakerClosed {
            provider,
            model: name,
        });
    }
    let (until, extra) = value.split_once('\t')?;
    let until_ms: u64 = until.parse().ok()?;
    Some(match kind {
        "rest" => {
            let (key, model) = match name.split_once('/') {
                Some((key, model)) => (key.to_owned(), Some(model.to_owned())),
                None => (name, None),
            };
            StateChange::KeyRest {
                provider,
                key,
                model,
                until_ms,
                rate_limited: extra == "1",
                no_credit: extra == "2",
            }
        }
        "refused" => StateChange::KeyRefused {
            provider,
            key: name,
            status: extra.parse().ok()?,
            until_ms,
        },
        "breaker" => StateChange::BreakerOpen {
            provider,
            model: name,
            until_ms,
            opened: extra.parse().ok()?,
        },
        "ceiling" => StateChange::OutputCeiling {
            provider,
            model: name,
            until_ms,
            tokens: extra.parse().ok()?,
        },
        _ => return None,
    })
}

/// A channel message as its origin and change; `None` for anything malformed.
pub(crate) fn decode_message(m: &str) -> Option<(&str, StateChange)> {
    let mut parts = m.splitn(5, '\t');
    let origin = parts.next()?;
    let (kind, provider, name) = (parts.next()?, parts.next()?, parts.next()?);
    let value = parts.next()?;
    if kind == "response" {
        let mut v = value.splitn(3, '\t');
        let (route, key, id) = (v.next()?, v.next()?, v.next()?);
        if id.is_empty() || id.contains('\t') {
            return None;
        }
        let change = StateChange::ResponseMade {
            id: id.to_owned(),
            route: route.to_owned(),
            provider: provider.to_owned(),
            model: name.to_owned(),
            key: (key != "-").then(|| key.to_owned()),
        };
        return Some((origin, change));
    }
    let change = decode_entry(&format!("{kind}\t{provider}\t{name}"), value)?;
    Some((origin, change))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_change_round_trips_through_a_message_and_a_hash_entry() {
        let changes = [
            StateChange::KeyRest {
                provider: "anthropic".into(),
                key: "0123456789abcdef".into(),
                model: None,
                until_ms: 1_800_000_000_123,
                rate_limited: true,
                no_credit: false,
            },
            StateChange::KeyRest {
                provider: "openai".into(),
                key: "fedcba9876543210".into(),
                model: None,
                until_ms: 1_800_000_000_000,
                rate_limited: false,
                no_credit: false,
            },
            StateChange::KeyRest {
                provider: "deepseek".into(),
                key: "fedcba9876543210".into(),
                model: None,
                until_ms: 1_800_000_000_000,
                rate_limited: false,
                no_credit: true,
            },
            StateChange::KeyRest {
                provider: "openrouter".into(),
                key: "fedcba9876543210".into(),
                model: Some("anthropic/claude-opus-4.5".into()),
                until_ms: 1_800_000_000_000,
                rate_limited: true,
                no_credit: false,
            },
            StateChange::KeyRefused {
                provider: "openai".into(),
                key: "fedcba9876543210".into(),
                status: 403,
                until_ms: 1_800_000_600_000,
            },
            StateChange::BreakerOpen {
                provider: "bedrock".into(),
                model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
                until_ms: 1_800_000_030_000,
                opened: 3,
            },
            StateChange::BreakerClosed {
                provider: "azure".into(),
                model: "gpt-4o".into(),
            },
            StateChange::OutputCeiling {
                provider: "google".into(),
                model: "gemini-3-pro-preview".into(),
                tokens: 65536,
                until_ms: 1_800_003_600_000,
            },
            StateChange::ResponseMade {
                id: "resp_0123456789abcdef".into(),
                route: "gpt-*".into(),
                provider: "openai".into(),
                model: "gpt-5.1".into(),
                key: Some("0123456789abcdef".into()),
            },
            StateChange::ResponseMade {
                id: "resp_1".into(),
                route: "local".into(),
                provider: "ollama".into(),
                model: String::new(),
                key: None,
            },
        ];
        for c in changes {
            let m = encode_message("abc", &c).unwrap();
            assert_eq!(decode_message(&m), Some(("abc", c.clone())), "{m}");
            if let Some((_, v)) = until_and_value(&c) {
                assert_eq!(decode_entry(&encode_field(&c), &v), Some(c));
            }
        }
    }

    #[test]
    fn malformed_messages_are_ignored() {
        for m in [
            "",
            "abc",
            "abc\trest\tp",
            "abc\trest\tp\tk\tnot-a-number\t1",
            "abc\tunknown\tp\tk\t1\t1",
            "abc\trest\tp\tk\t-",
            "abc\tresponse\tp\tm\troute\t-",
            "abc\tresponse\tp\tm\troute\t-\t",
            "abc\tresponse\tp\tm\troute\t-\tid\twith-tab",
        ] {
            assert_eq!(decode_message(m), None, "{m}");
        }
    }

    #[test]
    fn a_model_limit_with_a_tab_or_line_break_in_its_name_is_not_shared() {
        for model in ["a\tb", "a\nb", "a\r"] {
            let c = StateChange::KeyRest {
                provider: "p".into(),
                key: "0123456789abcdef".into(),
                model: Some(model.into()),
                until_ms: 1,
                rate_limited: true,
                no_credit: false,
            };
            assert_eq!(encode_message("abc", &c), None, "{c:?}");
        }
    }

    #[test]
    fn a_response_pin_with_a_tab_or_line_break_in_a_name_is_not_shared() {
        for (id, route) in [("resp\t1", "r"), ("resp_1", "r\nx"), ("resp_1\r", "r")] {
            let c = StateChange::ResponseMade {
                id: id.into(),
                route: route.into(),
                provider: "p".into(),
                model: "m".into(),
                key: None,
            };
            assert_eq!(encode_message("abc", &c), None, "{c:?}");
        }
    }
}
