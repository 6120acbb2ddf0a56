//! OpenAI Chat Completions responses and usage.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use weir_model::raw::Key;
use weir_model::wire::opt_value;
use weir_model::JsonStr;
use weir_model::{
    ChatResponse, ContentBlock, Dialect, Extra, RawJson, StopReason, TextBlock, ThinkingBlock,
    Usage, WireError,
};

use crate::request::{OToolCall, ToolCallsOut};

/// Decodes an upstream's (non-streamed) Chat Completions response.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, WireError> {
    let r: OResponse<false> = serde_json::from_str(weir_model::wire::utf8("response body", body)?)
        .map_err(|e| WireError::from_json("response body", &e))?;
    let mut r = r.0;
    web_search_of_annotations(&mut r);
    Ok(r)
}

/// A `url_citation` annotation (OpenRouter's web plugin, OpenAI's search models): the
/// page, and the characters of the content it supports.
pub(crate) struct UrlCitation {
    pub page: weir_model::web_search::Page,
    pub span: Option<(usize, usize)>,
}

/// The `url_citation`s of a message's (or delta's) `annotations`; others are skipped, and
/// so is a list that does not read.
pub(crate) fn url_citation_annotations(raw: &serde_json::value::RawValue) -> Vec<UrlCitation> {
    #[derive(Deserialize)]
    struct Annotation {
        #[serde(rename = "type")]
        ty: Option<String>,
        url_citation: Option<Cited>,
    }
    #[derive(Deserialize)]
    struct Cited {
        url: Option<String>,
        title: Option<String>,
        start_index: Option<usize>,
        end_index: Option<usize>,
    }
    let Ok(list) = serde_json::from_str::<Vec<Annotation>>(raw.get()) else {
        return Vec::new();
    };
    list.into_iter()
        .filter(|a| a.ty.as_deref() == Some("url_citation"))
        .filter_map(|a| {
            let c = a.url_citation?;
            Some(UrlCitation {
                page: weir_model::web_search::Page {
                    url: c.url?,
                    title: c.title.unwrap_or_default(),
                },
                span: c.start_index.zip(c.end_index),
            })
        })
        .collect()
}

/// An answer's `url_citation` annotations as a web search in the canonical shape (see
/// [`weir_model::web_search`]): the pages as one search (no query: the upstream names
/// none) before the text, and each cited span of the content (in characters) its own text
/// block citing its pages. The annotations stay in the message's extras, for an OpenAI
/// client.
fn web_search_of_annotations(r: &mut ChatResponse) {
    use weir_model::web_search::{self, Span};
    let Some(raw) = r.message_extra.get("annotations") else {
        return;
    };
    let cites = url_citation_annotations(raw);
    if cites.is_empty() {
        return;
    }
    let full = web_search::joined_text(&r.content);
    // Character index -> byte offset.
    let bytes: Vec<usize> = full
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(full.len()))
        .collect();
    let mut spans: Vec<Span> = Vec::new();
    let mut pages = Vec::new();
    for c in cites {
        if let Some((start, end)) = c
            .span
            .and_then(|(a, z)| Some((*bytes.get(a)?, *bytes.get(z)?)))
        {
            match spans.iter_mut().find(|s| (s.start, s.end) == (start, end)) {
                Some(s) if !s.pages.contains(&c.page) => s.pages.push(c.page.clone()),
                Some(_) => {}
                None => spans.push(Span {
                    start,
                    end,
                    pages: vec![c.page.clone()],
                }),
            }
        }
        pages.push(c.page);
    }
    let search = web_search::search_blocks(&web_search::search_id(&r.id, 0), "", &pages, false);
    r.content = web_search::cite(std::mem::take(&mut r.content), spans, search);
}

/// Decodes only what the gateway accounts by (id, model, usage) from a Chat Completions
/// response, checking it is one (an object with `choices`), for an OpenAI client that
/// gets the body verbatim. `content` stays empty.
pub fn decode_response_summary(body: &[u8]) -> Result<ChatResponse, WireError> {
    let r: OResponse<true> = serde_json::from_str(weir_model::wire::utf8("response body", body)?)
        .map_err(|e| WireError::from_json("response body", &e))?;
    Ok(r.0)
}

