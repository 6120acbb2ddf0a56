use super::*;

/// Feeds each chunk in turn; returns the events and the decoder.
fn feed_all(decoder: &mut Decoder, chunks: &[&[u8]]) -> Vec<Event> {
    let mut events = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk, &mut events).unwrap();
    }
    events
}

fn decode_chunks(chunks: &[&[u8]]) -> Vec<Event> {
    let mut decoder = Decoder::new();
    let events = feed_all(&mut decoder, chunks);
    assert!(!decoder.finish(), "stream should end on an event boundary");
    events
}

fn decode(input: &[u8]) -> Vec<Event> {
    decode_chunks(&[input])
}

fn small(max_line_bytes: usize, max_event_bytes: usize) -> Decoder {
    Decoder::with_limits(Limits {
        max_line_bytes,
        max_event_bytes,
    })
}

#[test]
fn bom_is_stripped() {
    assert_eq!(decode(b"\xEF\xBB\xBFdata: x\n\n"), [Event::new("x")]);
}

#[test]
fn bom_split_across_feeds() {
    let expected = [Event::new("x")];
    assert_eq!(
        decode_chunks(&[b"\xEF", b"\xBB", b"\xBF", b"data: x\n\n"]),
        expected
    );
    assert_eq!(
        decode_chunks(&[b"", b"\xEF\xBB", b"\xBFdata", b": x\n\n"]),
        expected
    );
}

