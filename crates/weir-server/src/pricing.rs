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
    /// USD per 1,000 web searches the upstream ran (Claude's, and the queries of Gemini's
    /// grounding with Google Search); Anthropic's 10 when unknown. Gemini 2.5's grounding
    /// is per 1,000 grounded answers (Google's 35 when unknown), whatever their queries.
    pub web_search: Option<f64>,
    /// The prices of prompts over a number of tokens, for models priced higher there.
    pub long: Option<LongPrice>,
}

/// The prices of a request whose prompt (input, cache reads and cache writes together) is
/// over `above` tokens: the whole request is charged them, as Anthropic (Claude Sonnet 4
/// and 4.5 with the 1M context window) and Google (Gemini 2.5 Pro) bill it. Web searches
/// cost the same either way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LongPrice {
    /// Prompt tokens over which these prices apply.
    pub above: u64,
    /// Input tokens (cache excluded).
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Cache reads; the short prompts' price scaled as `input` is, when unknown.
    pub cache_read: Option<f64>,
    /// Five-minute cache writes; scaled as `input` is, when unknown.
    pub cache_write: Option<f64>,
    /// One-hour cache writes; scaled as `input` is, when unknown.
    pub cache_write_1h: Option<f64>,
}

/// USD per million tokens of each kind, every default applied: what one request is
/// charged.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rates {
    input: f64,
    output: f64,
    cache_read: f64,
    cache_write: f64,
    cache_write_1h: f64,
}

impl Price {
    /// The rates of a request whose prompt is `prompt` tokens.
    fn rates(&self, prompt: u64) -> Rates {
        let short = Rates {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read.unwrap_or(self.input),
            cache_write: self.cache_write.unwrap_or(self.input),
            cache_write_1h: self.cache_write_1h.unwrap_or(2.0 * self.input),
        };
        match self.long {
            Some(l) if prompt > l.above => {
                // Cache prices not given follow input's rise (Anthropic's and Google's
                // long prices keep the short ones' ratios); a free input has no ratio.
                let scale = |short_rate: f64, free_input_rate: f64| {
                    if self.input > 0.0 {
                        short_rate * l.input / self.input
                    } else {
                        free_input_rate
                    }
                };
                Rates {
                    input: l.input,
                    output: l.output,
                    cache_read: l
                        .cache_read
                        .unwrap_or_else(|| scale(short.cache_read, l.input)),
                    cache_write: l
                        .cache_write
                        .unwrap_or_else(|| scale(short.cache_write, l.input)),
                    cache_write_1h: l
                        .cache_write_1h
                        .unwrap_or_else(|| scale(short.cache_write_1h, 2.0 * l.input)),
                }
            }
            _ => short,
        }
    }
}

/// Anthropic's price of web searches, USD per 1,000.
const WEB_SEARCH_PER_1K: f64 = 10.0;

/// Google's price of grounding with Google Search on Gemini 2.5 (and 2.0), USD per 1,000
/// grounded prompts (past the free daily allowance, which is not counted here).
const GEMINI_25_GROUNDING_PER_1K: f64 = 35.0;

/// Google's price of grounding with Google Search on Gemini 3 and later, USD per 1,000
/// search queries, each query the model ran billed (past the free 5,000 a month, which
/// are not counted here).
const GEMINI_3_GROUNDING_PER_1K: f64 = 14.0;

/// How a model's web searches are billed: Gemini 2.x's grounding per grounded answer
/// (`true`), whatever its queries; everything else per search.
fn searches_per_answer(model: &str) -> bool {
    model.contains("gemini-2.")
}

