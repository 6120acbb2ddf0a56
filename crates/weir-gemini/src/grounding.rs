//! Grounding with Google Search: the searches Gemini made and the pages it cites
//! (`candidate.groundingMetadata`), in the canonical model's shape for web search, which is
//! Anthropic's (what Claude's own web search answers with):
//! - one `server_tool_use` block named `web_search` whose `query` is Gemini's queries
//!   (joined with `; ` when it made several), and its `web_search_tool_result` listing
//!   the pages (`web_search_result`: `url`, `title`; Gemini gives no page content, so
//!   `encrypted_content` is empty), both before the text;
//! - the text cut where Gemini's `groundingSupports` say a claim is supported, each
//!   supported span its own text block whose `citations` are `web_search_result_location`s
//!   (`url`, `title`, `cited_text`: the span, `encrypted_index` empty), as Claude's
//!   answers are cut; OpenAI clients get them as `url_citation` annotations over the
//!   same characters;
//! - `usage.web_search_requests`: the number of queries.
//!
//! A stream gets its grounding in its last chunk, after the text went out: the cited
//! pages become `citations_delta`s of the text block still open (so an OpenAI client's
//! annotations span that block), then the two search blocks follow.
//!
//! Spans are found by the support's `segment.text` where Gemini gives it (its byte
//! offsets are taken first when they hold that text), else by its byte offsets into the
//! candidate's text. A support that cannot be placed within one text block is left out:
//! no citation rather than a wrong one. Metadata that cannot be read is ignored: the
//! answer stays as it is.