#[test]
fn only_one_bom_is_stripped() {
    // The second BOM is part of the first line's field name, which is unknown.
    assert!(decode(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n").is_empty());
}

#[test]
fn bom_after_stream_start_is_content() {
    let events = decode_chunks(&[
        b"data: a\n\n",
        b"\xEF\xBB\xBFdata: b\n\ndata: \xEF\xBB\xBFc\n\n",
    ]);
    assert_eq!(events, [Event::new("a"), Event::new("\u{FEFF}c")]);
}

#[test]
fn partial_bom_is_content() {
    // EF BB without BF is an invalid sequence starting the first line, whose
    // field name is then "\u{FFFD}event": unknown, so ignored.
    let events = decode_chunks(&[b"\xEF", b"\xBB", b"event: x\n", b"data: y\n\n"]);
    assert_eq!(events, [Event::new("y")]);
    let events = decode(b"\xEF\xBBdata: a\n\ndata: b\n\n");
    assert_eq!(events, [Event::new("b")]);
    let mut decoder = Decoder::new();
    feed_all(&mut decoder, &[b"\xEF"]);
    assert!(
        decoder.finish(),
        "a lone EF at the end is a discarded partial line"
    );
}

#[test]
fn lf_line_endings() {
    assert_eq!(
        decode(b"event: a\ndata: 1\n\ndata: 2\n\n"),
        [Event::new("1").with_event("a"), Event::new("2")]
    );
}

#[test]
fn crlf_line_endings() {
    assert_eq!(
        decode(b"event: a\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n"),
        [Event::new("1").with_event("a"), Event::new("2")]
    );
}

#[test]
fn cr_line_endings() {
    assert_eq!(
        decode(b"event: a\rdata: 1\r\rdata: 2\r\r"),
        [Event::new("1").with_event("a"), Event::new("2")]
    );
}

#[test]
fn mixed_line_endings() {
    assert_eq!(
        decode(b"data: 1\rdata: 2\r\ndata: 3\n\r\n"),
        [Event::new("1\n2\n3")]
    );
}

#[test]
fn cr_at_chunk_end_then_lf_is_one_line_end() {
    // Were the LF a second line end, the blank line would dispatch "a" alone.
    let events = decode_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
    assert_eq!(events, [Event::new("a\nb")]);
    let events = decode_chunks(&[b"data: a\r", b"", b"\ndata: b\n\n"]);
    assert_eq!(events, [Event::new("a\nb")]);
}

#[test]
fn cr_cr_is_two_line_ends() {
    assert_eq!(
        decode(b"data: a\r\rdata: b\r\r"),
        [Event::new("a"), Event::new("b")]
    );
    let events = decode_chunks(&[b"data: a\r", b"\rdata: b\r", b"\r"]);
    assert_eq!(events, [Event::new("a"), Event::new("b")]);
}

#[test]
fn comments_are_ignored() {
    let events = decode(b": hello\n:\ndata: x\n: OPENROUTER PROCESSING\n\n: tail\n\n");
    assert_eq!(events, [Event::new("x")]);
}

#[test]
fn multi_line_data_is_joined() {
    assert_eq!(
        decode(b"data: a\ndata: b\ndata: c\n\n"),
        [Event::new("a\nb\nc")]
    );
}

#[test]
fn only_the_final_newline_is_stripped() {
    assert_eq!(decode(b"data: a\ndata:\n\n"), [Event::new("a\n")]);
    assert_eq!(decode(b"data\ndata\n\n"), [Event::new("\n")]);
}

#[test]
fn data_without_space() {
    assert_eq!(decode(b"data:x\n\n"), [Event::new("x")]);
}

#[test]
fn only_one_leading_space_is_removed() {
    assert_eq!(decode(b"data:  x\n\n"), [Event::new(" x")]);
    assert_eq!(
        decode(b"event:\tx\ndata:\ty\n\n"),
        [Event::new("\ty").with_event("\tx")]
    );
}

#[test]
fn trailing_spaces_are_kept() {
    assert_eq!(
        decode(b"data: {\"a\":1}   \n\n"),
        [Event::new("{\"a\":1}   ")]
    );
}

#[test]
fn value_may_contain_colons() {
    assert_eq!(decode(b"data: a: b:c\n\n"), [Event::new("a: b:c")]);
}

#[test]
fn field_without_colon() {
    // A bare `data` line appends an empty value, which still dispatches.
    assert_eq!(decode(b"data\n\n"), [Event::new("")]);
    // A bare `event` line sets the type to empty, i.e. back to "message".
    assert_eq!(decode(b"event: x\nevent\ndata: y\n\n"), [Event::new("y")]);
}

#[test]
fn field_names_are_case_sensitive() {
    assert!(decode(b"Data: x\nDATA: y\n\n").is_empty());
    assert_eq!(decode(b"Event: x\ndata: y\n\n"), [Event::new("y")]);
}

#[test]
fn empty_data_field_is_dispatched() {
    assert_eq!(decode(b"data:\n\n"), [Event::new("")]);
    assert_eq!(decode(b"data: \n\n"), [Event::new("")]);
}

#[test]
fn event_without_data_is_not_dispatched() {
    let events = decode(b"event: foo\n\nretry: 5\nid: 1\n\n\n\n");
    assert!(events.is_empty());
}

#[test]
fn event_type_is_reset_after_dispatch() {
    let events = decode(b"event: a\ndata: 1\n\ndata: 2\n\n");
    assert_eq!(events, [Event::new("1").with_event("a"), Event::new("2")]);
    assert_eq!(events[1].event_type(), "message");
}

#[test]
fn event_type_is_reset_by_a_blank_line_without_data() {
    assert_eq!(decode(b"event: a\n\ndata: 1\n\n"), [Event::new("1")]);
}

#[test]
fn last_event_type_line_wins() {
    assert_eq!(
        decode(b"event: a\nevent: b\ndata: 1\n\n"),
        [Event::new("1").with_event("b")]
    );
}

#[test]
fn id_is_set() {
    let mut decoder = Decoder::new();
    let events = feed_all(&mut decoder, &[b"id: 42\ndata: x\n\n"]);
    assert_eq!(events, [Event::new("x").with_id("42")]);
    assert_eq!(decoder.last_event_id(), Some("42"));
}

#[test]
fn id_with_nul_is_ignored() {
    let mut decoder = Decoder::new();
    let events = feed_all(&mut decoder, &[b"id: 1\n\nid: 2\0\ndata: x\n\n"]);
    assert_eq!(events, [Event::new("x").with_id("1")]);
    assert_eq!(decoder.last_event_id(), Some("1"));
}

#[test]
fn id_persists_across_events() {
    let events = decode(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\ndata: d\n\n");
    assert_eq!(
        events,
        [
            Event::new("a").with_id("1"),
            Event::new("b").with_id("1"),
            Event::new("c").with_id("2"),
            Event::new("d").with_id("2"),
        ]
    );
}

#[test]
fn empty_id_clears_it() {
    let mut decoder = Decoder::new();
    let events = feed_all(&mut decoder, &[b"id: 1\ndata: a\n\nid\ndata: b\n\n"]);
    assert_eq!(
        events,
        [Event::new("a").with_id("1"), Event::new("b").with_id("")]
    );
    assert_eq!(decoder.last_event_id(), Some(""));
}

#[test]
fn id_takes_effect_at_the_blank_line() {
    let mut decoder = Decoder::new();
    feed_all(&mut decoder, &[b"id: 1\n"]);
    assert_eq!(decoder.last_event_id(), None);
    // A blank line updates the last event id even though nothing dispatches.
    feed_all(&mut decoder, &[b"\n"]);
    assert_eq!(decoder.last_event_id(), Some("1"));
    let events = feed_all(&mut decoder, &[b"data: x\n\n"]);
    assert_eq!(events, [Event::new("x").with_id("1")]);
}

#[test]
fn id_of_a_discarded_event_never_takes_effect() {
    let mut decoder = Decoder::new();
    feed_all(&mut decoder, &[b"id: 1\ndata: a\n\nid: 2\ndata: b\n"]);
    assert!(decoder.finish());
    assert_eq!(decoder.last_event_id(), Some("1"));
    let events = feed_all(&mut decoder, &[b"data: c\n\n"]);
    assert_eq!(events, [Event::new("c").with_id("1")]);
}

#[test]
fn retry_digits_only() {
    let mut decoder = Decoder::new();
    let events = feed_all(&mut decoder, &[b"retry: 1500\ndata: a\n\n"]);
    assert_eq!(events, [Event::new("a").with_retry(1500)]);
    assert_eq!(decoder.retry(), Some(1500));
    for invalid in [
        &b"retry: 15a\n"[..],
        b"retry: -1\n",
        b"retry: 1.5\n",
        b"retry: \n",
        b"retry\n",
        b"retry:  10\n",
        b"retry: 10 \n",
        b"retry: 99999999999999999999999\n",
    ] {
        let events = feed_all(&mut decoder, &[invalid, b"data: b\n\n"]);
        assert_eq!(
            events,
            [Event::new("b")],
            "{:?}",
            String::from_utf8_lossy(invalid)
        );
        assert_eq!(decoder.retry(), Some(1500));
    }
    feed_all(&mut decoder, &[b"retry:0\n\n"]);
    assert_eq!(decoder.retry(), Some(0));
}

#[test]
fn retry_belongs_to_its_own_block() {
    let events = decode(b"retry: 7\ndata: a\n\ndata: b\n\nretry: 8\n\ndata: c\n\n");
    assert_eq!(
        events,
        [
            Event::new("a").with_retry(7),
            Event::new("b"),
            Event::new("c")
        ]
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let events = decode(b"foo: bar\ndata: x\nx-trace: 1\n\nbaz\n\n");
    assert_eq!(events, [Event::new("x")]);
}

#[test]
fn unterminated_last_event_is_discarded() {
    for tail in [
        &b"data: b\n"[..],
        b"data: b",
        b"event: x\n",
        b"id: 3\n",
        b": note",
    ] {
        let mut decoder = Decoder::new();
        let events = feed_all(&mut decoder, &[b"data: a\n\n", tail]);
        assert_eq!(events, [Event::new("a")]);
        assert!(decoder.finish(), "{:?}", String::from_utf8_lossy(tail));
    }
}

#[test]
fn finish_is_false_at_an_event_boundary() {
    for stream in [
        &b""[..],
        b"data: a\n\n",
        b"data: a\n\n: keepalive\n",
        b"data: a\r\r",
    ] {
        let mut decoder = Decoder::new();
        feed_all(&mut decoder, &[stream]);
        assert!(!decoder.finish(), "{:?}", String::from_utf8_lossy(stream));
    }
}

#[test]
fn finish_prepares_the_next_stream() {
    let mut decoder = Decoder::new();
    feed_all(
        &mut decoder,
        &[b"retry: 10\nid: 1\ndata: a\n\ndata: partial"],
    );
    assert!(decoder.finish());
    let events = feed_all(&mut decoder, &[b"\xEF\xBB\xBFdata: b\n\n"]);
    assert_eq!(events, [Event::new("b").with_id("1")]);
    assert_eq!(decoder.retry(), Some(10));
}

#[test]
fn line_too_long_error() {
    let error = SseError::LineTooLong { limit: 8 };
    // Within one chunk, with or without a terminator.
    let mut out = Vec::new();
    assert_eq!(
        small(8, 100).feed(b"data: 123\n", &mut out),
        Err(error.clone())
    );
    assert_eq!(
        small(8, 100).feed(b"data: 123", &mut out),
        Err(error.clone())
    );
    // Carried over several chunks.
    let mut decoder = small(8, 100);
    decoder.feed(b"data", &mut out).unwrap();
    decoder.feed(b": 12", &mut out).unwrap();
    assert_eq!(decoder.feed(b"3", &mut out), Err(error.clone()));
    // Exactly at the limit is fine, whatever the line ending.
    let mut decoder = small(8, 100);
    decoder
        .feed(b"data: 12\r\ndata: 34\rdata", &mut out)
        .unwrap();
    decoder.feed(b": 56\n\n", &mut out).unwrap();
    assert_eq!(out, [Event::new("12\n34\n56")]);
    assert_eq!(
        error.to_string(),
        "server-sent events line longer than 8 bytes"
    );
}

#[test]
fn event_too_large_error() {
    let error = SseError::EventTooLarge { limit: 5 };
    let mut out = Vec::new();
    let mut decoder = small(100, 5);
    // "ab\ncd" is exactly 5 bytes.
    decoder.feed(b"data: ab\ndata: cd\n\n", &mut out).unwrap();
    assert_eq!(out, [Event::new("ab\ncd")]);
    assert_eq!(
        decoder.feed(b"data: ab\ndata: cde\n", &mut out),
        Err(error.clone())
    );
    let mut decoder = small(100, 5);
    assert_eq!(
        decoder.feed(b"data: ab\ndata:\ndata:\ndata:\ndata:\n", &mut out),
        Err(error.clone())
    );
    assert_eq!(
        error.to_string(),
        "server-sent event data larger than 5 bytes"
    );
}

#[test]
fn events_before_an_error_are_delivered_and_errors_stick() {
    let mut decoder = small(8, 100);
    let mut out = Vec::new();
    let error = Err(SseError::LineTooLong { limit: 8 });
    assert_eq!(
        decoder.feed(b"data: a\n\ndata: 123456789\n\n", &mut out),
        error
    );
    assert_eq!(out, [Event::new("a")]);
    assert_eq!(decoder.feed(b"data: b\n\n", &mut out), error);
    assert_eq!(out.len(), 1);
    assert!(decoder.finish());
    decoder.feed(b"data: b\n\n", &mut out).unwrap();
    assert_eq!(out, [Event::new("a"), Event::new("b")]);
}

#[test]
fn invalid_utf8_is_replaced() {
    let events = decode(b"event: \xFFx\ndata: a\xC3\n\ndata: \xE2\x82\ndata: \xF0\x9F\x98\x80\n\n");
    assert_eq!(
        events,
        [
            Event::new("a\u{FFFD}").with_event("\u{FFFD}x"),
            Event::new("\u{FFFD}\n\u{1F600}"),
        ]
    );
    let events = decode(b"id: \xC0\ndata: x\n\n");
    assert_eq!(events, [Event::new("x").with_id("\u{FFFD}")]);
}

#[test]
fn utf8_split_across_feeds() {
    let bytes = "data: h\u{e9}\u{1F600}!\n\n".as_bytes();
    for split in 0..=bytes.len() {
        let (a, b) = bytes.split_at(split);
        assert_eq!(decode_chunks(&[a, b]), [Event::new("h\u{e9}\u{1F600}!")]);
    }
}

#[test]
fn event_names_are_shared_between_events() {
    let events = decode(b"event: a\ndata: 1\n\nevent: a\ndata: 2\n\n");
    assert!(std::ptr::eq(events[0].event_type(), events[1].event_type()));
}

#[test]
fn name_cache_keeps_working_when_full() {
    let mut stream = Vec::new();
    for round in 0..3 {
        for n in 0..20 {
            stream.extend_from_slice(format!("event: e{n}\ndata: {round}\n\n").as_bytes());
        }
    }
    let events = decode(&stream);
    assert_eq!(events.len(), 60);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.event(), Some(format!("e{}", i % 20).as_str()));
    }
}

#[test]
fn many_events_in_one_chunk() {
    let stream = b"data: 1\n\ndata: 2\n\n".repeat(1000);
    assert_eq!(decode(&stream).len(), 2000);
}
