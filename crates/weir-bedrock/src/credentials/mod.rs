//! AWS credentials for Bedrock, loaded by a small loader of our own (no `aws-config`).
//!
//! Where they come from, first match wins:
//!
//! 1. `AWS_BEARER_TOKEN_BEDROCK`: a Bedrock API key, sent as `Authorization: Bearer`
//!    (no SigV4).
//! 2. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`, and
//!    `AWS_CREDENTIAL_EXPIRATION` as RFC 3339 when the keys are temporary).
//! 3. The shared files for the profile `AWS_PROFILE` (else `AWS_DEFAULT_PROFILE`, else
//!    `default`): `AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/credentials`, sections
//!    `[NAME]`) and `AWS_CONFIG_FILE` (default `~/.aws/config`, sections `[profile NAME]`,
//!    or `[default]`); the credentials file wins where both set a key. Only static keys
//!    are read: `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`, and an
//!    expiry in `aws_session_expiration` or `x_security_token_expires`.
//!
//! Not supported yet: IAM Identity Center (SSO) profiles, `credential_process`, assumed
//! roles (`role_arn`, `source_profile`, `web_identity_token_file`), and the EC2/ECS
//! metadata endpoints. A profile that uses one of them is an error that names it and says
//! how to export static keys instead.
//!
//! Credentials with an expiry are reloaded from the same sources when they are within
//! five minutes of it (see [`CredentialsCache`]), so a tool that rewrites the files or the
//! environment of a supervisor keeps the gateway working. Every secret is a
//! [`Secret`]: `Debug` prints `***`, and errors name sources and keys, never values.
//!
//! The loader reads the environment through a closure and takes the file paths from it
//! (or from explicit overrides), so tests never touch the real environment or home.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use weir_model::Secret;

/// How long before their expiry temporary credentials are reloaded.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// While credentials are inside the refresh window, reload at most this often (the
/// sources may not have been refreshed yet).
const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// How often credentials the upstream refused as expired are read again: a tool that
/// rewrites the files a moment after their expiry is common, and each refusal is a
/// client's failed request, but an upstream refusing every request must not have the
/// sources read for each.
const REFUSED_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Reads an environment variable.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How a request to Bedrock is authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// A Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`): `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// AWS access keys: requests are signed with SigV4.
    SigV4(AwsCredentials),
}

impl Auth {
    /// When these credentials stop working, if they say.
    pub fn expires_at(&self) -> Option<SystemTime> {
        match self {
            Auth::Bearer(_) => None,
            Auth::SigV4(c) => c.expires_at,
        }
    }

    /// The secret values, to scrub from upstream error messages.
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            Auth::Bearer(t) => vec![t],
            Auth::SigV4(c) => {
                let mut v = vec![&c.access_key_id, &c.secret_access_key];
                v.extend(c.session_token.as_ref());
                v
            }
        }
    }
}

/// AWS access keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsCredentials {
    /// `AKIA...` / `ASIA...`. Not a secret in AWS's eyes, but it names an account's key,
    /// so it is kept out of logs too.
    pub access_key_id: Secret,
    /// The secret key.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// When temporary credentials expire.
    pub expires_at: Option<SystemTime>,
    /// Where they were found (`environment`, `profile default in /home/u/.aws/credentials`),
    /// for messages.
    pub source: String,
}

