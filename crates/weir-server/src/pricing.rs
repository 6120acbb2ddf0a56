//! What a request cost: USD per million tokens by upstream model, from `[pricing]` or a
//! bundled list of well-known models (config wins), applied to the usage the upstream
//! reported (input, output, cache reads, cache writes).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use weir_model::Usage;

/// USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    /// Input tokens (cache excluded).
    pub input: f64,
    /// Output tokens (reasoning included).
    pub output: f64,
    /// Cache reads; the input price when unknown.
    pub cache_read: Option<f64>,
    /// Cache writes (Anthropic's five-minute ones); the input price when unknown.
    pub cache_write: Option<f64>,
    /// One-hour cache writes (Anthropic's `ttl: "1h"`); twice the input price when unknown,
    /// as Anthropic prices them (only Anthropic's models report such writes).
    pub cache_write_1h: Option<f64>,
    /// USD per 1,000 web searches the upstream ran (only Anthropic's models report them);
    /// Anthropic's 10 when unknown.
    pub web_search: Option<f64>,
}

/// Anthropic's price of web searches, USD per 1,000.
const WEB_SEARCH_PER_1K: f64 = 10.0;

/// List prices of well-known models (USD per million tokens: input, output, cache read,
/// cache write (Anthropic's 5-minute rate)), as the vendors published them. A name
/// matches an upstream model id that contains it whole (see [`names_model`]): alone, or
/// with a provider prefix (`us.anthropic.`, `openai/`) and a date or version suffix
/// (`-20250929`, `-2025-08-07`, `@20250929`, `-v1:0`, `-latest`), so dated ids and
/// Bedrock/Vertex ids find them, while another model that merely starts the same way
/// (`gpt-5-nano` against `gpt-5`, `claude-opus-4-6` against `claude-opus-4`) does not
/// take its price: a model not listed has no price (logged once when a key has a budget)
/// rather than a wrong one. These are defaults to start from: prices change, and
/// `[pricing."<model>"]` in the config always wins.
const BUNDLED: &[(&str, f64, f64, f64, f64)] = &[
    ("claude-opus-4", 15.0, 75.0, 1.5, 18.75),
    // Anthropic's aliases of the first Claude 4 models.
    ("claude-opus-4-0", 15.0, 75.0, 1.5, 18.75),
    ("claude-sonnet-4-0", 3.0, 15.0, 0.3, 3.75),
    ("claude-opus-4-1", 15.0, 75.0, 1.5, 18.75),
    ("claude-opus-4-5", 5.0, 25.0, 0.5, 6.25),
    ("claude-opus-4-6", 5.0, 25.0, 0.5, 6.25),
    ("claude-opus-5", 5.0, 25.0, 0.5, 6.25),
    ("claude-sonnet-4", 3.0, 15.0, 0.3, 3.75),
    ("claude-sonnet-4-5", 3.0, 15.0, 0.3, 3.75),
    ("claude-3-7-sonnet", 3.0, 15.0, 0.3, 3.75),
    ("claude-3-5-sonnet", 3.0, 15.0, 0.3, 3.75),
    ("claude-haiku-4-5", 1.0, 5.0, 0.1, 1.25),
    ("claude-3-5-haiku", 0.8, 4.0, 0.08, 1.0),
    ("claude-3-haiku", 0.25, 1.25, 0.03, 0.3),
    ("gpt-4o", 2.5, 10.0, 1.25, 2.5),
    // The first gpt-4o snapshot kept its launch price.
    ("gpt-4o-2024-05-13", 5.0, 15.0, 5.0, 5.0),
    ("gpt-4o-mini", 0.15, 0.6, 0.075, 0.15),
    ("gpt-4.1", 2.0, 8.0, 0.5, 2.0),
    ("gpt-4.1-mini", 0.4, 1.6, 0.1, 0.4),
    ("gpt-4.1-nano", 0.1, 0.4, 0.025, 0.1),
    ("gpt-5", 1.25, 10.0, 0.125, 1.25),
    ("gpt-5-mini", 0.25, 2.0, 0.025, 0.25),
    ("gpt-5-nano", 0.05, 0.4, 0.005, 0.05),
    ("gpt-5-pro", 15.0, 120.0, 15.0, 15.0),
    ("o3", 2.0, 8.0, 0.5, 2.0),
    ("o4-mini", 1.1, 4.4, 0.275, 1.1),
    ("gemini-2.5-pro", 1.25, 10.0, 0.31, 1.25),
    ("gemini-2.5-flash", 0.3, 2.5, 0.075, 0.3),
    ("gemini-2.5-flash-lite", 0.1, 0.4, 0.025, 0.1),
    ("text-embedding-3-small", 0.02, 0.0, 0.02, 0.02),
    ("text-embedding-3-large", 0.13, 0.0, 0.13, 0.13),
    ("text-embedding-ada-002", 0.1, 0.0, 0.1, 0.1),
];

