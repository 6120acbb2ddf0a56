#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use weir_model::{
    ApiError, CallContext, Capabilities, ChatRequest, ChatResponse, ErrorKind, Provider,
    ProviderError, Reply,
};
use weir_router::{Route, RouteError, Router, Target};

/// A provider that fails with `status` (0: answers) and counts its calls.
struct Fake {
    id: &'static str,
    status: u16,
    calls: AtomicUsize,
}

impl Fake {
    fn new(id: &'static str, status: u16) -> Arc<Fake> {
        Arc::new(Fake {
            id,
            status,
            calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait::async_trait]
impl Provider for Fake {
    fn id(&self) -> &str {
        self.id
    }
    fn capabilities(&self, _: &str) -> Capabilities {
        Capabilities::ALL
    }
    async fn send(&self, req: ChatRequest, _: CallContext) -> Result<Reply, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.status == 0 {
            return Ok(Reply::Complete(Box::new(ChatResponse {
                model: req.model,
                ..Default::default()
            })));
        }
        let mut api = ApiError::new(
            ErrorKind::from_status(self.status),
            format!("{} says {}", self.id, self.status),
        );
        api.status = self.status;
        Err(ProviderError::from_api(api, None))
    }
}

fn req(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        ..Default::default()
    }
}

fn router(providers: &[Arc<Fake>], routes: Vec<Route>) -> Router {
    Router::new(
        providers
            .iter()
            .map(|p| p.clone() as Arc<dyn Provider>)
            .collect(),
        routes,
    )
    .unwrap()
}

#[tokio::test]
async fn fallback_moves_on_after_5xx_and_429_and_keeps_the_target_model() {
    let (a, b, c) = (Fake::new("a", 503), Fake::new("b", 429), Fake::new("c", 0));
    let r = router(
        &[a.clone(), b.clone(), c.clone()],
        vec![Route::new(
            "m",
            vec![
                Target::new("a"),
                Target::new("b"),
                Target::with_model("c", "upstream-m"),
            ],
        )],
    );
    let (reply, served) = r.send(req("m"), CallContext::new("t")).await.unwrap();
    assert_eq!(
        (served.provider.as_str(), served.model.as_str()),
        ("c", "upstream-m")
    );
    let Reply::Complete(resp) = reply else {
        panic!()
    };
    assert_eq!(resp.model, "upstream-m");
    assert_eq!(
        [
            a.calls.load(Ordering::SeqCst),
            b.calls.load(Ordering::SeqCst),
            c.calls.load(Ordering::SeqCst)
        ],
        [1, 1, 1]
    );
}

#[tokio::test]
async fn a_400_is_the_clients_problem_and_is_not_retried_elsewhere() {
    let (a, b) = (Fake::new("a", 400), Fake::new("b", 0));
    let r = router(
        &[a.clone(), b.clone()],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
    );
    let Err(RouteError::Failed { last, attempts }) = r.send(req("m"), CallContext::new("t")).await
    else {
        panic!("expected failure")
    };
    assert_eq!(last.status, Some(400));
    assert_eq!(attempts.len(), 1);
    assert_eq!(b.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn all_targets_failing_reports_every_attempt() {
    let (a, b) = (Fake::new("a", 500), Fake::new("b", 529));
    let r = router(
        &[a, b],
        vec![Route::new("m", vec![Target::new("a"), Target::new("b")])],
    );
    let Err(RouteError::Failed { last, attempts }) = r.send(req("m"), CallContext::new("t")).await
    else {
        panic!("expected failure")
    };
    assert_eq!(last.kind, ErrorKind::Overloaded);
    assert_eq!(
        attempts.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
}

#[tokio::test]
async fn exact_names_win_over_globs_and_unknown_models_list_what_exists() {
    let (a, b) = (Fake::new("a", 0), Fake::new("b", 0));
    let r = router(
        &[a, b],
        vec![
            Route::new("claude-*", vec![Target::new("a")]),
            Route::new("claude-x", vec![Target::new("b")]),
        ],
    );
    let (_, served) = r
        .send(req("claude-x"), CallContext::new("t"))
        .await
        .unwrap();
    assert_eq!(served.provider, "b");
    let (_, served) = r
        .send(req("claude-y"), CallContext::new("t"))
        .await
        .unwrap();
    assert_eq!(served.provider, "a");
    let Err(RouteError::UnknownModel { model, available }) =
        r.send(req("gpt-4o"), CallContext::new("t")).await
    else {
        panic!()
    };
    assert_eq!(model, "gpt-4o");
    assert_eq!(available, ["claude-*", "claude-x"]);
}

#[test]
fn routes_must_name_known_providers() {
    let a = Fake::new("a", 0);
    let err = Router::new(
        vec![a as Arc<dyn Provider>],
        vec![Route::new("m", vec![Target::new("nope")])],
    )
    .unwrap_err();
    assert_eq!(err, "model `m` targets unknown provider `nope`");
}
