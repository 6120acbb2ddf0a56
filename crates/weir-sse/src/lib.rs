//! Incremental Server-Sent Events (SSE) framing for Weir.
//!
//! [`Decoder`] turns a byte stream, delivered in chunks split at arbitrary
//! points, into [`Event`]s exactly as the WHATWG HTML standard's "event stream
//! interpretation" prescribes; [`encode`] writes events back in a wire form
//! that any conforming decoder reads back unchanged. This crate only frames
//! text: it knows nothing about HTTP (content types, connections, reconnect
//! timers), nothing about JSON, and nothing about which provider sent a stream
//! or what its event names mean — `data` is an opaque string to it.
//!
//! ```
//! use weir_sse::{encode, Decoder, Event};
//!
//! let mut decoder = Decoder::new();
//! let mut events = Vec::new();
//! decoder.feed(b"event: ping\ndata: {\"type\"", &mut events)?;
//! decoder.feed(b": \"ping\"}\r\n\r\n", &mut events)?;
//! assert_eq!(events, [Event::new(r#"{"type": "ping"}"#).with_event("ping")]);
//! assert!(!decoder.finish());
//!
//! let mut wire = Vec::new();
//! encode(&events[0], &mut wire)?;
//! assert_eq!(wire, b"event: ping\ndata: {\"type\": \"ping\"}\n\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decoder;
mod encoder;
mod event;

pub use decoder::{Decoder, Limits, SseError};
pub use encoder::{encode, encode_comment, EncodeError};
pub use event::Event;
