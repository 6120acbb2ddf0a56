//! One provider call, the part every HTTP provider shares: POST, classify a failure in
//! the dialect's error shape (with the keys scrubbed), then a whole or streamed answer.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use weir_model::{
    ApiError, CallContext, ChatResponse, ErrorKind, KeyReport, ProviderError, Reply, Secret,
    WireError,
};

use crate::{
    read_body, read_error_body, scrub, sse_frames, status_error, FrameDecoder, Timeouts, Upstream,
};

/// Settings every HTTP provider has; `E` is its dialect's encoding options.
#[derive(Clone, Debug)]
pub struct HttpProviderConfig<E> {
    /// The provider's id (its config table name).
    pub id: String,
    /// Where the API lives; the provider appends its endpoint path.
    pub base_url: String,
    /// API keys, used in turn.
    pub keys: Vec<Secret>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Request encoding options.
    pub encode: E,
}

/// A provider's keys, used in turn (the router may pick one instead, in `CallContext`).
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<Secret>,
    next: AtomicUsize,
}

impl KeyRing {
    /// A ring over `keys`.
    pub fn new(keys: Vec<Secret>) -> Self {
        KeyRing {
            keys,
            next: AtomicUsize::new(0),
        }
    }

    /// The key for a call: the router's choice, else the next in turn.
    pub fn pick<'a>(&'a self, cx: &'a CallContext) -> Option<&'a Secret> {
        if let Some(k) = &cx.key {
            return Some(k);
        }
        if self.keys.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.keys.len();
        self.keys.get(i)
    }

    /// Every key, to scrub from upstream messages.
    pub fn all(&self) -> &[Secret] {
        &self.keys
    }
}

/// Sets a header holding a secret (marked sensitive, so it is never logged by hyper).
pub fn secret_header(
    h: &mut HeaderMap,
    name: HeaderName,
    value: &str,
) -> Result<(), ProviderError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        ProviderError::new(
            ErrorKind::Internal,
            "the provider's key is not a valid header value",
        )
    })?;
    v.set_sensitive(true);
    h.insert(name, v);
    Ok(())
}

/// What a dialect contributes to a call.
pub struct Dialect<D> {
    /// Which dialect it is.
    pub dialect: weir_model::Dialect,
    /// Decodes an error body.
    pub decode_error: fn(u16, &[u8]) -> ApiError,
    /// Decodes a whole response.
    pub decode_response: fn(&[u8]) -> Result<ChatResponse, WireError>,
    /// Decodes only what the gateway accounts by (id, model, usage), checking the body is
    /// a response of the dialect: for clients of the same dialect, which get the body
    /// verbatim.
    pub decode_summary: fn(&[u8]) -> Result<ChatResponse, WireError>,
    /// Makes a stream decoder.
    pub stream_decoder: fn() -> D,
}