/// The default price of 1,000 web searches on `model`: Google's for Gemini models,
/// Anthropic's for the rest (Claude's own, and a search Weir asked another upstream for).
fn default_search_price(model: &str) -> f64 {
    if searches_per_answer(model) {
        GEMINI_25_GROUNDING_PER_1K
    } else if model.contains("gemini-") {
        GEMINI_3_GROUNDING_PER_1K
    } else {
        WEB_SEARCH_PER_1K
    }
}

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
    ("claude-opus-4-7", 5.0, 25.0, 0.5, 6.25),
    ("claude-opus-4-8", 5.0, 25.0, 0.5, 6.25),
    ("claude-opus-5", 5.0, 25.0, 0.5, 6.25),
    // From Opus 5.5 and Fable 5.1 on, cache reads cost less than a tenth of input.
    ("claude-opus-5-5", 4.0, 20.0, 0.2, 5.0),
    ("claude-fable-5", 10.0, 50.0, 1.0, 12.5),
    ("claude-fable-5-1", 10.0, 50.0, 0.25, 12.5),
    ("claude-fable-5-2", 8.0, 40.0, 0.2, 10.0),
    ("claude-mythos-5", 10.0, 50.0, 1.0, 12.5),
    ("claude-sonnet-4", 3.0, 15.0, 0.3, 3.75),
    ("claude-sonnet-4-5", 3.0, 15.0, 0.3, 3.75),
    ("claude-sonnet-4-6", 3.0, 15.0, 0.3, 3.75),
    ("claude-sonnet-5", 2.0, 10.0, 0.2, 2.5),
    // Sonnet 5.5's cache reads: 0.10 since 2026-10-07 (0.20 before).
    ("claude-sonnet-5-5", 2.0, 10.0, 0.1, 2.5),
    // Prompts over 100,000 tokens cost five times as much (see BUNDLED_LONG).
    ("claude-haiku-5-5", 0.1, 0.5, 0.01, 0.125),
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
    ("gpt-5.1", 1.25, 10.0, 0.125, 1.25),
    ("gpt-5.4", 2.5, 15.0, 0.25, 2.5),
    ("gpt-5.4-mini", 0.75, 4.5, 0.075, 0.75),
    ("gpt-5.5", 5.0, 30.0, 0.5, 5.0),
    // GPT-5.6 and 6.x bill cache writes (1.25 times input), which their usage does not
    // tell apart from input: such writes are charged as input.
    ("gpt-5.6-luna", 0.2, 1.2, 0.02, 0.25),
    ("gpt-6-astra", 10.0, 50.0, 1.0, 12.5),
    ("gpt-6-sol", 2.0, 10.0, 0.2, 2.5),
    ("gpt-6-luna", 0.1, 0.5, 0.01, 0.125),
    ("gpt-6.2-sol", 2.0, 10.0, 0.1, 2.5),
    ("o3", 2.0, 8.0, 0.5, 2.0),
    ("o4-mini", 1.1, 4.4, 0.275, 1.1),
    ("gemini-2.5-pro", 1.25, 10.0, 0.125, 1.25),
    ("gemini-2.5-flash", 0.3, 2.5, 0.03, 0.3),
    ("gemini-2.5-flash-lite", 0.1, 0.4, 0.01, 0.1),
    // Gemini 3 (ai.google.dev/gemini-api/docs/pricing, paid tier, text). A `-preview` or
    // `-customtools` ending is another id, so each has its row. (3 Pro Preview now points
    // to 3.1 Pro.) 3.6, 3.7 and 3.8 Flash: their list prices, from 2027; see PROMOS.
    ("gemini-3-pro-preview", 2.0, 12.0, 0.2, 2.0),
    ("gemini-3-flash-preview", 0.5, 3.0, 0.05, 0.5),
    ("gemini-3.1-pro-preview", 2.0, 12.0, 0.2, 2.0),
    ("gemini-3.1-pro-preview-customtools", 2.0, 12.0, 0.2, 2.0),
    ("gemini-3.1-flash-lite", 0.25, 1.5, 0.025, 0.25),
    ("gemini-3.1-flash-lite-preview", 0.25, 1.5, 0.025, 0.25),
    ("gemini-3.5-flash", 1.5, 9.0, 0.15, 1.5),
    ("gemini-3.5-flash-lite", 0.3, 2.5, 0.03, 0.3),
    ("gemini-3.6-flash", 1.5, 7.5, 0.15, 1.5),
    ("gemini-3.7-flash", 1.5, 7.5, 0.15, 1.5),
    ("gemini-3.8-flash", 1.5, 7.5, 0.15, 1.5),
    ("text-embedding-3-small", 0.02, 0.0, 0.02, 0.02),
    ("text-embedding-3-large", 0.13, 0.0, 0.13, 0.13),
    ("text-embedding-ada-002", 0.1, 0.0, 0.1, 0.1),
    // Embedding models other providers serve (input only).
    ("gemini-embedding-001", 0.15, 0.0, 0.15, 0.15),
    ("amazon.titan-embed-text-v2", 0.02, 0.0, 0.02, 0.02),
    ("amazon.titan-embed-text-v1", 0.1, 0.0, 0.1, 0.1),
    ("cohere.embed-english-v3", 0.1, 0.0, 0.1, 0.1),
    ("cohere.embed-multilingual-v3", 0.1, 0.0, 0.1, 0.1),
    ("cohere.embed-v4", 0.12, 0.0, 0.12, 0.12),
];

