//! Grounding with Google Search: the searches Gemini made and the pages it cites
//! (`candidate.groundingMetadata`), as a web search in the canonical shape
//! ([`weir_model::web_search`]): one search whose query is Gemini's queries (joined with
//! `; ` when it made several) listing every page, and the text cut where Gemini's
//! `groundingSupports` say a claim is supported; `usage.web_search_requests` is the number
//! of queries. A stream gets its grounding in its last chunk, after the text went out: the
//! cited pages become `citations_delta`s of the text block still open (so an OpenAI
//! client's annotations span that block), then the search blocks follow.
//!
//! Spans are found by the support's `segment.text` where Gemini gives it (its byte
//! offsets are taken first when they hold that text), else by its byte offsets into the
//! candidate's text. Metadata that cannot be read is ignored: the answer stays as it is.

use serde::Deserialize;
use serde_json::value::RawValue;
use weir_model::web_search::{self, Page, Span};
use weir_model::ContentBlock;

/// What Gemini says it searched and which pages support which parts of its answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Grounding {
    web_search_queries: Option<Vec<String>>,
    grounding_chunks: Option<Vec<Chunk>>,
    grounding_supports: Option<Vec<Support>>,
}

#[derive(Debug, Deserialize)]
struct Chunk {
    web: Option<Web>,
}

#[derive(Debug, Deserialize)]
struct Web {
    uri: Option<String>,
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Support {
    segment: Option<Segment>,
    grounding_chunk_indices: Option<Vec<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Segment {
    start_index: Option<usize>,
    end_index: Option<usize>,
    text: Option<String>,
}

impl Grounding {
    /// The metadata, if it reads as grounding and says anything (`{}` does not).
    pub fn read(raw: &RawValue) -> Option<Grounding> {
        let g: Grounding = serde_json::from_str(raw.get()).ok()?;
        (!g.queries().is_empty() || !g.pages().is_empty()).then_some(g)
    }

    fn queries(&self) -> &[String] {
        self.web_search_queries.as_deref().unwrap_or_default()
    }

    /// The web page of a chunk.
    fn page(&self, i: usize) -> Option<Page> {
        let web = self.grounding_chunks.as_ref()?.get(i)?.web.as_ref()?;
        Some(Page {
            url: web.uri.clone()?,
            title: web.title.clone().unwrap_or_default(),
        })
    }

    /// Every web page, in chunk order.
    fn pages(&self) -> Vec<Page> {
        let n = self.grounding_chunks.as_ref().map_or(0, Vec::len);
        (0..n).filter_map(|i| self.page(i)).collect()
    }

    /// The distinct pages a support names.
    fn support_pages(&self, s: &Support) -> Vec<Page> {
        let mut out: Vec<Page> = Vec::new();
        for &i in s.grounding_chunk_indices.as_deref().unwrap_or_default() {
            if let Some(p) = self.page(i).filter(|p| !out.iter().any(|o| o.url == p.url)) {
                out.push(p);
            }
        }
        out
    }

    /// Searches made (billed per query from Gemini 3): the queries, or one when pages
    /// came without them.
    pub fn searches(&self) -> u64 {
        match self.queries().len() {
            0 => 1,
            n => n as u64,
        }
    }

    /// The search query: Gemini's queries, joined.
    fn query(&self) -> String {
        self.queries().join("; ")
    }

    /// The search as its two blocks (see [`web_search::search_blocks`]).
    pub fn search_blocks(&self, id: &str, streamed: bool) -> [ContentBlock; 2] {
        web_search::search_blocks(id, &self.query(), &self.pages(), streamed)
    }

    /// The search block's input.
    pub fn input(&self) -> serde_json::Value {
        web_search::search_input(&self.query())
    }

    /// The citations of a text block that already went out (a stream's): `full` is the
    /// answer's text so far, the block's from byte `from` on. Each support placed in the
    /// block gives one Anthropic `citations_delta` per page, citing the text it supports;
    /// one that cannot be placed there gives none.
    pub fn citation_deltas(&self, full: &str, from: usize) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for s in self.grounding_supports.as_deref().unwrap_or_default() {
            let Some((start, end)) = s.segment.as_ref().and_then(|g| locate(full, g)) else {
                continue;
            };
            if start < from {
                continue;
            }
            for p in self.support_pages(s) {
                out.push(web_search::citations_delta(&p, &full[start..end]));
            }
        }
        out
    }

    /// A whole answer's content with the search before its text and the text cut at the
    /// supported spans (see [`web_search::cite`]).
    pub fn apply(&self, content: Vec<ContentBlock>, id: &str) -> Vec<ContentBlock> {
        let full = web_search::joined_text(&content);
        let spans = self
            .grounding_supports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|s| {
                let (start, end) = locate(&full, s.segment.as_ref()?)?;
                Some(Span {
                    start,
                    end,
                    pages: self.support_pages(s),
                })
            })
            .collect();
        web_search::cite(content, spans, self.search_blocks(id, false))
    }
}

/// Where a segment is in `full` (byte offsets), if it can be placed.
fn locate(full: &str, g: &Segment) -> Option<(usize, usize)> {
    let start = g.start_index.unwrap_or(0);
    match (g.text.as_deref(), g.end_index) {
        (Some(t), _) if !t.is_empty() => {
            // (An offset near `usize::MAX` must not wrap.)
            if let Some(end) = start.checked_add(t.len()) {
                if full.get(start..end) == Some(t) {
                    return Some((start, end));
                }
            }
            // Offsets counted otherwise (characters, or within one part): the text's
            // first occurrence at or after the offset, else anywhere.
            let from = (0..=start.min(full.len()))
                .rev()
                .find(|&i| full.is_char_boundary(i))
                .unwrap_or(0);
            let at = full[from..]
                .find(t)
                .map(|i| i + from)
                .or_else(|| full.find(t))?;
            Some((at, at + t.len()))
        }
        (_, Some(end)) if end > start && full.get(start..end).is_some() => Some((start, end)),
        _ => None,
    }
}
