//! What a Bedrock model id says: which API serves it (InvokeModel for Anthropic models,
//! Converse for the rest), what it supports, how it takes reasoning settings, and whether
//! it needs an inference profile.

use weir_model::{Capabilities, ChatRequest, Dialect, ThinkingConfig};

/// Geography prefixes of cross-region inference profile ids (`us.anthropic.claude-...`).
const PROFILE_PREFIXES: &[&str] = &["us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"];

/// Whether a model id is an Anthropic model, served through InvokeModel with the
/// Anthropic Messages body. Application inference profile ARNs carry no model name and
/// go through Converse.
pub fn is_anthropic(model: &str) -> bool {
    model.contains("anthropic.")
}

/// The foundation model id inside a model id: without an ARN's prefix and without an
/// inference profile's geography (`us.amazon.nova-pro-v1:0` -> `amazon.nova-pro-v1:0`).
/// An application inference profile ARN has no model name: its opaque id is returned.
pub fn base_model(model: &str) -> &str {
    let id = if model.starts_with("arn:") {
        model.rsplit('/').next().unwrap_or(model)
    } else {
        model
    };
    match id.split_once('.') {
        Some((geo, rest)) if PROFILE_PREFIXES.contains(&geo) && rest.contains('.') => rest,
        _ => id,
    }
}

fn has_profile_prefix(model: &str) -> bool {
    model
        .split_once('.')
        .is_some_and(|(geo, rest)| PROFILE_PREFIXES.contains(&geo) && rest.contains('.'))
}

/// Claude models that Bedrock serves on demand only through an inference profile:
/// Claude 3.7 Sonnet and every Claude of generation 4 or later (Sonnet 4 and 4.5, Opus 4,
/// 4.1 and 4.5, Haiku 4.5, ...). Their bare ids answer 400 "Invocation of model ID ...
/// with on-demand throughput isn't supported. Retry your request with the ID or ARN of an
/// inference profile that contains this model."
fn needs_profile(base: &str) -> bool {
    let Some(rest) = base.strip_prefix("anthropic.claude-") else {
        return false;
    };
    if rest.starts_with("3-7-") {
        return true;
    }
    for family in ["opus-", "sonnet-", "haiku-"] {
        if let Some(after) = rest.strip_prefix(family) {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            return digits
                .parse::<u32>()
                .is_ok_and(|generation| generation >= 4);
        }
    }
    false
}

/// Checks a model id configured for a Bedrock target. For a Claude 4.x (or 3.7) model id
/// used without an inference profile, which Bedrock refuses on demand, a message that
/// says so and names the fix; `None` for ids that are fine as far as can be told.
pub fn check_model_id(id: &str) -> Option<String> {
    let bare = if id.starts_with("arn:") {
        // Only a foundation-model ARN names a bare model; profile ARNs are fine.
        id.split_once(":foundation-model/")?.1
    } else {
        id
    };
    if has_profile_prefix(bare) || !needs_profile(bare) {
        return None;
    }
    Some(format!(
        "Bedrock serves `{bare}` on demand only through an inference profile (the bare model id \
         fails with \"on-demand throughput isn't supported\"): use `us.{bare}`, or the `eu.`, \
         `apac.`, `jp.`, `au.` or `global.` profile that matches the provider's region, or an \
         inference profile ARN (an application inference profile's ARN goes in the provider's \
         anthropic_models too, so it is served as Claude)"
    ))
}

