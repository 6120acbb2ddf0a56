//! Anthropic Messages responses and usage.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use weir_model::raw::Key;
use weir_model::{
    ChatResponse, ContentBlock, Dialect, RawJson, StopReason, ToolInput, Usage, WireError,
};

use crate::blocks::{opt_value, ABlock};
use crate::write::{block, usage, BlockEdits, Out};
use weir_model::json_writer::JsonWriter;

/// Decodes an upstream's (non-streamed) Messages response.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, WireError> {
    let r: AResponse<false> = serde_json::from_str(weir_model::wire::utf8("response body", body)?)
        .map_err(|e| WireError::from_json("response body", &e))?;
    Ok(r.0)
}

/// Encodes a canonical response as a Messages response for an Anthropic client.
///
/// Tool calls from dialects that carry arguments as a string get them as an object; one
/// that is not (an upstream model's broken or cut-short JSON) gets `{}`, as
/// [`ToolInput::to_object`] says. A response holding the upstream's body verbatim
/// ([`ChatResponse::raw`], an Anthropic upstream's) is that body.
pub fn encode_response(resp: &ChatResponse) -> Result<Vec<u8>, WireError> {
    // A provider asked for the upstream's body verbatim decoded only a summary of it.
    if let Some(raw) = &resp.raw {
        return match resp.origin {
            Some(weir_model::Dialect::Anthropic) => Ok(raw.clone()),
            _ => Err(WireError::Unsupported(
                "this response holds only a summary of another dialect's answer (`raw`, asked for with `CallContext::client_dialect`): call without client_dialect to translate it".into(),
            )),
        };
    }
    // OpenAI tool calls kept verbatim (no id or type, arguments not a string) go as calls.
    let resp = &*resp.with_lenient_tool_calls();
    let inputs: Vec<_> = resp
        .content
        .iter()
        .map(|b| match b {
            ContentBlock::ToolUse(t) if matches!(t.input, ToolInput::Arguments(_)) => {
                Some(t.input.to_object())
            }
            _ => None,
        })
        .collect();
    let mut w = JsonWriter::with_capacity(1024);
    write_response(&mut w, resp, &inputs).map_err(WireError::Unsupported)?;
    Ok(w.into_bytes())
}

/// Decodes only what the gateway accounts by (id, model, usage) from a Messages
/// response, checking it is one (an object whose `content`, if any, is a list), for an
/// Anthropic client that gets the body verbatim. `content` stays empty.
pub fn decode_response_summary(body: &[u8]) -> Result<ChatResponse, WireError> {
    let r: AResponse<true> = serde_json::from_str(weir_model::wire::utf8("response body", body)?)
        .map_err(|e| WireError::from_json("response body", &e))?;
    Ok(r.0)
}

/// A response, whole, or (`SUMMARY`) only id, model and usage, checking `content` is a
/// list.
struct AResponse<const SUMMARY: bool>(ChatResponse);

impl<'de, const SUMMARY: bool> Deserialize<'de> for AResponse<SUMMARY> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const S: bool>;
        impl<'de, const SUMMARY: bool> Visitor<'de> for V<SUMMARY> {
            type Value = AResponse<SUMMARY>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Messages response object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AResponse<SUMMARY>, A::Error> {
                let mut r = ChatResponse {
                    origin: Some(Dialect::Anthropic),
                    ..Default::default()
                };
                let mut answered = false;
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    answered |= k.as_str() == "content";
                    match k.as_str() {
                        "id" => r.id = map.next_value()?,
                        "model" => r.model = map.next_value()?,
                        "content" if SUMMARY => {
                            map.next_value::<Vec<de::IgnoredAny>>()?;
                        }
                        "content" => {
                            r.content = map
                                .next_value::<Vec<ABlock>>()?
                                .into_iter()
                                .map(|b| b.0)
                                .collect()
                        }
                        // The summary reads these without keeping an explicit `null`: its
                        // body goes to the client verbatim, never re-encoded.
                        "stop_reason" if SUMMARY => {
                            r.stop_reason = map
                                .next_value::<Option<Key<'de>>>()?
                                .map(|s| StopReason::from_anthropic(s.as_str()))
                        }
                        "stop_sequence" if SUMMARY => r.stop_sequence = map.next_value()?,
                        "stop_reason" => {
                            r.stop_reason = opt_value::<_, String>(&mut map, &k, &mut r.extra)?
                                .map(|s| StopReason::from_anthropic(&s))
                        }
                        "stop_sequence" => r.stop_sequence = opt_value(&mut map, &k, &mut r.extra)?,
                        "usage" => r.usage = map.next_value::<AUsage>()?.0,
                        // `type` and `role` are constant; kept as they came.
                        _ if SUMMARY => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                        _ => r.extra.insert(k.into_owned(), map.next_value()?),
                    }
                }
                // A 200 without `content` (`{}`, an error object) carries no answer.
                if !answered {
                    return Err(de::Error::custom(
                        "not a Messages response: it has no `content`",
                    ));
                }
                Ok(AResponse(r))
            }
        }
        d.deserialize_map(V::<SUMMARY>)
    }
}

