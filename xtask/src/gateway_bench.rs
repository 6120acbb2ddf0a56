//! The gateway against the physical limit: nginx answering instantly as the upstream, wrk
//! as the load, direct and through Weir, in one run (see `../shared/bench/README.md`).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UPSTREAM: &str = "127.0.0.1:18081";
const GATEWAY: &str = "127.0.0.1:18090";
/// nginx as a reverse proxy in front of the same upstream: what a proxy written in C costs
/// on this machine, measured in the same run (the floor any gateway stands on).
const NGINX_PROXY: &str = "127.0.0.1:18095";
/// A bare reverse proxy on hyper (`bench/hyper-floor`): what the HTTP stack Weir is built
/// on costs by itself, so Weir's own work can be told from it.
const HYPER_PROXY: &str = "127.0.0.1:18096";

fn nginx_proxy_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 2;\ndaemon on;\npid {d}/nginx-proxy.pid;\nerror_log {d}/nginx-proxy.err warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  upstream up {{ server {UPSTREAM}; keepalive 64; }}\n\
           server {{\n    listen {NGINX_PROXY};\n    location / {{\n      proxy_pass http://up;\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n"
    )
}
const CLIENT_KEY: &str = "sk-bench-client-key";

const CHAT_JSON: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;
const MESSAGES_JSON: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"bench-model","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":9}}"#;

fn chat_sse() -> String {
    let head = r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model","choices":[{"index":0,"delta":"#;
    let mut s = format!(
        "data: {head}{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\n"
    );
    for w in ["Hello!", " How", " can", " I", " help", " you", " today?"] {
        let _ = write!(
            s,
            "data: {head}{{\"content\":\"{w}\"}},\"finish_reason\":null}}]}}\n\n"
        );
    }
    let _ = write!(s, "data: {head}{{}},\"finish_reason\":\"stop\"}}]}}\n\n");
    s.push_str(r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#);
    s.push_str("\n\ndata: [DONE]\n\n");
    s
}

fn messages_sse() -> String {
    let mut s = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"bench-model\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for w in ["Hello!", " How", " can", " I", " help", " you", " today?"] {
        let _ = write!(s, "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{w}\"}}}}\n\n");
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s
}

/// nginx's `return` takes a quoted string; escape it for nginx.
fn nginx_quote(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\'', "\\'")
        .replace('\n', "\\n")
}

fn nginx_conf(dir: &Path) -> String {
    format!(
        "worker_processes 1;\ndaemon on;\npid {pid};\nerror_log {err} warn;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n  server {{\n    listen {UPSTREAM};\n\
         location = /v1/chat/completions {{ default_type application/json; return 200 '{chat}'; }}\n\
         location = /v1/messages {{ default_type application/json; return 200 '{msg}'; }}\n\
         location = /stream/v1/chat/completions {{ default_type text/event-stream; return 200 '{chat_sse}'; }}\n\
         location = /stream/v1/messages {{ default_type text/event-stream; return 200 '{msg_sse}'; }}\n  }}\n}}\n",
        pid = dir.join("nginx.pid").display(),
        err = dir.join("nginx.err").display(),
        chat = nginx_quote(CHAT_JSON),
        msg = nginx_quote(MESSAGES_JSON),
        chat_sse = nginx_quote(&chat_sse()),
        msg_sse = nginx_quote(&messages_sse()),
    )
}

const WEIR_CONF: &str = r#"
[server]
listen = "127.0.0.1:18090"
[[auth.keys]]
name = "bench"
key = "sk-bench-client-key"
[providers.oai]
kind = "openai"
base_url = "http://127.0.0.1:18081/v1"
keys = ["sk-upstream"]
[providers.oai_stream]
kind = "openai"
base_url = "http://127.0.0.1:18081/stream/v1"
keys = ["sk-upstream"]
[providers.ant]
kind = "anthropic"
base_url = "http://127.0.0.1:18081"
keys = ["sk-upstream"]
[providers.ant_stream]
kind = "anthropic"
base_url = "http://127.0.0.1:18081/stream"
keys = ["sk-upstream"]
[[models]]
name = "bench-openai"
targets = [{ provider = "oai" }]
[[models]]
name = "bench-openai-stream"
targets = [{ provider = "oai_stream" }]
[[models]]
name = "bench-anthropic"
targets = [{ provider = "ant" }]
[[models]]
name = "bench-anthropic-stream"
targets = [{ provider = "ant_stream" }]
"#;

struct Scenario {
    name: &'static str,
    direct_path: &'static str,
    gateway_path: &'static str,
    script: String,
}

