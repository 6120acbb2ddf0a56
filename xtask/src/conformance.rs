//! `cargo xtask conformance <provider>|all`: runs the provider conformance suite
//! (`crates/weir-testkit/tests/conformance.rs`), prints the matrix, and (for `all`) writes
//! `docs/providers.md`, the compatibility matrix users read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// Cases in matrix order, with the words users read.
const CASES: &[(&str, &str)] = &[
    ("text", "text"),
    ("streaming", "streaming"),
    ("parallel_tools", "parallel tool calls"),
    ("tool_results", "tool results"),
    ("images", "images"),
    ("thinking", "thinking"),
    ("error_400", "400"),
    ("error_401", "401"),
    ("error_429", "429"),
    ("error_5xx", "5xx"),
    ("mid_stream_error", "mid-stream error"),
];

/// What users should know per provider beyond the matrix.
const NOTES: &str = "
## Notes per provider

- **anthropic**: lossless for Anthropic clients (thinking signatures, `cache_control`,
  unknown fields and events, `anthropic-beta`). `count_tokens` uses Anthropic's counter;
  breaker probes use it too (free). For OpenAI clients, what Anthropic refuses is left
  out: stop sequences of whitespace alone (`\\n`), text of whitespace alone (the `\\n\\n`
  Claude writes before tool calls, sent back), blank parts of tool results; a function
  without `\"type\"` in its parameters gets `\"type\": \"object\"`. A `thinking` object sent
  as an extra field (as Anthropic's OpenAI-compatible endpoint takes it) is Anthropic's
  thinking; a `file` of a text type goes as a text document, one neither PDF nor text
  is refused with a 400. An OpenAI client's `web_search_options` becomes Claude's web
  search tool (also on Vertex; Bedrock refuses it), and the pages the answer cites come
  back as `url_citation` annotations; a Responses client's hosted `web_search` (Codex's)
  does the same through the bridge for whole answers, as a `web_search_call` item. An OpenAI client's `response_format` schema and
  `strict` tools' schemas are fitted to Claude's constrained decoding: numeric, length and
  size constraints it refuses move into the description, and objects get
  `additionalProperties: false`; property order is kept.
