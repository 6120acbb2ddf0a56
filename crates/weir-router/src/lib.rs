//! Weir's router: which provider and upstream model serve a client's model name, and
//! moving to the next target when one fails before anything reached the client.
//!
//! It knows providers only through the [`Provider`] trait: no concrete provider, no HTTP,
//! no config file. Build one from code with [`Router::new`] and [`Route`]s.
//!
//! ```text
//! let router = Router::new(providers, vec![Route::new("claude-*", vec![Target::new("anthropic")])])?;
//! let (reply, served) = router.send(request, CallContext::new("req-1")).await?;
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod glob;

use std::collections::HashMap;
use std::sync::Arc;

use weir_model::{CallContext, ChatRequest, Provider, ProviderError, Reply};

pub use glob::glob_match;

/// One place a model can be served from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The provider's id.
    pub provider: String,
    /// The upstream model; `None` forwards the client's model name unchanged.
    pub model: Option<String>,
}

impl Target {
    /// A target forwarding the client's model name.
    pub fn new(provider: impl Into<String>) -> Self {
        Target {
            provider: provider.into(),
            model: None,
        }
    }

    /// A target with its own upstream model name.
    pub fn with_model(provider: impl Into<String>, model: impl Into<String>) -> Self {
        Target {
            provider: provider.into(),
            model: Some(model.into()),
        }
    }
}

/// How a route picks among its targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// In order; the next only when the previous failed before answering.
    #[default]
    Fallback,
}

/// A model name (exact or glob) and where it goes.
#[derive(Clone, Debug)]
pub struct Route {
    /// Exact name or glob (`*`, `?`).
    pub name: String,
    /// Targets, in order.
    pub targets: Vec<Target>,
    /// How targets are chosen.
    pub strategy: Strategy,
}

impl Route {
    /// A fallback route.
    pub fn new(name: impl Into<String>, targets: Vec<Target>) -> Self {
        Route {
            name: name.into(),
            targets,
            strategy: Strategy::Fallback,
        }
    }

    fn is_glob(&self) -> bool {
        self.name.contains(['*', '?'])
    }
}

/// Which target served a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The provider's id.
    pub provider: String,
    /// The upstream model name.
    pub model: String,
}

/// Why a request could not be routed or served.
#[derive(Debug)]
pub enum RouteError {
    /// No route matches the model; the names that do exist, for the error message.
    UnknownModel {
        /// The requested model.
        model: String,
        /// Route names (exact names and globs), in table order.
        available: Vec<String>,
    },
    /// Every target failed (or the first failure was not one to retry elsewhere); the
    /// last error, and what each target answered.
    Failed {
        /// The error returned to the client.
        last: ProviderError,
        /// `(provider, upstream model, error)` for each target tried.
        attempts: Vec<(String, String, ProviderError)>,
    },
}

/// The model table and the providers behind it.
pub struct Router {
    providers: HashMap<String, Arc<dyn Provider>>,
    routes: Vec<Route>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("routes", &self.routes)
            .finish()
    }
}

impl Router {
    /// A router. Every target must name a provider in `providers`.
    pub fn new(providers: Vec<Arc<dyn Provider>>, routes: Vec<Route>) -> Result<Self, String> {
        let providers: HashMap<String, Arc<dyn Provider>> = providers
            .into_iter()
            .map(|p| (p.id().to_owned(), p))
            .collect();
        for r in &routes {
            if r.targets.is_empty() {
                return Err(format!("model `{}` has no targets", r.name));
            }
            for t in &r.targets {
                if !providers.contains_key(&t.provider) {
                    return Err(format!(
                        "model `{}` targets unknown provider `{}`",
                        r.name, t.provider
                    ));
                }
            }
        }
        Ok(Router { providers, routes })
    }

    /// The routes, in table order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for a model: the first exact name, else the first matching glob.
    pub fn resolve(&self, model: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| !r.is_glob() && r.name == model)
            .or_else(|| {
                self.routes
                    .iter()
                    .find(|r| r.is_glob() && glob_match(&r.name, model))
            })
    }

    /// The route for a model, or the error that lists what exists.
    fn route_for(&self, model: &str) -> Result<&Route, RouteError> {
        self.resolve(model).ok_or_else(|| RouteError::UnknownModel {
            model: model.to_owned(),
            available: self.routes.iter().map(|r| r.name.clone()).collect(),
        })
    }

    /// A target's provider and the request as it goes there (the target's model name).
    fn prepare(
        &self,
        target: &Target,
        req: &ChatRequest,
    ) -> Option<(&Arc<dyn Provider>, ChatRequest)> {
        let provider = self.providers.get(&target.provider)?;
        let mut r = req.clone();
        if let Some(m) = &target.model {
            r.model.clone_from(m);
        }
        Some((provider, r))
    }

    /// Counts a request's input tokens with the first target that has a counter. `Ok(None)`
    /// when none has one; an unknown model is an error like for [`Router::send`].
    pub async fn count_tokens(
        &self,
        req: ChatRequest,
        cx: CallContext,
    ) -> Result<Option<u64>, RouteError> {
        let route = self.route_for(&req.model)?;
        for target in &route.targets {
            let Some((provider, r)) = self.prepare(target, &req) else {
                continue;
            };
            let model = r.model.clone();
            match provider.count_tokens(r, cx.clone()).await {
                Ok(Some(n)) => return Ok(Some(n)),
                Ok(None) => {}
                Err(e) if e.retryable_elsewhere => {
                    tracing::info!(provider = %target.provider, kind = ?e.kind, "token count failed; trying the next target");
                }
                Err(e) => {
                    return Err(RouteError::Failed {
                        last: e.clone(),
                        attempts: vec![(target.provider.clone(), model, e)],
                    })
                }
            }
        }
        Ok(None)
    }

    /// Sends a request to its route's targets in order until one answers. A target that
    /// fails in a way another target could fix (connection, timeout, 5xx, 429) is
    /// followed by the next; a failure that is the request's own (400, 413) is returned
    /// at once. A streamed reply counts as an answer as soon as its headers arrived.
    pub async fn send(
        &self,
        req: ChatRequest,
        cx: CallContext,
    ) -> Result<(Reply, Served), RouteError> {
        let route = self.route_for(&req.model)?;
        let mut attempts = Vec::new();
        let n = route.targets.len();
        for (i, target) in route.targets.iter().enumerate() {
            let Some((provider, r)) = self.prepare(target, &req) else {
                continue;
            };
            let model = r.model.clone();
            match provider.send(r, cx.clone()).await {
                Ok(reply) => {
                    return Ok((
                        reply,
                        Served {
                            provider: target.provider.clone(),
                            model,
                        },
                    ))
                }
                Err(e) => {
                    let again = e.retryable_elsewhere && i + 1 < n;
                    tracing::info!(
                        provider = %target.provider, model = %model, kind = ?e.kind,
                        status = e.status, next = again, "upstream attempt failed"
                    );
                    attempts.push((target.provider.clone(), model, e));
                    if !again {
                        break;
                    }
                }
            }
        }
        match attempts.last() {
            Some((_, _, last)) => Err(RouteError::Failed {
                last: last.clone(),
                attempts,
            }),
            None => Err(RouteError::UnknownModel {
                model: req.model.clone(),
                available: self.routes.iter().map(|r| r.name.clone()).collect(),
            }),
        }
    }
}
