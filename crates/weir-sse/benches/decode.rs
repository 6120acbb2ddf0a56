//! Decoding throughput on a long, realistic Anthropic Messages stream.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_sse::{encode, Decoder, Event};

const WORDS: [&str; 16] = [
    " the",
    " model",
    " streams",
    " tokens",
    " quickly",
    ",",
    " and",
    " gateway",
    " forwards",
    " each",
    " delta",
    ".",
    " Paris",
    " weather",
    " is",
    " mild",
];

/// About 2 MiB of `content_block_delta` events with a few tokens of text
/// each, a `ping` now and then, and trailing-space padding on some lines, as
/// Anthropic sends them.
fn anthropic_stream(line_end: &str) -> Vec<u8> {
    let mut out = String::new();
    let mut seed: u32 = 0x2545_f491;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as usize
    };
    out.push_str(concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","#,
        r#""type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","#,
        r#""content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"#,
        r#""output_tokens":2}}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\n",
    ));
    let mut n = 0;
    while out.len() < 2 << 20 {
        n += 1;
        if n % 50 == 0 {
            out.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
        }
        let text: String = (0..1 + next() % 6)
            .map(|_| WORDS[next() % WORDS.len()])
            .collect();
        let padding = if n % 7 == 0 { "   " } else { "" };
        out.push_str("event: content_block_delta\ndata: ");
        out.push_str(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""#,
        );
        out.push_str(&text);
        out.push_str("\"}}");
        out.push_str(padding);
        out.push_str("\n\n");
    }
    out.push_str(concat!(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
        "\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ));
    out.replace('\n', line_end).into_bytes()
}

fn decode_in_chunks(stream: &[u8], chunk_size: usize, events: &mut Vec<Event>) {
    let mut decoder = Decoder::new();
    for chunk in stream.chunks(chunk_size) {
        if decoder.feed(chunk, events).is_err() {
            panic!("benchmark stream failed to decode");
        }
        // Callers hand events on as they arrive; keep the vector small.
        events.clear();
    }
    black_box(decoder.finish());
}

fn bench_decode(c: &mut Criterion) {
    let lf = anthropic_stream("\n");
    let crlf = anthropic_stream("\r\n");
    let mut group = c.benchmark_group("decode");
    let mut events = Vec::new();
    group.throughput(Throughput::Bytes(lf.len() as u64));
    group.bench_function("lf/16KiB-chunks", |b| {
        b.iter(|| decode_in_chunks(black_box(&lf), 16 * 1024, &mut events));
    });
    group.bench_function("lf/whole", |b| {
        b.iter(|| decode_in_chunks(black_box(&lf), lf.len(), &mut events));
    });
    group.bench_function("lf/1KiB-chunks", |b| {
        b.iter(|| decode_in_chunks(black_box(&lf), 1024, &mut events));
    });
    group.throughput(Throughput::Bytes(crlf.len() as u64));
    group.bench_function("crlf/16KiB-chunks", |b| {
        b.iter(|| decode_in_chunks(black_box(&crlf), 16 * 1024, &mut events));
    });
    group.finish();

    let mut decoded = Vec::new();
    let mut decoder = Decoder::new();
    if decoder.feed(&lf, &mut decoded).is_err() {
        panic!("benchmark stream failed to decode");
    }
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(lf.len() as u64));
    let mut wire = Vec::with_capacity(lf.len());
    group.bench_function("lf", |b| {
        b.iter(|| {
            wire.clear();
            for event in &decoded {
                if encode(black_box(event), &mut wire).is_err() {
                    panic!("benchmark event failed to encode");
                }
            }
            black_box(wire.len())
        });
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
