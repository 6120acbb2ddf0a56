use std::fmt;
use std::sync::Arc;

use memchr::{memchr, memchr2};

use crate::event::Event;

#[cfg(test)]
mod tests;

/// The UTF-8 byte order mark, stripped once at the start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Event names up to this length are interned; longer ones are rare and not
/// worth keeping alive.
const NAME_CACHE_MAX_LEN: usize = 64;
/// Providers use a handful of event names; eight covers every stream seen so
/// far while keeping the linear lookup trivially cheap.
const NAME_CACHE_SLOTS: usize = 8;

/// Buffers that grew past this are freed rather than kept for the next stream.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Upper bounds on what a [`Decoder`] buffers, so that a hostile or broken
/// upstream cannot make it grow without bound.
///
/// The defaults are far above anything a chat-completion stream sends (lines
/// are one JSON object of at most a few kilobytes) yet low enough that a
/// stream missing its line terminators fails fast instead of eating memory.
/// Data lines carrying whole base64 images (image-generation streams) can be
/// larger than a mebibyte: raise `max_line_bytes` for those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line accepted, in bytes, not counting its terminator.
    /// Default: 1 MiB.
    pub max_line_bytes: usize,
    /// Largest data of one event accepted, in bytes: its `data:` values plus
    /// the `'\n'` joining them. Default: 16 MiB, which leaves room for events
    /// that split a large payload over many `data:` lines.
    pub max_event_bytes: usize,
}