/// Bundled models priced higher for long prompts: the name (as in [`BUNDLED`]), the
/// prompt tokens over which the request is charged more, and its input and output prices;
/// cache prices rise as input's does. Claude Sonnet 4 and 4.5 (whose 1M context window
/// was a beta; Anthropic's later models serve theirs at one price), Claude Haiku 5.5,
/// OpenAI's models with a 1M window and Gemini 2.5 Pro.
const BUNDLED_LONG: &[(&str, u64, f64, f64)] = &[
    ("claude-sonnet-4", 200_000, 6.0, 22.5),
    ("claude-sonnet-4-0", 200_000, 6.0, 22.5),
    ("claude-sonnet-4-5", 200_000, 6.0, 22.5),
    ("claude-haiku-5-5", 100_000, 0.5, 2.5),
    // OpenAI's 1M-window models: over 272,000 input tokens, twice input, 1.5 times output.
    ("gpt-5.4", 272_000, 5.0, 22.5),
    ("gpt-5.5", 272_000, 10.0, 45.0),
    ("gpt-6-sol", 272_000, 4.0, 15.0),
    ("gpt-6.2-sol", 272_000, 4.0, 15.0),
    ("gemini-2.5-pro", 200_000, 2.5, 15.0),
    ("gemini-3-pro-preview", 200_000, 4.0, 18.0),
    ("gemini-3.1-pro-preview", 200_000, 4.0, 18.0),
    ("gemini-3.1-pro-preview-customtools", 200_000, 4.0, 18.0),
];

/// Introductory prices of bundled models, in force until a moment (Unix seconds), after
/// which [`BUNDLED`]'s list prices apply: the name (as in [`BUNDLED`]), the end, then
/// input, output, cache read and cache write.
const PROMOS: &[(&str, u64, f64, f64, f64, f64)] = &[
    // Google: "$0.75 through December 31, 2026. $1.50 starting January 1, 2027."
    ("gemini-3.6-flash", GOOGLE_2027, 0.75, 3.75, 0.075, 0.75),
    ("gemini-3.7-flash", GOOGLE_2027, 0.75, 3.75, 0.075, 0.75),
    ("gemini-3.8-flash", GOOGLE_2027, 0.75, 3.75, 0.075, 0.75),
];

/// 2027-01-01T00:00:00Z.
const GOOGLE_2027: u64 = 1_798_761_600;

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
    /// Answers already found, by upstream model, with the Unix second until which each
    /// holds (an introductory price's end; `u64::MAX` for the others): a request's price
    /// is then one lookup instead of a substring search through the bundled list.
    memo: RwLock<HashMap<Box<str>, Memo>>,
}

/// A remembered price, and the Unix second until which it holds.
type Memo = (Option<Price>, u64);