/// POSTs `body` and turns the answer into a [`Reply`].
#[allow(clippy::too_many_arguments)]
pub async fn call<D: FrameDecoder>(
    upstream: &Upstream,
    to: &crate::Endpoint,
    headers: HeaderMap,
    body: Vec<u8>,
    timeouts: &Timeouts,
    stream: bool,
    secrets: &[&Secret],
    dialect: Dialect<D>,
    report: &KeyReport,
    client: Option<weir_model::Dialect>,
) -> Result<Reply, ProviderError> {
    let mut resp = upstream
        .send(to, headers, body, timeouts)
        .await
        .map_err(|e| crate::for_whole_answer(e, stream))?;
    let status = resp.status();
    if status.is_success() {
        // An error's own wait is in its `retry_after`.
        report_limits(resp.headers(), report);
    }
    if !status.is_success() {
        let headers = resp.headers().clone();
        let body = read_error_body(&mut resp).await;
        let err = status_error(status, &headers, &body, dialect.decode_error);
        return Err(scrubbed(err, secrets));
    }
    // The client speaks the upstream's dialect: its bytes can go to the client as they are.
    let verbatim = client == Some(dialect.dialect);
    if stream && is_whole_json(resp.headers()) {
        // A stream was asked for and a sized JSON body came: an error body (some
        // services answer a failure so), or an answer in the wrong shape.
        let body = read_body(&mut resp).await?;
        if let Some(err) = error_in_success(&body, dialect.decode_error) {
            return Err(scrubbed(err, secrets));
        }
        return Err(ProviderError::new(
            ErrorKind::Decode,
            "the upstream answered a streamed request with a JSON body, not a stream",
        ));
    }
    if stream {
        let decoder = (dialect.stream_decoder)();
        let frames = if verbatim {
            crate::stream::sse_frames_relayed(resp, timeouts.idle, decoder, dialect.dialect)
        } else {
            sse_frames(resp, timeouts.idle, decoder)
        };
        return Ok(Reply::Stream(crate::stream::scrub_stream(frames, secrets)));
    }
    let body = read_body(&mut resp).await?;
    let decode = if verbatim {
        dialect.decode_summary
    } else {
        dialect.decode_response
    };
    // An error body with a 200: decoders that read leniently (Anthropic's shape has few
    // required fields) could take it for an empty answer. (`"error"` is looked for in the
    // bytes first, so answers are not parsed twice.)
    if mentions_error(&body) {
        if let Some(err) = error_in_success(&body, dialect.decode_error) {
            return Err(scrubbed(err, secrets));
        }
    }
    let mut r = decode(&body).map_err(|e| {
        // Some services answer a failure with 200 and an error body: its message is what
        // the client needs, as a 502 (the upstream failed).
        if let Some(err) = error_in_success(&body, dialect.decode_error) {
            return scrubbed(err, secrets);
        }
        // (serde's message may quote a value of the body: a key echoed there.)
        scrubbed(
            ProviderError::new(
                ErrorKind::Decode,
                format!("the upstream's response could not be decoded: {e}"),
            ),
            secrets,
        )
    })?;
    if verbatim {
        r.raw = Some(body);
    }
    Ok(Reply::Complete(Box::new(r)))
}

/// `err` with every secret taken out of its messages.
fn scrubbed(mut err: ProviderError, secrets: &[&Secret]) -> ProviderError {
    for s in secrets {
        scrub(&mut err, s.expose());
    }
    err
}

/// Whether `body` has `"error"` in it: only such an answer can be an error body. (The
/// searcher is built once; `memmem::find` would build one per call.)
/// The failure a whole answer with a success status reports, when it is an error body
/// (`{"error": ...}` with no answer beside it, or Anthropic's `{"type": "error", ...}`),
/// decoded with `decode_error`: for providers that read their answers themselves.
pub fn error_in_answer(
    body: &[u8],
    decode_error: fn(u16, &[u8]) -> ApiError,
) -> Option<ProviderError> {
    if mentions_error(body) {
        error_in_success(body, decode_error)
    } else {
        None
    }
}

fn mentions_error(body: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"error\""));
    FINDER.find(body).is_some()
}

/// Whether a response is a whole JSON body (`application/json` with a length), not a
/// stream.
fn is_whole_json(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::CONTENT_LENGTH)
        && headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// The failure a 200 answer that is an error body reports: `{"error": ...}` with no
/// answer beside it, or Anthropic's `{"type": "error", ...}`.
fn error_in_success(
    body: &[u8],
    decode_error: fn(u16, &[u8]) -> ApiError,
) -> Option<ProviderError> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    let error = v
        .get("error")
        .is_some_and(|e| e.is_object() || e.is_string());
    let typed_error = v.get("type").and_then(|t| t.as_str()) == Some("error");
    let answer = ["choices", "content", "candidates", "output"]
        .iter()
        .any(|k| v.get(*k).is_some_and(|c| !c.is_null()));
    if !error || (answer && !typed_error) {
        return None;
    }
    Some(status_error(
        http::StatusCode::BAD_GATEWAY,
        &HeaderMap::new(),
        body,
        decode_error,
    ))
}