/// Encodes a canonical response as a Chat Completions response for an OpenAI client.
/// Thinking from other dialects is exposed as `reasoning_content`. A response holding the
/// upstream's body verbatim ([`ChatResponse::raw`](weir_model::ChatResponse::raw), an
/// OpenAI-dialect upstream's) is that body.
pub fn encode_response(resp: &ChatResponse) -> Result<Vec<u8>, WireError> {
    // A provider asked for the upstream's body verbatim decoded only a summary of it.
    if let Some(raw) = &resp.raw {
        return match resp.origin {
            Some(weir_model::Dialect::OpenAi) => Ok(raw.clone()),
            _ => Err(WireError::Unsupported(
                "this response holds only a summary of another dialect's answer (`raw`, asked for with `CallContext::client_dialect`): call without client_dialect to translate it".into(),
            )),
        };
    }
    serde_json::to_vec(&ResponseOut(resp)).map_err(|e| WireError::Unsupported(e.to_string()))
}

/// Seconds since the epoch, for `created` on responses translated from dialects without it.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A response, whole, or (`SUMMARY`) only id, model and usage, checking `choices` is a
/// list.
struct OResponse<const SUMMARY: bool>(ChatResponse);

impl<'de, const SUMMARY: bool> Deserialize<'de> for OResponse<SUMMARY> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const S: bool>;
        impl<'de, const SUMMARY: bool> Visitor<'de> for V<SUMMARY> {
            type Value = OResponse<SUMMARY>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a chat completion object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OResponse<SUMMARY>, A::Error> {
                let mut r = ChatResponse {
                    origin: Some(Dialect::OpenAi),
                    ..Default::default()
                };
                let mut have_choices = false;
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    match k.as_str() {
                        "id" => r.id = map.next_value()?,
                        "model" => r.model = map.next_value()?,
                        "created" => r.created = opt_value(&mut map, &k, &mut r.extra)?,
                        "choices" if SUMMARY => {
                            map.next_value::<Vec<de::IgnoredAny>>()?;
                            have_choices = true;
                        }
                        "choices" => {
                            map.next_value_seed(ChoicesSeed(&mut r))?;
                            have_choices = true;
                        }
                        "usage" => {
                            if let Some(u) = opt_value::<_, OUsage>(&mut map, &k, &mut r.extra)? {
                                r.usage = u.0;
                            }
                        }
                        _ if SUMMARY => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                        _ => r.extra.insert(k.into_owned(), map.next_value()?),
                    }
                }
                if !have_choices {
                    return Err(de::Error::missing_field("choices"));
                }
                Ok(OResponse(r))
            }
        }
        d.deserialize_map(V::<SUMMARY>)
    }
}

struct ChoicesSeed<'a>(&'a mut ChatResponse);

impl<'de> de::DeserializeSeed<'de> for ChoicesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        struct V<'a>(&'a mut ChatResponse);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
                let r = self.0;
                if let Some(first) = seq.next_element::<RawJson>()? {
                    let c: OChoice = serde_json::from_str(first.get())
                        .map_err(|e| weir_model::wire::nested_error(&e))?;
                    r.content = c.content;
                    r.stop_reason = c.stop_reason;
                    // Ollama, vLLM and Gemini's OpenAI endpoint say `stop` after tool calls,
                    // others their own reason (Together's `eos`).
                    let plain = match &r.stop_reason {
                        Some(StopReason::EndTurn) => true,
                        Some(StopReason::Other(s)) => s != "function_call" && !crate::failed(s),
                        _ => false,
                    };
                    if plain
                        && r.content
                            .iter()
                            .any(|b| matches!(b, ContentBlock::ToolUse(_)))
                    {
                        r.stop_reason = Some(StopReason::ToolUse);
                    }
                    r.choice_extra = c.choice_extra;
                    r.message_extra = c.message_extra;
                } else {
                    // No choice at all (content-filtered prompts, some usage-only answers).
                    r.extra.insert("choices", weir_model::raw::to_raw(&[(); 0]));
                }
                while let Some(more) = seq.next_element::<RawJson>()? {
                    r.other_choices.push(more);
                }
                Ok(())
            }
        }
        d.deserialize_seq(V(self.0))
    }
}