impl AwsCredentials {
    /// Static keys (tests, configs that carry keys).
    pub fn new(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Self {
        AwsCredentials {
            access_key_id: Secret::new(access_key_id),
            secret_access_key: Secret::new(secret_access_key),
            session_token: session_token.map(Secret::new),
            expires_at: None,
            source: "static".to_owned(),
        }
    }
}

/// Credentials could not be loaded. The message names sources and keys, never values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsError(pub String);

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CredentialsError {}

fn err(msg: impl Into<String>) -> CredentialsError {
    CredentialsError(msg.into())
}

/// Loads credentials from an environment (a closure) and the shared files.
#[derive(Clone)]
pub struct CredentialsLoader {
    env: EnvLookup,
    credentials_file: Option<PathBuf>,
    config_file: Option<PathBuf>,
    profile: Option<String>,
    /// Reads the process environment: loaders that also name the same files and profile
    /// find the same credentials, so they share one cache ([`CredentialsCache::shared`]).
    process_env: bool,
}

impl fmt::Debug for CredentialsLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsLoader")
            .field("credentials_file", &self.credentials_file)
            .field("config_file", &self.config_file)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl CredentialsLoader {
    /// A loader over the process environment.
    pub fn from_process_env() -> Self {
        CredentialsLoader {
            process_env: true,
            ..CredentialsLoader::with_env(|name| std::env::var(name).ok())
        }
    }

    /// A loader over an environment given as a lookup closure. The default file paths
    /// are taken from it too (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, `HOME`).
    pub fn with_env(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        CredentialsLoader {
            env: Arc::new(env),
            credentials_file: None,
            config_file: None,
            profile: None,
            process_env: false,
        }
    }

    /// Uses these shared files instead of the ones the environment names.
    #[must_use]
    pub fn with_files(
        mut self,
        credentials: impl Into<PathBuf>,
        config: impl Into<PathBuf>,
    ) -> Self {
        self.credentials_file = Some(credentials.into());
        self.config_file = Some(config.into());
        self
    }

    /// Uses this profile instead of `AWS_PROFILE`.
    #[must_use]
    pub fn with_profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    fn home_file(&self, rel: &str) -> Option<PathBuf> {
        let home = self.var("HOME").or_else(|| self.var("USERPROFILE"))?;
        Some(Path::new(&home).join(".aws").join(rel))
    }

    fn credentials_path(&self) -> Option<PathBuf> {
        self.credentials_file.clone().or_else(|| {
            self.var("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .or_else(|| self.home_file("credentials"))
        })
    }

    fn config_path(&self) -> Option<PathBuf> {
        self.config_file.clone().or_else(|| {
            self.var("AWS_CONFIG_FILE")
                .map(PathBuf::from)
                .or_else(|| self.home_file("config"))
        })
    }

    /// Loads credentials now (reads the files; call it off the hot path).
    pub fn load(&self) -> Result<Auth, CredentialsError> {
        if let Some(token) = self.var("AWS_BEARER_TOKEN_BEDROCK") {
            return Ok(Auth::Bearer(Secret::new(token.trim())));
        }
        match (
            self.var("AWS_ACCESS_KEY_ID"),
            self.var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => {
                let expires_at = match self.var("AWS_CREDENTIAL_EXPIRATION") {
                    Some(s) => Some(parse_expiry(&s).ok_or_else(|| {
                        err("AWS_CREDENTIAL_EXPIRATION is not an RFC 3339 date-time (e.g. 2025-01-02T03:04:05Z)")
                    })?),
                    None => None,
                };
                return Ok(Auth::SigV4(AwsCredentials {
                    access_key_id: Secret::new(id.trim()),
                    secret_access_key: Secret::new(secret.trim()),
                    session_token: self
                        .var("AWS_SESSION_TOKEN")
                        .or_else(|| self.var("AWS_SECURITY_TOKEN"))
                        .map(|t| Secret::new(t.trim())),
                    expires_at,
                    source: "environment".to_owned(),
                }));
            }
            (Some(_), None) => {
                return Err(err(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
                ))
            }
            (None, Some(_)) => {
                return Err(err(
                    "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
                ))
            }
            (None, None) => {}
        }
        self.load_profile()
    }

    fn load_profile(&self) -> Result<Auth, CredentialsError> {
        let profile = self
            .profile
            .clone()
            .or_else(|| self.var("AWS_PROFILE"))
            .or_else(|| self.var("AWS_DEFAULT_PROFILE"))
            .unwrap_or_else(|| "default".to_owned());
        let cred_path = self.credentials_path();
        let conf_path = self.config_path();
        let from_creds = match &cred_path {
            Some(p) => read_section(p, &profile, false)?,
            None => None,
        };
        let from_conf = match &conf_path {
            Some(p) => read_section(p, &profile, true)?,
            None => None,
        };
        let shown = |p: &Option<PathBuf>| {
            p.as_ref().map_or_else(
                || "(no path: HOME is unset)".to_owned(),
                |p| p.display().to_string(),
            )
        };
        if from_creds.is_none() && from_conf.is_none() {
            return Err(err(format!(
                "no AWS credentials found: AWS_BEARER_TOKEN_BEDROCK and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are unset, and profile `{profile}` is in neither {} nor {}",
                shown(&cred_path),
                shown(&conf_path)
            )));
        }
        // The credentials file wins where both files set a key.
        let mut keys = from_conf.unwrap_or_default();
        let source_path = if from_creds.is_some() {
            &cred_path
        } else {
            &conf_path
        };
        for (k, v) in from_creds.unwrap_or_default() {
            keys.retain(|(old, _)| *old != k);
            keys.push((k, v));
        }
        let get = |k: &str| {
            keys.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let source = format!("profile `{profile}` in {}", shown(source_path));
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(id), Some(secret)) => {
                let expiry =
                    get("aws_session_expiration").or_else(|| get("x_security_token_expires"));
                let expires_at = match expiry {
                    Some(s) => Some(parse_expiry(s).ok_or_else(|| {
                        err(format!(
                            "{source}: the credentials' expiry is not an RFC 3339 date-time"
                        ))
                    })?),
                    None => None,
                };
                Ok(Auth::SigV4(AwsCredentials {
                    access_key_id: Secret::new(id),
                    secret_access_key: Secret::new(secret),
                    session_token: get("aws_session_token")
                        .or_else(|| get("aws_security_token"))
                        .map(Secret::new),
                    expires_at,
                    source,
                }))
            }
            (Some(_), None) => Err(err(format!(
                "{source} has aws_access_key_id but no aws_secret_access_key"
            ))),
            (None, Some(_)) => Err(err(format!(
                "{source} has aws_secret_access_key but no aws_access_key_id"
            ))),
            (None, None) => {
                const UNSUPPORTED: &[(&str, &str)] = &[
                    ("sso_session", "IAM Identity Center (SSO)"),
                    ("sso_start_url", "IAM Identity Center (SSO)"),
                    ("credential_process", "credential_process"),
                    ("role_arn", "an assumed role (role_arn)"),
                    (
                        "web_identity_token_file",
                        "web identity (web_identity_token_file)",
                    ),
                    ("credential_source", "credential_source"),
                    ("login_session", "console login (login_session)"),
                ];
                if let Some((key, what)) = UNSUPPORTED.iter().find(|(k, _)| get(k).is_some()) {
                    return Err(err(format!(
                        "{source} gets its credentials through {what} (`{key}`), which Weir does not support yet; \
                         export static keys instead, e.g. `eval \"$(aws configure export-credentials --profile {profile} --format env)\"`, \
                         or set AWS_BEARER_TOKEN_BEDROCK"
                    )));
                }
                let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
                Err(err(format!(
                    "{source} has no aws_access_key_id/aws_secret_access_key (keys found: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )))
            }
        }
    }
}

/// The `key = value` pairs of one profile's section, or `None` when the file or the
/// section does not exist. Keys are lowercased; values are trimmed; nested settings (the
/// indented lines under `s3 =`) are skipped.
fn read_section(
    path: &Path,
    profile: &str,
    config_file: bool,
) -> Result<Option<Vec<(String, String)>>, CredentialsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(format!("cannot read {}: {}", path.display(), e.kind()))),
    };
    Ok(parse_section(&text, profile, config_file))
}

fn section_matches(header: &str, profile: &str, config_file: bool) -> bool {
    let name = header.trim();
    if config_file {
        // `[profile NAME]`; the default profile may also be written `[default]`.
        match name.strip_prefix("profile") {
            Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim() == profile,
            _ => name == profile && profile == "default",
        }
    } else {
        name == profile
    }
}

fn parse_section(text: &str, profile: &str, config_file: bool) -> Option<Vec<(String, String)>> {
    let mut found = false;
    let mut inside = false;
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let header = rest.split(']').next().unwrap_or("");
            inside = section_matches(header, profile, config_file);
            found |= inside;
            continue;
        }
        if !inside || line.starts_with(char::is_whitespace) {
            continue;
        }
        if let Some((k, v)) = trimmed.split_once('=') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().to_owned();
            out.retain(|(old, _)| *old != k);
            out.push((k, v));
        }
    }
    found.then_some(out)
}