/// POSTs `body` for a whole JSON answer that is not a chat response (embeddings): the
/// body of a success, or the failure classified like [`call`]'s.
#[allow(clippy::too_many_arguments)]
pub async fn post_json(
    upstream: &Upstream,
    to: &crate::Endpoint,
    headers: HeaderMap,
    body: Vec<u8>,
    timeouts: &Timeouts,
    secrets: &[&Secret],
    decode_error: fn(u16, &[u8]) -> ApiError,
    report: &KeyReport,
) -> Result<Vec<u8>, ProviderError> {
    let resp = upstream.send(to, headers, body, timeouts).await?;
    json_answer(resp, secrets, decode_error, report).await
}

/// POSTs a Responses API request and passes the answer through: a whole JSON response
/// (read for its usage), or, when `stream`, the upstream's SSE bytes as they come.
#[allow(clippy::too_many_arguments)]
pub async fn post_passthrough(
    upstream: &Upstream,
    to: &crate::Endpoint,
    headers: HeaderMap,
    body: Vec<u8>,
    timeouts: &Timeouts,
    stream: bool,
    secrets: &[&Secret],
    decode_error: fn(u16, &[u8]) -> ApiError,
    report: &KeyReport,
) -> Result<weir_model::ResponsesReply, ProviderError> {
    let resp = upstream
        .send(to, headers, body, timeouts)
        .await
        .map_err(|e| crate::for_whole_answer(e, stream))?;
    let undecodable = |what: &str| {
        ProviderError::new(
            ErrorKind::Decode,
            format!("the upstream's response could not be decoded: {what}"),
        )
    };
    if stream && resp.status().is_success() {
        let sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if !sse {
            if is_whole_json(resp.headers()) {
                let mut resp = resp;
                let body = read_body(&mut resp).await?;
                if let Some(err) = error_in_success(&body, decode_error) {
                    return Err(scrubbed(err, secrets));
                }
            }
            return Err(undecodable(
                "a streamed request was answered without a stream",
            ));
        }
        report_limits(resp.headers(), report);
        return Ok(weir_model::ResponsesReply::Stream(
            crate::stream::scrub_bytes(crate::byte_stream(resp, timeouts.idle), secrets),
        ));
    }
    let body = json_answer(resp, secrets, decode_error, report).await?;
    let text = std::str::from_utf8(&body).map_err(|_| undecodable("not UTF-8"))?;
    let (id, usage) = weir_model::responses::response_summary(text)
        .map_err(|e| scrubbed(undecodable(&e.to_string()), secrets))?;
    Ok(weir_model::ResponsesReply::Complete {
        body,
        id,
        usage: usage.unwrap_or_default(),
    })
}

/// GETs a JSON listing (`/v1/models`), as [`post_json`] posts.
pub async fn get_json(
    upstream: &Upstream,
    url: &crate::Url,
    headers: HeaderMap,
    timeouts: &Timeouts,
    secrets: &[&Secret],
    decode_error: fn(u16, &[u8]) -> ApiError,
) -> Result<Vec<u8>, ProviderError> {
    let resp = upstream.get(url, headers, timeouts).await?;
    json_answer(resp, secrets, decode_error, &KeyReport::default()).await
}

async fn json_answer(
    mut resp: crate::Response,
    secrets: &[&Secret],
    decode_error: fn(u16, &[u8]) -> ApiError,
    report: &KeyReport,
) -> Result<Vec<u8>, ProviderError> {
    let status = resp.status();
    if !status.is_success() {
        let headers = resp.headers().clone();
        let body = read_error_body(&mut resp).await;
        let err = status_error(status, &headers, &body, decode_error);
        return Err(scrubbed(err, secrets));
    }
    report_limits(resp.headers(), report);
    let body = read_body(&mut resp).await?;
    // (As for chat answers: an error body with a 200 is the upstream's failure.)
    if mentions_error(&body) {
        if let Some(err) = error_in_success(&body, decode_error) {
            return Err(scrubbed(err, secrets));
        }
    }
    Ok(body)
}