struct OChoice {
    content: Vec<ContentBlock>,
    stop_reason: Option<StopReason>,
    choice_extra: Extra,
    message_extra: Extra,
}

impl<'de> Deserialize<'de> for OChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OChoice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a choice object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OChoice, A::Error> {
                let mut c = OChoice {
                    content: Vec::new(),
                    stop_reason: None,
                    choice_extra: Extra::new(),
                    message_extra: Extra::new(),
                };
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    match k.as_str() {
                        "message" => {
                            let m: OMessage = map.next_value()?;
                            c.content = m.0;
                            c.message_extra = m.1;
                        }
                        "finish_reason" => {
                            c.stop_reason =
                                opt_value::<_, String>(&mut map, &k, &mut c.choice_extra)?
                                    .map(|s| StopReason::from_openai(&s))
                        }
                        _ => c.choice_extra.insert(k.into_owned(), map.next_value()?),
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

/// A response message: blocks (reasoning, text, tool calls) and the fields kept verbatim.
struct OMessage(Vec<ContentBlock>, Extra);

impl<'de> Deserialize<'de> for OMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OMessage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OMessage, A::Error> {
                let mut extra = Extra::new();
                let mut text: Option<JsonStr> = None;
                let mut reasoning: Option<JsonStr> = None;
                // Reasoning given as thinking parts of `content`, when no field has it.
                let mut parts_reasoning: Option<JsonStr> = None;
                // `reasoning_details` (OpenRouter), carried as the thinking signature.
                let mut details: Option<String> = None;
                let mut calls: Vec<ContentBlock> = Vec::new();
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    match k.as_str() {
                        "content" => {
                            let raw: RawJson = map.next_value()?;
                            match raw.get().as_bytes().first() {
                                // An empty string beside tool calls (or a filtered
                                // answer) is no text block: Anthropic refuses empty ones
                                // when a client sends the turn back. Kept as it came for
                                // the same dialect.
                                Some(b'"') if blank(raw.get()) => {
                                    extra.insert("content", raw);
                                }
                                Some(b'"') => text = JsonStr::from_raw(raw),
                                Some(b'n') => extra.insert_null("content"),
                                // Some compatible servers answer with an array of parts
                                // (Mistral's reasoning models, with thinking parts): keep
                                // it as it came and read its text and reasoning for
                                // translation.
                                _ => {
                                    let pieces =
                                        crate::parts::pieces_of_parts(&raw).unwrap_or_default();
                                    let joined = |thinking: bool| {
                                        JsonStr::join(
                                            pieces.iter().filter(|p| p.0 == thinking).map(|p| &p.1),
                                            "",
                                        )
                                        .filter(|t| !t.as_str().trim().is_empty())
                                    };
                                    text = joined(false);
                                    parts_reasoning = joined(true);
                                    extra.insert("content", raw);
                                }
                            }
                        }
                        // Reasoning arrives as `reasoning_content` (DeepSeek, xAI, vLLM) or
                        // `reasoning` (Groq, OpenRouter, Ollama): either becomes thinking, and
                        // the original field is kept so the same dialect writes it back as it
                        // came.
                        "reasoning_content" | "reasoning" => {
                            let raw: RawJson = map.next_value()?;
                            if k.as_str() == "reasoning_content" || reasoning.is_none() {
                                if let Some(t) = JsonStr::from_raw_ref(&raw) {
                                    reasoning = Some(t);
                                }
                            }
                            extra.insert(k.into_owned(), raw);
                        }
                        "reasoning_details" => {
                            let raw: RawJson = map.next_value()?;
                            if serde_json::from_str::<Vec<&serde_json::value::RawValue>>(raw.get())
                                .is_ok_and(|v| !v.is_empty())
                            {
                                details = Some(format!(
                                    "{}{}",
                                    crate::REASONING_DETAILS_SIGNATURE,
                                    raw.get()
                                ));
                            }
                            extra.insert("reasoning_details", raw);
                        }
                        "tool_calls" => {
                            let raw: RawJson = map.next_value()?;
                            match serde_json::from_str::<Option<Vec<OToolCall>>>(raw.get()) {
                                Ok(Some(v)) if !v.is_empty() => {
                                    calls = v.into_iter().map(|c| c.0).collect()
                                }
                                Ok(_) => extra.insert("tool_calls", raw),
                                Err(e) => {
                                    return Err(de::Error::custom(format_args!("tool_calls: {e}")))
                                }
                            }
                        }
                        _ => extra.insert(k.into_owned(), map.next_value()?),
                    }
                }
                let mut blocks = Vec::with_capacity(calls.len() + 2);
                match (reasoning.or(parts_reasoning), details) {
                    (None, None) => {}
                    // (Encrypted reasoning alone makes an empty thinking block: it must
                    // come back.)
                    (thinking, signature) => blocks.push(ContentBlock::Thinking(ThinkingBlock {
                        thinking: thinking.unwrap_or_else(JsonStr::empty),
                        signature,
                        extra: Extra::new(),
                    })),
                }
                if let Some(t) = text {
                    blocks.push(ContentBlock::Text(TextBlock::new(t)));
                }
                // A call with an empty id (some compatible servers) gets one of our own,
                // unique, as in streams: a client sends it back with the call's result.
                for c in &mut calls {
                    if let ContentBlock::ToolUse(t) = c {
                        if t.id.is_empty() {
                            t.id = weir_model::generated_id("call_");
                        }
                    }
                }
                blocks.append(&mut calls);
                Ok(OMessage(blocks, extra))
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether a JSON string token is empty or whitespace alone (Anthropic refuses a text
/// block of whitespace alone, as models put before tool calls): read in place, up to its
/// first other character. (Whitespace written as `\u` escapes counts as text.)
fn blank(token: &str) -> bool {
    let Some(inner) = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return false;
    };
    let mut bytes = inner.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'\\' => {
                if !matches!(bytes.next(), Some(b'n' | b't' | b'r')) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// OpenAI usage, decoded into canonical (Anthropic) semantics: `prompt_tokens` includes
/// cached tokens, so the uncached input is `prompt_tokens - cached_tokens`. The breakdown
/// objects and `total_tokens` are kept verbatim for OpenAI clients.
pub(crate) struct OUsage(pub Usage);

impl<'de> Deserialize<'de> for OUsage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OUsage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a usage object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OUsage, A::Error> {
                #[derive(Deserialize, Default)]
                struct Details {
                    cached_tokens: Option<u64>,
                    /// (OpenRouter's, and the OpenAI SDK's since 2026.)
                    cache_write_tokens: Option<u64>,
                    reasoning_tokens: Option<u64>,
                }
                let mut u = Usage::default();
                let mut prompt: Option<u64> = None;
                let mut cached: Option<u64> = None;
                let mut written: Option<u64> = None;
                // DeepSeek's own name for the cached part (it may send both).
                let mut cache_hit: Option<u64> = None;
                let mut total: Option<u64> = None;
                // OpenRouter: what it charged, and whether the account brought its own
                // key (then `cost` is OpenRouter's fee, and the inference is billed by the
                // provider apart: `cost_details.upstream_inference_cost`).
                let mut cost: Option<f64> = None;
                let mut byok = false;
                let mut upstream_cost: Option<f64> = None;
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    match k.as_str() {
                        "prompt_tokens" => prompt = opt_value(&mut map, &k, &mut u.extra)?,
                        "completion_tokens" => {
                            u.output_tokens = opt_value(&mut map, &k, &mut u.extra)?
                        }
                        "prompt_tokens_details" | "completion_tokens_details" => {
                            let raw: RawJson = map.next_value()?;
                            let d: Option<Details> =
                                serde_json::from_str(raw.get()).unwrap_or_default();
                            if let Some(d) = d {
                                if k.as_str() == "prompt_tokens_details" {
                                    cached = d.cached_tokens;
                                    written = d.cache_write_tokens;
                                } else {
                                    u.reasoning_tokens = d.reasoning_tokens;
                                }
                            }
                            u.extra.insert(k.into_owned(), raw);
                        }
                        // xAI's billed cost, in ten-billionths of a dollar.
                        "cost_in_usd_ticks" => {
                            let raw: RawJson = map.next_value()?;
                            if cost.is_none() {
                                cost = serde_json::from_str::<f64>(raw.get())
                                    .ok()
                                    .map(|ticks| ticks / 1e10);
                            }
                            u.extra.insert(k.into_owned(), raw);
                        }
                        "cost" | "is_byok" | "cost_details" => {
                            #[derive(Deserialize)]
                            struct CostDetails {
                                upstream_inference_cost: Option<f64>,
                            }
                            let raw: RawJson = map.next_value()?;
                            match k.as_str() {
                                "cost" => cost = serde_json::from_str(raw.get()).ok(),
                                "is_byok" => byok = raw.get() == "true",
                                _ => {
                                    upstream_cost = serde_json::from_str::<CostDetails>(raw.get())
                                        .ok()
                                        .and_then(|d| d.upstream_inference_cost)
                                }
                            }
                            u.extra.insert(k.into_owned(), raw);
                        }
                        // OpenRouter's server tools: the web searches it ran.
                        "server_tool_use_details" => {
                            #[derive(Deserialize)]
                            struct ServerTools {
                                web_search_requests: Option<u64>,
                            }
                            let raw: RawJson = map.next_value()?;
                            u.web_search_requests = serde_json::from_str::<ServerTools>(raw.get())
                                .ok()
                                .and_then(|t| t.web_search_requests)
                                .filter(|&n| n > 0);
                            u.extra.insert(k.into_owned(), raw);
                        }
                        "prompt_cache_hit_tokens" | "total_tokens" => {
                            let raw: RawJson = map.next_value()?;
                            let n = serde_json::from_str(raw.get()).ok();
                            if k.as_str() == "total_tokens" {
                                total = n;
                            } else {
                                cache_hit = n;
                            }
                            u.extra.insert(k.into_owned(), raw);
                        }
                        _ => u.extra.insert(k.into_owned(), map.next_value()?),
                    }
                }
                // xAI counts reasoning apart from `completion_tokens` (and bills it as
                // completion): its total says so. OpenAI's completion includes it.
                if let (Some(t), Some(p), Some(c), Some(r)) =
                    (total, prompt, u.output_tokens, u.reasoning_tokens)
                {
                    if r > 0 && p.checked_add(c).and_then(|pc| pc.checked_add(r)) == Some(t) {
                        // An OpenAI client gets the upstream's own figure back.
                        u.extra
                            .insert("completion_tokens", weir_model::raw::to_raw(&c));
                        u.output_tokens = Some(c.saturating_add(r));
                    }
                }
                u.billed_usd = Usage::billed(cost, byok, upstream_cost);
                let cached = cached.or(cache_hit);
                u.input_tokens = prompt.map(|p| {
                    p.saturating_sub(cached.unwrap_or(0))
                        .saturating_sub(written.unwrap_or(0))
                });
                u.cache_read_tokens = cached;
                u.cache_write_tokens = written.filter(|&w| w > 0);
                Ok(OUsage(u))
            }
        }
        d.deserialize_map(V)
    }
}