/// An RFC 3339 date-time (`2025-01-02T03:04:05Z`, offsets and fractions allowed).
pub fn parse_expiry(s: &str) -> Option<SystemTime> {
    use aws_smithy_types::date_time::{DateTime, Format};
    let dt = DateTime::from_str(s.trim(), Format::DateTimeWithOffset).ok()?;
    SystemTime::try_from(dt).ok()
}

impl CacheState {
    /// Whether the sources were read less than [`RELOAD_INTERVAL`] before `now`
    /// ([`REFUSED_RELOAD_INTERVAL`] once the upstream refused the credentials).
    fn reloaded_recently(&self, now: SystemTime) -> bool {
        let interval = if self.stale {
            REFUSED_RELOAD_INTERVAL
        } else {
            RELOAD_INTERVAL
        };
        self.last_reload
            .is_some_and(|t| now.duration_since(t).unwrap_or(Duration::ZERO) < interval)
    }
}

/// Whether credentials expiring at `at` (`None`: never) are still valid at `now`.
fn valid_at(at: Option<SystemTime>, now: SystemTime) -> bool {
    at.is_none_or(|e| now < e)
}

/// Where credentials came from, for messages.
fn source(a: &Auth) -> &str {
    match a {
        Auth::SigV4(c) => c.source.as_str(),
        Auth::Bearer(_) => "AWS_BEARER_TOKEN_BEDROCK",
    }
}

