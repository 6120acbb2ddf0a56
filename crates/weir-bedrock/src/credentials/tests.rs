//! Tests of the credentials loader and cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "weir-bedrock-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sigv4(a: Auth) -> AwsCredentials {
    match a {
        Auth::SigV4(c) => c,
        Auth::Bearer(_) => panic!("expected keys"),
    }
}

#[test]
fn bearer_token_wins_over_keys() {
    let l = CredentialsLoader::with_env(env(&[
        ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-abc"),
        ("AWS_ACCESS_KEY_ID", "AKIAX"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
    ]));
    assert_eq!(
        l.load().unwrap(),
        Auth::Bearer(Secret::new("bedrock-api-key-abc"))
    );
}

#[test]
fn environment_keys_with_token_and_expiry() {
    let l = CredentialsLoader::with_env(env(&[
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret/key+1"),
        ("AWS_SESSION_TOKEN", "tok"),
        ("AWS_CREDENTIAL_EXPIRATION", "2025-01-02T03:04:05Z"),
    ]));
    let c = sigv4(l.load().unwrap());
    assert_eq!(c.access_key_id.expose(), "ASIAEXAMPLE");
    assert_eq!(c.secret_access_key.expose(), "secret/key+1");
    assert_eq!(c.session_token.as_ref().map(Secret::expose), Some("tok"));
    assert_eq!(
        c.expires_at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_787_045))
    );
    assert_eq!(c.source, "environment");
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("ASIAEXAMPLE") && !dbg.contains("secret/key") && !dbg.contains("tok\""));
}

#[test]
fn half_set_environment_keys_are_an_error() {
    let l = CredentialsLoader::with_env(env(&[("AWS_ACCESS_KEY_ID", "AKIAX")]));
    assert_eq!(
        l.load().unwrap_err().0,
        "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
    );
}

#[test]
fn profiles_from_both_files_with_credentials_file_winning() {
    let d = TempDir::new("profiles");
    let creds = d.file(
        "credentials",
        "# comment\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = sdefault\n\n\
         [dev]\naws_access_key_id=AKIADEV\naws_secret_access_key=sdev\n",
    );
    let conf = d.file(
        "config",
        "[default]\nregion = us-east-1\n[profile dev]\nregion = eu-west-1\naws_access_key_id = AKIAOLD\n\
         aws_session_token = devtoken\naws_session_expiration = 2030-01-01T00:00:00+02:00\ns3 =\n  max_concurrent_requests = 2\n\
         [profile conf-only]\naws_access_key_id = AKIACONF\naws_secret_access_key = sconf\n",
    );
    let load = |profile: Option<&str>| {
        let mut pairs = vec![("HOME", "/nonexistent")];
        if let Some(p) = profile {
            pairs.push(("AWS_PROFILE", p));
        }
        CredentialsLoader::with_env(env(&pairs))
            .with_files(&creds, &conf)
            .load()
    };
    let c = sigv4(load(None).unwrap());
    assert_eq!(c.access_key_id.expose(), "AKIADEFAULT");
    assert_eq!(c.session_token, None);
    assert_eq!(c.expires_at, None);
    let c = sigv4(load(Some("dev")).unwrap());
    assert_eq!(c.access_key_id.expose(), "AKIADEV");
    assert_eq!(c.secret_access_key.expose(), "sdev");
    assert_eq!(
        c.session_token.as_ref().map(Secret::expose),
        Some("devtoken")
    );
    assert_eq!(c.expires_at, parse_expiry("2029-12-31T22:00:00Z"));
    assert!(c.source.starts_with("profile `dev` in "), "{}", c.source);
    let c = sigv4(load(Some("conf-only")).unwrap());
    assert_eq!(c.access_key_id.expose(), "AKIACONF");
    let e = load(Some("missing")).unwrap_err().0;
    assert!(e.contains("profile `missing` is in neither"), "{e}");
}

#[test]
fn default_paths_come_from_the_given_environment() {
    let d = TempDir::new("home");
    std::fs::create_dir_all(d.0.join(".aws")).unwrap();
    d.file(
        ".aws/credentials",
        "[default]\naws_access_key_id = AKIAHOME\naws_secret_access_key = shome\n",
    );
    let home = d.0.to_string_lossy().into_owned();
    let l = CredentialsLoader::with_env(move |k| (k == "HOME").then(|| home.clone()));
    assert_eq!(sigv4(l.load().unwrap()).access_key_id.expose(), "AKIAHOME");
    let other = d.file(
        "elsewhere",
        "[default]\naws_access_key_id = AKIAELSE\naws_secret_access_key = selse\n",
    );
    let other = other.to_string_lossy().into_owned();
    let l = CredentialsLoader::with_env(move |k| {
        (k == "AWS_SHARED_CREDENTIALS_FILE").then(|| other.clone())
    });
    assert_eq!(sigv4(l.load().unwrap()).access_key_id.expose(), "AKIAELSE");
}

