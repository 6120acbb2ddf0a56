use std::sync::Arc;

/// One dispatched server-sent event.
///
/// Events produced by [`Decoder`](crate::Decoder) carry the values the
/// WHATWG algorithm gives them; events built with the constructors below are
/// what [`encode`](crate::encode) writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    // Names and ids are shared (`Arc`) because a stream repeats the same few
    // names and the same id on event after event: the decoder hands out
    // clones instead of allocating a fresh string per event.
    event: Option<Arc<str>>,
    data: String,
    id: Option<Arc<str>>,
    retry: Option<u64>,
}

impl Event {
    /// An event of the default type (`message`) carrying `data`.
    pub fn new(data: impl Into<String>) -> Event {
        Event {
            event: None,
            data: data.into(),
            id: None,
            retry: None,
        }
    }

    /// Sets the `event:` field (the event type).
    ///
    /// An empty name is stored as no name at all: on the wire `event:` with an
    /// empty value means the default type, so a decoder could never tell the
    /// two apart.
    #[must_use]
    pub fn with_event(mut self, name: impl Into<String>) -> Event {
        let name = name.into();
        self.event = (!name.is_empty()).then(|| Arc::from(name));
        self
    }

    /// Sets the event's id (the stream's last event id when it was dispatched).
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Event {
        self.id = Some(Arc::from(id.into()));
        self
    }

    /// Sets the reconnection time, in milliseconds, sent along with this event.
    #[must_use]
    pub fn with_retry(mut self, ms: u64) -> Event {
        self.retry = Some(ms);
        self
    }

    /// The `event:` field, if the event had a non-empty one.
    pub fn event(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// The event type: the `event:` field, or `"message"` when there is none.
    pub fn event_type(&self) -> &str {
        self.event().unwrap_or("message")
    }

    /// The event's data: its `data:` lines joined with `'\n'`.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// Takes the data out of the event without copying it.
    pub fn into_data(self) -> String {
        self.data
    }

    /// The last event id in effect when the event was dispatched, or `None` if
    /// the stream never set one.
    ///
    /// As in the WHATWG algorithm an id persists: an event without an `id:`
    /// line carries the id of an earlier one. `Some("")` means the stream
    /// explicitly cleared the id with an empty `id:` field.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The reconnection time from a valid `retry:` field in this event's own
    /// block of lines, if there was one.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    pub(crate) fn from_parts(
        event: Option<Arc<str>>,
        data: String,
        id: Option<Arc<str>>,
        retry: Option<u64>,
    ) -> Event {
        Event {
            event,
            data,
            id,
            retry,
        }
    }
}