/// Unix seconds now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        if let Some((p, until)) = self.memo.read().ok().and_then(|m| m.get(model).copied()) {
            // (The clock is read only for an introductory price.)
            if until == u64::MAX || unix_now() < until {
                return p;
            }
        }
        let (p, until) = self.lookup(model, unix_now());
        if let Ok(mut m) = self.memo.write() {
            if m.len() >= MEMO_CAP {
                m.clear();
            }
            m.insert(model.into(), (p, until));
        }
        p
    }

    /// The price of `model` at `now` (Unix seconds), and until when it holds.
    fn lookup(&self, model: &str, now: u64) -> (Option<Price>, u64) {
        if let Some(p) = self.configured.get(model) {
            return (Some(*p), u64::MAX);
        }
        // OpenRouter writes versions with dots (`anthropic/claude-opus-4.1`).
        let dashed = model.contains("claude").then(|| model.replace('.', "-"));
        let Some(&(name, input, output, cache_read, cache_write)) = BUNDLED
            .iter()
            .filter(|(name, ..)| {
                names_model(model, name) || dashed.as_deref().is_some_and(|m| names_model(m, name))
            })
            .max_by_key(|(name, ..)| name.len())
        else {
            return (None, u64::MAX);
        };
        let price = Price {
            input,
            output,
            cache_read: Some(cache_read),
            cache_write: Some(cache_write),
            cache_write_1h: None,
            web_search: None,
            long: BUNDLED_LONG
                .iter()
                .find(|(long_name, ..)| *long_name == name)
                .map(|&(_, above, input, output)| LongPrice {
                    above,
                    input,
                    output,
                    cache_read: None,
                    cache_write: None,
                    cache_write_1h: None,
                }),
        };
        match PROMOS
            .iter()
            .find(|(promo, end, ..)| *promo == name && now < *end)
        {
            Some(&(_, end, input, output, cache_read, cache_write)) => (
                Some(Price {
                    input,
                    output,
                    cache_read: Some(cache_read),
                    cache_write: Some(cache_write),
                    ..price
                }),
                end,
            ),
            None => (Some(price), u64::MAX),
        }
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
        let prompt = usage
            .input_tokens
            .unwrap_or(0)
            .saturating_add(usage.cache_read_tokens.unwrap_or(0))
            .saturating_add(writes);
        let r = p.rates(prompt);
        // Google bills Gemini 2.5's grounding per grounded prompt, however many queries it
        // ran (Gemini 3's per query).
        let searches = match usage.web_search_requests {
            Some(n) if searches_per_answer(model) => n.min(1) as f64,
            n => n.unwrap_or(0) as f64,
        };
        let search_price = p.web_search.unwrap_or_else(|| default_search_price(model));
        Some(
            (n(usage.input_tokens) * r.input
                + n(usage.output_tokens) * r.output
                + n(usage.cache_read_tokens) * r.cache_read
                + (writes - hour) as f64 * r.cache_write
                + hour as f64 * r.cache_write_1h)
                / 1_000_000.0
                + searches * search_price / 1_000.0,
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
                long: None,
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
        // Bedrock's id contains the bundled name (a prompt of two million tokens: the
        // long prices, 6 + 22.5 + 0.6).
        let bedrock = p
            .cost("us.anthropic.claude-sonnet-4-5-20250929-v1:0", &u)
            .unwrap();
        assert!((bedrock - 29.1).abs() < 1e-9, "{bedrock}");
        // The longest match: gpt-4o-mini, not gpt-4o.
        assert_eq!(p.price("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(p.cost("some-local-model", &u), None);
        // Embedding models on Bedrock, with a version suffix or a profile's prefix.
        assert_eq!(p.price("amazon.titan-embed-text-v2:0").unwrap().input, 0.02);
        assert_eq!(p.price("us.cohere.embed-english-v3").unwrap().input, 0.1);
        assert_eq!(p.price("us.cohere.embed-v4:0").unwrap().input, 0.12);
        assert_eq!(p.price("cohere.embed-english-v4"), None);
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
                long: None,
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
        // Haiku 4.5: 1.25 per million five-minute writes, 2 (twice the input) per hour.
        close(p.cost("claude-haiku-4-5", &u), 0.75 * 1.25 + 0.25 * 2.0);
        close(p.cost("claude-custom", &u), 0.75 * 1.25 + 0.25 * 3.0);
        // A figure above the writes reported counts as all of them, never more.
        let over = Usage {
            cache_write_1h_tokens: Some(2_000_000),
            ..u.clone()
        };
        close(p.cost("claude-haiku-4-5", &over), 2.0);
        // Without the breakdown, every write is a five-minute one, as before.
        let plain = Usage {
            cache_write_1h_tokens: None,
            ..u
        };
        close(p.cost("claude-haiku-4-5", &plain), 1.25);
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

    fn close(a: Option<f64>, b: f64) {
        assert!((a.unwrap() - b).abs() < 1e-9, "{a:?} {b}");
    }

    /// A request of `input` tokens, `read` cache reads and a million output tokens.
    fn at(input: u64, read: u64) -> Usage {
        Usage {
            input_tokens: Some(input),
            cache_read_tokens: Some(read),
            output_tokens: Some(1_000_000),
            ..Default::default()
        }
    }

    #[test]
    fn long_prompts_cost_the_long_prices_for_the_whole_request() {
        let p = Prices::new(BTreeMap::new());
        // Sonnet 4.5: the prompt is input, cache reads and writes together; at 200,000 it
        // is short, one more is long, and then every token costs the long price.
        close(
            p.cost("claude-sonnet-4-5-20250929", &at(100_000, 100_000)),
            0.1 * 3.0 + 0.1 * 0.3 + 15.0,
        );
        close(
            p.cost("claude-sonnet-4-5-20250929", &at(100_000, 100_001)),
            0.1 * 6.0 + 0.100_001 * 0.6 + 22.5,
        );
        // Cache writes count toward the prompt and cost the long prices (twice the short
        // ones: 7.50 and 12 per million), on Bedrock's ids too.
        let writes = Usage {
            input_tokens: Some(1),
            cache_write_tokens: Some(400_000),
            cache_write_1h_tokens: Some(100_000),
            ..Default::default()
        };
        close(
            p.cost("us.anthropic.claude-sonnet-4-5-20250929-v1:0", &writes),
            (6.0 + 300_000.0 * 7.5 + 100_000.0 * 12.0) / 1e6,
        );
        // Gemini 2.5 Pro over 200,000: 2.50 in, 15 out, cache reads 0.25.
        let gemini = Usage {
            input_tokens: Some(150_000),
            cache_read_tokens: Some(100_000),
            output_tokens: Some(10_000),
            ..Default::default()
        };
        close(
            p.cost("gemini-2.5-pro", &gemini),
            0.15 * 2.5 + 0.1 * 0.25 + 0.01 * 15.0,
        );
        // Gemini 2.5's grounding is billed per grounded answer ($35 a thousand), however
        // many queries it ran; Claude's searches each ($10 a thousand).
        let searched = |n| Usage {
            web_search_requests: Some(n),
            ..Default::default()
        };
        close(p.cost("gemini-2.5-flash", &searched(3)), 0.035);
        close(p.cost("models/gemini-2.5-pro", &searched(1)), 0.035);
        close(p.cost("gemini-2.5-flash", &searched(0)), 0.0);
        close(p.cost("claude-opus-4-6", &searched(3)), 0.03);
        // Gemini 3's per query, $14 a thousand (also on Vertex's ids).
        close(p.cost("gemini-3.1-pro-preview", &searched(3)), 0.042);
        close(
            p.cost(
                "publishers/google/models/gemini-3-flash-preview",
                &searched(1),
            ),
            0.014,
        );
        // A price set for a Gemini 2.5 model is per grounded answer too.
        let mut set = BTreeMap::new();
        set.insert(
            "gemini-2.5-flash".to_owned(),
            Price {
                input: 0.0,
                output: 0.0,
                cache_read: None,
                cache_write: None,
                cache_write_1h: None,
                web_search: Some(20.0),
                long: None,
            },
        );
        close(
            Prices::new(set).cost("gemini-2.5-flash", &searched(3)),
            0.02,
        );
        // Haiku 5.5 from 100,000 on, five times everything, output too; GPT-5.5 over
        // 272,000.
        close(
            p.cost("claude-haiku-5-5", &at(50_000, 50_001)),
            0.05 * 0.5 + 0.050_001 * 0.05 + 2.5,
        );
        close(
            p.cost("claude-haiku-5-5", &at(50_000, 50_000)),
            0.005 + 0.0005 + 0.5,
        );
        close(p.cost("gpt-5.5", &at(272_000, 0)), 0.272 * 5.0 + 30.0);
        close(p.cost("gpt-5.5", &at(272_001, 0)), 0.272_001 * 10.0 + 45.0);
        // A model without a long tier costs its one price at any length.
        close(p.cost("claude-opus-4-6", &at(900_000, 0)), 0.9 * 5.0 + 25.0);
        // Configured: given cache prices are taken, missing ones follow input's rise.
        let mut c = BTreeMap::new();
        c.insert(
            "m".to_owned(),
            Price {
                input: 2.0,
                output: 8.0,
                cache_read: Some(0.5),
                cache_write: None,
                cache_write_1h: None,
                web_search: None,
                long: Some(LongPrice {
                    above: 1_000,
                    input: 3.0,
                    output: 9.0,
                    cache_read: None,
                    cache_write: Some(4.0),
                    cache_write_1h: None,
                }),
            },
        );
        let p = Prices::new(c);
        let u = Usage {
            input_tokens: Some(1_000_000),
            cache_read_tokens: Some(1_000_000),
            cache_write_tokens: Some(2_000_000),
            cache_write_1h_tokens: Some(1_000_000),
            web_search_requests: Some(1_000),
            ..Default::default()
        };
        // Input 3, reads 0.5 × 1.5, writes 4, one-hour writes 2 × 2 × 1.5; searches 10.
        close(p.cost("m", &u), 3.0 + 0.75 + 4.0 + 6.0 + 10.0);
    }

    #[test]
    fn gemini_3_prices_and_introductory_prices_that_end() {
        let p = Prices::new(BTreeMap::new());
        // 3.1 Pro: 2 in, 12 out, reads 0.20; over 200,000, 4, 18 and 0.40.
        close(
            p.cost("gemini-3.1-pro-preview", &at(100_000, 100_000)),
            0.2 + 0.02 + 12.0,
        );
        close(
            p.cost("gemini-3.1-pro-preview", &at(100_000, 100_001)),
            0.4 + 0.100_001 * 0.4 + 18.0,
        );
        // A `-customtools` or `-preview` ending is another model, listed on its own.
        assert_eq!(
            p.price("gemini-3.1-pro-preview-customtools").unwrap().input,
            2.0
        );
        assert_eq!(
            p.price("gemini-3.1-flash-lite-preview").unwrap().input,
            0.25
        );
        assert_eq!(p.price("gemini-3.5-flash").unwrap().output, 9.0);
        assert_eq!(p.price("gemini-3.8-flash-cyber"), None);
        // 3.8 Flash: half its list price through 2026, the list price from 2027 on.
        let (promo, until) = p.lookup("gemini-3.8-flash", GOOGLE_2027 - 1);
        assert_eq!((promo.unwrap().input, until), (0.75, GOOGLE_2027));
        assert_eq!(promo.unwrap().cache_read, Some(0.075));
        let (list, until) = p.lookup("gemini-3.8-flash", GOOGLE_2027);
        assert_eq!((list.unwrap().input, until), (1.5, u64::MAX));
        assert_eq!(list.unwrap().output, 7.5);
        // What `price` answers is today's, and its memo holds only until the promotion
        // ends (an entry whose time is up is looked up again).
        let today = p.price("gemini-3.6-flash").unwrap().input;
        assert_eq!(today, if unix_now() < GOOGLE_2027 { 0.75 } else { 1.5 });
        p.memo
            .write()
            .unwrap()
            .insert("gemini-3.6-flash".into(), (Some(promo.unwrap()), 1));
        assert_eq!(p.price("gemini-3.6-flash").unwrap().input, today);
        // A configured price has no end.
        let mut c = BTreeMap::new();
        c.insert("gemini-3.8-flash".to_owned(), list.unwrap());
        let (set, until) = Prices::new(c).lookup("gemini-3.8-flash", 0);
        assert_eq!((set.unwrap().input, until), (1.5, u64::MAX));
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
            ("claude-opus-4-7", 5.0),
            ("claude-opus-5-5", 4.0),
            ("claude-sonnet-4-6", 3.0),
            ("claude-sonnet-5-5", 2.0),
            ("claude-fable-5-1", 10.0),
            ("claude-fable-5", 10.0),
            ("claude-haiku-5-5", 0.1),
            ("gpt-5.5", 5.0),
            ("gpt-5.5-2026-04-23", 5.0),
            ("gpt-5.4-mini", 0.75),
            ("gpt-6-sol", 2.0),
            ("gpt-6.2-sol", 2.0),
        ] {
            assert_eq!(input(id), Some(price), "{id}");
        }
        // Other models named like a listed one: no price rather than a wrong one.
        for id in [
            "gpt-5.5-pro",
            "gpt-5-codex",
            "gpt-5.4-nano",
            "gpt-6",
            "chatgpt-4o-latest",
            "claude-opus-4-9",
            "claude-opus-5-6",
            "claude-sonnet-4-7",
            "claude-mythos-5-1",
            "o3-pro",
            "o3-mini",
            "gemini-2.5-flash-image",
            "my-gpt-5",
        ] {
            assert_eq!(input(id), None, "{id}");
        }
    }
}
