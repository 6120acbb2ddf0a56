//! Web searches an upstream ran on its own (Gemini's grounding with Google Search, an
//! OpenAI-compatible service's web search), in the canonical model's shape for them, which
//! is Anthropic's (what Claude's own web search answers with):
//! - a `server_tool_use` block named `web_search` (`input: {"query": ...}`) and its
//!   `web_search_tool_result` listing the pages (`web_search_result`: `url`, `title`;
//!   `encrypted_content` empty, as other upstreams give no page content), before the text;
//! - the text cut at each span a page supports, each span its own text block whose
//!   `citations` are `web_search_result_location`s (`url`, `title`, `cited_text`: the span,
//!   `encrypted_index` empty), as Claude's answers are cut; OpenAI clients get them back as
//!   `url_citation` annotations over the same characters;
//! - in a stream, whose text went out before the citations came: `citations_delta`s of the
//!   text block still open, then the two search blocks ([`search_blocks`] with `streamed`).
//!
//! What an upstream says is mapped into this shape by its dialect crate.

use crate::{ContentBlock, Dialect, JsonStr, TextBlock, UnknownBlock};

/// A web page an answer cites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// Its address.
    pub url: String,
    /// Its title (empty when not given).
    pub title: String,
}

/// A span of an answer's text (byte offsets into its text blocks joined) and the pages
/// supporting it.
#[derive(Clone, Debug)]
pub struct Span {
    /// Where it starts.
    pub start: usize,
    /// Where it ends (exclusive).
    pub end: usize,
    /// The pages, each once.
    pub pages: Vec<Page>,
}

/// The `server_tool_use` block of a search (`id`) for `query`, and its
/// `web_search_tool_result` listing `pages`. A stream's call block starts with an empty
/// `input` (`streamed`), whose JSON ([`search_input`]) follows as a delta, as Anthropic
/// streams it.
pub fn search_blocks(id: &str, query: &str, pages: &[Page], streamed: bool) -> [ContentBlock; 2] {
    let input = if streamed {
        serde_json::json!({})
    } else {
        search_input(query)
    };
    let call = serde_json::json!({
        "type": "server_tool_use",
        "id": id,
        "name": "web_search",
        "input": input,
    });
    let mut seen: Vec<&str> = Vec::new();
    let results: Vec<_> = pages
        .iter()
        .filter(|p| {
            let new = !seen.contains(&p.url.as_str());
            seen.push(&p.url);
            new
        })
        .map(|p| {
            serde_json::json!({
                "type": "web_search_result",
                "url": p.url,
                "title": p.title,
                "encrypted_content": "",
                "page_age": null,
            })
        })
        .collect();
    let result = serde_json::json!({
        "type": "web_search_tool_result",
        "tool_use_id": id,
        "content": results,
    });
    [unknown(&call), unknown(&result)]
}

/// The prefix of the ids of searches Weir tells (another upstream's), which only Weir
/// makes: Anthropic's own are `srvtoolu_` and 24 more characters.
pub const SEARCH_ID_PREFIX: &str = "srvtoolu_weir_";

/// The id of the `n`th search made for the answer `response_id` ([`SEARCH_ID_PREFIX`] and
/// its `[A-Za-z0-9_]` characters, as Anthropic's ids are spelled, at most 64 in all; a
/// generated one when it has none): the same answer read twice gets the same ids.
pub fn search_id(response_id: &str, n: u32) -> String {
    let rid: String = response_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    if rid.is_empty() {
        crate::generated_id(SEARCH_ID_PREFIX)
    } else {
        format!("{SEARCH_ID_PREFIX}{rid}_{n}")
    }
}

/// Whether a block is a search Weir told (a `server_tool_use` or `web_search_tool_result`
/// whose id has [`SEARCH_ID_PREFIX`]), sent back in a conversation: Anthropic would refuse
/// it (its results have no encrypted content), and its answer's text carries what it found.
pub fn is_told_search(raw: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Search<'a> {
        #[serde(rename = "type", borrow)]
        ty: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        id: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        tool_use_id: Option<std::borrow::Cow<'a, str>>,
    }
    if !raw.contains(SEARCH_ID_PREFIX) {
        return false;
    }
    let Ok(s) = serde_json::from_str::<Search<'_>>(raw) else {
        return false;
    };
    let id = match s.ty.as_deref() {
        Some("server_tool_use") => s.id,
        Some("web_search_tool_result") => s.tool_use_id,
        _ => None,
    };
    id.is_some_and(|id| id.starts_with(SEARCH_ID_PREFIX))
}

