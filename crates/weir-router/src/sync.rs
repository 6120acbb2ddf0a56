//! Routing state shared with other gateway instances: what one instance learns about
//! keys (a 429's cooldown, a refused key) and targets (a breaker opening or closing) is
//! published as a [`StateChange`] through a [`StateSink`], and changes other instances
//! published are applied with [`Router::apply`](crate::Router::apply).
//!
//! The router's own decisions stay local and synchronous (no request waits on a shared
//! store); sharing makes every instance learn within the store's propagation delay.
//! Times travel as Unix milliseconds; keys as [`key_id`]s, never as secrets.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// A change in what a router knows that other instances should learn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// A key rests (a 429, or headers saying a limit is at zero) until `until_ms`: for
    /// one upstream model when `model` names it, else for all.
    KeyRest {
        /// The key's provider id.
        provider: String,
        /// The key's [`key_id`].
        key: String,
        /// The upstream model whose limit it is (`None`: the key's, every model's).
        model: Option<String>,
        /// Unix milliseconds.
        until_ms: u64,
        /// The upstream answered 429 (else its headers said a limit is at zero).
        rate_limited: bool,
        /// The key's account has no credit left (a 402, `insufficient_quota`).
        no_credit: bool,
    },
    /// The upstream refused a key (401/403): out of the pool until `until_ms`.
    KeyRefused {
        /// The key's provider id.
        provider: String,
        /// The key's [`key_id`].
        key: String,
        /// 401 or 403.
        status: u16,
        /// Unix milliseconds.
        until_ms: u64,
    },
    /// A target's breaker opened until `until_ms` (`opened` times in a row).
    BreakerOpen {
        /// The target's provider id.
        provider: String,
        /// The target's upstream model.
        model: String,
        /// Unix milliseconds.
        until_ms: u64,
        /// How many times in a row it opened.
        opened: u32,
    },
    /// A target's breaker closed (a probe or a request succeeded).
    BreakerClosed {
        /// The target's provider id.
        provider: String,
        /// The target's upstream model.
        model: String,
    },
    /// A target's upstream refused an output limit, naming the most its model takes:
    /// requests for it go with their limits lowered to `tokens` until `until_ms`.
    OutputCeiling {
        /// The target's provider id.
        provider: String,
        /// The target's upstream model.
        model: String,
        /// The most output tokens the model takes.
        tokens: u32,
        /// Unix milliseconds.
        until_ms: u64,
    },
    /// A Responses API response was made at a route's target, with a key of its pool:
    /// a request continuing it goes there on every instance. Published once, never part
    /// of a snapshot (an instance that starts late does not learn earlier responses).
    ResponseMade {
        /// The response's id.
        id: String,
        /// The route's name (the model table's `name`).
        route: String,
        /// The target's provider id.
        provider: String,
        /// The target's upstream model (empty for a target forwarding the client's).
        model: String,
        /// The key's [`key_id`]; `None` for a provider without a key pool.
        key: Option<String>,
    },
}

/// Where a router publishes its [`StateChange`]s. Called inline on the request path: it
/// must not block (queue the change and return).
pub trait StateSink: Send + Sync {
    /// One change.
    fn publish(&self, change: StateChange);
}

/// A key's identity across instances: 16 hex digits of a SHA-256 of the key. It names
/// the key in a shared store without revealing it.
pub fn key_id(secret: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"weir-key-id:")
        .chain_update(secret.as_bytes())
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `until` as Unix milliseconds.
pub(crate) fn to_unix_ms(until: Instant, now: Instant, now_ms: u64) -> u64 {
    let ahead = until.saturating_duration_since(now);
    now_ms.saturating_add(u64::try_from(ahead.as_millis()).unwrap_or(u64::MAX))
}

/// Unix milliseconds as an `Instant`, or `None` when already past.
pub(crate) fn from_unix_ms(until_ms: u64, now: Instant, now_ms: u64) -> Option<Instant> {
    // Another instance's figure: a deadline past any clock's reach is none.
    (until_ms > now_ms)
        .then(|| now.checked_add(Duration::from_millis(until_ms - now_ms)))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_stable_short_and_do_not_contain_the_key() {
        let id = key_id("sk-live-abcdef");
        assert_eq!(id.len(), 16);
        assert_eq!(id, key_id("sk-live-abcdef"));
        assert_ne!(id, key_id("sk-live-abcdeg"));
        assert!(!id.contains("abcdef"));
    }

    #[test]
    fn unix_times_round_trip_through_instants() {
        let now = Instant::now();
        let now_ms = 1_800_000_000_000;
        let until = now + Duration::from_millis(1500);
        let ms = to_unix_ms(until, now, now_ms);
        assert_eq!(ms, now_ms + 1500);
        assert_eq!(from_unix_ms(ms, now, now_ms), Some(until));
        assert_eq!(from_unix_ms(now_ms - 1, now, now_ms), None);
    }
}