/// Whether the upstream model id `model` names the bundled model `name`: `name` appears
/// in it after the start or a prefix separator (`.`, `/`, `:`), followed by nothing or
/// by a date or version: `@...`, `:...`, `-latest`, `-v<digit>...`, `-YYYYMMDD...` or
/// `-YYYY-MM-DD...`. Anything else after it (`-nano`, `-6`, `.1`, `-mini`) is another
/// model.
fn names_model(model: &str, name: &str) -> bool {
    model.match_indices(name).any(|(at, _)| {
        let before_ok = model[..at]
            .chars()
            .next_back()
            .is_none_or(|c| matches!(c, '.' | '/' | ':'));
        before_ok && version_suffix(&model[at + name.len()..])
    })
}

/// What may follow a model's name in an id of the same model (see [`names_model`]).
fn version_suffix(rest: &str) -> bool {
    let b = rest.as_bytes();
    let digits = |from: usize, n: usize| {
        b.len() >= from + n && b[from..from + n].iter().all(u8::is_ascii_digit)
    };
    let ends_at = |i: usize| b.get(i).is_none_or(|c| !c.is_ascii_digit());
    rest.is_empty()
        || rest.starts_with('@')
        || rest.starts_with(':')
        || rest == "-latest"
        || (rest.starts_with("-v") && digits(2, 1))
        || (rest.starts_with('-') && digits(1, 8) && ends_at(9))
        || (rest.starts_with('-')
            && digits(1, 4)
            && b.get(5) == Some(&b'-')
            && digits(6, 2)
            && b.get(8) == Some(&b'-')
            && digits(9, 2)
            && ends_at(11))
}

/// How many upstream model names the price table remembers its answer for (the names
/// come from upstreams, so the memo is bounded; past it, it starts over).
const MEMO_CAP: usize = 1024;

/// The price table.
#[derive(Debug, Default)]
pub struct Prices {
    configured: BTreeMap<String, Price>,
    /// Answers already found, by upstream model: a request's price is then one lookup
    /// instead of a substring search through the bundled list.
    memo: RwLock<HashMap<Box<str>, Option<Price>>>,
}

/// Whether `model` (unpriced) is met for the first time in this process: a budget's blind
/// spot is logged once per model, not per request or per runtime's app. At most
/// [`MEMO_CAP`] are remembered.
pub fn first_unpriced(model: &str) -> bool {
    static WARNED: std::sync::Mutex<Option<std::collections::HashSet<Box<str>>>> =
        std::sync::Mutex::new(None);
    let mut w = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let w = w.get_or_insert_with(Default::default);
    w.len() < MEMO_CAP && w.insert(model.into())
}

impl Prices {
    /// Prices from `[pricing]` (exact upstream model names), over the bundled list.
    pub fn new(configured: BTreeMap<String, Price>) -> Self {
        Prices {
            configured,
            memo: RwLock::default(),
        }
    }

    /// The price of an upstream model, if known.
    pub fn price(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.memo.read().ok().and_then(|m| m.get(model).copied()) {
            return p;
        }
        let p = self.lookup(model);
        if let Ok(mut m) = self.memo.write() {
            if m.len() >= MEMO_CAP {
                m.clear();
            }
            m.insert(model.into(), p);
        }
        p
    }

    fn lookup(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.configured.get(model) {
            return Some(*p);
        }
        // OpenRouter writes versions with dots (`anthropic/claude-opus-4.1`).
        let dashed = model.contains("claude").then(|| model.replace('.', "-"));
        BUNDLED
            .iter()
            .filter(|(name, ..)| {
                names_model(model, name) || dashed.as_deref().is_some_and(|m| names_model(m, name))
            })
            .max_by_key(|(name, ..)| name.len())
            .map(|&(_, input, output, cache_read, cache_write)| Price {
                input,
                output,
                cache_read: Some(cache_read),
                cache_write: Some(cache_write),
                cache_write_1h: None,
                web_search: None,
            })
    }