/// The credentials in use, reloaded when they near their expiry.
#[derive(Debug)]
pub struct CredentialsCache {
    loader: CredentialsLoader,
    state: Mutex<CacheState>,
}

#[derive(Debug)]
struct CacheState {
    current: Auth,
    last_reload: Option<SystemTime>,
    /// The upstream refused the current credentials as expired: reload them even if
    /// they carry no expiry (a file rewritten by a tool that writes none).
    stale: bool,
    /// Never reloaded (credentials given in code).
    fixed: bool,
    /// No credentials were found (why): `current` is a placeholder never handed out, and
    /// the sources are looked at again at most once per [`RELOAD_INTERVAL`].
    missing: Option<String>,
}

impl CredentialsCache {
    /// Loads credentials once; fails when there are none.
    pub fn new(loader: CredentialsLoader) -> Result<Self, CredentialsError> {
        match CredentialsCache::lazy(loader) {
            (cache, None) => Ok(cache),
            (_, Some(e)) => Err(e),
        }
    }

    /// Loads credentials if there are any now; if not, the cache is made all the same
    /// (with why, to warn of) and looks again when asked for them: a gateway starts, and
    /// serves its other providers, while this one's credentials are missing.
    pub fn lazy(loader: CredentialsLoader) -> (Self, Option<CredentialsError>) {
        let (current, last_reload, missing) = match loader.load() {
            Ok(current) => (current, None, None),
            // (A placeholder, never handed out while `missing` says why.)
            Err(e) => (
                Auth::Bearer(Secret::new(String::new())),
                Some(SystemTime::now()),
                Some(e),
            ),
        };
        let cache = CredentialsCache {
            loader,
            state: Mutex::new(CacheState {
                current,
                last_reload,
                stale: false,
                fixed: false,
                missing: missing.as_ref().map(|e| e.0.clone()),
            }),
        };
        (cache, missing)
    }

    /// The cache of every provider whose loader reads the same sources (the process
    /// environment, the same files and profile): the gateway builds its providers once per
    /// runtime, and credentials refused as expired by one runtime's call must be reloaded
    /// for all of them, not found stale by each in turn. Other loaders (an environment
    /// given as a closure) get a cache of their own. The second value says why no
    /// credentials were found, for a new cache only (so the warning is given once).
    pub fn shared(loader: &CredentialsLoader) -> (Arc<Self>, Option<CredentialsError>) {
        type Sources = (Option<PathBuf>, Option<PathBuf>, Option<String>);
        static SHARED: Mutex<Vec<(Sources, std::sync::Weak<CredentialsCache>)>> =
            Mutex::new(Vec::new());
        if !loader.process_env {
            let (cache, missing) = CredentialsCache::lazy(loader.clone());
            return (Arc::new(cache), missing);
        }
        let sources = (
            loader.credentials_file.clone(),
            loader.config_file.clone(),
            loader.profile.clone(),
        );
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shared.retain(|(_, c)| c.strong_count() > 0);
        if let Some(cache) = shared
            .iter()
            .find(|(s, _)| *s == sources)
            .and_then(|(_, c)| c.upgrade())
        {
            return (cache, None);
        }
        let (cache, missing) = CredentialsCache::lazy(loader.clone());
        let cache = Arc::new(cache);
        shared.push((sources, Arc::downgrade(&cache)));
        (cache, missing)
    }

