//! Client keys: accepted as `x-api-key` or `Authorization: Bearer`, stored as sha256
//! digests, compared in constant time, never logged.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use toml::Spanned;

use crate::config::{ConfigError, KeyConfig, Source};

/// One client key.
#[derive(Clone)]
pub struct ClientKey {
    /// Its name (logs, metrics).
    pub name: String,
    digest: [u8; 32],
    /// Glob allow-list of models; `None` allows all.
    pub models: Option<Vec<String>>,
    /// Its limits (`rpm`, `tpm`, `max_concurrent`), shared by every clone of the key.
    pub limiter: Option<std::sync::Arc<crate::limits::Limiter>>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("name", &self.name)
            .field("digest", &"***")
            .finish()
    }
}

/// The configured client keys.
#[derive(Clone, Debug, Default)]
pub struct Keys(Vec<ClientKey>);

/// Whether a client can send `key` in a header: printable ASCII (spaces inside
/// included). HTTP clients send header values as ASCII, most refusing anything else.
pub fn sendable(key: &str) -> bool {
    key.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// The sha256 of a key, hex (what `weir hash-key` prints).
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random client key, `sk-weir-` and 40 alphanumerics.
pub fn generate_key() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "sk-weir-{}",
        Alphanumeric.sample_string(&mut rand::rng(), 40)
    )
}

impl Keys {
    /// Keeps the counters (spend, rate, tokens, requests in flight) of keys that exist in
    /// `old` under the same name, so a reload does not reset them: the same limiter when
    /// the limits are unchanged, else the new limits over the old counters.
    pub fn adopt_limits(&mut self, old: &Keys) {
        for k in &mut self.0 {
            let Some(mine) = &k.limiter else { continue };
            let Some(theirs) = old
                .0
                .iter()
                .find(|o| o.name == k.name)
                .and_then(|o| o.limiter.as_ref())
            else {
                continue;
            };
            k.limiter = Some(if theirs.config() == mine.config() {
                theirs.clone()
            } else {
                crate::limits::Limiter::carrying_over(mine.config(), theirs)
            });
        }
    }

    /// Keys with a daily budget that `old` did not give them (keys it does not have, or
    /// had without a budget: what this process counted of their spend, if anything, is
    /// not what they spent today, which only the ledger knows, as after a restart).
    pub fn fresh_budgets(&self, old: &Keys) -> Vec<String> {
        self.0
            .iter()
            .filter(|k| k.limiter.as_ref().is_some_and(|l| l.has_budget()))
            .filter(|k| {
                !old.0
                    .iter()
                    .any(|o| o.name == k.name && o.limiter.as_ref().is_some_and(|l| l.has_budget()))
            })
            .map(|k| k.name.clone())
            .collect()
    }

    /// Whether any key has a daily budget.
    pub fn any_budget(&self) -> bool {
        self.0
            .iter()
            .any(|k| k.limiter.as_ref().is_some_and(|l| l.has_budget()))
    }

    /// Raises keys' (by name) counts of today's spend to what the ledger says they spent
    /// today (after a restart, or a reload that gives them a budget; the ledger holds what
    /// this process counted too); returns how many keys with a budget it found.
    pub fn restore_spend(&self, spent: &[(String, f64)], only: Option<&[String]>) -> usize {
        let mut restored = 0;
        for (name, usd) in spent {
            if only.is_some_and(|names| !names.contains(name)) {
                continue;
            }
            let limiter = self.0.iter().find(|k| &k.name == name);
            if let Some(l) = limiter.and_then(|k| k.limiter.as_ref()) {
                if l.has_budget() && *usd > 0.0 {
                    l.restore_spend(*usd);
                    restored += 1;
                }
            }
        }
        restored
    }