/// Serializes usage for an OpenAI client.
pub(crate) struct UsageOut<'a> {
    pub usage: &'a Usage,
    pub same: bool,
}

impl Serialize for UsageOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let u = self.usage;
        let mut m = s.serialize_map(None)?;
        let prompt = u.total_input();
        let completion = u.output();
        if self.same {
            if u.input_tokens.is_some() {
                m.serialize_entry("prompt_tokens", &prompt)?;
            }
            // (Kept in `extra` when it left out reasoning counted in `output_tokens`.)
            if let Some(o) = u
                .output_tokens
                .filter(|_| !u.extra.contains("completion_tokens"))
            {
                m.serialize_entry("completion_tokens", &o)?;
            }
            u.extra.serialize_into(&mut m, &[])?;
        } else {
            m.serialize_entry("prompt_tokens", &prompt)?;
            m.serialize_entry("completion_tokens", &completion)?;
            m.serialize_entry("total_tokens", &prompt.saturating_add(completion))?;
            let cached = u.cache_read_tokens.unwrap_or(0);
            match u.cache_write_tokens.filter(|&w| w > 0) {
                Some(w) => m.serialize_entry(
                    "prompt_tokens_details",
                    &serde_json::json!({ "cached_tokens": cached, "cache_write_tokens": w }),
                )?,
                None => m.serialize_entry(
                    "prompt_tokens_details",
                    &serde_json::json!({ "cached_tokens": cached }),
                )?,
            }
            if let Some(r) = u.reasoning_tokens {
                m.serialize_entry(
                    "completion_tokens_details",
                    &serde_json::json!({ "reasoning_tokens": r }),
                )?;
            }
        }
        m.end()
    }
}