fn scenarios() -> Vec<Scenario> {
    let openai = |model: &str, stream: bool| {
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {CLIENT_KEY}\"\n\
             wrk.body = '{{\"model\":\"{model}\",\"stream\":{stream},\"messages\":[{{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}},{{\"role\":\"user\",\"content\":\"Say hello.\"}}],\"max_tokens\":64}}'\n"
        )
    };
    let anthropic = |model: &str, stream: bool| {
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"x-api-key\"] = \"{CLIENT_KEY}\"\nwrk.headers[\"anthropic-version\"] = \"2023-06-01\"\n\
             wrk.body = '{{\"model\":\"{model}\",\"max_tokens\":64,\"stream\":{stream},\"system\":\"You are a helpful assistant.\",\"messages\":[{{\"role\":\"user\",\"content\":\"Say hello.\"}}]}}'\n"
        )
    };
    vec![
        Scenario {
            name: "/v1/chat/completions",
            direct_path: "/v1/chat/completions",
            gateway_path: "/v1/chat/completions",
            script: openai("bench-openai", false),
        },
        Scenario {
            name: "/v1/chat/completions stream",
            direct_path: "/stream/v1/chat/completions",
            gateway_path: "/v1/chat/completions",
            script: openai("bench-openai-stream", true),
        },
        Scenario {
            name: "/v1/messages",
            direct_path: "/v1/messages",
            gateway_path: "/v1/messages",
            script: anthropic("bench-anthropic", false),
        },
        Scenario {
            name: "/v1/messages stream",
            direct_path: "/stream/v1/messages",
            gateway_path: "/v1/messages",
            script: anthropic("bench-anthropic-stream", true),
        },
    ]
}

#[derive(Clone, Copy, Default)]
struct WrkResult {
    p50_us: f64,
    p99_us: f64,
    rps: f64,
}

fn parse_latency(v: &str) -> Option<f64> {
    let v = v.trim();
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1000.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|n| n * mult)
}

fn wrk(url: &str, script: &Path, conns: u32, secs: u32) -> Result<WrkResult, String> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut r = WrkResult::default();
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("50%") {
            r.p50_us = parse_latency(v).unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("99%") {
            r.p99_us = parse_latency(v).unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        }
    }
    if text.contains("Non-2xx") {
        return Err(format!("wrk against {url} got non-2xx answers:\n{text}"));
    }
    if r.rps == 0.0 {
        return Err(format!("wrk against {url} gave no figures:\n{text}"));
    }
    Ok(r)
}

struct Guard(Vec<Child>, Vec<PathBuf>);

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in &self.1 {
            if let Ok(p) = fs::read_to_string(pid) {
                let _ = Command::new("kill").arg(p.trim()).status();
            }
        }
    }
}

fn wait_for(addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("nothing listens on {addr}"))
}