use serde::Deserialize;
use serde_json::value::RawValue;
use weir_model::{ContentBlock, Dialect, JsonStr, TextBlock, UnknownBlock};

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
        (!g.queries().is_empty() || g.pages().next().is_some()).then_some(g)
    }

    fn queries(&self) -> &[String] {
        self.web_search_queries.as_deref().unwrap_or_default()
    }

    /// The web pages, by chunk index.
    fn page(&self, i: usize) -> Option<(&str, &str)> {
        let web = self.grounding_chunks.as_ref()?.get(i)?.web.as_ref()?;
        Some((
            web.uri.as_deref()?,
            web.title.as_deref().unwrap_or_default(),
        ))
    }

    /// Every distinct web page, in chunk order.
    fn pages(&self) -> impl Iterator<Item = (&str, &str)> {
        let n = self.grounding_chunks.as_ref().map_or(0, Vec::len);
        let mut seen = Vec::new();
        (0..n).filter_map(move |i| {
            let p = self.page(i)?;
            (!seen.contains(&p.0)).then(|| {
                seen.push(p.0);
                p
            })
        })
    }

    /// Searches made (billed per query from Gemini 3): the queries, or one when pages
    /// came without them.
    pub fn searches(&self) -> u64 {
        match self.queries().len() {
            0 => 1,
            n => n as u64,
        }
    }

    /// The search as Anthropic's `server_tool_use` and `web_search_tool_result` blocks
    /// (one id for both, made from `response_id` and `n`).
    /// A stream's call block starts with an empty `input` (`streamed`), whose JSON
    /// ([`Grounding::input`]) follows as a delta, as Anthropic streams it.
    pub fn search_blocks(&self, id: &str, streamed: bool) -> [ContentBlock; 2] {
        let input = if streamed {
            serde_json::json!({})
        } else {
            self.input()
        };
        let call = serde_json::json!({
            "type": "server_tool_use",
            "id": id,
            "name": "web_search",
            "input": input,
        });
        let results: Vec<_> = self
            .pages()
            .map(|(url, title)| {
                serde_json::json!({
                    "type": "web_search_result",
                    "url": url,
                    "title": title,
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

    /// The search block's input: `{"query": ...}`.
    pub fn input(&self) -> serde_json::Value {
        serde_json::json!({"query": self.queries().join("; ")})
    }

    /// The citations of one support (`cited` its text), one per page it names.
    fn citations(&self, s: &Support, cited: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for &i in s.grounding_chunk_indices.as_deref().unwrap_or_default() {
            let Some((url, title)) = self.page(i) else {
                continue;
            };
            if seen.contains(&url) {
                continue;
            }
            seen.push(url);
            out.push(serde_json::json!({
                "type": "web_search_result_location",
                "url": url,
                "title": title,
                "encrypted_index": "",
                "cited_text": cited,
            }));
        }
        out
    }

    /// Every support's citations, for a text block that already went out whole (a
    /// stream's): each as an Anthropic `citations_delta`.
    pub fn citation_deltas(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for s in self.grounding_supports.as_deref().unwrap_or_default() {
            let cited = s
                .segment
                .as_ref()
                .and_then(|g| g.text.as_deref())
                .unwrap_or_default();
            for c in self.citations(s, cited) {
                out.push(serde_json::json!({"type": "citations_delta", "citation": c}));
            }
        }
        out
    }

    /// A whole answer's content with the search blocks before its first text block and
    /// its text cut at the supported spans, each cited (see the module docs).
    pub fn apply(&self, content: Vec<ContentBlock>, id: &str) -> Vec<ContentBlock> {
        // The candidate's text: its text blocks one after another, with each one's start.
        let mut texts: Vec<(usize, usize, String)> = Vec::new(); // (block, start, text)
        let mut full = String::new();
        for (i, b) in content.iter().enumerate() {
            if let ContentBlock::Text(t) = b {
                let s = t.text.as_str();
                texts.push((i, full.len(), s.clone().into_owned()));
                full.push_str(&s);
            }
        }
        // Spans in `full`, in order, not overlapping, each with its citations.
        let mut spans: Vec<(usize, usize, Vec<serde_json::Value>)> = Vec::new();
        for s in self.grounding_supports.as_deref().unwrap_or_default() {
            let Some((start, end)) = s.segment.as_ref().and_then(|g| locate(&full, g)) else {
                continue;
            };
            let cites = self.citations(s, &full[start..end]);
            if !cites.is_empty() {
                spans.push((start, end, cites));
            }
        }
        spans.sort_by_key(|s| (s.0, s.1));
        let mut last_end = 0;
        spans.retain(|s| {
            let keep = s.0 >= last_end;
            if keep {
                last_end = s.1;
            }
            keep
        });
        let mut out = Vec::with_capacity(content.len() + 2 + 2 * spans.len());
        let first_text = texts.first().map(|t| t.0);
        let mut spans = spans.into_iter().peekable();
        for (i, b) in content.into_iter().enumerate() {
            if Some(i) == first_text || (first_text.is_none() && i == 0) {
                out.extend(self.search_blocks(id, false));
            }
            let Some((_, at, text)) = texts.iter().find(|t| t.0 == i) else {
                out.push(b);
                continue;
            };
            let ContentBlock::Text(block) = b else {
                out.push(b);
                continue;
            };
            let end = at + text.len();
            // Spans that start before this block ends but do not fit in it are dropped.
            let mut cut = 0;
            let mut pieces: Vec<(usize, usize, Option<Vec<serde_json::Value>>)> = Vec::new();
            while let Some(s) = spans.next_if(|s| s.0 < end) {
                if s.0 < *at || s.1 > end {
                    continue;
                }
                let (s0, s1) = (s.0 - at, s.1 - at);
                if s0 > cut {
                    pieces.push((cut, s0, None));
                }
                pieces.push((s0, s1, Some(s.2)));
                cut = s1;
            }
            if pieces.is_empty() {
                out.push(ContentBlock::Text(block));
                continue;
            }
            if cut < text.len() {
                pieces.push((cut, text.len(), None));
            }
            for (a, z, cites) in pieces {
                let mut t = TextBlock::new(JsonStr::new(&text[a..z]));
                if let Some(c) = cites {
                    t.extra.insert("citations", weir_model::raw::to_raw(&c));
                }
                out.push(ContentBlock::Text(t));
            }
        }
        // (An answer with no blocks at all still says what was searched.)
        if out.is_empty() {
            out.extend(self.search_blocks(id, false));
        }
        out
    }
}

/// Where a segment is in `full` (byte offsets), if it can be placed.
fn locate(full: &str, g: &Segment) -> Option<(usize, usize)> {
    let start = g.start_index.unwrap_or(0);
    match (g.text.as_deref(), g.end_index) {
        (Some(t), _) if !t.is_empty() => {
            if full.get(start..start + t.len()) == Some(t) {
                return Some((start, start + t.len()));
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

fn unknown(v: &serde_json::Value) -> ContentBlock {
    ContentBlock::Unknown(UnknownBlock {
        dialect: Dialect::Anthropic,
        type_name: v["type"].as_str().map(str::to_owned),
        raw: weir_model::raw::to_raw(v),
    })
}
