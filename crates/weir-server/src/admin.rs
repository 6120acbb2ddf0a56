//! The admin API, on its own listener: `GET /health` (open), and behind
//! `Authorization: Bearer <auth.admin_key>`: `GET /status` (JSON, no secrets),
//! `GET /metrics` (Prometheus), `POST /reload`, and the dashboard at `/` (HTML; the key
//! may also come as HTTP Basic credentials there, since browsers cannot send a Bearer
//! header).

// The `Err` of `authorized` is a ready-made response, built once per refused request.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::http::{full, Body};

/// Whether `req` carries the admin key: as a Bearer token, or (`basic`: the dashboard's
/// `GET /` only) as HTTP Basic credentials. Credentials a browser caches for the dashboard
/// must not let any web page the operator visits POST `/reload` (a plain form can).
fn authorized(app: &App, req: &Request<Incoming>, basic: bool) -> Result<(), Response<Body>> {
    let Some(admin) = &app.admin_key else {
        return Err(full(
            StatusCode::FORBIDDEN,
            "application/json",
            r#"{"error":{"type":"permission_error","message":"the admin API is disabled: set auth.admin_key (or WEIR_ADMIN_KEY in zero-config)"}}"#,
        ));
    };
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let password;
    let presented = match header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
    {
        Some(k) => k,
        // Browsers (the dashboard) send Basic credentials: the key is the password.
        None if basic => {
            password = basic_password(header).unwrap_or_default();
            &password
        }
        None => "",
    };
    if presented.trim().is_empty() {
        return Err(refused());
    }
    let a: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(admin.expose().as_bytes()).into();
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(refused())
    }
}

fn refused() -> Response<Body> {
    full(
        StatusCode::UNAUTHORIZED,
        "application/json",
        r#"{"error":{"type":"authentication_error","message":"missing or invalid admin key (Authorization: Bearer <admin_key>)"}}"#,
    )
}

/// The password of `Basic <base64(user:password)>` credentials.
fn basic_password(header: &str) -> Option<String> {
    use base64::Engine as _;
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.1.to_owned())
}

fn status(app: &App) -> String {
    status_json(app).to_string()
}

fn status_json(app: &App) -> serde_json::Value {
    let st = app.router.status();
    let providers: Vec<serde_json::Value> = app
        .provider_kinds
        .iter()
        .map(|(id, kind)| {
            let keys = st
                .providers
                .iter()
                .find(|p| &p.id == id)
                .map(|p| serde_json::to_value(&p.keys).unwrap_or_default())
                .unwrap_or_else(|| serde_json::json!([]));
            serde_json::json!({"id": id, "kind": kind, "keys": keys})
        })
        .collect();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "providers": providers,
        "targets": st.targets,
        "models": st.routes,
        "state": match &app.state {
            Some(s) => serde_json::json!({
                "backend": "redis",
                "reachable": s.is_up(),
                "fail_mode": if s.fail_open() { "open" } else { "closed" },
            }),
            None => serde_json::json!({"backend": "memory"}),
        },
    })
}

/// Handles one admin request.
pub async fn handle(
    live: Arc<crate::Live>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let app = live.get();
    let r = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/health") => {
            full(StatusCode::OK, "application/json", r#"{"status":"ok"}"#)
        }
        (&Method::GET, "/status") => match authorized(&app, &req, false) {
            Ok(()) => full(StatusCode::OK, "application/json", status(&app)),
            Err(r) => r,
        },
        (&Method::GET, "/metrics") => match authorized(&app, &req, false) {
            Ok(()) => {
                if let Some(w) = &app.ledger {
                    app.metrics.set_ledger(w.dropped(), w.written());
                }
                // As /status shows them (a due breaker is half open).
                for t in app.router.status().targets {
                    app.metrics.breaker_now(&t.provider, &t.model, t.breaker);
                }
                // The exposition is OpenMetrics text (counters' TYPE lines name the
                // family without `_total`; `# EOF` at the end): said so, Prometheus reads
                // the counters as counters.
                full(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    app.metrics.render(),
                )
            }
            Err(r) => r,
        },
        (&Method::POST, "/reload") => match authorized(&app, &req, false) {
            Ok(()) => {
                // Building providers may read credential files: off the runtime thread.
                let l = live.clone();
                let outcome = tokio::task::spawn_blocking(move || l.reload())
                    .await
                    .unwrap_or_else(|_| Some(Err(vec!["the reload panicked".to_owned()])));
                match outcome {
                    None => full(
                        StatusCode::CONFLICT,
                        "application/json",
                        r#"{"error":{"type":"invalid_request_error","message":"this gateway runs without a config file (zero-config): there is nothing to reload"}}"#,
                    ),
                    Some(Ok(())) => full(
                        StatusCode::OK,
                        "application/json",
                        r#"{"status":"reloaded"}"#,
                    ),
                    Some(Err(errors)) => {
                        // As SIGHUP's and the file watcher's refusals are.
                        for e in &errors {
                            tracing::error!(
                                "reload (POST /reload) refused, the running config stays: {e}"
                            );
                        }
                        full(
                            StatusCode::BAD_REQUEST,
                            "application/json",
                            serde_json::json!({"error": {
                                "type": "invalid_request_error",
                                "message": "the new config has errors; the running config stays",
                                "errors": errors,
                            }})
                            .to_string(),
                        )
                    }
                }
            }
            Err(r) => r,
        },
        (&Method::GET, "/") => match authorized(&app, &req, true) {
            Ok(()) => {
                let mut r = full(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    crate::dashboard::render(&status_json(&app)),
                );
                r.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-store"),
                );
                r
            }
            Err(mut r) => {
                // Lets a browser ask for the key (as the password).
                if r.status() == StatusCode::UNAUTHORIZED {
                    r.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static(
                            "Basic realm=\"weir admin (password: the admin key)\", charset=\"UTF-8\"",
                        ),
                    );
                }
                r
            }
        },
        (m, path) => match path {
            "/health" | "/status" | "/metrics" | "/" | "/reload" => {
                let allow = match path {
                    "/reload" => "POST",
                    "/health" => "GET, HEAD",
                    _ => "GET",
                };
                let mut r = full(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "application/json",
                    serde_json::json!({"error": {
                        "type": "invalid_request_error",
                        "message": format!("{m} is not allowed on {path} (allowed: {allow})"),
                    }})
                    .to_string(),
                );
                r.headers_mut()
                    .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
                r
            }
            _ => full(
                StatusCode::NOT_FOUND,
                "application/json",
                r#"{"error":{"type":"not_found_error","message":"no such admin endpoint"}}"#,
            ),
        },
    };
    let mut r = r;
    // Every response carries a request id, the admin port's too.
    if let Ok(v) = http::HeaderValue::from_str(&crate::http::request_id()) {
        r.headers_mut().insert(crate::http::X_REQUEST_ID, v);
    }
    Ok(r)
}