/// What a model supports, per Bedrock's documented Converse features by model family;
/// Anthropic models (InvokeModel) support everything and pass Anthropic requests through.
pub fn capabilities(model: &str) -> Capabilities {
    if is_anthropic(model) {
        return anthropic_capabilities();
    }
    let base = base_model(model);
    let has = |prefixes: &[&str]| prefixes.iter().any(|p| base.starts_with(p));
    let mut c = Capabilities {
        native_dialect: None,
        images: false,
        documents: true,
        tools: true,
        parallel_tools: true,
        thinking: false,
        prompt_caching: false,
        threads: false,
    };
    if base.starts_with("amazon.nova") {
        c.images = !base.starts_with("amazon.nova-micro");
        c.prompt_caching = true;
        c.thinking = base.starts_with("amazon.nova-2") || base.starts_with("amazon.nova-premier");
    } else if base.starts_with("amazon.titan-text") {
        c.tools = false;
    } else if base.starts_with("meta.llama") {
        c.images = has(&["meta.llama3-2-11b", "meta.llama3-2-90b", "meta.llama4"]);
        c.tools = !has(&["meta.llama3-8b", "meta.llama3-70b", "meta.llama2"]);
    } else if base.starts_with("mistral.") {
        c.images = base.starts_with("mistral.pixtral");
        c.tools = has(&[
            "mistral.mistral-large",
            "mistral.mistral-small",
            "mistral.pixtral",
        ]);
    } else if base.starts_with("deepseek.r1") {
        c.tools = false;
        c.thinking = true;
    } else if has(&["openai.gpt-oss", "qwen.qwen3"]) {
        c.thinking = true;
    } else if base.starts_with("cohere.command-text") || base.starts_with("cohere.command-light") {
        c.tools = false;
    } else if base.contains("claude") {
        // A Claude behind an ARN without the model name would not get here; one with it
        // is Anthropic. Kept for ids such as `claude-...` of custom model imports.
        c.images = true;
        c.thinking = true;
        c.prompt_caching = true;
    }
    c.parallel_tools = c.tools;
    c
}

/// What an Anthropic model served through InvokeModel supports: everything, natively.
pub(crate) fn anthropic_capabilities() -> Capabilities {
    // Message threads are Anthropic's own API's (and Claude Platform on AWS's), not
    // Bedrock's.
    Capabilities {
        native_dialect: Some(Dialect::Anthropic),
        threads: false,
        ..Capabilities::ALL
    }
}

/// Whether Converse `cachePoint` blocks may be sent for this model.
pub(crate) fn supports_cache_points(model: &str) -> bool {
    capabilities(model).prompt_caching
}

/// The reasoning effort a request asks for, as `low`/`medium`/`high`: OpenAI
/// `reasoning_effort`, else the size of an Anthropic thinking budget.
fn effort(req: &ChatRequest) -> Option<&'static str> {
    match &req.thinking {
        Some(ThinkingConfig::Disabled) => return None,
        Some(ThinkingConfig::Enabled { budget_tokens }) => {
            return Some(ThinkingConfig::budget_level(*budget_tokens))
        }
        Some(ThinkingConfig::Adaptive(_)) => return Some("medium"),
        Some(ThinkingConfig::Unknown(_)) | None => {}
    }
    match req.reasoning_effort.as_deref()? {
        "low" => Some("low"),
        "medium" => Some("medium"),
        "high" | "xhigh" => Some("high"),
        _ => None,
    }
}

/// A Claude thinking budget for a request: its own, else one sized from the effort.
fn thinking_budget(req: &ChatRequest) -> Option<u32> {
    match &req.thinking {
        Some(ThinkingConfig::Enabled { budget_tokens }) => Some(*budget_tokens),
        Some(ThinkingConfig::Disabled) => None,
        _ => Some(match effort(req)? {
            "low" => 1024,
            "medium" => 4096,
            _ => 16384,
        }),
    }
}

/// `output_config.effort` to send beside adaptive thinking to a Claude model on Converse:
/// an Anthropic client's own, else an OpenAI client's `reasoning_effort` as Anthropic's
/// levels (`minimal` as `low`; `xhigh` as `xhigh` from Claude 4.7, `max` on 4.6).
pub(crate) fn claude_effort(model: &str, req: &ChatRequest) -> Option<&'static str> {
    let adaptive_only =
        weir_anthropic::thinking_form(base_model(model)) == weir_anthropic::ThinkingForm::Adaptive;
    if let Some(e) = req.anthropic_effort() {
        return ["low", "medium", "high", "xhigh", "max"]
            .into_iter()
            .find(|l| *l == e);
    }
    // A budget where budgets are refused: the effort of its size.
    if let Some(ThinkingConfig::Enabled { budget_tokens }) = &req.thinking {
        return Some(ThinkingConfig::budget_level(*budget_tokens));
    }
    weir_anthropic::effort_level(req.reasoning_effort.as_deref()?, adaptive_only)
}