struct ResponseOut<'a>(&'a ChatResponse);

impl Serialize for ResponseOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let same = r.origin == Some(Dialect::OpenAi);
        let mut m = s.serialize_map(None)?;
        if r.id.is_empty() && !same {
            m.serialize_entry("id", &weir_model::generated_id("chatcmpl-"))?;
        } else {
            m.serialize_entry("id", &r.id)?;
        }
        if !same {
            m.serialize_entry("object", "chat.completion")?;
        }
        match r.created {
            Some(c) => m.serialize_entry("created", &c)?,
            None if !same => m.serialize_entry("created", &now_secs())?,
            None => {}
        }
        m.serialize_entry("model", &r.model)?;
        if !(same && r.extra.contains("choices")) {
            m.serialize_entry("choices", &ChoicesOut { r, same })?;
        }
        if !same || !r.usage.is_empty() || !r.usage.extra.is_empty() {
            m.serialize_entry(
                "usage",
                &UsageOut {
                    usage: &r.usage,
                    same,
                },
            )?;
        }
        if same {
            r.extra.serialize_into(&mut m, &[])?;
        }
        m.end()
    }
}

struct ChoicesOut<'a> {
    r: &'a ChatResponse,
    same: bool,
}

impl Serialize for ChoicesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        seq.serialize_element(&ChoiceOut {
            r: self.r,
            same: self.same,
        })?;
        if self.same {
            for c in &self.r.other_choices {
                seq.serialize_element(c)?;
            }
        }
        seq.end()
    }
}

