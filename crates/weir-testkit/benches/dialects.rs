//! Dialect codec benchmarks: a 100 KB Claude Code request decoded and re-encoded, and
//! streams translated between dialects (SSE decoding included), in input bytes per second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The gateway binary runs on mimalloc; measure the codecs with the allocator they run on.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use weir_testkit::{anthropic_stream, claude_code_request, openai_stream};

fn requests(c: &mut Criterion) {
    let body = claude_code_request(100_000);
    let mut g = c.benchmark_group("request_100k");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("anthropic_decode_encode", |b| {
        b.iter(|| {
            let req = weir_anthropic::decode_request(black_box(&body)).unwrap();
            weir_anthropic::encode_request(&req, &Default::default()).unwrap()
        })
    });
    g.bench_function("anthropic_to_openai", |b| {
        b.iter(|| {
            let req = weir_anthropic::decode_request(black_box(&body)).unwrap();
            weir_openai::encode_request(&req, &Default::default()).unwrap()
        })
    });
    g.finish();
}

fn translate(input: &[u8], mut step: impl FnMut(weir_sse::Event, &mut Vec<u8>)) -> Vec<u8> {
    let mut sse = weir_sse::Decoder::new();
    let mut events = Vec::new();
    let mut out = Vec::with_capacity(input.len() * 2);
    for chunk in input.chunks(16 * 1024) {
        sse.feed(chunk, &mut events).unwrap();
        for ev in events.drain(..) {
            step(ev, &mut out);
        }
    }
    out
}

fn streams(c: &mut Criterion) {
    let a = anthropic_stream(4000);
    let o = openai_stream(4000);
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Bytes(a.len() as u64));
    g.bench_function("anthropic_to_openai", |b| {
        b.iter(|| {
            let mut dec = weir_anthropic::StreamDecoder::new();
            let mut enc = weir_openai::StreamEncoder::new(weir_openai::StreamEncodeOptions {
                include_usage: true,
                created: Some(0),
            });
            translate(black_box(&a), |ev, out| {
                enc.encode(&dec.decode(ev).unwrap(), out).unwrap()
            })
        })
    });
    g.bench_function("anthropic_to_anthropic", |b| {
        b.iter(|| {
            let mut dec = weir_anthropic::StreamDecoder::new();
            let mut enc = weir_anthropic::StreamEncoder::new();
            translate(black_box(&a), |ev, out| {
                enc.encode(&dec.decode(ev).unwrap(), out).unwrap()
            })
        })
    });
    g.throughput(Throughput::Bytes(o.len() as u64));
    g.bench_function("openai_to_anthropic", |b| {
        b.iter(|| {
            let mut dec = weir_openai::StreamDecoder::new();
            let mut enc = weir_anthropic::StreamEncoder::new();
            translate(black_box(&o), |ev, out| {
                enc.encode(&dec.decode(ev).unwrap(), out).unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, requests, streams);
criterion_main!(benches);
