//! OAuth access tokens for Vertex AI: the [`TokenSource`] seam, the production source over
//! `gcp_auth` ([`GoogleTokens`]), and two simple sources ([`StaticToken`],
//! [`FnTokenSource`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use weir_model::{ErrorKind, ProviderError, Secret};

/// The OAuth scope Vertex AI needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A token closer to its expiry than this is not used: it is replaced first. Google's own
/// auth libraries refresh 3 min 45 s ahead (google-auth's `REFRESH_THRESHOLD`); the margin
/// also covers clock skew and a request that waits in a queue before Vertex checks it.
/// The metadata server hands out tokens with at least 5 minutes left, so a fresh token
/// is never inside the margin.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(225);

/// The least time left for a token to be used at all (when a refresh failed): gcp_auth's
/// own expiry margin.
const MIN_LIFETIME: Duration = Duration::from_secs(20);

/// After a failure to find credentials or fetch a token, requests arriving within this
/// time get the same error at once instead of starting another discovery (which may probe
/// the metadata server and spawn `gcloud`).
pub const FAILURE_HOLD: Duration = Duration::from_secs(10);

/// Where Vertex requests get their bearer tokens.
///
/// Contract:
/// - [`token`](TokenSource::token) returns a token that is not about to expire. Sources
///   cache: calling it per request is expected and cheap.
/// - After Vertex answered 401 to `rejected`, the provider calls
///   [`invalidate`](TokenSource::invalidate) and then `token` once more; the source must
///   then fetch a new token rather than return the cached one. `invalidate` compares: when
///   the source already holds a different token (another request replaced it first), it
///   does nothing, so a burst of 401s on one stale token causes one fetch, not one each.
///
/// Errors are [`ErrorKind::Authentication`] (no usable credentials: the router may try
/// another target; not a health failure). Their messages never contain secrets.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A valid access token.
    async fn token(&self) -> Result<Secret, ProviderError>;

    /// Vertex refused `rejected`: forget it if it is the cached token.
    fn invalidate(&self, rejected: &Secret);
}

/// A token fetched from a source, with when it expires.
#[derive(Clone)]
struct Cached {
    token: Secret,
    expires_at: SystemTime,
}

impl Cached {
    fn usable(&self, now: SystemTime) -> bool {
        self.expires_at
            .duration_since(now)
            .is_ok_and(|left| left > REFRESH_MARGIN)
    }
}

type Discovery =
    Pin<Box<dyn Future<Output = Result<Arc<dyn gcp_auth::TokenProvider>, gcp_auth::Error>> + Send>>;

/// How a [`GoogleTokens`] finds its credentials.
enum Credentials {
    /// `gcp_auth::provider()`: `GOOGLE_APPLICATION_CREDENTIALS`, then the gcloud ADC file,
    /// then the metadata server, then the `gcloud` CLI.
    Default,
    /// A service account key (JSON) given directly; its `token_uri` is honoured.
    ServiceAccountJson(Secret),
}

impl Credentials {
    fn discover(&self) -> Discovery {
        match self {
            Credentials::Default => Box::pin(gcp_auth::provider()),
            Credentials::ServiceAccountJson(json) => {
                let r = gcp_auth::CustomServiceAccount::from_json(json.expose())
                    .map(|sa| Arc::new(sa) as Arc<dyn gcp_auth::TokenProvider>);
                Box::pin(async move { r })
            }
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Credentials::Default => "application default credentials",
            Credentials::ServiceAccountJson(_) => "a service account key",
        }
    }
}

/// The slow path's state, behind an async mutex: one refresh at a time.
struct Refresher {
    /// The `gcp_auth` provider found by discovery (it keeps its own token cache).
    provider: Option<Arc<dyn gcp_auth::TokenProvider>>,
    /// The last failure, and when it happened.
    failed: Option<(Instant, ProviderError)>,
}