struct ChoiceOut<'a> {
    r: &'a ChatResponse,
    same: bool,
}

impl Serialize for ChoiceOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (r, same) = (self.r, self.same);
        let mut m = s.serialize_map(None)?;
        if !same {
            m.serialize_entry("index", &0)?;
        }
        m.serialize_entry("message", &MessageOut { r, same })?;
        match (&r.stop_reason, same) {
            (Some(sr), true) => m.serialize_entry("finish_reason", sr.openai_name())?,
            // Another dialect's answer: tool calls are a tool-calls finish whatever the
            // upstream said, and a missing reason is the turn's end.
            (sr, false) => {
                let called = r
                    .content
                    .iter()
                    .any(|b| matches!(b, ContentBlock::ToolUse(_)));
                m.serialize_entry(
                    "finish_reason",
                    match sr {
                        None | Some(StopReason::EndTurn) if called => "tool_calls",
                        None => "stop",
                        Some(sr) => sr.openai_client_name(),
                    },
                )?
            }
            (None, true) => {}
        }
        if same {
            r.choice_extra.serialize_into(&mut m, &[])?;
        } else {
            m.serialize_entry("logprobs", &())?;
        }
        m.end()
    }
}

struct MessageOut<'a> {
    r: &'a ChatResponse,
    same: bool,
}

