//! The admin dashboard (`GET /` on the admin listener): the `/status` snapshot as one
//! server-rendered HTML page that refreshes itself, no scripts and nothing fetched from
//! elsewhere. Browsers cannot send a Bearer header when they navigate, so the page also
//! takes the admin key as HTTP Basic credentials (any user name, the key as password).

use serde_json::Value;

/// Renders the page from the `/status` JSON.
pub(crate) fn render(status: &Value) -> String {
    let mut h = String::with_capacity(8 * 1024);
    h.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Weir</title><style>\
         body{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}\
         h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:1.6rem}\
         table{border-collapse:collapse;margin-top:.4rem}\
         th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;vertical-align:top}\
         th{background:#f3f3f3}td.num{text-align:right}\
         .bad{color:#b00020;font-weight:600}.warn{color:#a65f00}.ok{color:#1b7f3b}\
         .muted{color:#777}\
         </style></head><body>\n",
    );
    let version = status["version"].as_str().unwrap_or("?");
    let uptime = status["uptime_seconds"].as_u64().unwrap_or(0);
    h.push_str(&format!(
        "<h1>Weir {}</h1><p class=\"muted\">up {}; shared state: {}; refreshed every 5 s \
         (JSON: <code>/status</code>, Prometheus: <code>/metrics</code>)</p>\n",
        esc(version),
        duration(uptime),
        esc(&state_line(&status["state"])),
    ));

    h.push_str("<h2>Targets</h2>\n");
    table(
        &mut h,
        &status["targets"],
        &[
            ("model", "model"),
            ("provider", "provider"),
            ("breaker", "breaker"),
            ("open_ms", "reopens in"),
            ("requests", "requests"),
            ("failures", "failures"),
            ("error_rate", "error rate"),
            ("latency_ms", "latency"),
            ("in_flight", "in flight"),
        ],
    );

    h.push_str("<h2>Provider keys</h2>\n");
    let mut keys = Vec::new();
    for p in status["providers"].as_array().into_iter().flatten() {
        let pool = p["keys"].as_array().map(Vec::as_slice).unwrap_or_default();
        if pool.is_empty() {
            let mut row = serde_json::Map::new();
            row.insert("provider".into(), p["id"].clone());
            row.insert("kind".into(), p["kind"].clone());
            row.insert("key".into(), Value::from("(none needed)"));
            keys.push(Value::Object(row));
        }
        for k in pool {
            let mut row = k.as_object().cloned().unwrap_or_default();
            // The models whose quota on the key is spent (it serves the others).
            if let Some(Value::Array(limits)) = row.get("model_limits") {
                let text = limits
                    .iter()
                    .map(|l| {
                        format!(
                            "{} ({})",
                            l["model"].as_str().unwrap_or("?"),
                            duration(l["ms"].as_u64().unwrap_or(0).div_ceil(1000))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                row.insert("model_limits".into(), Value::String(text));
            }
            row.insert("provider".into(), p["id"].clone());
            row.insert("kind".into(), p["kind"].clone());
            keys.push(Value::Object(row));
        }
    }
    table(
        &mut h,
        &Value::Array(keys),
        &[
            ("provider", "provider"),
            ("kind", "kind"),
            ("key", "key"),
            ("state", "state"),
            ("cooldown_ms", "rests for"),
            ("cooldown_reason", "why"),
            ("model_limits", "models resting"),
            ("refused_status", "refused with"),
            ("refused_ms", "retried in"),
            ("requests", "requests"),
            ("rate_limited", "429s"),
            ("in_flight", "in flight"),
        ],
    );

    h.push_str("<h2>Models</h2>\n");
    table(
        &mut h,
        &status["models"],
        &[
            ("name", "model"),
            ("strategy", "strategy"),
            ("targets", "targets"),
            ("sticky", "sticky sessions"),
        ],
    );
    h.push_str("</body></html>\n");
    h
}

fn state_line(state: &Value) -> String {
    match state["backend"].as_str() {
        Some("redis") => format!(
            "Redis, {} (fail {})",
            if state["reachable"].as_bool() == Some(true) {
                "reachable"
            } else {
                "UNREACHABLE"
            },
            state["fail_mode"].as_str().unwrap_or("?")
        ),
        Some(other) => other.to_owned(),
        None => "memory".to_owned(),
    }
}

/// A table of `rows` (objects), one column per `(field, heading)`.
fn table(h: &mut String, rows: &Value, columns: &[(&str, &str)]) {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        h.push_str("<p class=\"muted\">none</p>\n");
        return;
    }
    h.push_str("<table><tr>");
    for (_, heading) in columns {
        h.push_str(&format!("<th>{}</th>", esc(heading)));
    }
    h.push_str("</tr>\n");
    for row in rows {
        h.push_str("<tr>");
        for (field, _) in columns {
            let v = &row[*field];
            let (class, text) = cell(field, v);
            h.push_str(&format!("<td{class}>{}</td>", esc(&text)));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// A cell's class attribute and text.
fn cell(field: &str, v: &Value) -> (&'static str, String) {
    match (field, v) {
        (_, Value::Null) => (" class=\"muted\"", "-".to_owned()),
        ("breaker", Value::String(s)) => (
            match s.as_str() {
                "closed" => " class=\"ok\"",
                "open" => " class=\"bad\"",
                _ => " class=\"warn\"",
            },
            s.clone(),
        ),
        ("state", Value::String(s)) => (
            if s == "ok" {
                " class=\"ok\""
            } else {
                " class=\"bad\""
            },
            s.clone(),
        ),
        ("open_ms" | "cooldown_ms", Value::Number(n)) => (
            " class=\"num\"",
            duration(n.as_u64().unwrap_or(0).div_ceil(1000)),
        ),
        ("latency_ms", Value::Number(n)) => (
            " class=\"num\"",
            format!("{:.0} ms", n.as_f64().unwrap_or(0.0)),
        ),
        ("error_rate", Value::Number(n)) => {
            let r = n.as_f64().unwrap_or(0.0);
            (
                if r >= 0.5 {
                    " class=\"num bad\""
                } else {
                    " class=\"num\""
                },
                format!("{:.1}%", r * 100.0),
            )
        }
        (_, Value::Number(n)) => (" class=\"num\"", n.to_string()),
        (_, Value::String(s)) => ("", s.clone()),
        (_, Value::Bool(b)) => ("", if *b { "yes" } else { "no" }.to_owned()),
        (_, Value::Array(a)) => (
            "",
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (_, other) => ("", other.to_string()),
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// HTML-escaped text.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn renders_every_section_and_escapes_what_it_shows() {
        let status = serde_json::json!({
            "version": "0.1.0", "uptime_seconds": 4000,
            "providers": [
                {"id": "anthropic", "kind": "anthropic", "keys": [
                    {"key": "key-1", "state": "resting", "cooldown_ms": 42000,
                     "cooldown_reason": "429", "refused_status": null, "requests": 7,
                     "rate_limited": 1, "in_flight": 0},
                    {"key": "key-2", "state": "ok", "cooldown_ms": null, "requests": 3,
                     "rate_limited": 1, "in_flight": 0,
                     "model_limits": [{"model": "claude-<b>", "ms": 90500}]}]},
                {"id": "mock", "kind": "mock", "keys": []}
            ],
            "targets": [{"model": "<script>", "provider": "anthropic", "breaker": "open",
                "open_ms": 5000, "requests": 10, "failures": 6, "error_rate": 0.6,
                "latency_ms": 812.4, "in_flight": 1}],
            "models": [{"name": "claude-*", "strategy": "fallback", "targets": ["anthropic", "mock"], "sticky": true}],
            "state": {"backend": "redis", "reachable": false, "fail_mode": "open"}
        });
        let page = render(&status);
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("up 66 min"), "{page}");
        assert!(page.contains("Redis, UNREACHABLE (fail open)"));
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
        assert!(page.contains("<td class=\"bad\">open</td>"));
        assert!(page.contains("60.0%"));
        assert!(page.contains("812 ms"));
        assert!(page.contains("<td class=\"num\">42 s</td>"));
        assert!(page.contains("(none needed)"));
        assert!(page.contains("anthropic, mock"));
        // A key resting for one model only says which, and for how long.
        assert!(page.contains("<td>claude-&lt;b&gt; (91 s)</td>"), "{page}");
    }
}
