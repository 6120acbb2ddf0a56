//! Relayed streams: for a client of the upstream's dialect the SSE reader passes plain
//! events on as their bytes instead of decoding and re-encoding their framing. Over every
//! recorded stream (fixtures, and `$WEIR_CORPUS` when set), cut into reads of many sizes,
//! relaying must give the same canonical events, and bytes that decode to the same SSE
//! events, as decoding everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weir_model::{Dialect, Frame, StreamEvent, WireError};
use weir_testkit::{corpus_dir, fixtures_dir, recorded_streams, sse_events};
use weir_upstream::{BodyDecoder, FrameDecoder, SseBody};

struct Anthropic(weir_anthropic::StreamDecoder);

impl FrameDecoder for Anthropic {
    fn decode(&mut self, event: weir_sse::Event) -> Result<Frame, WireError> {
        self.0.decode(event)
    }
    fn relay(&mut self, name: Option<&str>, data: &str, out: &mut Vec<StreamEvent>) -> bool {
        name.is_some_and(|n| self.0.relay(n, data, out))
    }
    fn finish(&mut self) -> Result<Option<Frame>, WireError> {
        self.0.finish()
    }
}

struct OpenAi(weir_openai::StreamDecoder);

impl FrameDecoder for OpenAi {
    fn decode(&mut self, event: weir_sse::Event) -> Result<Frame, WireError> {
        self.0.decode(event)
    }
    fn relay(&mut self, name: Option<&str>, data: &str, out: &mut Vec<StreamEvent>) -> bool {
        name.is_none() && self.0.relay(data, out)
    }
    fn finish(&mut self) -> Result<Option<Frame>, WireError> {
        let f = self.0.finish()?;
        Ok((!f.events.is_empty()).then_some(f))
    }
}

/// What a stream gives: its canonical events, the SSE events a same-dialect client
/// receives (name, data), and how many events went out relayed.
type Outcome = Result<(Vec<String>, Vec<(Option<String>, String)>), String>;

fn read<D: FrameDecoder>(
    decoder: D,
    relay: Option<Dialect>,
    body: &[u8],
    chunk: usize,
) -> (Outcome, usize) {
    let mut sse = SseBody::new(decoder);
    if let Some(d) = relay {
        sse = sse.relaying(d);
    }
    let mut frames = Vec::new();
    let mut result = Ok(());
    for c in body.chunks(chunk.max(1)) {
        result = sse.feed(c, &mut frames);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = sse.finish(&mut frames);
    }
    let mut written = Vec::new();
    let mut relayed = 0;
    for f in &frames {
        if let Some(src) = &f.source {
            if let Some(w) = &src.wire {
                relayed += sse_events(w).len();
            }
            src.write(&mut written).unwrap();
        }
    }
    let events = frames
        .iter()
        .flat_map(|f| &f.events)
        .map(|e| format!("{e:?}"))
        .collect();
    let client = sse_events(&written)
        .iter()
        .map(|e| (e.event().map(str::to_owned), e.data().to_owned()))
        .collect();
    (
        result.map(|()| (events, client)).map_err(|e| e.message),
        relayed,
    )
}

fn check(roots: &[std::path::PathBuf]) -> (usize, usize) {
    let (mut streams, mut relayed) = (0, 0);
    for root in roots {
        for x in recorded_streams(root, &["anthropic"]) {
            streams += 1;
            let (plain, _) = read(Anthropic(Default::default()), None, &x.body, x.body.len());
            for chunk in [x.body.len(), 1, 7, 64, 1000] {
                let (got, n) = read(
                    Anthropic(Default::default()),
                    Some(Dialect::Anthropic),
                    &x.body,
                    chunk,
                );
                assert_eq!(got, plain, "{} in reads of {chunk}", x.name);
                relayed += n;
            }
        }
        for x in recorded_streams(
            root,
            &[
                "openai",
                "groq",
                "openrouter",
                "xai",
                "deepseek",
                "cerebras",
                "mistral",
                "together",
                "zai",
            ],
        ) {
            streams += 1;
            let (plain, _) = read(OpenAi(Default::default()), None, &x.body, x.body.len());
            for chunk in [x.body.len(), 1, 7, 64, 1000] {
                let (got, n) = read(
                    OpenAi(Default::default()),
                    Some(Dialect::OpenAi),
                    &x.body,
                    chunk,
                );
                assert_eq!(got, plain, "{} in reads of {chunk}", x.name);
                relayed += n;
            }
        }
    }
    (streams, relayed)
}

#[test]
fn relaying_gives_the_same_events_and_bytes_as_decoding() {
    let (streams, relayed) = check(&[fixtures_dir()]);
    assert!(streams > 5, "{streams} recorded streams");
    // Not vacuous: most events of those streams went out relayed.
    assert!(relayed >= 20, "{relayed} events relayed");
}

#[test]
fn relaying_recorded_traffic_gives_the_same_events_and_bytes() {
    let Some(root) = corpus_dir() else { return };
    let (streams, relayed) = check(&[root]);
    println!("{streams} recorded streams, {relayed} events relayed");
    assert!(relayed > 0);
}

#[test]
fn odd_framing_is_never_relayed_but_still_read() {
    // CRLF, a comment, an id, a data line without its space, and an event split across
    // reads: all through the SSE decoder, with the same events as a plain stream.
    let delta = |i: u32, t: &str| {
        format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{t}{i}\"}}}}\n\n")
    };
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    let end = "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let plain = format!("{start}{}{}{end}", delta(1, "a"), delta(2, "b"));
    let odd = format!(
        "{start}: keep-alive\n{}{}id: 7\n{}event:content_block_delta\ndata:{{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"x\"}}}}\n\n{end}",
        delta(1, "a").replace('\n', "\r\n"),
        delta(2, "b"),
        delta(3, "c"),
    );
    for body in [plain, odd] {
        let (want, _) = read(
            Anthropic(Default::default()),
            None,
            body.as_bytes(),
            body.len(),
        );
        for chunk in [body.len(), 1, 5, 33] {
            let (got, _) = read(
                Anthropic(Default::default()),
                Some(Dialect::Anthropic),
                body.as_bytes(),
                chunk,
            );
            assert_eq!(got, want, "reads of {chunk}");
        }
    }
}

#[test]
fn a_stream_that_sets_an_event_id_is_not_relayed_after_it() {
    // The SSE encoder writes the id on every later event; relayed bytes would not carry it.
    let body = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\nid: 5\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (want, _) = read(
        Anthropic(Default::default()),
        None,
        body.as_bytes(),
        body.len(),
    );
    let (got, relayed) = read(
        Anthropic(Default::default()),
        Some(Dialect::Anthropic),
        body.as_bytes(),
        body.len(),
    );
    assert_eq!(relayed, 0);
    assert_eq!(got, want);
    // What the client receives carries the id.
    let mut sse = SseBody::new(Anthropic(Default::default())).relaying(Dialect::Anthropic);
    let mut frames = Vec::new();
    sse.feed(body.as_bytes(), &mut frames).unwrap();
    let mut out = Vec::new();
    for f in &frames {
        f.source.as_ref().unwrap().write(&mut out).unwrap();
    }
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("id: 5\ndata: {\"type\":\"message_stop\"}"),
        "{text}"
    );
}