    /// Keys from `[[auth.keys]]`.
    pub fn from_config(
        keys: &[Spanned<KeyConfig>],
        src: &Source<'_>,
    ) -> Result<Keys, Vec<ConfigError>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for k in keys {
            let at = Some(k.span().start);
            let c = k.get_ref();
            let digest = match (c.key.as_ref().map(weir_model::Secret::expose), &c.sha256) {
                (Some(plain), None) if !sendable(plain) => {
                    // HTTP clients send header values as ASCII (most refuse anything else):
                    // this key could never arrive as written.
                    errors.push(src.error_at(
                        at,
                        format!(
                            "key `{}` has characters other than printable ASCII, which clients cannot send in a header",
                            c.name
                        ),
                    ));
                    None
                }
                (Some(plain), None) if !plain.trim().is_empty() && plain.trim() == plain => {
                    Some(Sha256::digest(plain.as_bytes()).into())
                }
                (Some(plain), None) if !plain.trim().is_empty() => {
                    // Header values arrive trimmed: this key could never match.
                    errors.push(src.error_at(
                        at,
                        format!("key `{}` begins or ends with whitespace", c.name),
                    ));
                    None
                }
                (Some(_), None) => {
                    errors.push(src.error_at(at, format!("key `{}` is empty", c.name)));
                    None
                }
                (None, Some(hex)) => match parse_hex(hex) {
                    Some(d) => Some(d),
                    None => {
                        errors.push(src.error_at(
                            at,
                            format!(
                                "key `{}`: sha256 must be 64 hex digits (from `weir hash-key`)",
                                c.name
                            ),
                        ));
                        None
                    }
                },
                _ => {
                    errors.push(src.error_at(
                        at,
                        format!("key `{}` needs exactly one of `key` or `sha256`", c.name),
                    ));
                    None
                }
            };
            if let Some(b) = c
                .daily_budget_usd
                .as_ref()
                .filter(|b| !(b.get_ref().is_finite() && *b.get_ref() > 0.0))
            {
                errors.push(src.error_at(
                    Some(b.span().start),
                    "`daily_budget_usd` must be a positive number of dollars",
                ));
            }
            for (field, v) in [
                ("rpm", &c.rpm),
                ("tpm", &c.tpm),
                ("max_concurrent", &c.max_concurrent),
            ] {
                if let Some(v) = v.as_ref().filter(|v| *v.get_ref() == 0) {
                    errors.push(src.error_at(
                        Some(v.span().start),
                        format!("`{field}` must be at least 1 (leave it out for no limit)"),
                    ));
                }
            }
            let limits = crate::limits::LimitConfig {
                rpm: c.rpm.as_ref().map(|v| *v.get_ref()),
                tpm: c.tpm.as_ref().map(|v| *v.get_ref()),
                max_concurrent: c.max_concurrent.as_ref().map(|v| *v.get_ref()),
                daily_budget_usd: c.daily_budget_usd.as_ref().map(|v| *v.get_ref()),
            };
            if out.iter().any(|o: &ClientKey| o.name == c.name) {
                errors.push(src.error_at(at, format!("two client keys are named `{}`", c.name)));
            }
            if let Some(same) = digest.and_then(|d| out.iter().find(|o| o.digest == d)) {
                // One secret under two names: requests would all be the later key's, its
                // limits and allow-list taking the place of the other's.
                errors.push(src.error_at(
                    at,
                    format!(
                        "key `{}` has the same secret as key `{}`; give each client its own key",
                        c.name, same.name
                    ),
                ));
            }
            if let Some(digest) = digest {
                out.push(ClientKey {
                    name: c.name.clone(),
                    digest,
                    models: c.models.clone(),
                    limiter: limits.any().then(|| crate::limits::Limiter::new(limits)),
                });
            }
        }
        if errors.is_empty() {
            Ok(Keys(out))
        } else {
            Err(errors)
        }
    }

    /// One unlimited key named `default` (a config without `[[auth.keys]]`, on a loopback
    /// listen: the zero-config rule, `WEIR_API_KEY` or a generated key).
    pub fn single_default(key: &str) -> Keys {
        Keys(vec![ClientKey {
            name: "default".to_owned(),
            digest: Sha256::digest(key.as_bytes()).into(),
            models: None,
            limiter: None,
        }])
    }

    /// Whether a key of this name is configured.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|k| k.name == name)
    }

    /// Whether no keys are configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key a request presents, if it matches one. Every configured key is compared
    /// (in constant time) so timing does not tell how many keys exist or which matched.
    pub fn verify(&self, headers: &HeaderMap) -> Option<&ClientKey> {
        // `x-api-key` first; a Bearer token when that is absent or not a key of this
        // gateway (an Anthropic SDK or Claude Code with both ANTHROPIC_API_KEY and
        // ANTHROPIC_AUTH_TOKEN set sends both, the gateway's key in the Bearer one).
        if let Some(k) = x_api_key(headers).and_then(|p| self.matching(p)) {
            return Some(k);
        }
        bearer_key(headers).and_then(|p| self.matching(p))
    }

    /// Whether `secret` is one of these keys (the admin key must not be).
    pub fn holds(&self, secret: &str) -> bool {
        self.matching(secret.trim()).is_some()
    }

    fn matching(&self, presented: &str) -> Option<&ClientKey> {
        // The empty key is never valid, whatever digest is configured.
        if presented.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for k in &self.0 {
            if bool::from(k.digest.ct_eq(&digest)) {
                found = Some(k);
            }
        }
        found
    }
}

