//! Log output: the per-request JSON line written directly, and stderr writes gathered per
//! runtime thread.
//!
//! Formatting the request line through `tracing`'s JSON layer (field visitors, a
//! `serde_json` map, a timestamp through `fmt`) and writing each line with its own
//! `write(2)` cost about an eighth of the gateway's CPU under load. When the process logs
//! JSON, the request line is written here instead, in exactly the layer's shape (same
//! keys, same order, same number and timestamp formats); the `WEIR_LOG` filter still
//! decides whether it is written.
//!
//! Every log line, from here or from `tracing`, goes through [`Writer`]. On a thread that
//! called [`gather_on_this_thread`] (the runtime threads) lines gather in a buffer written
//! out when the thread's runtime goes idle ([`flush`], from the runtime's park hook), when
//! the buffer passes 32 KiB, when a line comes and the first is 100 ms old, and when the
//! thread's runtime ends ([`stop_gathering`]); written in whole lines of at most 4 KiB per
//! `write(2)`, so a pipe shared with other processes never tears a line. Lines keep their
//! order within a thread; elsewhere lines are written at once. (A thread busy with one long
//! piece of work, such as decoding a very large request, holds its lines until done.)

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_model::json_writer::JsonWriter;

/// Whether the process logs JSON lines (set once at startup).
static JSON: AtomicBool = AtomicBool::new(false);

/// Gathered bytes past which they are written out.
const FLUSH_BYTES: usize = 32 * 1024;
/// Age of the first gathered line past which they are written out.
const FLUSH_AGE: Duration = Duration::from_millis(100);

thread_local! {
    static GATHER: RefCell<Gathered> = const {
        RefCell::new(Gathered { on: false, bytes: Vec::new(), since: None })
    };
}

struct Gathered {
    on: bool,
    bytes: Vec<u8>,
    /// When the first line now gathered was written.
    since: Option<SystemTime>,
}

/// Says whether the process logs JSON lines, so the request line can be written
/// directly in the JSON layer's shape.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

pub(crate) fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Gathers this thread's log lines until [`flush`] (or a size or age limit).
pub fn gather_on_this_thread() {
    GATHER.with(|g| g.borrow_mut().on = true);
}

/// Writes out this thread's gathered log lines and writes its later ones at once.
pub fn stop_gathering() {
    GATHER.with(|g| {
        if let Ok(mut g) = g.try_borrow_mut() {
            write_out(&mut g);
            g.on = false;
        }
    });
}

/// Writes out this thread's gathered log lines.
pub fn flush() {
    GATHER.with(|g| {
        if let Ok(mut g) = g.try_borrow_mut() {
            write_out(&mut g);
        }
    });
}

/// Most bytes one `write(2)` to a pipe puts in whole, never interleaved with another
/// process's writes (POSIX `PIPE_BUF` on Linux).
const PIPE_BUF: usize = 4096;

fn write_out(g: &mut Gathered) {
    if !g.bytes.is_empty() {
        let mut err = std::io::stderr().lock();
        for piece in whole_lines(&g.bytes, PIPE_BUF) {
            // A log line that cannot be written is dropped, as `tracing`'s writer does.
            let _ = err.write_all(piece);
        }
        g.bytes.clear();
    }
    g.since = None;
}

/// `bytes` (whole lines) cut into pieces of whole lines of at most `max` bytes each, so
/// a pipe shared with another process never gets a line torn by its writes; a longer line
/// is a piece of its own.
fn whole_lines(bytes: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            match memchr::memrchr(b'\n', &rest[..max]) {
                Some(nl) => nl + 1,
                None => memchr::memchr(b'\n', rest).map_or(rest.len(), |nl| nl + 1),
            }
        };
        let (piece, more) = rest.split_at(cut);
        rest = more;
        Some(piece)
    })
}

