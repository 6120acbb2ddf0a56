//! Giving an [`Answer`] as a stream of frames, one canonical event per frame, in
//! Anthropic's order, computed only as the consumer asks for it.

use std::time::Duration;

use weir_model::raw::to_raw;
use weir_model::{
    ContentBlock, Delta, EventStream, Frame, JsonStr, ProviderError, StreamEvent, TextBlock,
    ToolInput, ToolUseBlock, Usage,
};

use crate::plan::{chunk_end, Answer, Block};

/// The stream of `answer`, pausing `delay` before each delta, failing with
/// `fail_after_first` (if set) right after the first delta.
pub(crate) fn event_stream(
    answer: Answer,
    fail_after_first: Option<ProviderError>,
    delay: Duration,
) -> EventStream {
    let cursor = Cursor {
        answer,
        fail_after_first,
        state: State::Start,
        deltas: 0,
    };
    Box::pin(futures_util::stream::unfold(
        cursor,
        move |mut cursor| async move {
            let item = match cursor.next()? {
                Step::Event(event) => Ok(Frame::from_events(vec![event])),
                Step::Paced(event) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok(Frame::from_events(vec![event]))
                }
                Step::Fail(e) => Err(e),
            };
            Some((item, cursor))
        },
    ))
}

/// What the stream yields next.
enum Step {
    /// An event, at once.
    Event(StreamEvent),
    /// An event (a delta), after the pause.
    Paced(StreamEvent),
    /// The failure; the stream ends after it.
    Fail(ProviderError),
}

/// Where the stream is.
#[derive(Clone, Copy)]
enum State {
    Start,
    Open(usize),
    /// Inside block `index`; the next delta starts at byte `pos` of its text or arguments.
    Body {
        index: usize,
        pos: usize,
    },
    Close(usize),
    MessageDelta,
    MessageStop,
    Done,
}

/// The stream's state: the answer and how far into it the consumer is.
struct Cursor {
    answer: Answer,
    fail_after_first: Option<ProviderError>,
    state: State,
    /// Deltas yielded so far.
    deltas: usize,
}

impl Cursor {
    fn next(&mut self) -> Option<Step> {
        loop {
            if self.fail_after_first.is_some()
                && (self.deltas > 0 || matches!(self.state, State::MessageDelta))
            {
                self.state = State::Done;
                return self.fail_after_first.take().map(Step::Fail);
            }
            match self.state {
                State::Start => {
                    self.state = self.open_or_finish(0);
                    return Some(Step::Event(StreamEvent::MessageStart {
                        id: self.answer.id.clone(),
                        model: self.answer.model.clone(),
                        usage: Usage {
                            input_tokens: Some(self.answer.input_tokens),
                            ..Default::default()
                        },
                    }));
                }
                State::Open(index) => {
                    self.state = State::Body { index, pos: 0 };
                    let block = self.answer.blocks.get(index).map(opening)?;
                    return Some(Step::Event(StreamEvent::BlockStart {
                        index: index as u32,
                        block,
                    }));
                }
                State::Body { index, pos } => match self.fragment(index, pos) {
                    Some((delta, end)) => {
                        self.state = State::Body { index, pos: end };
                        self.deltas += 1;
                        return Some(Step::Paced(StreamEvent::BlockDelta {
                            index: index as u32,
                            delta,
                        }));
                    }
                    None => self.state = State::Close(index),
                },
                State::Close(index) => {
                    self.state = self.open_or_finish(index + 1);
                    return Some(Step::Event(StreamEvent::BlockStop {
                        index: index as u32,
                    }));
                }
                State::MessageDelta => {
                    self.state = State::MessageStop;
                    return Some(Step::Event(StreamEvent::MessageDelta {
                        stop_reason: Some(self.answer.stop_reason.clone()),
                        stop_sequence: self.answer.stop_sequence.clone(),
                        usage: Usage {
                            output_tokens: Some(self.answer.output_tokens),
                            ..Default::default()
                        },
                    }));
                }
                State::MessageStop => {
                    self.state = State::Done;
                    return Some(Step::Event(StreamEvent::MessageStop));
                }
                State::Done => return None,
            }
        }
    }

    /// Opens block `index` if there is one, else moves on to the message's end.
    fn open_or_finish(&self, index: usize) -> State {
        if index < self.answer.blocks.len() {
            State::Open(index)
        } else {
            State::MessageDelta
        }
    }

    /// The delta of block `index` starting at `pos`, and where the next one starts: text
    /// word by word, tool arguments in two halves.
    fn fragment(&self, index: usize, pos: usize) -> Option<(Delta, usize)> {
        match self.answer.blocks.get(index)? {
            Block::Text(text) => {
                let end = chunk_end(text, pos);
                (end > pos).then(|| (Delta::Text(JsonStr::new(&text[pos..end])), end))
            }
            Block::Tool { input, .. } => {
                let json = input.get();
                if pos >= json.len() {
                    return None;
                }
                let mut mid = json.len() / 2;
                while !json.is_char_boundary(mid) {
                    mid -= 1;
                }
                let end = if pos < mid { mid } else { json.len() };
                Some((Delta::InputJson(JsonStr::new(&json[pos..end])), end))
            }
        }
    }
}

/// A block as it opens: empty text, or a tool call with empty input.
fn opening(block: &Block) -> ContentBlock {
    match block {
        Block::Text(_) => ContentBlock::Text(TextBlock::default()),
        Block::Tool { id, name, .. } => ContentBlock::ToolUse(ToolUseBlock {
            id: id.clone(),
            name: name.clone(),
            input: ToolInput::Json(to_raw(&serde_json::Map::new())),
            cache_control: None,
            extra: Default::default(),
        }),
    }
}