impl Limits {
    /// Default for [`Limits::max_line_bytes`]: 1 MiB.
    pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
    /// Default for [`Limits::max_event_bytes`]: 16 MiB.
    pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 << 20;
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line_bytes: Limits::DEFAULT_MAX_LINE_BYTES,
            max_event_bytes: Limits::DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// Why a [`Decoder`] gave up on a stream.
///
/// Invalid UTF-8 is not an error: as the WHATWG standard requires, each
/// invalid sequence is replaced with U+FFFD.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// A line grew longer than [`Limits::max_line_bytes`] without ending.
    LineTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// An event's data grew larger than [`Limits::max_event_bytes`].
    EventTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::LineTooLong { limit } => {
                write!(f, "server-sent events line longer than {limit} bytes")
            }
            SseError::EventTooLarge { limit } => {
                write!(f, "server-sent event data larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for SseError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bom {
    /// Still at the start of the stream; this many bytes of a BOM were seen.
    Expecting(u8),
    Done,
}

/// Incremental decoder for one `text/event-stream` body at a time.
///
/// Feed it the body's bytes in whatever chunks the transport delivers; each
/// complete event is appended to the caller's vector. Lines end with CRLF, LF
/// or a lone CR, also when a CRLF pair is split between two chunks. Complete
/// lines are parsed in place; only a partial line at the end of a chunk is
/// copied, and an event's strings are built once, when it is dispatched.
///
/// After [`feed`](Decoder::feed) returns an error the decoder is poisoned:
/// further calls return the same error without looking at their input, and the
/// caller should drop the stream. [`finish`](Decoder::finish) clears it.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    bom: Bom,
    /// A partial line carried over from the previous chunk; never holds a line
    /// terminator.
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF starting the next chunk belongs to
    /// that same line ending.
    pending_cr: bool,
    /// The data lines of the current event joined with '\n' (WHATWG's data
    /// buffer minus its final '\n', which dispatch would strip anyway).
    data: Vec<u8>,
    /// Whether the current event has a data line at all; `data` alone cannot
    /// tell, since `data:` with an empty value must still dispatch.
    has_data: bool,
    event_type: Vec<u8>,
    /// A valid `retry:` field in the current block of lines.
    block_retry: Option<u64>,
    /// A field line was seen since the last blank line; used by `finish` to
    /// report a truncated stream.
    in_block: bool,
    /// WHATWG's "last event ID buffer": set by `id:` lines.
    id_buffer: Option<Arc<str>>,
    /// WHATWG's "last event ID string": the buffer as of the last blank line.
    last_event_id: Option<Arc<str>>,
    retry: Option<u64>,
    names: NameCache,
    failed: Option<SseError>,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the default [`Limits`].
    pub fn new() -> Decoder {
        Decoder::with_limits(Limits::default())
    }

    /// A decoder with the given limits.
    pub fn with_limits(limits: Limits) -> Decoder {
        Decoder {
            limits,
            bom: Bom::Expecting(0),
            line: Vec::new(),
            pending_cr: false,
            data: Vec::new(),
            has_data: false,
            event_type: Vec::new(),
            block_retry: None,
            in_block: false,
            id_buffer: None,
            last_event_id: None,
            retry: None,
            names: NameCache::default(),
            failed: None,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Feeds the next chunk of the stream (any size, split anywhere); every
    /// event completed by it is appended to `out`.
    ///
    /// On error, events completed before the offending line are already in
    /// `out`; the decoder is then poisoned (see [`Decoder`]).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.feed_chunk(chunk, out);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// Ends the stream and makes the decoder ready for the next one (a
    /// reconnection): the stream's last event id and retry time are kept,
    /// everything else is reset.
    ///
    /// As the WHATWG standard requires, an event not terminated by a blank
    /// line is discarded. Returns `true` if anything was discarded — an
    /// unterminated line or field lines not followed by a blank line — or if
    /// the decoder was poisoned, so callers can report a truncated stream.
    pub fn finish(&mut self) -> bool {
        let discarded = !self.line.is_empty()
            || self.in_block
            || matches!(self.bom, Bom::Expecting(seen) if seen > 0)
            || self.failed.is_some();
        self.bom = Bom::Expecting(0);
        clear_buffer(&mut self.line);
        self.pending_cr = false;
        clear_buffer(&mut self.data);
        self.has_data = false;
        clear_buffer(&mut self.event_type);
        self.block_retry = None;
        self.in_block = false;
        // An `id:` of the discarded event never took effect (browsers start
        // the next connection's parser from the last dispatched id).
        self.id_buffer.clone_from(&self.last_event_id);
        self.failed = None;
        discarded
    }

    /// Whether the decoder sits between two events: past the stream's start (its byte
    /// order mark handled), nothing of a line or an event buffered, not poisoned. Bytes
    /// that begin here may be read as whole events by other means (a caller recognising
    /// an exact event shape) and the rest fed afterwards, without the decoder's state going
    /// wrong. Events read that way do not change the last event id: they had no `id:`.
    pub fn at_event_boundary(&self) -> bool {
        self.bom == Bom::Done
            && self.line.is_empty()
            && !self.pending_cr
            && !self.in_block
            && !self.has_data
            && self.data.is_empty()
            && self.event_type.is_empty()
            && self.block_retry.is_none()
            && self.failed.is_none()
    }

    /// The stream's last event id as of its last blank line (what a client
    /// sends as `Last-Event-ID` when reconnecting), or `None` if never set.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The reconnection time, in milliseconds, most recently set by a valid
    /// `retry:` field, if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    fn feed_chunk(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        let mut chunk = chunk;
        if let Bom::Expecting(seen) = self.bom {
            chunk = self.skip_bom(seen, chunk)?;
        }
        if chunk.is_empty() {
            return Ok(());
        }
        if std::mem::take(&mut self.pending_cr) && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }

        let mut start = 0;
        if !self.line.is_empty() {
            let Some(end) = memchr2(b'\n', b'\r', chunk) else {
                return self.carry(chunk);
            };
            self.carry(&chunk[..end])?;
            let line = std::mem::take(&mut self.line);
            let result = self.process_line(&line, out);
            self.line = line;
            self.line.clear();
            result?;
            start = self.line_end(chunk, end);
        }

        let consumed = self.lines(&chunk[start..], out)?;
        self.carry(&chunk[start + consumed..])
    }

    /// Consumes as much of a BOM as `chunk` continues. Bytes that turn out
    /// not to be a BOM are ordinary content and go to the line buffer.
    fn skip_bom<'a>(&mut self, seen: u8, chunk: &'a [u8]) -> Result<&'a [u8], SseError> {
        let mut seen = usize::from(seen);
        let mut taken = 0;
        for (&byte, &expected) in chunk.iter().zip(&BOM[seen..]) {
            if byte != expected {
                self.bom = Bom::Done;
                self.carry(&BOM[..seen])?;
                return Ok(&chunk[taken..]);
            }
            seen += 1;
            taken += 1;
        }
        self.bom = match u8::try_from(seen) {
            Ok(seen) if usize::from(seen) < BOM.len() => Bom::Expecting(seen),
            _ => Bom::Done,
        };
        Ok(&chunk[taken..])
    }

    /// Processes the complete lines at the start of `chunk`; returns the
    /// offset just past the last line terminator.
    fn lines(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<usize, SseError> {
        let mut start = 0;
        while let Some(len) = memchr2(b'\n', b'\r', &chunk[start..]) {
            let end = start + len;
            self.complete_line(&chunk[start..end], out)?;
            start = self.line_end(chunk, end);
            // Every event ends in a blank line; spot it without another
            // search. A '\n' here cannot be the second half of a CRLF pair:
            // `line_end` consumed that.
            if chunk.get(start) == Some(&b'\n') {
                self.dispatch(out);
                start += 1;
            }
        }
        Ok(start)
    }

    /// Offset just past the line terminator at `end`.
    fn line_end(&mut self, chunk: &[u8], end: usize) -> usize {
        if chunk.get(end) != Some(&b'\r') {
            return end + 1;
        }
        match chunk.get(end + 1) {
            Some(b'\n') => end + 2,
            Some(_) => end + 1,
            None => {
                self.pending_cr = true;
                end + 1
            }
        }
    }

    fn complete_line(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        if line.len() > self.limits.max_line_bytes {
            return Err(SseError::LineTooLong {
                limit: self.limits.max_line_bytes,
            });
        }
        self.process_line(line, out)
    }

    /// Appends an unterminated piece of a line to the carry-over buffer.
    fn carry(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.line.len() + bytes.len() > self.limits.max_line_bytes {
            return Err(SseError::LineTooLong {
                limit: self.limits.max_line_bytes,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        // Nearly every line of a real stream is one of these two: matching
        // their prefixes directly skips the search for the colon.
        if let Some(value) = line.strip_prefix(b"data:") {
            self.in_block = true;
            return self.append_data(value.strip_prefix(b" ").unwrap_or(value));
        }
        if let Some(value) = line.strip_prefix(b"event:") {
            self.in_block = true;
            self.set_event_type(value.strip_prefix(b" ").unwrap_or(value));
            return Ok(());
        }
        let (name, value) = match memchr(b':', line) {
            None if line.is_empty() => {
                self.dispatch(out);
                return Ok(());
            }
            None => (line, &[][..]),
            // A comment.
            Some(0) => return Ok(()),
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
        };
        self.in_block = true;
        match name {
            b"data" => self.append_data(value)?,
            b"event" => self.set_event_type(value),
            b"id" => self.set_id(value),
            b"retry" => {
                if let Some(ms) = parse_retry(value) {
                    self.retry = Some(ms);
                    self.block_retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn append_data(&mut self, value: &[u8]) -> Result<(), SseError> {
        let separator = usize::from(self.has_data);
        if self.data.len() + separator + value.len() > self.limits.max_event_bytes {
            return Err(SseError::EventTooLarge {
                limit: self.limits.max_event_bytes,
            });
        }
        if self.has_data {
            self.data.push(b'\n');
            self.data.extend_from_slice(value);
        } else {
            // The usual single data line: one exact allocation, which
            // `dispatch` hands to the event as is.
            self.data = value.to_vec();
            self.has_data = true;
        }
        Ok(())
    }

    fn set_event_type(&mut self, value: &[u8]) {
        self.event_type.clear();
        self.event_type.extend_from_slice(value);
    }

    fn set_id(&mut self, value: &[u8]) {
        if memchr(0, value).is_some() {
            return;
        }
        if self.id_buffer.as_deref().map(str::as_bytes) != Some(value) {
            self.id_buffer = Some(Arc::from(String::from_utf8_lossy(value)));
        }
    }

    /// A blank line: WHATWG's "dispatch the event".
    fn dispatch(&mut self, out: &mut Vec<Event>) {
        self.in_block = false;
        self.last_event_id.clone_from(&self.id_buffer);
        let retry = self.block_retry.take();
        if !self.has_data {
            self.event_type.clear();
            return;
        }
        self.has_data = false;
        // Taking the buffer hands its allocation to the event's string: the
        // data is copied once, from the chunk into that buffer.
        let data = match String::from_utf8(std::mem::take(&mut self.data)) {
            Ok(data) => data,
            Err(invalid) => String::from_utf8_lossy(invalid.as_bytes()).into_owned(),
        };
        let name = self.take_event_name();
        out.push(Event::from_parts(
            name,
            data,
            self.last_event_id.clone(),
            retry,
        ));
    }

    fn take_event_name(&mut self) -> Option<Arc<str>> {
        if self.event_type.is_empty() {
            return None;
        }
        let name = self.names.get(&self.event_type);
        self.event_type.clear();
        Some(name)
    }
}

thread_local! {
    /// The event names of the Messages API's streams, allocated once per thread rather
    /// than once per stream.
    static WELL_KNOWN_NAMES: [Arc<str>; 8] = [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    ]
    .map(Arc::from);
}

/// Interns event names, so that a stream of a million `content_block_delta`
/// events allocates that name once.
#[derive(Debug, Clone, Default)]
struct NameCache {
    names: Vec<Arc<str>>,
    /// Where the last lookup hit: streams tend to repeat one name in runs.
    last_hit: usize,
    /// The slot to overwrite once all are taken.
    next_victim: usize,
}

impl NameCache {
    fn get(&mut self, bytes: &[u8]) -> Arc<str> {
        if let Some(name) = self.names.get(self.last_hit) {
            if name.as_bytes() == bytes {
                return Arc::clone(name);
            }
        }
        if let Some(hit) = self.names.iter().position(|name| name.as_bytes() == bytes) {
            self.last_hit = hit;
            return Arc::clone(&self.names[hit]);
        }
        let name: Arc<str> = WELL_KNOWN_NAMES
            .with(|known| known.iter().find(|n| n.as_bytes() == bytes).cloned())
            .unwrap_or_else(|| Arc::from(String::from_utf8_lossy(bytes)));
        if bytes.len() <= NAME_CACHE_MAX_LEN {
            if self.names.len() < NAME_CACHE_SLOTS {
                self.last_hit = self.names.len();
                self.names.push(Arc::clone(&name));
            } else {
                self.last_hit = self.next_victim;
                self.names[self.next_victim] = Arc::clone(&name);
                self.next_victim = (self.next_victim + 1) % NAME_CACHE_SLOTS;
            }
        }
        name
    }
}

/// A `retry:` value counts only if it is all ASCII digits; one too large for
/// a `u64` (some 584 million years) is ignored like any other invalid value.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |ms, &byte| {
        if byte.is_ascii_digit() {
            ms.checked_mul(10)?.checked_add(u64::from(byte - b'0'))
        } else {
            None
        }
    })
}

fn clear_buffer(buffer: &mut Vec<u8>) {
    if buffer.capacity() > KEEP_CAPACITY {
        *buffer = Vec::new();
    } else {
        buffer.clear();
    }
}
