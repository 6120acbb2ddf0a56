//! The request's configuration objects: `tools`, `toolConfig` and `generationConfig`.

use weir_model::json_writer::JsonWriter;
use weir_model::{ChatRequest, FunctionTool, OutputFormat, ThinkingConfig, ToolChoice, WireError};

use crate::request::{EncodeOptions, SchemaMode};

/// The largest `thinkingBudget` sent: Gemini 2.5 Flash and Flash-Lite accept at most this
/// (Pro 32768); larger Anthropic budgets are capped rather than refused.
pub const MAX_THINKING_BUDGET: u32 = 24_576;

pub(crate) fn write_tools(
    w: &mut JsonWriter,
    functions: &[&FunctionTool],
    search: bool,
    opts: &EncodeOptions,
    budget: &crate::schema::Budget,
) -> Result<(), WireError> {
    w.key("tools");
    w.begin_array();
    if search {
        w.raw(r#"{"googleSearch":{}}"#);
    }
    if functions.is_empty() {
        w.end_array();
        return Ok(());
    }
    w.begin_object();
    w.key("functionDeclarations");
    w.begin_array();
    for f in functions {
        w.begin_object();
        w.key("name");
        w.string(&f.name);
        if let Some(d) = &f.description {
            w.key("description");
            w.json_str(d);
        }
        if let Some(params) = &f.parameters {
            match opts.schema {
                SchemaMode::Cleaned => {
                    let cleaned = crate::schema::clean(params.get(), budget)
                        .map_err(|e| WireError::Unsupported(format!("tool `{}`: {e}", f.name)))?;
                    if !crate::schema::takes_nothing(&cleaned) {
                        w.key("parameters");
                        w.raw(&cleaned.to_string());
                    }
                }
                SchemaMode::JsonSchema => {
                    w.key("parametersJsonSchema");
                    w.raw_value(params);
                }
            }
        }
        w.end_object();
    }
    w.end_array();
    w.end_object();
    w.end_array();
    Ok(())
}

pub(crate) fn write_tool_config(
    w: &mut JsonWriter,
    choice: &ToolChoice,
    functions: &[&FunctionTool],
) -> Result<(), WireError> {
    let (mode, only) = match choice {
        ToolChoice::Auto => ("AUTO", None),
        ToolChoice::Required => ("ANY", None),
        ToolChoice::None => ("NONE", None),
        ToolChoice::Tool(name) => {
            if !functions.iter().any(|f| f.name == *name) {
                return Err(WireError::Unsupported(format!(
                    "tool_choice names `{name}`, which is not among the tools"
                )));
            }
            ("ANY", Some(name))
        }
        ToolChoice::Unknown { dialect, .. } => {
            return Err(WireError::Unsupported(format!(
                "this {dialect} tool_choice cannot be sent to Gemini"
            )))
        }
    };
    w.key("toolConfig");
    w.begin_object();
    w.key("functionCallingConfig");
    w.begin_object();
    w.key("mode");
    w.string(mode);
    if let Some(name) = only {
        w.key("allowedFunctionNames");
        w.begin_array();
        w.string(name);
        w.end_array();
    }
    w.end_object();
    w.end_object();
    Ok(())
}

pub(crate) fn write_generation_config(
    w: &mut JsonWriter,
    req: &ChatRequest,
    opts: &EncodeOptions,
    budget: &crate::schema::Budget,
) -> Result<(), WireError> {
    let thinking = thinking(req);
    let stops = req.stop.as_ref().map(|s| &s.sequences[..]).unwrap_or(&[]);
    let format = req.output_format()?;
    // OpenAI's `seed`: Gemini's is a 32-bit integer; anything else is left out (Gemini
    // would refuse the request for it).
    let seed = (req.origin == Some(weir_model::Dialect::OpenAi))
        .then(|| req.extra.get("seed"))
        .flatten()
        .and_then(|raw| raw.get().trim().parse::<i32>().ok());
    if req.max_tokens.is_none()
        && seed.is_none()
        && req.temperature.is_none()
        && req.top_p.is_none()
        && req.top_k.is_none()
        && stops.is_empty()
        && thinking.is_none()
        && format.is_none()
    {
        return Ok(());
    }
    w.key("generationConfig");
    w.begin_object();
    if let Some(format) = format {
        w.key("responseMimeType");
        w.string("application/json");
        if let OutputFormat::JsonSchema(schema) = format {
            match opts.schema {
                SchemaMode::Cleaned => {
                    let cleaned = crate::schema::clean(schema.get(), budget)
                        .map_err(|e| WireError::Unsupported(format!("the response schema: {e}")))?;
                    w.key("responseSchema");
                    w.raw(&cleaned.to_string());
                }
                SchemaMode::JsonSchema => {
                    w.key("responseJsonSchema");
                    w.raw_value(schema);
                }
            }
        }
    }
    if let Some(n) = req.max_tokens {
        w.key("maxOutputTokens");
        w.u64(u64::from(n));
    }
    if let Some(t) = req.temperature {
        w.key("temperature");
        w.f64(t);
    }
    if let Some(p) = req.top_p {
        w.key("topP");
        w.f64(p);
    }
    if let Some(k) = req.top_k {
        w.key("topK");
        w.u64(u64::from(k));
    }
    if let Some(seed) = seed {
        w.key("seed");
        w.raw(&seed.to_string());
    }
    if !stops.is_empty() {
        w.key("stopSequences");
        w.begin_array();
        for s in stops {
            w.string(s);
        }
        w.end_array();
    }
    if let Some((amount, include)) = thinking {
        w.key("thinkingConfig");
        w.begin_object();
        match amount {
            Amount::Budget(budget) => {
                w.key("thinkingBudget");
                w.raw(&budget.to_string());
            }
            Amount::Level(level) => {
                w.key("thinkingLevel");
                w.string(level);
            }
            Amount::Default => {}
        }
        if include {
            w.key("includeThoughts");
            w.bool(true);
        }
        w.end_object();
    }
    w.end_object();
    Ok(())
}

/// How much to think, as `thinkingConfig` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Amount {
    /// `thinkingBudget` (-1: the model decides): Gemini 2.x.
    Budget(i64),
    /// `thinkingLevel`: Gemini 3 on, where a budget is only for compatibility, and
    /// Gemini 4 refuses it.
    Level(&'static str),
    /// Neither: the model's own default (dynamic thinking on Gemini 3 on).
    Default,
}

/// Whether the model takes `thinkingLevel` rather than `thinkingBudget`: Gemini 3 on, by
/// the version in its name (`gemini-3-pro-preview`, `gemini-3.1-pro`, `gemini-4-neon`), and
/// the `-latest` aliases, which name current models.
fn takes_levels(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    let Some(i) = m.find("gemini-") else {
        return false;
    };
    let rest = &m[i + "gemini-".len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    match rest[..digits].parse::<u32>() {
        Ok(major) => major >= 3,
        Err(_) => m.ends_with("-latest"),
    }
}

/// The least thinking `model` takes: `low` where it takes levels (not every model takes
/// `minimal`), Gemini 2.5 Pro's least budget, 128 (0 is a 400: it cannot stop thinking),
/// else none at all.
fn least_thinking(model: &str, levels: bool) -> Amount {
    if levels {
        Amount::Level("low")
    } else if model.to_ascii_lowercase().contains("2.5-pro") {
        Amount::Budget(128)
    } else {
        Amount::Budget(0)
    }
}

/// `thinkingConfig`'s amount and `includeThoughts`, if any.
fn thinking(req: &ChatRequest) -> Option<(Amount, bool)> {
    let levels = takes_levels(&req.model);
    // Gemini 3 Pro takes `low` and `high` only: its `medium` is `high`.
    let medium = if req.model.to_ascii_lowercase().contains("gemini-3-pro") {
        "high"
    } else {
        "medium"
    };
    // An Anthropic budget as a level: Gemini 3's are coarse, and `minimal` and `xhigh`
    // are not taken by every model, so low, medium or high.
    let budget = |n: u32| {
        if !levels {
            return Amount::Budget(i64::from(n.min(MAX_THINKING_BUDGET)));
        }
        Amount::Level(match ThinkingConfig::budget_level(n) {
            "medium" => medium,
            level => level,
        })
    };
    // Adaptive thinking: the model's own dynamic thinking, at the level an Anthropic
    // client's `output_config.effort` names (Claude Code sends one) on Gemini 3 on.
    let dynamic = if levels {
        match req.anthropic_effort().as_deref() {
            Some("low") => Amount::Level("low"),
            Some("medium") => Amount::Level(medium),
            Some("high" | "xhigh" | "max") => Amount::Level("high"),
            _ => Amount::Default,
        }
    } else {
        Amount::Budget(-1)
    };
    match &req.thinking {
        Some(ThinkingConfig::Enabled { budget_tokens }) => Some((budget(*budget_tokens), true)),
        Some(ThinkingConfig::Adaptive(_)) => Some((dynamic, true)),
        // As little thinking as the model takes, unshown: Claude Code's side calls say
        // disabled, and Gemini 2.5 and on think by default (billed, and eating a small
        // output limit). Older models, which do not think, get nothing.
        Some(ThinkingConfig::Disabled) => (levels || req.model.contains("2.5"))
            .then(|| (least_thinking(&req.model, levels), false)),
        Some(ThinkingConfig::Unknown(raw)) => {
            // A newer Anthropic form: read what we can, leave the rest to the model.
            let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
            match v.get("type").and_then(|t| t.as_str()) {
                Some("enabled") => v
                    .get("budget_tokens")
                    .and_then(serde_json::Value::as_u64)
                    .map(|n| (budget(u32::try_from(n).unwrap_or(u32::MAX)), true)),
                Some("adaptive") => Some((dynamic, true)),
                _ => None,
            }
        }
        // OpenAI's reasoning_effort: for Gemini 3 on, the level of the same name (`none`
        // and `minimal` as `low`: thinking cannot be turned off on every model, and
        // `minimal` is refused by several; `xhigh` as `high`, the most every model takes);
        // before, a budget, as Google's own OpenAI compatibility layer maps it.
        None if levels => match req.reasoning_effort.as_deref()? {
            "none" => Some((least_thinking(&req.model, true), false)),
            "minimal" | "low" => Some((Amount::Level("low"), true)),
            "medium" => Some((Amount::Level(medium), true)),
            "high" | "xhigh" => Some((Amount::Level("high"), true)),
            _ => None,
        },
        None => match req.reasoning_effort.as_deref()? {
            // (Models before 2.5 do not think, and refuse a thinking config.)
            "none" if req.model.contains("2.5") => Some((least_thinking(&req.model, false), false)),
            "none" => None,
            "minimal" | "low" => Some((Amount::Budget(1024), true)),
            "medium" => Some((Amount::Budget(8192), true)),
            "high" => Some((Amount::Budget(i64::from(MAX_THINKING_BUDGET)), true)),
            _ => None,
        },
    }
}
