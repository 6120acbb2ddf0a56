//! Google Gemini's `generateContent` dialect and the Gemini API provider (`kind =
//! "gemini"`).
//!
//! The codec ([`encode_request`], [`decode_response`], [`StreamDecoder`],
//! [`decode_error`]) is pure: no I/O, no routing, no other dialect's wire format. It only
//! goes one way, canonical to Gemini and back, because no client speaks Gemini to Weir;
//! Vertex AI reuses it for Gemini models. [`GeminiProvider`] adds the HTTP side on top of
//! `weir-upstream`.
//!
//! # Mapping
//!
//! **Roles and turns.** The top-level system prompt and every `system`/`developer` message
//! (wherever it sits) are hoisted, in order, into `systemInstruction` (text only).
//! `user` and `tool` messages are `user` turns, `assistant` messages `model` turns;
//! consecutive turns of one role are merged (parts are never merged). Empty text blocks
//! are skipped (Gemini refuses empty text parts). OpenAI `function` messages (results by
//! name, without a call id) are refused.
//!
//! **Media.** Base64 images and documents are `inlineData`; `data:` URLs too. Other URLs
//! are `fileData` with a MIME type guessed from the path's extension (png, jpg/jpeg, gif,
//! webp, heic, heif, pdf, txt, md, csv, html, json, mp3, wav, mp4), else `image/jpeg`
//! for images and `application/pdf` for documents (Anthropic URL documents are PDFs).
//! Plain-text documents are text parts. Gemini only fetches URLs it can reach (`gs://`,
//! Files API and public web URLs, depending on the model).
//!
//! **Tools.** Calls are `functionCall {id, name, args}` (OpenAI argument strings are parsed;
//! invalid JSON is an error, as is anything but an object). Results are `functionResponse
//! {id, name, response}`: the name is that of the latest earlier call with the result's
//! id (a result for an unknown id is an error, since Gemini needs the name);
//! `response` is `{"output": text}`, or `{"error": text}` when the result is an error, the
//! keys Google documents; text blocks are joined with newlines. Images and documents in a
//! result follow the message's run of function responses as parts of their own. Schemas
//! go to `parameters` cleaned of what Gemini rejects (see [`SchemaMode`]); `tool_choice`
//! maps to `toolConfig.functionCallingConfig.mode` `AUTO`/`ANY`/`NONE`, a named tool to
//! `ANY` with `allowedFunctionNames`. Gemini has no switch for parallel calls:
//! `parallel_tool_calls: false` (and Claude's `disable_parallel_tool_use`) is kept by
//! leaving out the calls after the first ([`keep_one_call`],
//! [`StreamDecoder::one_call_only`]). Claude's web search tool and an OpenAI client's
//! `web_search_options` are grounding with Google Search (`googleSearch`), whose answer
//! comes back as a web search in Claude's shape (see `grounding`); a web search and its
//! results in assistant history are left out. Other provider-specific tools and blocks of
//! another dialect (`Unknown`) are refused with [`weir_model::WireError::Unsupported`].
//!
//! **Tool-call ids.** Gemini's ids are optional. A `functionCall.id` that is a valid
//! Anthropic id (`^[a-zA-Z0-9_-]{1,64}$`) is kept; otherwise the id is
//! `toolu_gemini_<responseId>_<n>`: the response id's `[A-Za-z0-9_-]` characters (at most
//! 40; a random 16-hex-digit stand-in when the response has none) and `n` counting the
//! response's calls from 0. Such ids are unique across the turns of a conversation (which
//! clients and Anthropic require), at most 64 characters, and valid for Anthropic, Bedrock
//! and OpenAI. They go back to Gemini as `functionCall.id` and `functionResponse.id`
//! ([`EncodeOptions::call_ids`]).
//!
//! **Thinking and signatures.** Thought parts (`thought: true`) are thinking blocks.
//! Gemini signs parts with `thoughtSignature`, on thoughts but also on function calls and
//! text, and Gemini 3 refuses a later request whose calls lost it. The canonical model has
//! a signature only on thinking blocks, which Anthropic clients send back unmodified, so:
//! a thought's signature is the block's signature behind [`THOUGHT_SIGNATURE_PREFIX`];
//! the signature of any other part travels on an empty thinking block just before that
//! part's block, behind [`NEXT_PART_SIGNATURE_PREFIX`]. The encoder puts each back where it
//! came from (a carried signature with no part after it becomes an empty signed text
//! part, the shape Gemini itself sends). The prefixes also tell Gemini's signatures from
//! Anthropic's, which Gemini cannot decode (a 400): thinking from other providers is sent
//! as unsigned thought text, redacted (Anthropic-encrypted) thinking is dropped. Function
//! calls of a model turn with no Gemini signature at all get
//! [`EncodeOptions::missing_signature`] (Google's documented placeholder by default).
//! `thinking` maps to `thinkingConfig`: a budget to `thinkingBudget` (capped at
//! [`MAX_THINKING_BUDGET`]) with `includeThoughts`, adaptive to `thinkingBudget: -1`,
//! disabled to the least thinking the model takes, unshown (a budget of 0; 128 for 2.5 Pro,
//! which cannot stop thinking; `low` from Gemini 3 on; nothing before 2.5, whose models do
//! not think). Without it, OpenAI `reasoning_effort` maps as Google's OpenAI layer does
//! (`none` the least, as for disabled, `low` 1024, `medium` 8192, `high` 24576). That is for Gemini 2.x; Gemini 3 on (by the version in the
//! model's name, and the `-latest` aliases) gets `thinkingLevel` instead, which Gemini 4
//! demands: a budget up to 2048 is `low`, up to 8192 `medium`, above `high`; adaptive
//! thinking is the level of an Anthropic client's `output_config.effort` (`xhigh` and `max`
//! as `high`), else no level (the model's own dynamic thinking); `reasoning_effort` is the level
//! of its name, `none` and `minimal` being `low` and `xhigh` `high` (levels every model
//! takes).
//!
//! **Responses.** The first candidate is read. `finishReason` `STOP` is `end_turn`, or
//! `tool_use` when the answer calls functions; `MAX_TOKENS` is `max_tokens`; the safety
//! family (`SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`, `IMAGE_*`)
//! is `refusal`, as is a prompt blocked before any candidate; a botched tool call
//! (`MALFORMED_FUNCTION_CALL`, `UNEXPECTED_TOOL_CALL`, `TOO_MANY_TOOL_CALLS`), a
//! conversation Gemini could not continue (`MISSING_THOUGHT_SIGNATURE`) and a malformed
//! answer (`MALFORMED_RESPONSE`) are errors; other reasons (`OTHER`, ...) end the turn. Gemini reports a matched
//! stop sequence as `STOP`. Usage: `promptTokenCount` includes cached tokens and canonical
//! input does not, so input is prompt + tool-use prompt (search results) - cached, cache
//! reads are `cachedContentTokenCount`, output is candidates + thoughts, reasoning is
//! `thoughtsTokenCount`. Server-side tool parts (`executableCode`, ...) have no canonical
//! form and are skipped; generated images are image blocks.
//!
//! **Errors.** See [`decode_error`] and [`retry_delay`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod carry;
mod config;
mod error;
mod grounding;
mod provider;
mod request;
mod response;
mod schema;
mod stream;

pub use carry::{NEXT_PART_SIGNATURE_PREFIX, SKIP_SIGNATURE_VALIDATOR, THOUGHT_SIGNATURE_PREFIX};
pub use config::MAX_THINKING_BUDGET;
pub use error::{decode_error, retry_delay};
pub use provider::{GeminiConfig, GeminiProvider, API_VERSION, DEFAULT_BASE_URL, EMBED_BATCH};
pub use request::{encode_request, EncodeOptions, SchemaMode};
pub use response::{decode_response, keep_one_call};
pub use stream::StreamDecoder;