#[test]
fn unsupported_profiles_say_what_they_use() {
    let d = TempDir::new("sso");
    let creds = d.file("credentials", "");
    let conf = d.file(
        "config",
        "[profile sso]\nsso_session = corp\nsso_account_id = 123456789012\n\
         [profile proc]\ncredential_process = /usr/bin/get-creds --secret hunter2\n\
         [profile region-only]\nregion = us-east-1\n",
    );
    let load = |p: &str| {
        CredentialsLoader::with_env(|_| None)
            .with_files(&creds, &conf)
            .with_profile(p)
            .load()
            .unwrap_err()
            .0
    };
    let e = load("sso");
    assert!(
        e.contains("IAM Identity Center (SSO) (`sso_session`)"),
        "{e}"
    );
    assert!(
        e.contains("aws configure export-credentials --profile sso"),
        "{e}"
    );
    let e = load("proc");
    assert!(e.contains("`credential_process`"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = load("region-only");
    assert!(
        e.ends_with("has no aws_access_key_id/aws_secret_access_key (keys found: region)"),
        "{e}"
    );
}

#[test]
fn expiring_credentials_are_reloaded_within_five_minutes() {
    let d = TempDir::new("reload");
    let creds = d.file(
        "credentials",
        "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\naws_session_token = t1\n\
         aws_session_expiration = 2025-01-01T01:00:00Z\n",
    );
    let conf = d.0.join("config");
    let cache =
        CredentialsCache::new(CredentialsLoader::with_env(|_| None).with_files(&creds, &conf))
            .unwrap();
    let at = |s: &str| parse_expiry(s).unwrap();
    let key = |a: Auth| sigv4(a).access_key_id.expose().to_owned();
    // The file is rewritten with fresh keys; not read until the window opens.
    d.file(
        "credentials",
        "[default]\naws_access_key_id = AKIA2\naws_secret_access_key = s2\naws_session_token = t2\n\
         aws_session_expiration = 2025-01-01T02:00:00Z\n",
    );
    assert_eq!(key(cache.get(at("2025-01-01T00:54:59Z")).unwrap()), "AKIA1");
    assert_eq!(key(cache.get(at("2025-01-01T00:55:01Z")).unwrap()), "AKIA2");
    assert_eq!(key(cache.get(at("2025-01-01T01:30:00Z")).unwrap()), "AKIA2");
    // A failed reload keeps valid credentials, and is an error once they expire.
    std::fs::remove_file(&creds).unwrap();
    assert_eq!(key(cache.get(at("2025-01-01T01:56:00Z")).unwrap()), "AKIA2");
    let e = cache.get(at("2025-01-01T02:00:01Z")).unwrap_err().0;
    assert!(e.contains("expired"), "{e}");
}

#[test]
fn fixed_credentials_never_expire() {
    let mut c = AwsCredentials::new("AKIA", "s", None);
    c.expires_at = Some(SystemTime::UNIX_EPOCH);
    let cache = CredentialsCache::fixed(Auth::SigV4(c));
    assert!(cache.get(SystemTime::now()).is_ok());
}

#[test]
fn credentials_without_an_expiry_are_reloaded_once_refused_as_expired() {
    let d = TempDir::new("stale");
    let creds = d.file(
        "credentials",
        "[default]\naws_access_key_id = ASIAOLD\naws_secret_access_key = s1\naws_session_token = t1\n",
    );
    let conf = d.0.join("config");
    let cache =
        CredentialsCache::new(CredentialsLoader::with_env(|_| None).with_files(&creds, &conf))
            .unwrap();
    let key = |a: Auth| sigv4(a).access_key_id.expose().to_owned();
    let now = SystemTime::now();
    d.file(
        "credentials",
        "[default]\naws_access_key_id = ASIANEW\naws_secret_access_key = s2\naws_session_token = t2\n",
    );
    // No expiry: used as they are until the upstream refuses them.
    assert_eq!(key(cache.get(now).unwrap()), "ASIAOLD");
    cache.invalidate(now);
    assert_eq!(key(cache.get(now).unwrap()), "ASIANEW");
    // Refused again at once (the file not rewritten yet): at most one reload per interval,
    // the current ones meanwhile.
    d.file(
        "credentials",
        "[default]\naws_access_key_id = ASIANEWER\naws_secret_access_key = s3\naws_session_token = t3\n",
    );
    cache.invalidate(now);
    assert_eq!(key(cache.get(now).unwrap()), "ASIANEW");
    assert_eq!(
        key(cache.get(now + Duration::from_secs(11)).unwrap()),
        "ASIANEWER"
    );
    // Reloaded: no longer stale, so not read again.
    d.file(
        "credentials",
        "[default]\naws_access_key_id = ASIALATEST\naws_secret_access_key = s4\n",
    );
    assert_eq!(
        key(cache.get(now + Duration::from_secs(30)).unwrap()),
        "ASIANEWER"
    );
}

#[test]
fn credentials_that_have_expired_are_never_handed_out() {
    let env = env(&[
        ("AWS_ACCESS_KEY_ID", "AKIAEXPIRED"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_SESSION_TOKEN", "tok"),
        ("AWS_CREDENTIAL_EXPIRATION", "2020-01-01T00:00:00Z"),
    ]);
    let cache = CredentialsCache::new(CredentialsLoader::with_env(env)).unwrap();
    let now = SystemTime::now();
    for later in [0, 1, 11, 30] {
        let e = cache.get(now + Duration::from_secs(later)).unwrap_err().0;
        assert!(e.contains("expired"), "{later}: {e}");
    }
}

#[test]
fn credentials_missing_at_start_are_found_once_they_appear() {
    let d = TempDir::new("lazy");
    let creds = d.0.join("credentials");
    let conf = d.0.join("config");
    let (cache, missing) =
        CredentialsCache::lazy(CredentialsLoader::with_env(|_| None).with_files(&creds, &conf));
    assert!(missing.unwrap().0.starts_with("no AWS credentials found"));
    let now = SystemTime::now();
    let e = cache.get(now).unwrap_err().0;
    assert!(e.starts_with("no AWS credentials found"), "{e}");
    d.file(
        "credentials",
        "[default]\naws_access_key_id = AKIALATE\naws_secret_access_key = s\n",
    );
    // Looked for again at most every ten seconds.
    assert!(cache.get(now + Duration::from_secs(1)).is_err());
    let found = cache.get(now + Duration::from_secs(11)).unwrap();
    assert_eq!(sigv4(found).access_key_id.expose(), "AKIALATE");
}