/// Production tokens from Google's credential chain, through `gcp_auth`.
///
/// - Discovery is lazy: construction never blocks or fails; the first request finds the
///   credentials (`GOOGLE_APPLICATION_CREDENTIALS` naming a service account key file, the
///   file `gcloud auth application-default login` writes, the metadata server on Google
///   Cloud, or the `gcloud` CLI). Without any, requests fail with an
///   [`ErrorKind::Authentication`] error saying how to provide credentials.
/// - Tokens are cached and replaced [`REFRESH_MARGIN`] before they expire, one refresh at
///   a time (concurrent requests wait for it). `gcp_auth` keeps a token until 20 s before
///   expiry, so replacing one earlier, or after a 401, discards the `gcp_auth` provider and
///   its cache and runs discovery again (reading a key file, or asking the metadata
///   server): cheap, and at most about once an hour.
/// - When a refresh fails, the current token is used for as long as it is valid; without
///   one, the failure is returned, and returned at once to requests arriving within
///   [`FAILURE_HOLD`] (no new discovery per request).
pub struct GoogleTokens {
    credentials: Credentials,
    cached: RwLock<Option<Cached>>,
    /// Set by `invalidate`: the next refresh starts from a new `gcp_auth` provider.
    discard_provider: AtomicBool,
    refresher: tokio::sync::Mutex<Refresher>,
    fetches: AtomicUsize,
}

impl fmt::Debug for GoogleTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.cached.read().map(|c| c.is_some()).unwrap_or(false);
        f.debug_struct("GoogleTokens")
            .field("credentials", &self.credentials.describe())
            .field("cached", &cached)
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish()
    }
}

impl GoogleTokens {
    /// Tokens from application default credentials (see the type's docs). Nothing is
    /// read until the first token is needed.
    pub fn from_environment() -> Self {
        Self::with(Credentials::Default)
    }

    /// Tokens for a service account key given as JSON (the file Google's console
    /// downloads). The key's `token_uri` is where tokens are fetched; the key is parsed
    /// when the first token is needed.
    pub fn from_service_account_json(json: impl Into<String>) -> Self {
        Self::with(Credentials::ServiceAccountJson(Secret::new(json.into())))
    }

    fn with(credentials: Credentials) -> Self {
        GoogleTokens {
            credentials,
            cached: RwLock::new(None),
            discard_provider: AtomicBool::new(false),
            refresher: tokio::sync::Mutex::new(Refresher {
                provider: None,
                failed: None,
            }),
            fetches: AtomicUsize::new(0),
        }
    }

    /// How many times this source asked `gcp_auth` for a token (its own cache misses;
    /// `gcp_auth` may answer some from its cache).
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The cached token if it is still valid, though inside the refresh margin: what a
    /// failed refresh falls back on.
    fn cached_unexpired(&self) -> Option<Secret> {
        let now = SystemTime::now();
        let g = self.cached.read().ok()?;
        g.as_ref()
            .filter(|c| {
                c.expires_at
                    .duration_since(now)
                    .is_ok_and(|l| l > MIN_LIFETIME)
            })
            .map(|c| c.token.clone())
    }

    fn cached_usable(&self) -> Option<Secret> {
        let now = SystemTime::now();
        let g = self.cached.read().ok()?;
        g.as_ref()
            .filter(|c| c.usable(now))
            .map(|c| c.token.clone())
    }

    async fn refresh(&self, r: &mut Refresher) -> Result<Cached, ProviderError> {
        if self.discard_provider.swap(false, Ordering::AcqRel) {
            r.provider = None;
        }
        let (provider, fresh) = match &r.provider {
            Some(p) => (p.clone(), false),
            None => (self.discover().await?, true),
        };
        r.provider = Some(provider.clone());
        let mut got = self.fetch(provider.as_ref()).await?;
        if !fresh && !got.usable(SystemTime::now()) {
            // gcp_auth still considers its cached token valid; start over for a new one.
            let provider = self.discover().await?;
            r.provider = Some(provider.clone());
            got = self.fetch(provider.as_ref()).await?;
        }
        // Even inside the margin, a token that gcp_auth just produced is the newest the
        // credentials give (gcp_auth never returns one within 20 s of expiry).
        Ok(got)
    }