- **openai** and its presets (`groq`, `xai`, `cerebras`, `openrouter`, `deepseek`, `zai`,
  `mistral`, `together`): lossless for OpenAI clients. Presets set the base URL and the
  output-limit field and strip what the service rejects when it asks for nothing more
  than the default (Groq: `logprobs`, `logit_bias`, `top_logprobs`, `n`, and
  `messages[].name` always; Cerebras: penalties, `logit_bias`, `parallel_tool_calls`;
  xAI: penalties; Mistral: `stream_options` and `user` always, and `seed` goes as
  `random_seed`): `n: 2` or `logprobs: true` to Groq is sent, and
  Groq's 400 names it, rather than the client silently getting one choice. Reasoning in `reasoning_content` or
  `reasoning` (or Mistral's thinking parts of `content`) becomes thinking for Anthropic
  clients; DeepSeek and Z.AI get it back as `reasoning_content` on assistant turns, and
  OpenRouter its `reasoning_details` (reasoning signatures, Gemini's encrypted thought
  signatures), which travel through Anthropic clients as the thinking block's signature.
  An Anthropic client's thinking turned on or off reaches Z.AI as its `thinking` type.
  Such carried state (and Gemini's) is left out when the conversation goes to Anthropic,
  Bedrock or Vertex Claude later (a failover chain), which refuse it as a signature; a
  tool turn that loses its thinking that way turns thinking off for that request.
  The `openrouter` preset keeps an Anthropic client's `cache_control` on the text parts
  it marks (OpenRouter passes it to Claude and Gemini), and sends Claude's web search tool
  (Claude Code's web search) as OpenRouter's `openrouter:web_search` server tool
  (`max_uses` and domain lists kept): the pages its `url_citation` annotations name come
  back to Anthropic clients as a web search in Claude's shape, whole and streamed. Such a
  search, sent back later to an Anthropic upstream, is left out (Anthropic would refuse
  it; the text stays), as is one told for Gemini. Towards Google's OpenAI-compatible
  endpoint, earlier function calls without Gemini's thought signature carry Google's
  placeholder. An Anthropic client's `temperature` and `top_p` are left out for OpenAI's
  reasoning models (o-series, GPT-5), which refuse them.
  For Anthropic clients: OpenAI does not say which stop sequence ended an answer, so
  one that did ends as `end_turn` with `stop_sequence: null`; an assistant message last
  (a prefill) is sent as it is, and OpenAI answers after it rather than continuing it.
- **azure**: Azure OpenAI deployment URLs (the target's `model` is the deployment name,
  `api_version` defaults to 2024-10-21) or the `/openai/v1` form, key in `api-key`; the
  opening `prompt_filter_results` chunk is tolerated. A `base_url` ending in `/anthropic`
  is Claude in Microsoft Foundry (Anthropic's API, lossless).
- **bedrock**: Claude models through InvokeModel (lossless for Anthropic clients;
  `anthropic-beta` moves into the body; `drop_betas` removes betas Bedrock refuses),
  others through Converse. Claude 4.x ids need an inference-profile prefix (`us.`, `eu.`,
  `apac.`, `jp.`, `au.`, `ca.`, `us-gov.`, `global.`): `weir check` says so; an application inference profile's ARN goes
  in `anthropic_models` to be served as Claude. Images and documents go as bytes (a URL
  is refused before the call). Credentials: the AWS environment variables,
  the shared files with `AWS_PROFILE` (static keys), or `AWS_BEARER_TOKEN_BEDROCK`; SSO,
  `credential_process`, assumed roles and instance metadata are not supported yet.
  Converse cannot be told `tool_choice: none` once the conversation holds tool calls
  (the tools must then be declared, and it has no `none`), and an OpenAI client's
  `response_format: json_object` without a schema is not sent (as for Anthropic: the
  prompt asks for JSON).
- **vertex**: Claude through rawPredict (lossless), Gemini through generateContent.
  Tokens from Google's credentials (`GOOGLE_APPLICATION_CREDENTIALS`, application default
  credentials, the metadata server), refreshed before expiry and fetched anew after a 401.
- **gemini**: function calls get ids Gemini does not send (`toolu_gemini_...`) and
  results find their function by them; Gemini's thought signatures travel through
  Anthropic clients inside thinking blocks, and through OpenAI clients inside the ids of
  the calls they sign (`<id>__wsig<length>_<signature>`; LiteLLM's `__thought__` form is
  read too; a call whose signature was lost or cut gets Google's placeholder, and other
  upstreams get the call's own id); a client asking for one tool call per
  turn (`parallel_tool_calls: false`, `disable_parallel_tool_use`) gets Gemini's first
  call only, Gemini having no such switch; a matched stop sequence is reported as a
  normal end (Gemini does not distinguish them). Web search (Claude's `web_search` tool,
  as Claude Code's web search sends it, or an OpenAI client's `web_search_options`) is
  grounding with Google Search: the answer comes back in Claude's shape (a
  `server_tool_use` and `web_search_tool_result` with the pages, the supported sentences
  as text blocks citing them; `url_citation` annotations for OpenAI clients). Its domain
  lists are refused (Gemini takes none); `max_uses` and `user_location` are not sent. A
  Responses client's hosted `web_search` is grounding too when no function tools come
  with it, else left out (`x-weir-warning` says so).
  Answer and tool schemas keep their property order, told as `propertyOrdering` (Gemini
  otherwise writes properties alphabetically: an answer before its reasoning). An OpenAI
  client's `input_audio` parts go as inline audio.
- **ollama**: the native `/api/chat` (NDJSON); no key by default, `keys` go as Bearer
  (hosted Ollama); images as base64 only; tool calls get
  ids; an OpenAI client's `seed` and penalties become options. It has no `tool_choice`:
  `none` sends no tools, a named tool is the only one sent, `required` sends the tools as
  they are (neither is enforced). Ollama's OpenAI- and Anthropic-compatible
  endpoints work with `kind = \"openai\"` (`base_url = \"http://localhost:11434/v1\"`) and
  `kind = \"anthropic\"`.
";

pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let which = args
        .first()
        .ok_or("usage: cargo xtask conformance <provider>|all")?
        .clone();
    if which != "all"
        && !root
            .join("fixtures")
            .join(&which)
            .join("conformance.toml")
            .is_file()
    {
        return Err(format!(
            "no suite for `{which}`: fixtures/{which}/conformance.toml does not exist"
        ));
    }
    let report = root.join("target/conformance.json");
    let _ = std::fs::remove_file(&report);
    let status = crate::cargo()
        .current_dir(root)
        .args([
            "test",
            "-p",
            "weir-testkit",
            "--test",
            "conformance",
            "--",
            "--nocapture",
        ])
        .env("WEIR_CONFORMANCE_PROVIDER", &which)
        .env("WEIR_CONFORMANCE_REPORT", &report)
        .status()
        .map_err(|e| format!("cargo test: {e}"))?;
    let text = std::fs::read_to_string(&report)
        .map_err(|e| format!("the suite wrote no report ({e}); see the output above"))?;
    let rows: Vec<Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut matrix: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        matrix
            .entry(s("provider"))
            .or_default()
            .insert(s("case"), (s("result"), s("detail")));
    }
    let table = render(&matrix);
    println!("{table}");
    if which == "all" {
        let mut doc = String::from(
            "# Provider compatibility\n\nWritten by `cargo xtask conformance all`: every provider's \
             cassettes (`fixtures/<provider>/conformance.toml`) replayed through the gateway \
             against one shared list of cases, each sent by an Anthropic and an OpenAI client.\n\
             `pass`: both clients got what the case expects; `n/a`: the provider declares the \
             case unsupported (reasons below).\n\n",
        );
        doc.push_str(&table);
        let mut reasons = String::new();
        for (p, cases) in &matrix {
            for (c, (result, detail)) in cases {
                if result == "unsupported" {
                    let _ = writeln!(reasons, "- {p}, {c}: {detail}");
                }
            }
        }
        if !reasons.is_empty() {
            doc.push_str("\nUnsupported, and why:\n\n");
            doc.push_str(&reasons);
        }
        doc.push_str(NOTES);
        std::fs::write(root.join("docs/providers.md"), doc).map_err(|e| e.to_string())?;
        println!("wrote docs/providers.md");
    }
    if status.success() {
        Ok(())
    } else {
        Err("conformance failures (see above)".into())
    }
}

fn render(matrix: &BTreeMap<String, BTreeMap<String, (String, String)>>) -> String {
    let mut t = String::from("| provider |");
    for (_, title) in CASES {
        let _ = write!(t, " {title} |");
    }
    t.push_str("\n|---|");
    for _ in CASES {
        t.push_str("---|");
    }
    t.push('\n');
    for (p, cases) in matrix {
        let _ = write!(t, "| {p} |");
        for (c, _) in CASES {
            let cell = match cases.get(*c).map(|(r, _)| r.as_str()) {
                Some("pass") => "pass",
                Some("unsupported") => "n/a",
                Some("FAIL") => "**FAIL**",
                _ => "**missing**",
            };
            let _ = write!(t, " {cell} |");
        }
        t.push('\n');
    }
    t
}