/// Anthropic usage, decoded.
pub(crate) struct AUsage(pub Usage);

impl<'de> Deserialize<'de> for AUsage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AUsage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a usage object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AUsage, A::Error> {
                let mut u = Usage::default();
                let mut billed: Option<Usage> = None;
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    match k.as_str() {
                        // Compaction: the top-level counts are the final sampling's only;
                        // every iteration (the summary's included) is billed. Kept as it
                        // came for the client, and summed for accounting.
                        "iterations" => {
                            let raw: weir_model::RawJson = map.next_value()?;
                            billed = iterations_sum(raw.get(), true);
                            u.extra.insert(k.into_owned(), raw);
                        }
                        // The writes by duration, kept as they came; the one-hour ones
                        // are priced apart.
                        "cache_creation" => {
                            let raw: weir_model::RawJson = map.next_value()?;
                            u.cache_write_1h_tokens = one_hour_writes(raw.get());
                            u.extra.insert(k.into_owned(), raw);
                        }
                        // Server tools' runs, kept as they came; web searches are billed.
                        "server_tool_use" => {
                            let raw: weir_model::RawJson = map.next_value()?;
                            u.web_search_requests = web_searches(raw.get());
                            u.extra.insert(k.into_owned(), raw);
                        }
                        // The output's breakdown, kept as it came; its thinking tokens are
                        // the reasoning an OpenAI client is told of (part of the output).
                        "output_tokens_details" => {
                            let raw: weir_model::RawJson = map.next_value()?;
                            u.reasoning_tokens = thinking_tokens(raw.get());
                            u.extra.insert(k.into_owned(), raw);
                        }
                        "input_tokens" => u.input_tokens = opt_value(&mut map, &k, &mut u.extra)?,
                        "output_tokens" => u.output_tokens = opt_value(&mut map, &k, &mut u.extra)?,
                        "cache_read_input_tokens" => {
                            u.cache_read_tokens = opt_value(&mut map, &k, &mut u.extra)?
                        }
                        "cache_creation_input_tokens" => {
                            u.cache_write_tokens = opt_value(&mut map, &k, &mut u.extra)?
                        }
                        _ => u.extra.insert(k.into_owned(), map.next_value()?),
                    }
                }
                if let Some(b) = billed {
                    u.input_tokens = b.input_tokens;
                    u.output_tokens = b.output_tokens;
                    u.cache_read_tokens = b.cache_read_tokens;
                    u.cache_write_tokens = b.cache_write_tokens;
                    // (Iterations that do not break their writes down leave the top
                    // level's figure.)
                    if b.cache_write_1h_tokens.is_some() {
                        u.cache_write_1h_tokens = b.cache_write_1h_tokens;
                    }
                }
                Ok(AUsage(u))
            }
        }
        d.deserialize_map(V)
            .map_err(|e| de::Error::custom(format_args!("usage: {e}")))
    }
}

/// `usage.cache_creation`'s one-hour writes (`ephemeral_1h_input_tokens`); `None` when
/// it does not say.
pub(crate) fn one_hour_writes(raw: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct CacheCreation {
        ephemeral_1h_input_tokens: Option<u64>,
    }
    serde_json::from_str::<CacheCreation>(raw)
        .ok()?
        .ephemeral_1h_input_tokens
}

/// `usage.output_tokens_details`'s thinking tokens; `None` when it does not say.
pub(crate) fn thinking_tokens(raw: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Details {
        thinking_tokens: Option<u64>,
    }
    serde_json::from_str::<Details>(raw).ok()?.thinking_tokens
}