/// The key in `x-api-key` or `Authorization: Bearer`. A key sent there that is not
/// visible ASCII is presented as the empty key, which matches none: the client is told its
/// key is invalid, not that it sent none. An empty (or blank) `x-api-key` is no key at all,
/// as an SDK sends when its key variable is set but empty: the client is told it sent none.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    x_api_key(headers).or_else(|| bearer_key(headers))
}

fn x_api_key(headers: &HeaderMap) -> Option<&str> {
    const X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");
    let k = headers.get(&X_API_KEY)?;
    match k.to_str() {
        Ok(k) => Some(k.trim()).filter(|k| !k.is_empty()),
        Err(_) => Some(""),
    }
}

fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(http::header::AUTHORIZATION)?;
    let Ok(auth) = auth.to_str() else {
        let bytes = auth.as_bytes();
        let bearer = bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ");
        return bearer.then_some("");
    };
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(toml_text: &str) -> Result<Keys, Vec<ConfigError>> {
        let cfg = crate::config::parse(None, toml_text).unwrap();
        Keys::from_config(
            &cfg.auth.keys,
            &Source {
                file: None,
                text: toml_text,
            },
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn plain_and_hashed_keys_verify_by_either_header() {
        let hashed = hash_key("sk-bob");
        let k = keys(&format!(
            "[[auth.keys]]\nname = \"alice\"\nkey = \"sk-alice\"\n[[auth.keys]]\nname = \"bob\"\nsha256 = \"{hashed}\"\n"
        ))
        .unwrap();
        assert_eq!(
            k.verify(&headers(&[("x-api-key", "sk-alice")]))
                .unwrap()
                .name,
            "alice"
        );
        assert_eq!(
            k.verify(&headers(&[("authorization", "Bearer sk-bob")]))
                .unwrap()
                .name,
            "bob"
        );
        assert_eq!(
            k.verify(&headers(&[("authorization", "bearer  sk-bob ")]))
                .unwrap()
                .name,
            "bob"
        );
        assert!(k.verify(&headers(&[("x-api-key", "sk-alic")])).is_none());
        assert!(k
            .verify(&headers(&[("authorization", "Basic sk-bob")]))
            .is_none());
        assert!(k.verify(&headers(&[])).is_none());
        // Both headers (Claude Code with both ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN):
        // a valid x-api-key wins, and a Bearer key stands in for one that is not valid.
        let both = |x: &str, b: &str| {
            k.verify(&headers(&[
                ("x-api-key", x),
                ("authorization", &format!("Bearer {b}")),
            ]))
            .map(|c| c.name.clone())
        };
        assert_eq!(both("sk-bob", "sk-alice").as_deref(), Some("bob"));
        assert_eq!(
            both("sk-ant-elsewhere", "sk-alice").as_deref(),
            Some("alice")
        );
        assert_eq!(both("sk-ant-elsewhere", "sk-wrong"), None);
    }

    #[test]
    fn a_key_that_is_not_ascii_is_presented_and_invalid_not_missing() {
        let empty = hash_key("");
        let k = keys(&format!(
            "[[auth.keys]]\nname = \"empty\"\nsha256 = \"{empty}\"\n"
        ))
        .unwrap();
        for (name, value) in [
            ("x-api-key", &b"sk-\xff"[..]),
            ("authorization", &b"Bearer sk-\xff"[..]),
            ("authorization", &b"bearer \xfe"[..]),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, http::HeaderValue::from_bytes(value).unwrap());
            assert_eq!(presented_key(&h), Some(""), "{name}");
            // Not even a configured digest of the empty key lets it in.
            assert!(k.verify(&h).is_none(), "{name}");
        }
        let mut basic = HeaderMap::new();
        basic.insert(
            "authorization",
            http::HeaderValue::from_bytes(b"Basic \xff").unwrap(),
        );
        assert_eq!(presented_key(&basic), None);
        assert!(k.verify(&headers(&[("x-api-key", " ")])).is_none());
    }

    #[test]
    fn an_empty_x_api_key_is_no_key_and_the_bearer_one_counts() {
        let k = keys("[[auth.keys]]\nname = \"alice\"\nkey = \"sk-alice\"\n").unwrap();
        for blank in ["", "  "] {
            let h = headers(&[("x-api-key", blank)]);
            assert_eq!(presented_key(&h), None, "{blank:?}");
            assert!(k.verify(&h).is_none());
            let h = headers(&[("x-api-key", blank), ("authorization", "Bearer sk-alice")]);
            assert_eq!(presented_key(&h), Some("sk-alice"));
            assert_eq!(k.verify(&h).map(|k| k.name.as_str()), Some("alice"));
        }
    }

    #[test]
    fn bad_key_entries_and_unbuilt_limits_are_errors() {
        let errs = keys("[[auth.keys]]\nname = \"a\"\n[[auth.keys]]\nname = \"b\"\nsha256 = \"xyz\"\n[[auth.keys]]\nname = \"c\"\nkey = \"k\"\nrpm = 0\ndaily_budget_usd = -5.0\n").unwrap_err();
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(msgs[0].contains("needs exactly one of `key` or `sha256`"));
        assert!(msgs[1].contains("64 hex digits"));
        assert!(
            msgs[2].starts_with("10:20: `daily_budget_usd` must be a positive number"),
            "{}",
            msgs[2]
        );
        assert!(
            msgs[3].starts_with("9:7: `rpm` must be at least 1"),
            "{}",
            msgs[3]
        );
    }

    #[test]
    fn a_key_no_client_can_send_is_an_error() {
        for bad in ["sk-\u{fc}n\u{ef}-KEY", "sk-tab\tkey"] {
            let text = format!("[[auth.keys]]\nname = \"u\"\nkey = \"{bad}\"\n");
            let msgs: Vec<String> = keys(&text)
                .unwrap_err()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert!(
                msgs[0].contains("key `u` has characters other than printable ASCII"),
                "{msgs:?}"
            );
        }
        // A space inside is printable and arrives intact.
        assert!(keys("[[auth.keys]]\nname = \"s\"\nkey = \"sk two words\"\n").is_ok());
    }

    #[test]
    fn one_secret_under_two_names_is_an_error() {
        let hashed = hash_key("sk-same");
        let errs = keys(&format!(
            "[[auth.keys]]\nname = \"a\"\nkey = \"sk-same\"\nrpm = 1\n\
             [[auth.keys]]\nname = \"b\"\nkey = \"sk-other\"\n\
             [[auth.keys]]\nname = \"c\"\nsha256 = \"{hashed}\"\n"
        ))
        .unwrap_err();
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            ["8:1: key `c` has the same secret as key `a`; give each client its own key"]
        );
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 48);
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