/// Reasoning settings for Converse's `additionalModelRequestFields`, as the model family
/// takes them (`(key, JSON value)`), and the thinking budget when there is one (the
/// output limit must exceed it). Families that always reason (DeepSeek R1) or never do
/// get nothing.
pub(crate) fn reasoning_fields(
    model: &str,
    req: &ChatRequest,
) -> (Option<(&'static str, String)>, Option<u32>) {
    let base = base_model(model);
    if base.contains("claude") {
        // Claude 4.6 on: adaptive thinking for adaptive or effort-sized thinking (the
        // model sizes it), and for a budget where budgets are refused (4.7 on).
        use weir_anthropic::ThinkingForm;
        let form = weir_anthropic::thinking_form(base);
        let adaptive = match &req.thinking {
            Some(ThinkingConfig::Enabled { .. }) => form == ThinkingForm::Adaptive,
            _ => form != ThinkingForm::Budget,
        };
        if adaptive {
            // (`minimal`, which sizes no budget, is the least adaptive thinking.)
            let minimal =
                req.thinking.is_none() && req.reasoning_effort.as_deref() == Some("minimal");
            return match thinking_budget(req) {
                Some(_) => (
                    Some(("thinking", r#"{"type":"adaptive"}"#.to_owned())),
                    None,
                ),
                None if minimal => (
                    Some(("thinking", r#"{"type":"adaptive"}"#.to_owned())),
                    None,
                ),
                None => (None, None),
            };
        }
        return match thinking_budget(req) {
            Some(b) => (
                Some((
                    "thinking",
                    format!(r#"{{"type":"enabled","budget_tokens":{b}}}"#),
                )),
                Some(b),
            ),
            None => (None, None),
        };
    }
    let Some(effort) = effort(req) else {
        return (None, None);
    };
    let field = if base.starts_with("openai.gpt-oss") {
        ("reasoning_effort", format!("\"{effort}\""))
    } else if base.starts_with("amazon.nova-2") || base.starts_with("amazon.nova-premier") {
        (
            "reasoningConfig",
            format!(r#"{{"type":"enabled","maxReasoningEffort":"{effort}"}}"#),
        )
    } else if base.starts_with("qwen.") {
        ("reasoning_config", format!("\"{effort}\""))
    } else {
        return (None, None);
    };
    (Some(field), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_from_4_6_gets_adaptive_thinking_through_converse() {
        let req = |thinking: Option<ThinkingConfig>, effort: Option<&str>| ChatRequest {
            thinking,
            reasoning_effort: effort.map(str::to_owned),
            ..Default::default()
        };
        let adaptive = (
            Some(("thinking", r#"{"type":"adaptive"}"#.to_owned())),
            None,
        );
        let budget = |b: u32| {
            (
                Some((
                    "thinking",
                    format!(r#"{{"type":"enabled","budget_tokens":{b}}}"#),
                )),
                Some(b),
            )
        };
        let opus5 = "us.anthropic.claude-opus-5-v1:0";
        let sonnet46 = "anthropic.claude-sonnet-4-6";
        let enabled = Some(ThinkingConfig::Enabled {
            budget_tokens: 2000,
        });
        assert_eq!(reasoning_fields(opus5, &req(None, Some("high"))), adaptive);
        assert_eq!(
            reasoning_fields(opus5, &req(enabled.clone(), None)),
            adaptive
        );
        assert_eq!(
            reasoning_fields(sonnet46, &req(Some(ThinkingConfig::Adaptive(None)), None)),
            adaptive
        );
        assert_eq!(
            reasoning_fields(sonnet46, &req(enabled.clone(), None)),
            budget(2000)
        );
        assert_eq!(
            reasoning_fields(
                "anthropic.claude-haiku-4-5-20251001-v1:0",
                &req(None, Some("low"))
            ),
            budget(1024)
        );
        assert_eq!(
            reasoning_fields(opus5, &req(Some(ThinkingConfig::Disabled), Some("high"))),
            (None, None)
        );
    }

    #[test]
    fn claude_4_and_3_7_need_an_inference_profile() {
        for id in [
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-20250514-v1:0",
            "anthropic.claude-opus-4-1-20250805-v1:0",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            "anthropic.claude-opus-4-5-20251101-v1:0",
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-20250514-v1:0",
        ] {
            let msg = check_model_id(id).unwrap_or_else(|| panic!("{id}"));
            assert!(msg.contains("inference profile"), "{msg}");
        }
        assert_eq!(
            check_model_id("anthropic.claude-sonnet-4-5-20250929-v1:0").as_deref(),
            Some(
                "Bedrock serves `anthropic.claude-sonnet-4-5-20250929-v1:0` on demand only through an \
                 inference profile (the bare model id fails with \"on-demand throughput isn't \
                 supported\"): use `us.anthropic.claude-sonnet-4-5-20250929-v1:0`, or the `eu.`, \
                 `apac.`, `jp.`, `au.` or `global.` profile that matches the provider's region, or an \
                 inference profile ARN (an application inference profile's ARN goes in the \
                 provider's anthropic_models too, so it is served as Claude)"
            )
        );
        for ok in [
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "apac.anthropic.claude-sonnet-4-20250514-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us-gov.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "amazon.nova-pro-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0",
        ] {
            assert_eq!(check_model_id(ok), None, "{ok}");
        }
    }

    #[test]
    fn base_models_and_capabilities() {
        assert_eq!(
            base_model("us.amazon.nova-pro-v1:0"),
            "amazon.nova-pro-v1:0"
        );
        assert_eq!(
            base_model("openai.gpt-oss-120b-1:0"),
            "openai.gpt-oss-120b-1:0"
        );
        assert_eq!(base_model("zai.glm-4.7-flash"), "zai.glm-4.7-flash");
        assert!(is_anthropic(
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
        ));
        assert!(!is_anthropic("us.amazon.nova-micro-v1:0"));
        let a = capabilities("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert_eq!(a.native_dialect, Some(Dialect::Anthropic));
        assert!(a.thinking && a.images && a.prompt_caching);
        let micro = capabilities("us.amazon.nova-micro-v1:0");
        assert!(!micro.images && micro.tools && micro.prompt_caching && !micro.thinking);
        assert!(capabilities("us.amazon.nova-pro-v1:0").images);
        let r1 = capabilities("us.deepseek.r1-v1:0");
        assert!(!r1.tools && r1.thinking && !r1.parallel_tools);
        assert!(capabilities("us.mistral.pixtral-large-2502-v1:0").images);
        assert!(!capabilities("mistral.mistral-7b-instruct-v0:2").tools);
    }

    #[test]
    fn reasoning_settings_per_family() {
        let req = |effort: &str| ChatRequest {
            reasoning_effort: Some(effort.to_owned()),
            ..Default::default()
        };
        let f =
            |m: &str, r: &ChatRequest| reasoning_fields(m, r).0.map(|(k, v)| format!("{k}={v}"));
        assert_eq!(
            f("openai.gpt-oss-120b-1:0", &req("medium")).as_deref(),
            Some("reasoning_effort=\"medium\"")
        );
        assert_eq!(
            f("qwen.qwen3-32b-v1:0", &req("xhigh")).as_deref(),
            Some("reasoning_config=\"high\"")
        );
        assert_eq!(
            f("us.amazon.nova-2-lite-v1:0", &req("low")).as_deref(),
            Some(r#"reasoningConfig={"type":"enabled","maxReasoningEffort":"low"}"#)
        );
        assert_eq!(f("us.amazon.nova-pro-v1:0", &req("high")), None);
        assert_eq!(f("openai.gpt-oss-120b-1:0", &req("minimal")), None);
        let thinking = ChatRequest {
            thinking: Some(ThinkingConfig::Enabled {
                budget_tokens: 2000,
            }),
            ..Default::default()
        };
        assert_eq!(
            reasoning_fields("custom.claude-import", &thinking),
            (
                Some((
                    "thinking",
                    r#"{"type":"enabled","budget_tokens":2000}"#.to_owned()
                )),
                Some(2000)
            )
        );
        assert_eq!(
            f("openai.gpt-oss-20b-1:0", &thinking).as_deref(),
            Some("reasoning_effort=\"low\"")
        );
    }
}