/// Runs the comparison and returns the markdown section.
pub fn run(root: &Path, secs: u32) -> Result<String, String> {
    for tool in ["nginx", "wrk"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(format!(
                "{tool} is not installed (apt-get install -y nginx-light wrk)"
            ));
        }
    }
    crate::run_cmd(crate::cargo().current_dir(root).args([
        "build",
        "--release",
        "-p",
        "weir",
        "-p",
        "hyper-floor",
    ]))?;
    let dir = root.join("target/weir-bench");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let conf = dir.join("nginx.conf");
    fs::write(&conf, nginx_conf(&dir)).map_err(|e| e.to_string())?;
    fs::write(dir.join("weir.toml"), WEIR_CONF).map_err(|e| e.to_string())?;
    let mut guard = Guard(
        Vec::new(),
        vec![dir.join("nginx.pid"), dir.join("nginx-proxy.pid")],
    );
    crate::run_cmd(
        Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&dir),
    )?;
    wait_for(UPSTREAM)?;
    let proxy_conf = dir.join("nginx-proxy.conf");
    fs::write(&proxy_conf, nginx_proxy_conf(&dir)).map_err(|e| e.to_string())?;
    crate::run_cmd(
        Command::new("nginx")
            .arg("-c")
            .arg(&proxy_conf)
            .arg("-p")
            .arg(&dir),
    )?;
    wait_for(NGINX_PROXY)?;
    let floor_proxy = Command::new(root.join("target/release/hyper-floor"))
        .args([HYPER_PROXY, UPSTREAM])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start hyper-floor: {e}"))?;
    guard.0.push(floor_proxy);
    wait_for(HYPER_PROXY)?;
    let weir = Command::new(root.join("target/release/weir"))
        .args(["serve", "--config"])
        .arg(dir.join("weir.toml"))
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start weir: {e}"))?;
    guard.0.push(weir);
    wait_for(GATEWAY)?;

    let mut rows = String::new();
    let mut floor = String::new();
    let mut missed = Vec::new();
    for s in scenarios() {
        let script = dir.join(format!("{}.lua", s.name.replace(['/', ' '], "_")));
        fs::write(&script, &s.script).map_err(|e| e.to_string())?;
        let direct_url = format!("http://{UPSTREAM}{}", s.direct_path);
        let gateway_url = format!("http://{GATEWAY}{}", s.gateway_path);
        // Warm both paths (connection pools, allocator) before measuring.
        wrk(&gateway_url, &script, 4, 1)?;
        let d1 = wrk(&direct_url, &script, 1, secs)?;
        let g1 = wrk(&gateway_url, &script, 1, secs)?;
        let d32 = wrk(&direct_url, &script, 32, secs)?;
        let g32 = wrk(&gateway_url, &script, 32, secs)?;
        let proxy_url = format!("http://{NGINX_PROXY}{}", s.direct_path);
        wrk(&proxy_url, &script, 4, 1)?;
        let n1 = wrk(&proxy_url, &script, 1, secs)?;
        let n32 = wrk(&proxy_url, &script, 32, secs)?;
        let hyper_url = format!("http://{HYPER_PROXY}{}", s.direct_path);
        wrk(&hyper_url, &script, 4, 1)?;
        let h1 = wrk(&hyper_url, &script, 1, secs)?;
        let h32 = wrk(&hyper_url, &script, 32, secs)?;
        let _ = writeln!(
            floor,
            "| `{}` | **{:.0} µs** | **{:.2}** | **{:.0} µs** | **{:.2}** |",
            s.name,
            n1.p50_us - d1.p50_us,
            n32.rps / d32.rps,
            h1.p50_us - d1.p50_us,
            h32.rps / d32.rps
        );
        let added = g1.p50_us - d1.p50_us;
        let ratio = g32.rps / d32.rps;
        if added > 50.0 {
            missed.push(format!("{}: added p50 {added:.0} µs > 50 µs", s.name));
        }
        if ratio < 0.35 {
            missed.push(format!("{}: throughput ratio {ratio:.2} < 0.35", s.name));
        }
        let _ = writeln!(
            rows,
            "| `{}` | {:.0} µs / {:.0} µs | {:.0} µs / {:.0} µs | **{added:.0} µs** | {:.0} | {:.0} | **{ratio:.2}** |",
            s.name, d1.p50_us, d1.p99_us, g1.p50_us, g1.p99_us, d32.rps, g32.rps
        );
    }
    let mut md = format!(
        "## Gateway overhead\n\n\
         `cargo xtask bench` (release build, mimalloc): nginx answers instantly as the upstream\n\
         (`target/weir-bench/nginx.conf`: the shared `upstream-nginx.conf` plus static SSE\n\
         streams), wrk drives it directly and through Weir, in one run, {secs} s per\n\
         measurement, one wrk thread, on the same 2 cores as nginx and Weir.\n\n\
         | endpoint | direct p50 / p99 (c=1) | via Weir p50 / p99 (c=1) | added p50 | direct req/s (c=32) | via Weir req/s (c=32) | ratio |\n\
         |---|---|---|---|---|---|---|\n{rows}\n\
         Targets: added p50 <= 50 µs at one connection; throughput at 32 connections >= 0.35 of\n\
         direct. For reference (`../shared/bench/README.md`, same method, this kind of machine):\n\
         LiteLLM adds 16.5 ms, Portkey 1.5 ms, and noveum-ai-gateway reaches 0.11 of direct.\n\n\
         The floor on this machine, in the same run, in front of the same upstream: nginx\n\
         itself as a reverse proxy (two workers, keepalive to the upstream, no buffering;\n\
         `target/weir-bench/nginx-proxy.conf`), and a bare reverse proxy on hyper built the\n\
         way Weir's server is (`bench/hyper-floor`: a runtime per core, keep-alive upstream\n\
         connections, the request body read whole, the answer streamed back; no auth,\n\
         routing, JSON, usage, metrics or logs). The gap between the hyper proxy and Weir is\n\
         the cost of Weir's own work.\n\n\
         | endpoint | nginx proxy added p50 (c=1) | nginx proxy ratio (c=32) | hyper proxy added p50 (c=1) | hyper proxy ratio (c=32) |\n\
         |---|---|---|---|---|\n{floor}"
    );
    if missed.is_empty() {
        md.push_str("\nAll targets met in this run.\n");
    } else {
        let _ = writeln!(md, "\nMissed in this run: {}.", missed.join("; "));
    }
    Ok(md)
}