impl Serialize for MessageOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (r, same) = (self.r, self.same);
        let mut texts = Vec::new();
        let mut thinking = Vec::new();
        let mut calls: Vec<&ContentBlock> = Vec::new();
        // Each call's carried signature (Gemini's, on the empty thinking block just before
        // the call), written into its id for the client to send back.
        let mut signatures: Vec<Option<&str>> = Vec::new();
        let mut carrier: Option<&str> = None;
        for b in &r.content {
            let last = carrier.take();
            match b {
                ContentBlock::Text(t) => texts.push(&t.text),
                ContentBlock::Thinking(t) => {
                    thinking.push(&t.thinking);
                    if t.thinking.is_empty() {
                        carrier = t.signature.as_deref();
                    }
                }
                ContentBlock::ToolUse(_) => {
                    calls.push(b);
                    signatures.push(last);
                }
                ContentBlock::Unknown(u) if same && u.dialect == Dialect::OpenAi => {
                    calls.push(b);
                    signatures.push(None);
                }
                _ => {}
            }
        }
        let mut m = s.serialize_map(None)?;
        if !same {
            m.serialize_entry("role", "assistant")?;
        }
        let text = JsonStr::join(texts, "");
        let reasoning = JsonStr::join(thinking, "");
        match (text, same) {
            (Some(_), true) if r.message_extra.contains("content") => {}
            (Some(t), _) => m.serialize_entry("content", &t)?,
            (None, false) => m.serialize_entry("content", &())?,
            (None, true) => {}
        }
        // The same dialect writes the reasoning field it came with (kept in the extras), or
        // the parts array of `content` it came in (Mistral's thinking parts).
        let kept = same
            && (r.message_extra.contains("reasoning_content")
                || r.message_extra.contains("reasoning")
                || r.message_extra.contains("reasoning_details")
                || r.message_extra.contains("content"));
        // (A thinking block that only carries a signature, as Gemini's can, has no text:
        // no empty field.)
        if let Some(rc) = reasoning.filter(|r| !kept && !r.is_empty()) {
            m.serialize_entry("reasoning_content", &rc)?;
        }
        if !same {
            let annotations = url_citations(&r.content);
            if !annotations.is_empty() {
                m.serialize_entry("annotations", &annotations)?;
            }
        }
        if !calls.is_empty() {
            m.serialize_entry(
                "tool_calls",
                &ToolCallsOut {
                    calls: &calls,
                    same,
                    placeholder_signature: false,
                    signatures: &signatures,
                    short_ids: false,
                },
            )?;
        }
        if same {
            r.message_extra.serialize_into(&mut m, &[])?;
        } else {
            m.serialize_entry("refusal", &())?;
        }
        m.end()
    }
}

/// A web search result a text block of another dialect cites (Anthropic's
/// `web_search_result_location`), as OpenAI's `url_citation` annotation reads it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Citation {
    #[serde(rename = "type")]
    ty: Option<String>,
    url: Option<String>,
    title: Option<String>,
}

impl Citation {
    /// The page cited (its URL and title), if this cites a web page.
    pub(crate) fn page(&self) -> Option<(&str, &str)> {
        match (self.ty.as_deref(), &self.url) {
            (Some("web_search_result_location"), Some(url)) => {
                Some((url, self.title.as_deref().unwrap_or_default()))
            }
            _ => None,
        }
    }

    /// The annotation for this citation of `start..end` (characters of the message's
    /// content), if it cites a web page.
    pub(crate) fn url_citation(&self, start: usize, end: usize) -> Option<serde_json::Value> {
        match (self.ty.as_deref(), &self.url) {
            (Some("web_search_result_location"), Some(url)) => Some(serde_json::json!({
                "type": "url_citation",
                "url_citation": {
                    "start_index": start,
                    "end_index": end,
                    "url": url,
                    "title": self.title.as_deref().unwrap_or_default(),
                }
            })),
            _ => None,
        }
    }
}

/// OpenAI's `annotations` for the web pages another dialect's text blocks cite: each
/// citation a `url_citation` over its block's text, counted in characters (Unicode scalar
/// values) of the content the blocks are joined into.
pub(crate) fn url_citations(content: &[ContentBlock]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut at = 0;
    for b in content {
        let ContentBlock::Text(t) = b else { continue };
        let end = at + t.text.chars();
        if let Some(raw) = t.extra.get("citations") {
            if let Ok(cites) = serde_json::from_str::<Vec<Citation>>(raw.get()) {
                out.extend(cites.iter().filter_map(|c| c.url_citation(at, end)));
            }
        }
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn blank_reads_whitespace_tokens_in_place() {
        use super::blank;
        for t in [r#""""#, r#"" ""#, r#""\n\n""#, r#"" \t\r\n ""#] {
            assert!(blank(t), "{t}");
        }
        let long = format!("\"{}\"", "\\n".repeat(100));
        assert!(blank(&long));
        for t in [r#""a""#, r#""\n x""#, r#""\"""#, r#""\u0020""#, "null"] {
            assert!(!blank(t), "{t}");
        }
    }
}