/// `usage.server_tool_use`'s web searches (`web_search_requests`); `None` when it does not
/// say.
pub(crate) fn web_searches(raw: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct ServerToolUse {
        web_search_requests: Option<u64>,
    }
    serde_json::from_str::<ServerToolUse>(raw)
        .ok()?
        .web_search_requests
}

/// The tokens of the sampling iterations of a compacted request (`usage.iterations`),
/// summed: all of them (`compaction`: what is billed), or those of the answer alone (what
/// the top-level counts say). `None` for an empty or unreadable list.
pub(crate) fn iterations_sum(raw: &str, compaction: bool) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Iteration {
        #[serde(rename = "type")]
        kind: Option<String>,
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
        cache_read_input_tokens: Option<u64>,
        cache_creation_input_tokens: Option<u64>,
        cache_creation: Option<Box<serde_json::value::RawValue>>,
    }
    let mut list: Vec<Iteration> = serde_json::from_str(raw).ok()?;
    if !compaction {
        list.retain(|i| i.kind.as_deref() != Some("compaction"));
    }
    if list.is_empty() {
        return None;
    }
    let sum = |f: fn(&Iteration) -> Option<u64>| {
        let mut any = false;
        let total = list
            .iter()
            .filter_map(f)
            .inspect(|_| any = true)
            .fold(0u64, u64::saturating_add);
        any.then_some(total)
    };
    Some(Usage {
        input_tokens: sum(|i| i.input_tokens),
        output_tokens: sum(|i| i.output_tokens),
        cache_read_tokens: sum(|i| i.cache_read_input_tokens),
        cache_write_tokens: sum(|i| i.cache_creation_input_tokens),
        cache_write_1h_tokens: sum(|i| {
            i.cache_creation
                .as_deref()
                .and_then(|c| one_hour_writes(c.get()))
        }),
        ..Usage::default()
    })
}

fn write_response(
    w: &mut JsonWriter,
    r: &ChatResponse,
    inputs: &[Option<RawJson>],
) -> Result<(), String> {
    let same = r.origin == Some(Dialect::Anthropic);
    let out = Out { same, answer: true };
    w.begin_object();
    w.key("id");
    if r.id.is_empty() && !same {
        w.string(&weir_model::generated_id("msg_"));
    } else {
        w.string(&r.id);
    }
    if !same {
        w.key("type");
        w.raw("\"message\"");
        w.key("role");
        w.raw("\"assistant\"");
    }
    w.key("model");
    w.string(&r.model);
    w.key("content");
    w.begin_array();
    for (b, input) in r.content.iter().zip(inputs) {
        // Reasoning from other dialects has no signature; it is still shown.
        let edits = BlockEdits {
            id: None,
            input: input.as_deref(),
        };
        block(w, b, out, edits)?;
    }
    // An OpenAI refusal (structured outputs) is the answer's text, with a refusal stop.
    let refusal = if same { None } else { r.openai_refusal() };
    if let Some(t) = &refusal {
        if !r.content.iter().any(|b| matches!(b, ContentBlock::Text(_))) {
            let text = ContentBlock::Text(weir_model::TextBlock::new(t.clone()));
            let edits = BlockEdits {
                id: None,
                input: None,
            };
            block(w, &text, out, edits)?;
        }
    }
    w.end_array();
    match (&r.stop_reason, same) {
        (None | Some(StopReason::EndTurn), false) if refusal.is_some() => {
            w.key("stop_reason");
            w.string("refusal");
        }
        (Some(sr), true) => {
            w.key("stop_reason");
            w.string(sr.anthropic_name());
        }
        // Another dialect's answer: tool calls are a tool-use stop whatever the upstream
        // said (some say a plain stop), and a missing reason is the turn's end.
        (sr, false) => {
            let called = r
                .content
                .iter()
                .any(|b| matches!(b, ContentBlock::ToolUse(_)));
            w.key("stop_reason");
            w.string(match sr {
                None | Some(StopReason::EndTurn) if called => "tool_use",
                None => "end_turn",
                Some(sr) => sr.anthropic_client_name(),
            });
        }
        (None, true) => {}
    }
    match (&r.stop_sequence, same) {
        (Some(ss), _) => {
            w.key("stop_sequence");
            w.string(ss);
        }
        (None, false) => {
            w.key("stop_sequence");
            w.null();
        }
        (None, true) => {}
    }
    w.key("usage");
    usage(w, &r.usage, same);
    if same {
        w.extra(&r.extra, &[]);
    }
    w.end_object();
    Ok(())
}