#[cfg(test)]
thread_local! {
    /// Where a test captures this thread's lines instead of stderr.
    static CAPTURE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Writes one or more whole log lines: gathered on a gathering thread, else at once.
fn write_lines(lines: &[u8], now: Option<SystemTime>) {
    #[cfg(test)]
    if CAPTURE
        .with(|c| c.borrow_mut().as_mut().map(|c| c.extend_from_slice(lines)))
        .is_some()
    {
        return;
    }
    let gathered = GATHER.with(|g| {
        // (Re-entered only if writing itself logged; that line is written at once.)
        let Ok(mut g) = g.try_borrow_mut() else {
            return false;
        };
        if !g.on {
            return false;
        }
        g.bytes.extend_from_slice(lines);
        let now = now.unwrap_or_else(SystemTime::now);
        let since = *g.since.get_or_insert(now);
        let old = now.duration_since(since).is_ok_and(|age| age >= FLUSH_AGE);
        if old || g.bytes.len() >= FLUSH_BYTES {
            write_out(&mut g);
        }
        true
    });
    if !gathered {
        let _ = std::io::stderr().lock().write_all(lines);
    }
}

/// Stderr for the `tracing` layer (`with_writer(|| Writer)`): lines from runtime threads
/// are gathered.
#[derive(Clone, Copy, Debug, Default)]
pub struct Writer;

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The layer writes each event whole, in one call.
        write_lines(buf, None);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The figures of one request's log line.
pub(crate) struct RequestLine<'a> {
    pub request_id: &'a str,
    pub key: &'a str,
    pub model: &'a str,
    pub provider: &'a str,
    pub upstream_model: &'a str,
    pub upstream_request_id: &'a str,
    pub status: u16,
    /// What went wrong, when something did: the error's kind for an error status, or how
    /// a stream ended badly after its 200 (as the ledger's `error_kind`).
    pub error_kind: Option<&'a str>,
    /// The answer's `x-weir-warning`, when it has one.
    pub warning: Option<&'a str>,
    /// Rounded to 0.1 ms.
    pub latency_ms: f64,
    /// Rounded to 0.1 ms; only for streams that sent something.
    pub ttft_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Writes the request line as `tracing`'s JSON layer would (flattened event, no span).
pub(crate) fn request_line(r: &RequestLine<'_>) {
    let now = SystemTime::now();
    let mut w = JsonWriter::with_capacity(320);
    w.begin_object();
    w.key("timestamp");
    w.raw(&timestamp(now));
    w.key("level");
    w.raw("\"INFO\"");
    w.key("message");
    w.raw("\"request\"");
    w.key("request_id");
    w.string(r.request_id);
    w.key("key");
    w.string(r.key);
    w.key("model");
    w.string(r.model);
    w.key("provider");
    w.string(r.provider);
    w.key("upstream_model");
    w.string(r.upstream_model);
    w.key("upstream_request_id");
    w.string(r.upstream_request_id);
    w.key("status");
    w.u64(u64::from(r.status));
    if let Some(k) = r.error_kind {
        w.key("error_kind");
        w.string(k);
    }
    if let Some(k) = r.warning {
        w.key("warning");
        w.string(k);
    }
    w.key("latency_ms");
    w.f64(r.latency_ms);
    if let Some(t) = r.ttft_ms {
        w.key("ttft_ms");
        w.f64(t);
    }
    w.key("input_tokens");
    w.u64(r.input_tokens);
    w.key("output_tokens");
    w.u64(r.output_tokens);
    w.key("target");
    w.raw("\"weir::request\"");
    w.end_object();
    let mut line = w.into_bytes();
    line.push(b'\n');
    write_lines(&line, Some(now));
}

/// `"2026-12-05T22:42:44.707376Z"`: UTC, microseconds, quoted (the layer's format).
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    let mut out = Vec::with_capacity(29);
    out.push(b'"');
    for (n, width, then) in [
        (y, 4, b'-'),
        (m, 2, b'-'),
        (day, 2, b'T'),
        (rem / 3600, 2, b':'),
        (rem / 60 % 60, 2, b':'),
        (rem % 60, 2, b'.'),
        (u64::from(d.subsec_micros()), 6, b'Z'),
    ] {
        digits(&mut out, n, width);
        out.push(then);
    }
    out.push(b'"');
    // Only ASCII digits and punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// `n` in decimal, zero-padded to `width` digits (more if it needs them).
fn digits(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let (mut n, mut i) = (n, buf.len());
    while n > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[i..]);
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The request line written directly is the one `tracing`'s JSON layer writes, as
    /// `weir serve` sets it up, but for the timestamp's value.
    #[test]
    fn the_request_line_is_the_json_layer_s() {
        use std::sync::{Arc, Mutex};
        let layer_out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let subscriber = || {
            let sink = layer_out.clone();
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
                .with_writer(move || Sink(sink.clone()))
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish()
        };
        let emit = |ttft: Option<Duration>| {
            let mut log = crate::http::RequestLog::default();
            log.request_id = "req_1".into();
            log.key = Some("alice".into());
            log.model = Some("m\"odel\n".into());
            log.provider = Some("anthropic".into());
            log.upstream_request_id = ttft.map(|_| "req_upstream\"1".into());
            log.emit(200, ttft, Some(12), None);
        };
        for ttft in [None, Some(Duration::from_micros(1_234_567))] {
            layer_out.lock().unwrap().clear();
            let direct = tracing::subscriber::with_default(subscriber(), || {
                set_json(false);
                emit(ttft);
                set_json(true);
                CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
                emit(ttft);
                set_json(false);
                CAPTURE.with(|c| c.borrow_mut().take()).unwrap()
            });
            let layer = String::from_utf8(layer_out.lock().unwrap().clone()).unwrap();
            let direct = String::from_utf8(direct).unwrap();
            let (lt, lrest) = layer.split_at(layer.find(",\"level\"").unwrap());
            let (dt, drest) = direct.split_at(direct.find(",\"level\"").unwrap());
            assert_eq!(drest, lrest);
            assert_eq!(dt.len(), lt.len(), "{dt} vs {lt}");
            assert!(
                lt.starts_with("{\"timestamp\":\"20") && lt.ends_with("Z\""),
                "{lt}"
            );
            assert!(
                dt.starts_with("{\"timestamp\":\"20") && dt.ends_with("Z\""),
                "{dt}"
            );
            assert!(direct.ends_with('\n') && direct.matches('\n').count() == 1);
        }
        // Filtered out, the line is not written.
        let quiet = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,weir::request=warn",
            ))
            .finish();
        let written = tracing::subscriber::with_default(quiet, || {
            set_json(true);
            CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
            emit(None);
            set_json(false);
            CAPTURE.with(|c| c.borrow_mut().take()).unwrap()
        });
        assert!(written.is_empty());
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_gather_until_flushed_or_old() {
        gather_on_this_thread();
        let t0 = SystemTime::now();
        GATHER.with(|g| {
            let mut g = g.borrow_mut();
            g.bytes.clear();
            g.since = None;
        });
        // (Gathering is checked without the test capture.)
        let gathered = |f: &dyn Fn()| {
            f();
            GATHER.with(|g| g.borrow().bytes.len())
        };
        assert_eq!(gathered(&|| write_lines(b"a\n", Some(t0))), 2);
        assert_eq!(
            gathered(&|| write_lines(b"b\n", Some(t0 + FLUSH_AGE / 2))),
            4
        );
        // The first line is now old: all go out.
        assert_eq!(gathered(&|| write_lines(b"c\n", Some(t0 + FLUSH_AGE))), 0);
        assert_eq!(gathered(&|| write_lines(b"d\n", Some(t0 + FLUSH_AGE))), 2);
        assert_eq!(gathered(&flush), 0);
        let big = vec![b'x'; FLUSH_BYTES];
        assert_eq!(gathered(&|| write_lines(&big, Some(t0))), 0);
        stop_gathering();
        assert_eq!(gathered(&|| write_lines(b"e\n", Some(t0))), 0);
    }

    #[test]
    fn gathered_lines_go_out_in_whole_lines_of_at_most_a_pipe_s_atomic_write() {
        let line = |n: usize| format!("{}\n", "x".repeat(n - 1));
        let text = [
            line(1000),
            line(2000),
            line(1500),
            line(5000),
            line(10),
            line(4096),
        ]
        .concat();
        let pieces: Vec<&[u8]> = whole_lines(text.as_bytes(), 4096).collect();
        let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [3000, 1500, 5000, 10, 4096]);
        assert!(pieces.iter().all(|p| p.ends_with(b"\n")));
        assert_eq!(pieces.concat(), text.as_bytes());
        assert_eq!(whole_lines(b"", 4096).count(), 0);
    }

    #[test]
    fn dates_are_the_calendar_s() {
        for (days, want) in [
            (0, (1970, 1, 1)),
            (59, (1970, 3, 1)),
            (10_957, (2000, 1, 1)),
            (11_017, (2000, 3, 1)),
            (11_016, (2000, 2, 29)),
            (20_792, (2026, 12, 5)),
            (20_513, (2026, 3, 1)),
            (47_540, (2100, 2, 28)),
            (47_541, (2100, 3, 1)),
        ] {
            assert_eq!(civil_from_days(days), want, "{days}");
        }
        let t = UNIX_EPOCH + Duration::new(1_796_510_564, 707_376_999);
        assert_eq!(timestamp(t), "\"2026-12-05T22:42:44.707376Z\"");
        let t = UNIX_EPOCH + Duration::new(1_796_428_800 + 3 * 3600 + 4 * 60 + 5, 6_000);
        assert_eq!(timestamp(t), "\"2026-12-05T03:04:05.000006Z\"");
        assert_eq!(timestamp(UNIX_EPOCH), "\"1970-01-01T00:00:00.000000Z\"");
    }
}