    async fn discover(&self) -> Result<Arc<dyn gcp_auth::TokenProvider>, ProviderError> {
        self.credentials.discover().await.map_err(|e| {
            ProviderError::new(
                ErrorKind::Authentication,
                format!(
                    "no usable Google credentials for Vertex AI ({}: {}). Set \
                     GOOGLE_APPLICATION_CREDENTIALS to a service account key file, run \
                     `gcloud auth application-default login`, or run on Google Cloud with \
                     a service account attached",
                    self.credentials.describe(),
                    chain(&e)
                ),
            )
        })
    }

    async fn fetch(&self, p: &dyn gcp_auth::TokenProvider) -> Result<Cached, ProviderError> {
        let t = p.token(&[SCOPE]).await.map_err(|e| {
            ProviderError::new(
                ErrorKind::Authentication,
                format!(
                    "cannot get a Google access token for Vertex AI: {}",
                    chain(&e)
                ),
            )
        })?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        Ok(Cached {
            token: Secret::new(t.as_str()),
            expires_at: SystemTime::from(t.expires_at()),
        })
    }
}

/// An error and its causes, one line (gcp_auth's `NoAuthMethod` hides each method's
/// failure in its sources).
fn chain(e: &gcp_auth::Error) -> String {
    let mut out = e.to_string();
    if let gcp_auth::Error::NoAuthMethod(gcloud, metadata, adc) = e {
        out = format!(
            "{out}: service account/ADC file: {adc}; metadata server: {metadata}; gcloud: {gcloud}"
        );
        return out;
    }
    let mut cur: &dyn std::error::Error = e;
    while let Some(src) = cur.source() {
        let s = src.to_string();
        if !out.contains(&s) {
            out = format!("{out}: {s}");
        }
        cur = src;
    }
    out
}

#[async_trait::async_trait]
impl TokenSource for GoogleTokens {
    async fn token(&self) -> Result<Secret, ProviderError> {
        if let Some(t) = self.cached_usable() {
            return Ok(t);
        }
        let waited_from = Instant::now();
        let mut r = self.refresher.lock().await;
        // Someone else refreshed, or failed, while this request waited.
        if let Some(t) = self.cached_usable() {
            return Ok(t);
        }
        if let Some((at, err)) = &r.failed {
            if *at >= waited_from || at.elapsed() < FAILURE_HOLD {
                return self.cached_unexpired().ok_or_else(|| err.clone());
            }
        }
        match self.refresh(&mut r).await {
            Ok(c) => {
                r.failed = None;
                let token = c.token.clone();
                if let Ok(mut g) = self.cached.write() {
                    *g = Some(c);
                }
                Ok(token)
            }
            Err(e) => {
                r.failed = Some((Instant::now(), e.clone()));
                match self.cached_unexpired() {
                    Some(t) => {
                        tracing::warn!(error = %e.message, "Vertex AI: cannot refresh the Google access token; using the current one until it expires");
                        Ok(t)
                    }
                    None => {
                        tracing::warn!(error = %e.message, "Vertex AI: no Google access token");
                        Err(e)
                    }
                }
            }
        }
    }

    fn invalidate(&self, rejected: &Secret) {
        if let Ok(mut g) = self.cached.write() {
            if g.as_ref().is_some_and(|c| c.token == *rejected) {
                *g = None;
                self.discard_provider.store(true, Ordering::Release);
            }
        }
    }
}

/// One fixed token, never refreshed (e.g. from `gcloud auth print-access-token`, or for
/// tests). After a 401 the provider does not retry: there is no other token to try.
#[derive(Debug)]
pub struct StaticToken(Secret);

impl StaticToken {
    /// A source that always answers `token`.
    pub fn new(token: impl Into<String>) -> Self {
        StaticToken(Secret::new(token.into()))
    }
}