    /// What `usage` cost on `model`, in USD: what the upstream said it charged, when it
    /// said (OpenRouter), else by the model's price; `None` when it has neither.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        // What the upstream says it charged is what it costs.
        if let Some(billed) = usage.billed_usd {
            return Some(billed);
        }
        let p = self.price(model)?;
        let n = |v: Option<u64>| v.unwrap_or(0) as f64;
        // The one-hour writes are part of the writes reported.
        let writes = usage.cache_write_tokens.unwrap_or(0);
        let hour = usage.cache_write_1h_tokens.unwrap_or(0).min(writes);
        Some(
            (n(usage.input_tokens) * p.input
                + n(usage.output_tokens) * p.output
                + n(usage.cache_read_tokens) * p.cache_read.unwrap_or(p.input)
                + (writes - hour) as f64 * p.cache_write.unwrap_or(p.input)
                + hour as f64 * p.cache_write_1h.unwrap_or(2.0 * p.input))
                / 1_000_000.0
                + n(usage.web_search_requests) * p.web_search.unwrap_or(WEB_SEARCH_PER_1K)
                    / 1_000.0,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn configured_prices_win_and_dated_or_cloud_ids_find_the_bundled_ones() {
        let mut c = BTreeMap::new();
        c.insert(
            "claude-sonnet-4-5-20250929".to_owned(),
            Price {
                input: 1.0,
                output: 2.0,
                cache_read: None,
                cache_write: None,
                cache_write_1h: None,
                web_search: None,
            },
        );
        let p = Prices::new(c);
        let u = Usage {
            input_tokens: Some(1_000_000),
            output_tokens: Some(1_000_000),
            cache_read_tokens: Some(1_000_000),
            ..Default::default()
        };
        assert_eq!(p.cost("claude-sonnet-4-5-20250929", &u), Some(4.0));
        // Bedrock's id contains the bundled name.
        let bedrock = p
            .cost("us.anthropic.claude-sonnet-4-5-20250929-v1:0", &u)
            .unwrap();
        assert!((bedrock - 18.3).abs() < 1e-9, "{bedrock}");
        // The longest match: gpt-4o-mini, not gpt-4o.
        assert_eq!(p.price("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(p.cost("some-local-model", &u), None);
    }

    #[test]
    fn one_hour_cache_writes_and_web_searches_cost_anthropics_rates_unless_priced() {
        let mut c = BTreeMap::new();
        c.insert(
            "claude-custom".to_owned(),
            Price {
                input: 1.0,
                output: 0.0,
                cache_read: None,
                cache_write: Some(1.25),
                cache_write_1h: Some(3.0),
                web_search: Some(20.0),
            },
        );
        let p = Prices::new(c);
        // A million writes, a quarter of them for one hour.
        let u = Usage {
            cache_write_tokens: Some(1_000_000),
            cache_write_1h_tokens: Some(250_000),
            ..Default::default()
        };
        let close = |a: Option<f64>, b: f64| assert!((a.unwrap() - b).abs() < 1e-9, "{a:?} {b}");
        // Sonnet 4.5: 3.75 per million five-minute writes, 6 (twice the input) per hour.
        close(p.cost("claude-sonnet-4-5", &u), 0.75 * 3.75 + 0.25 * 6.0);
        close(p.cost("claude-custom", &u), 0.75 * 1.25 + 0.25 * 3.0);
        // A figure above the writes reported counts as all of them, never more.
        let over = Usage {
            cache_write_1h_tokens: Some(2_000_000),
            ..u.clone()
        };
        close(p.cost("claude-sonnet-4-5", &over), 6.0);
        // Without the breakdown, every write is a five-minute one, as before.
        let plain = Usage {
            cache_write_1h_tokens: None,
            ..u
        };
        close(p.cost("claude-sonnet-4-5", &plain), 3.75);
        // Web searches: Anthropic's $10 per 1,000 unless priced.
        let searches = Usage {
            web_search_requests: Some(3),
            ..Default::default()
        };
        close(p.cost("claude-sonnet-4-5", &searches), 0.03);
        close(p.cost("claude-custom", &searches), 0.06);
        // What the upstream said it charged wins, priced model or not.
        let billed = Usage {
            input_tokens: Some(1_000_000),
            billed_usd: Some(0.0123),
            ..Default::default()
        };
        close(p.cost("claude-sonnet-4-5", &billed), 0.0123);
        close(p.cost("meta-llama/llama-3.3-70b-instruct", &billed), 0.0123);
    }

    #[test]
    fn another_model_that_starts_the_same_way_does_not_take_a_listed_price() {
        let p = Prices::new(BTreeMap::new());
        let input = |m: &str| p.price(m).map(|p| p.input);
        // Dated, versioned, prefixed and cloud ids of a listed model find it.
        for (id, price) in [
            ("gpt-5", 1.25),
            ("gpt-5-2025-08-07", 1.25),
            ("openai/gpt-5", 1.25),
            ("gpt-5-nano", 0.05),
            ("gpt-5-nano-2025-08-07", 0.05),
            ("gpt-4.1-nano-2025-04-14", 0.1),
            ("gpt-4o-2024-05-13", 5.0),
            ("gpt-4o-2024-08-06", 2.5),
            ("claude-opus-4-20250514", 15.0),
            ("claude-opus-4-1", 15.0),
            ("claude-opus-4-0", 15.0),
            ("claude-sonnet-4-0", 3.0),
            ("anthropic/claude-opus-4.1", 15.0),
            ("claude-opus-4-6", 5.0),
            ("claude-opus-4-5@20251101", 5.0),
            ("anthropic.claude-opus-4-1-20250805-v1:0", 15.0),
            ("us.anthropic.claude-haiku-4-5-20251001-v1:0", 1.0),
            ("claude-3-7-sonnet-latest", 3.0),
            ("gemini-2.5-flash-lite", 0.1),
        ] {
            assert_eq!(input(id), Some(price), "{id}");
        }
        // Other models named like a listed one: no price rather than a wrong one.
        for id in [
            "gpt-5.5",
            "gpt-5-codex",
            "gpt-5.5-pro",
            "chatgpt-4o-latest",
            "claude-opus-4-7",
            "claude-opus-5-5",
            "claude-sonnet-4-6",
            "o3-pro",
            "o3-mini",
            "gemini-2.5-flash-image",
            "my-gpt-5",
        ] {
            assert_eq!(input(id), None, "{id}");
        }
    }
}