/// The ids of a model listing (`{"data": [{"id": ...}, ...]}`, OpenAI's and Anthropic's
/// shape); an entry without a string id is left out.
pub fn listed_ids(body: &[u8]) -> Result<Vec<String>, ProviderError> {
    #[derive(serde::Deserialize)]
    struct Listing {
        data: Vec<serde_json::Value>,
    }
    serde_json::from_slice::<Listing>(body)
        .map(|l| {
            l.data
                .into_iter()
                .filter_map(|e| match e.get("id") {
                    Some(serde_json::Value::String(id)) if !id.is_empty() => Some(id.clone()),
                    _ => None,
                })
                .collect()
        })
        .map_err(|e| {
            ProviderError::new(
                ErrorKind::Decode,
                format!("the upstream's model listing could not be read: {e}"),
            )
        })
}

/// Tells the router when the response's rate-limit headers say the key's limits are spent
/// (a 429's own wait is in its error; this is for answers that still succeeded), and the
/// upstream's id for the request.
pub fn report_limits(headers: &HeaderMap, report: &KeyReport) {
    if let Some(d) = crate::ratelimit::exhausted_for(headers, std::time::SystemTime::now()) {
        report.exhausted_for(d);
    }
    if let Some(id) = upstream_request_id(headers) {
        report.upstream_request_id(id);
    }
}

/// The upstream's id for a request, from the first of the headers providers name it in
/// (Anthropic's `request-id`; OpenAI's and most others' `x-request-id`; AWS's
/// `x-amzn-requestid`; Azure's `apim-request-id`), when it is short visible ASCII.
pub fn upstream_request_id(headers: &HeaderMap) -> Option<&str> {
    // One pass over the few headers an answer has (cheaper than four hashed lookups, on
    // every request), the first name in this order winning.
    const NAMES: [&str; 4] = [
        "request-id",
        "x-request-id",
        "x-amzn-requestid",
        "apim-request-id",
    ];
    let mut best: Option<(usize, &str)> = None;
    for (name, value) in headers {
        let Some(rank) = NAMES.iter().position(|n| *n == name.as_str()) else {
            continue;
        };
        if best.is_some_and(|(b, _)| b <= rank) {
            continue;
        }
        let Ok(v) = value.to_str() else { continue };
        let v = v.trim();
        if !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()) {
            best = Some((rank, v));
        }
    }
    best.map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_upstream_request_id_is_read_from_the_providers_headers() {
        let of = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            upstream_request_id(&h).map(str::to_owned)
        };
        assert_eq!(
            of(&[("request-id", "req_011CV")]).as_deref(),
            Some("req_011CV")
        );
        assert_eq!(
            of(&[("x-request-id", "abc"), ("request-id", "req_1")]).as_deref(),
            Some("req_1")
        );
        assert_eq!(
            of(&[("x-amzn-requestid", "a-b-c")]).as_deref(),
            Some("a-b-c")
        );
        assert_eq!(
            of(&[("request-id", "has space"), ("x-request-id", "ok")]).as_deref(),
            Some("ok")
        );
        assert_eq!(of(&[("request-id", &"x".repeat(300))]), None);
        assert_eq!(of(&[]), None);
        let report = KeyReport::new();
        report_limits(
            &[(
                http::header::HeaderName::from_static("request-id"),
                "req_9".parse().unwrap(),
            )]
            .into_iter()
            .collect(),
            &report,
        );
        assert_eq!(report.request_id().as_deref(), Some("req_9"));
    }

    #[test]
    fn listings_keep_every_entry_with_a_string_id() {
        let body = br#"{"object":"list","data":[{"id":"gpt-ok"},{"id":123},{"id":""},{"x":1},{"id":"b","created":1}]}"#;
        assert_eq!(listed_ids(body).unwrap(), ["gpt-ok", "b"]);
        assert!(listed_ids(b"{}").is_err());
        assert!(listed_ids(b"<html>").is_err());
    }
}