#[async_trait::async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<Secret, ProviderError> {
        Ok(self.0.clone())
    }

    fn invalidate(&self, _rejected: &Secret) {}
}

type FetchFn = dyn Fn(usize) -> Result<Secret, ProviderError> + Send + Sync;

/// A caching source whose fetch is a function of the fetch number (1, 2, ...), counting
/// fetches and invalidations: the behaviour of a real source, for tests and embedders.
pub struct FnTokenSource {
    fetch: Box<FetchFn>,
    cached: Mutex<Option<Secret>>,
    fetches: AtomicUsize,
    invalidations: AtomicUsize,
}

impl fmt::Debug for FnTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTokenSource")
            .field("fetches", &self.fetches())
            .field("invalidations", &self.invalidations())
            .finish_non_exhaustive()
    }
}

impl FnTokenSource {
    /// A source calling `fetch(n)` for its n-th token (from 1) whenever it holds none.
    pub fn new(
        fetch: impl Fn(usize) -> Result<Secret, ProviderError> + Send + Sync + 'static,
    ) -> Self {
        FnTokenSource {
            fetch: Box::new(fetch),
            cached: Mutex::new(None),
            fetches: AtomicUsize::new(0),
            invalidations: AtomicUsize::new(0),
        }
    }

    /// A source whose n-th token is `{prefix}{n}`.
    pub fn numbered(prefix: &str) -> Self {
        let prefix = prefix.to_owned();
        Self::new(move |n| Ok(Secret::new(format!("{prefix}{n}"))))
    }

    /// How many tokens were fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// How many times a cached token was dropped after a 401.
    pub fn invalidations(&self) -> usize {
        self.invalidations.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl TokenSource for FnTokenSource {
    async fn token(&self) -> Result<Secret, ProviderError> {
        let mut g = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = g.as_ref() {
            return Ok(t.clone());
        }
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let t = (self.fetch)(n)?;
        *g = Some(t.clone());
        Ok(t)
    }

    fn invalidate(&self, rejected: &Secret) {
        let mut g = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref() == Some(rejected) {
            *g = None;
            self.invalidations.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_decides_usability() {
        let now = SystemTime::now();
        let c = |secs| Cached {
            token: Secret::new("t"),
            expires_at: now + Duration::from_secs(secs),
        };
        assert!(c(3600).usable(now));
        assert!(!c(200).usable(now));
        let expired = Cached {
            token: Secret::new("t"),
            expires_at: now - Duration::from_secs(1),
        };
        assert!(!expired.usable(now));
    }

    #[tokio::test]
    async fn fn_source_caches_and_invalidates_only_the_rejected_token() {
        let s = FnTokenSource::numbered("tok-");
        let a = s.token().await.unwrap();
        assert_eq!(a.expose(), "tok-1");
        assert_eq!(s.token().await.unwrap().expose(), "tok-1");
        s.invalidate(&Secret::new("something-else"));
        assert_eq!(s.token().await.unwrap().expose(), "tok-1");
        s.invalidate(&a);
        assert_eq!(s.token().await.unwrap().expose(), "tok-2");
        assert_eq!((s.fetches(), s.invalidations()), (2, 1));
        assert!(!format!("{s:?}").contains("tok-"));
    }

    #[tokio::test]
    async fn bad_service_account_json_fails_at_first_use_with_guidance() {
        let s = GoogleTokens::from_service_account_json("{\"not\":\"a key\"}");
        let e = s.token().await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Authentication);
        assert!(
            e.message.contains("GOOGLE_APPLICATION_CREDENTIALS")
                && e.message.contains("gcloud auth application-default login"),
            "{}",
            e.message
        );
        // The failure is held: the second call does not parse again, and says the same.
        let again = s.token().await.unwrap_err();
        assert_eq!(again.message, e.message);
        assert_eq!(s.fetches(), 0);
    }
}