    /// Fixed credentials that are never reloaded (tests, keys from the config file).
    pub fn fixed(auth: Auth) -> Self {
        CredentialsCache {
            loader: CredentialsLoader::with_env(|_| None),
            state: Mutex::new(CacheState {
                current: auth,
                last_reload: Some(SystemTime::UNIX_EPOCH),
                stale: false,
                fixed: true,
                missing: None,
            }),
        }
        .never_reload()
    }

    fn never_reload(self) -> Self {
        if let Ok(mut s) = self.state.lock() {
            if let Auth::SigV4(c) = &mut s.current {
                c.expires_at = None;
            }
        }
        self
    }

    /// The credentials to use at `now`: the loaded ones, or fresh ones when those are
    /// within [`REFRESH_BEFORE_EXPIRY`] of their expiry or the upstream refused them as
    /// expired ([`CredentialsCache::invalidate`]; at most one reload every 10 s). A failed reload keeps the old credentials while they are
    /// still valid; once they have expired it is an error, and so are reloaded ones that
    /// have expired already (they are never sent).
    pub fn get(&self, now: SystemTime) -> Result<Auth, CredentialsError> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| err("the credentials cache is poisoned"))?;
        if s.missing.is_some() {
            if !s.reloaded_recently(now) {
                s.last_reload = Some(now);
                match self.loader.load() {
                    Ok(fresh) if valid_at(fresh.expires_at(), now) => {
                        tracing::info!("AWS credentials found in {}", source(&fresh));
                        s.current = fresh;
                        s.missing = None;
                        return Ok(s.current.clone());
                    }
                    Ok(fresh) => {
                        s.missing = Some(format!(
                            "the AWS credentials from {} have expired",
                            source(&fresh)
                        ));
                    }
                    Err(e) => s.missing = Some(e.0),
                }
            }
            return Err(err(s.missing.clone().unwrap_or_default()));
        }
        let expires_at = s.current.expires_at();
        let due = s.stale || expires_at.is_some_and(|e| now + REFRESH_BEFORE_EXPIRY >= e);
        if !due || s.fixed {
            return Ok(s.current.clone());
        }
        let valid = |at: Option<SystemTime>| valid_at(at, now);
        if !s.reloaded_recently(now) {
            s.last_reload = Some(now);
            match self.loader.load() {
                Ok(fresh) if valid(fresh.expires_at()) => {
                    s.current = fresh;
                    s.stale = false;
                    return Ok(s.current.clone());
                }
                Ok(fresh) => {
                    // Expired already: nothing better than the current ones.
                    tracing::warn!(
                        "the AWS credentials reloaded from {} have expired",
                        source(&fresh)
                    );
                }
                Err(e) if valid(expires_at) => {
                    tracing::warn!(error = %e, "could not reload AWS credentials that expire soon or were refused as expired; using the current ones");
                }
                Err(e) => {
                    return Err(err(format!(
                        "the AWS credentials have expired and could not be reloaded: {e}"
                    )))
                }
            }
        }
        if valid(s.current.expires_at()) {
            Ok(s.current.clone())
        } else {
            Err(err(format!(
                "the AWS credentials from {} have expired",
                source(&s.current)
            )))
        }
    }

    /// Forces a reload on the next [`CredentialsCache::get`] (the upstream said the
    /// token expired), also of credentials that carry no expiry.
    pub fn invalidate(&self, now: SystemTime) {
        if let Ok(mut s) = self.state.lock() {
            if s.fixed || s.missing.is_some() || matches!(s.current, Auth::Bearer(_)) {
                return;
            }
            if let Auth::SigV4(c) = &mut s.current {
                if c.expires_at.is_some_and(|e| e > now) {
                    c.expires_at = Some(now);
                }
            }
            // (A reload within REFUSED_RELOAD_INTERVAL waits: an upstream refusing every
            // request does not have the files read for each.)
            s.stale = true;
        }
    }
}

#[cfg(test)]
mod tests;