/// Whether a text block's `citations` are ones Weir made (their `encrypted_index` is
/// empty; Anthropic's never is): Anthropic would refuse them in a conversation sent back.
pub fn is_told_citations(raw: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Cited {
        #[serde(rename = "type")]
        ty: Option<String>,
        encrypted_index: Option<String>,
    }
    serde_json::from_str::<Vec<Cited>>(raw).is_ok_and(|c| {
        c.iter().any(|c| {
            c.ty.as_deref() == Some("web_search_result_location")
                && c.encrypted_index.as_deref() == Some("")
        })
    })
}

/// A search block's input: `{"query": ...}`.
pub fn search_input(query: &str) -> serde_json::Value {
    serde_json::json!({ "query": query })
}

/// A citation of `page` for `cited` (the text it supports).
pub fn citation(page: &Page, cited: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "web_search_result_location",
        "url": page.url,
        "title": page.title,
        "encrypted_index": "",
        "cited_text": cited,
    })
}

/// A citation as Anthropic streams it, for the text block it is added to.
pub fn citations_delta(page: &Page, cited: &str) -> serde_json::Value {
    serde_json::json!({"type": "citations_delta", "citation": citation(page, cited)})
}

/// The text blocks of `content` joined: what [`Span`]s count in.
pub fn joined_text(content: &[ContentBlock]) -> String {
    let mut full = String::new();
    for b in content {
        if let ContentBlock::Text(t) = b {
            full.push_str(&t.text.as_str());
        }
    }
    full
}

/// A whole answer's `content` with `search` (the two search blocks) before its first text
/// block (or at the end when it has none) and its text cut at `spans`, each span a text
/// block citing its pages. Spans that overlap an earlier one, reach past the text, do not
/// fall on character boundaries or cross from one text block into another are left out: no
/// citation rather than a wrong one.
pub fn cite(
    content: Vec<ContentBlock>,
    mut spans: Vec<Span>,
    search: [ContentBlock; 2],
) -> Vec<ContentBlock> {
    spans.retain(|s| s.start < s.end && !s.pages.is_empty());
    spans.sort_by_key(|s| (s.start, s.end));
    let mut last_end = 0;
    spans.retain(|s| {
        let keep = s.start >= last_end;
        if keep {
            last_end = s.end;
        }
        keep
    });
    let first_text = content
        .iter()
        .position(|b| matches!(b, ContentBlock::Text(_)));
    let mut search = Some(search);
    let mut out = Vec::with_capacity(content.len() + 2 + 2 * spans.len());
    let mut spans = spans.into_iter().peekable();
    let mut at = 0;
    for (i, b) in content.into_iter().enumerate() {
        if Some(i) == first_text {
            out.extend(search.take().into_iter().flatten());
        }
        let ContentBlock::Text(block) = b else {
            out.push(b);
            continue;
        };
        let text = block.text.as_str().into_owned();
        let end = at + text.len();
        let mut cut = 0;
        let mut pieces: Vec<(usize, usize, Option<Vec<Page>>)> = Vec::new();
        while let Some(s) = spans.next_if(|s| s.start < end) {
            if s.start < at || s.end > end {
                continue;
            }
            let (s0, s1) = (s.start - at, s.end - at);
            if !text.is_char_boundary(s0) || !text.is_char_boundary(s1) {
                continue;
            }
            if s0 > cut {
                pieces.push((cut, s0, None));
            }
            pieces.push((s0, s1, Some(s.pages)));
            cut = s1;
        }
        at = end;
        if pieces.is_empty() {
            out.push(ContentBlock::Text(block));
            continue;
        }
        if cut < text.len() {
            pieces.push((cut, text.len(), None));
        }
        for (a, z, pages) in pieces {
            let piece = &text[a..z];
            let mut t = TextBlock::new(JsonStr::new(piece));
            if let Some(pages) = pages {
                let cites: Vec<_> = pages.iter().map(|p| citation(p, piece)).collect();
                t.extra.insert("citations", crate::raw::to_raw(&cites));
            }
            out.push(ContentBlock::Text(t));
        }
    }
    out.extend(search.into_iter().flatten());
    out
}

fn unknown(v: &serde_json::Value) -> ContentBlock {
    ContentBlock::Unknown(UnknownBlock {
        dialect: Dialect::Anthropic,
        type_name: v["type"].as_str().map(str::to_owned),
        raw: crate::raw::to_raw(v),
    })
}
