//! The request ledger: one row per request, written off the hot path to SQLite (the
//! default) or PostgreSQL, and a spend report over it.
//!
//! - [`Ledger`] owns a connection pool (SQLite or PostgreSQL), runs the migrations on
//!   [`Ledger::open`], inserts rows ([`Ledger::insert`]) and sums them
//!   ([`Ledger::report`]).
//! - [`Writer`] is a bounded queue in front of a ledger: [`Writer::record`] never blocks;
//!   a background task batches the inserts.
//! - [`render`] prints a report as an aligned text table with a total line.
//!
//! The table is `requests` (see `migrations/<backend>/`); the client key's *name* is stored
//! in `key_name`, never the key itself.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::mpsc;

/// One request, as the ledger stores it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// When the request started (milliseconds since the Unix epoch).
    pub unix_ms: i64,
    /// The request's id.
    pub request_id: String,
    /// The client key's NAME (never the key).
    pub key: String,
    /// The requested model.
    pub model: String,
    /// The provider that served it; `"-"` when none did.
    pub provider: String,
    /// The upstream model; `"-"` when none.
    pub upstream_model: String,
    /// The HTTP status returned to the client.
    pub status: u16,
    /// The error's kind, when the request failed.
    pub error_kind: Option<String>,
    /// Total latency in milliseconds.
    pub latency_ms: f64,
    /// Time to first token in milliseconds (streams).
    pub ttft_ms: Option<f64>,
    /// Input (prompt) tokens.
    pub input_tokens: i64,
    /// Output (completion) tokens.
    pub output_tokens: i64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: i64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: i64,
    /// The request's cost in US dollars, when known.
    pub cost_usd: Option<f64>,
}

/// What a spend report groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// The client key's name.
    Key,
    /// The requested model.
    Model,
    /// The provider that served the request.
    Provider,
    /// The UTC day (`YYYY-MM-DD`) the request started.
    Day,
}

impl By {
    fn name(self) -> &'static str {
        match self {
            By::Key => "key",
            By::Model => "model",
            By::Provider => "provider",
            By::Day => "day",
        }
    }
}

impl fmt::Display for By {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for By {
    type Err = String;

    fn from_str(s: &str) -> Result<By, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "key" => Ok(By::Key),
            "model" => Ok(By::Model),
            "provider" => Ok(By::Provider),
            "day" => Ok(By::Day),
            _ => Err(format!(
                "unknown report grouping {s:?}: expected one of key, model, provider, day"
            )),
        }
    }
}

/// One line of a spend report.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportRow {
    /// The group's value (a key name, model, provider or `YYYY-MM-DD`).
    pub group: String,
    /// Requests in the group.
    pub requests: i64,
    /// Requests whose status was 400 or more, or that failed after their 200 (a stream
    /// that ended badly: its row has an `error_kind`).
    pub errors: i64,
    /// Input tokens summed.
    pub input_tokens: i64,
    /// Output tokens summed.
    pub output_tokens: i64,
    /// Input tokens read from the prompt cache, summed (not in `input_tokens`).
    pub cache_read_tokens: i64,
    /// Input tokens written to the prompt cache, summed (not in `input_tokens`).
    pub cache_write_tokens: i64,
    /// Cost summed (unknown costs count as zero).
    pub cost_usd: f64,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The request ledger: a SQLite or PostgreSQL connection pool with the schema migrated.
#[derive(Clone)]
pub struct Ledger {
    pool: Pool,
}

// Not derived: PostgreSQL's connect options (inside the pool) would print the password.
impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        };
        f.debug_struct("Ledger").field("backend", &backend).finish()
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const INSERT_SQL: &str = "INSERT INTO requests (unix_ms, request_id, key_name, model, provider, \
     upstream_model, status, error_kind, latency_ms, ttft_ms, input_tokens, output_tokens, \
     cache_read_tokens, cache_write_tokens, cost_usd) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

impl Ledger {
    /// Opens `sqlite://path.db` (created with its parent directories if missing; also
    /// `sqlite::memory:`) or `postgres://...` (`postgresql://` too) and runs the
    /// migrations. Errors say what failed and never echo a password from the URL.
    pub async fn open(url: &str) -> Result<Ledger, String> {
        let redact = |e: &dyn fmt::Display| redact(&e.to_string(), url);
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| format!("ledger: bad SQLite URL: {}", redact(&e)))?
                .create_if_missing(true)
                .busy_timeout(Duration::from_secs(5));
            let memory = sqlite_path(url).is_none();
            let pool = if memory {
                // Every connection of an in-memory database must stay the same one.
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(options)
                    .await
            } else {
                if let Some(path) = sqlite_path(url) {
                    if let Some(parent) = std::path::Path::new(&path).parent() {
                        if !parent.as_os_str().is_empty() {
                            std::fs::create_dir_all(parent).map_err(|e| {
                                format!(
                                    "ledger: cannot create the directory {}: {e}",
                                    parent.display()
                                )
                            })?;
                        }
                    }
                }
                let options = options
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal);
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
            }
            .map_err(|e| format!("ledger: cannot open the SQLite database: {}", redact(&e)))?;
            SQLITE_MIGRATIONS
                .run(&pool)
                .await
                .map_err(|e| format!("ledger: SQLite migrations failed: {}", redact(&e)))?;
            Ok(Ledger {
                pool: Pool::Sqlite(pool),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| format!("ledger: bad PostgreSQL URL: {}", redact(&e)))?;
            tracing::info!("ledger: connecting to PostgreSQL (up to 10 s)");
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| format!("ledger: cannot connect to PostgreSQL: {}", redact(&e)))?;
            POSTGRES_MIGRATIONS
                .run(&pool)
                .await
                .map_err(|e| format!("ledger: PostgreSQL migrations failed: {}", redact(&e)))?;
            Ok(Ledger {
                pool: Pool::Postgres(pool),
            })
        } else {
            let scheme = url.split_once(':').map_or("", |(s, _)| s);
            Err(format!(
                "ledger: unsupported URL scheme {scheme:?}: expected sqlite:// or postgres://"
            ))
        }
    }

    /// Inserts rows (one transaction; nothing is written when it fails).
    pub async fn insert(&self, rows: &[Row]) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        let fail = |e: sqlx::Error| format!("ledger: insert failed: {e}");
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(fail)?;
                for row in rows {
                    bind_row(sqlx::query(INSERT_SQL), row)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                }
                tx.commit().await.map_err(fail)
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(fail)?;
                for row in rows {
                    bind_row(sqlx::query(INSERT_SQL), row)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                }
                tx.commit().await.map_err(fail)
            }
        }
    }

    /// The spend report: rows started at or after `since_unix_ms` (all when `None`),
    /// grouped by `by`. Days come in date order; other groupings by cost, then requests,
    /// descending (ties by name).
    pub async fn report(
        &self,
        since_unix_ms: Option<i64>,
        by: By,
    ) -> Result<Vec<ReportRow>, String> {
        let since = since_unix_ms.unwrap_or(i64::MIN);
        let fail = |e: sqlx::Error| format!("ledger: report failed: {e}");
        type Sums = (String, i64, i64, i64, i64, i64, i64, f64);
        let rows: Vec<Sums> = match &self.pool {
            Pool::Sqlite(pool) => {
                let sql = report_sql(by, Backend::Sqlite);
                sqlx::query_as(&sql)
                    .bind(since)
                    .fetch_all(pool)
                    .await
                    .map_err(fail)?
            }
            Pool::Postgres(pool) => {
                let sql = report_sql(by, Backend::Postgres);
                sqlx::query_as(&sql)
                    .bind(since)
                    .fetch_all(pool)
                    .await
                    .map_err(fail)?
            }
        };
        Ok(rows
            .into_iter()
            .map(
                |(
                    group,
                    requests,
                    errors,
                    input_tokens,
                    output_tokens,
                    cache_read_tokens,
                    cache_write_tokens,
                    cost_usd,
                )| ReportRow {
                    group,
                    requests,
                    errors,
                    input_tokens,
                    output_tokens,
                    cache_read_tokens,
                    cache_write_tokens,
                    cost_usd,
                },
            )
            .collect())
    }

    /// What each client key (by name) spent in requests that ended at or after
    /// `since_unix_ms`, for keys with a known cost: what a restarted gateway counts
    /// against today's budgets. A request is counted on the day it ended, as its spend
    /// was (rows keep when a request started and how long it took); requests longer than
    /// a day are not looked for.
    pub async fn spent_since(&self, since_unix_ms: i64) -> Result<Vec<(String, f64)>, String> {
        let fail = |e: sqlx::Error| format!("ledger: reading spend failed: {e}");
        // The first bound uses the index on `unix_ms`.
        let from = since_unix_ms.saturating_sub(86_400_000);
        let since = since_unix_ms as f64;
        let sql = |real: &str| {
            format!(
                "SELECT key_name, CAST(SUM(cost_usd) AS {real}) FROM requests \
                 WHERE unix_ms >= $1 AND unix_ms + latency_ms >= $2 AND cost_usd IS NOT NULL \
                 GROUP BY key_name"
            )
        };
        match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_as(&sql("REAL"))
                .bind(from)
                .bind(since)
                .fetch_all(pool)
                .await
                .map_err(fail),
            Pool::Postgres(pool) => sqlx::query_as(&sql("DOUBLE PRECISION"))
                .bind(from)
                .bind(since)
                .fetch_all(pool)
                .await
                .map_err(fail),
        }
    }
}

fn bind_row<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    row: &'q Row,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB>,
    Option<f64>: sqlx::Encode<'q, DB>,
{
    query
        .bind(row.unix_ms)
        .bind(row.request_id.as_str())
        .bind(row.key.as_str())
        .bind(row.model.as_str())
        .bind(row.provider.as_str())
        .bind(row.upstream_model.as_str())
        .bind(i32::from(row.status))
        .bind(row.error_kind.as_deref())
        .bind(row.latency_ms)
        .bind(row.ttft_ms)
        .bind(row.input_tokens)
        .bind(row.output_tokens)
        .bind(row.cache_read_tokens)
        .bind(row.cache_write_tokens)
        .bind(row.cost_usd)
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

fn report_sql(by: By, backend: Backend) -> String {
    let group = match (by, backend) {
        (By::Key, _) => "key_name",
        (By::Model, _) => "model",
        (By::Provider, _) => "provider",
        (By::Day, Backend::Sqlite) => "strftime('%Y-%m-%d', unix_ms / 1000, 'unixepoch')",
        (By::Day, Backend::Postgres) => {
            "to_char(to_timestamp(unix_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
    };
    let real = match backend {
        Backend::Sqlite => "REAL",
        Backend::Postgres => "DOUBLE PRECISION",
    };
    let order = match by {
        By::Day => "1",
        _ => "8 DESC, 2 DESC, 1",
    };
    format!(
        "SELECT {group}, \
         CAST(COUNT(*) AS BIGINT), \
         CAST(SUM(CASE WHEN status >= 400 OR error_kind IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(input_tokens) AS BIGINT), \
         CAST(SUM(output_tokens) AS BIGINT), \
         CAST(COALESCE(SUM(cache_read_tokens), 0) AS BIGINT), \
         CAST(COALESCE(SUM(cache_write_tokens), 0) AS BIGINT), \
         CAST(SUM(COALESCE(cost_usd, 0.0)) AS {real}) \
         FROM requests WHERE unix_ms >= $1 GROUP BY 1 ORDER BY {order}"
    )
}

/// The file path of a SQLite URL (relative paths are from the current directory); `None`
/// for an in-memory database or another kind of URL.
pub fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return None;
    }
    Some(path.to_string())
}

/// `text` with each occurrence of `word` that no letter or digit adjoins replaced.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let alnum = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in text.match_indices(word) {
        let end = at + word.len();
        if alnum(text[..at].chars().next_back()) || alnum(text[end..].chars().next()) {
            continue;
        }
        out.push_str(&text[last..at]);
        out.push_str(with);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// `message` with the URL's password (if any) replaced by `***`.
fn redact(message: &str, url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return message.to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return message.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, password)) if !password.is_empty() => {
            let message = message.replace(userinfo, &format!("{user}:***"));
            // Bare: a long one anywhere; a short one only where it stands as a word of its
            // own (inside words, "data" in "database" or "p" in "pool", it is no secret,
            // and `***` there would garble the message and point at the password).
            if password.len() >= 8 {
                message.replace(password, "***")
            } else {
                replace_word(&message, password, "***")
            }
        }
        _ => message.to_string(),
    }
}

/// Renders a report as an aligned text table with a total line.
pub fn render(rows: &[ReportRow], by: By) -> String {
    let header = [
        by.name().to_ascii_uppercase(),
        "REQUESTS".to_string(),
        "ERRORS".to_string(),
        "INPUT_TOKENS".to_string(),
        "OUTPUT_TOKENS".to_string(),
        "CACHE_READ_TOKENS".to_string(),
        "CACHE_WRITE_TOKENS".to_string(),
        "COST_USD".to_string(),
    ];
    let line = |r: &ReportRow| {
        [
            // Model names are clients' choice (a glob route forwards any): control
            // characters would move the operator's cursor or forge rows; shown escaped.
            r.group
                .chars()
                .flat_map(|c| {
                    let escaped = c.is_control().then(|| c.escape_default());
                    escaped
                        .into_iter()
                        .flatten()
                        .chain((!c.is_control()).then_some(c))
                })
                .collect::<String>(),
            r.requests.to_string(),
            r.errors.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.cache_read_tokens.to_string(),
            r.cache_write_tokens.to_string(),
            format!("{:.4}", r.cost_usd),
        ]
    };
    let total = ReportRow {
        group: "TOTAL".to_string(),
        requests: rows.iter().map(|r| r.requests).sum(),
        errors: rows.iter().map(|r| r.errors).sum(),
        input_tokens: rows.iter().map(|r| r.input_tokens).sum(),
        output_tokens: rows.iter().map(|r| r.output_tokens).sum(),
        cache_read_tokens: rows.iter().map(|r| r.cache_read_tokens).sum(),
        cache_write_tokens: rows.iter().map(|r| r.cache_write_tokens).sum(),
        // (An empty sum is -0.0, which would print as `-0.0000`.)
        cost_usd: rows.iter().map(|r| r.cost_usd).sum::<f64>() + 0.0,
    };
    let body: Vec<[String; 8]> = rows.iter().map(line).collect();
    let total = line(&total);
    let mut widths = [0usize; 8];
    for cells in std::iter::once(&header).chain(&body).chain([&total]) {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let format_line = |cells: &[String; 8]| {
        let mut out = format!("{:<w$}", cells[0], w = widths[0]);
        for (c, w) in cells.iter().zip(widths).skip(1) {
            out.push_str(&format!("  {c:>w$}"));
        }
        out.trim_end().to_string() + "\n"
    };
    let rule = format!("{}\n", "-".repeat(widths.iter().sum::<usize>() + 2 * 7));
    let mut out = format_line(&header);
    out.push_str(&rule);
    for cells in &body {
        out.push_str(&format_line(cells));
    }
    out.push_str(&rule);
    out.push_str(&format_line(&total));
    out
}

/// Rows per insert, at most.
const BATCH: usize = 256;
/// How long a batch waits for more rows after its first.
const BATCH_WINDOW: Duration = Duration::from_millis(200);

/// A bounded queue in front of a ledger: [`Writer::record`] never blocks or awaits (a full
/// queue drops the row and counts it); a background task batches inserts (up to 256 rows
/// or every 200 ms). The task ends, after writing what is queued, when every clone of the
/// writer is dropped.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Row>,
    /// The ledger written to, for reads (a reload's budgets).
    ledger: Ledger,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    /// Rows queued and not yet written or dropped.
    pending: Arc<AtomicU64>,
}

impl Writer {
    /// Spawns the background task on the current tokio runtime (panics outside one, like
    /// `tokio::spawn`). A zero `capacity` is taken as 1.
    pub fn spawn(ledger: Ledger, capacity: usize) -> Writer {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let pending = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(
            ledger.clone(),
            rx,
            Arc::clone(&dropped),
            Arc::clone(&written),
            Arc::clone(&pending),
        ));
        Writer {
            tx,
            ledger,
            dropped,
            written,
            pending,
        }
    }

    /// The ledger this writes to.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Queues a row; when the queue is full (or the task is gone) the row is dropped and
    /// counted.
    pub fn record(&self, mut row: Row) {
        // PostgreSQL text cannot hold NUL, and one such row fails its whole batch: a
        // client-chosen model name must not erase other requests' rows.
        for text in [
            &mut row.request_id,
            &mut row.key,
            &mut row.model,
            &mut row.provider,
            &mut row.upstream_model,
        ] {
            if text.contains('\0') {
                *text = text.replace('\0', "\u{fffd}");
            }
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(row).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every row queued so far is written (or dropped), at most `max`; `false`
    /// if some were still waiting then. For shutdown, once requests have ended.
    pub async fn settle(&self, max: Duration) -> bool {
        let until = tokio::time::Instant::now() + max;
        while self.pending.load(Ordering::Relaxed) > 0 {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Rows dropped so far (queue full or insert failed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Rows queued or being written, not yet landed.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Rows written so far (for tests and /status).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

async fn run(
    ledger: Ledger,
    mut rx: mpsc::Receiver<Row>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    pending: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < BATCH {
            // Take what is already queued without waiting, then wait out the window.
            match rx.try_recv() {
                Ok(row) => batch.push(row),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(row)) => batch.push(row),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        let n = batch.len() as u64;
        match ledger.insert(&batch).await {
            Ok(()) => {
                written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(rows = n, error = %e, "ledger: rows dropped");
                dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
        pending.fetch_sub(n, Ordering::Relaxed);
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_with_control_characters_are_shown_escaped() {
        let row = ReportRow {
            group: "evil\u{1b}]0;pwned\u{7}\nTOTAL".into(),
            requests: 1,
            errors: 0,
            input_tokens: 0,
            output_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cost_usd: 0.0,
        };
        let plain = ReportRow {
            group: "plain".into(),
            ..row.clone()
        };
        let table = render(&[row], By::Model);
        assert!(
            !table.contains('\u{1b}') && !table.contains('\u{7}'),
            "{table}"
        );
        assert!(
            table.contains("evil\\u{1b}]0;pwned\\u{7}\\nTOTAL"),
            "{table}"
        );
        // No forged row.
        assert_eq!(
            table.lines().count(),
            render(&[plain], By::Model).lines().count(),
            "{table}"
        );
    }

    #[test]
    fn by_parses_and_lists_choices() {
        assert_eq!("key".parse::<By>(), Ok(By::Key));
        assert_eq!("Model".parse::<By>(), Ok(By::Model));
        assert_eq!("provider".parse::<By>(), Ok(By::Provider));
        assert_eq!("day".parse::<By>(), Ok(By::Day));
        let err = "week".parse::<By>().unwrap_err();
        assert!(err.contains("key, model, provider, day"), "{err}");
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://:memory:"), None);
        assert_eq!(sqlite_path("sqlite://a/b.db"), Some("a/b.db".into()));
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db?mode=rwc"),
            Some("/tmp/x.db".into())
        );
        assert_eq!(sqlite_path("sqlite:x.db"), Some("x.db".into()));
        assert_eq!(sqlite_path("sqlite://x?mode=memory"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        let url = "postgres://weir:s3cret@db:5432/weir";
        assert_eq!(
            redact("failed at postgres://weir:s3cret@db", url),
            "failed at postgres://weir:***@db"
        );
        assert_eq!(redact("plain", "postgres://weir@db/x"), "plain");
        assert_eq!(redact("the s3cret leaked", url), "the *** leaked");
        // Inside words a password is no secret: replacing it there would garble the
        // message and point at the password ("***base" for "database").
        assert_eq!(
            redact(
                "error returned from database: database \"x\" does not exist; data: 1",
                "postgres://postgres:data@127.0.0.1:5432/x"
            ),
            "error returned from database: database \"x\" does not exist; ***: 1"
        );
        assert_eq!(
            redact("pool timed out", "postgres://u:time@127.0.0.1:1/db"),
            "pool timed out"
        );
        assert_eq!(
            redact(
                "pool timed out at postgres://u:p@127.0.0.1:1/db",
                "postgres://u:p@127.0.0.1:1/db"
            ),
            "pool timed out at postgres://u:***@127.0.0.1:1/db"
        );
        // A short password too, where it is a word.
        assert_eq!(
            redact(
                "pool timed out at postgres://u:p@127.0.0.1:1/db",
                "postgres://u:p@127.0.0.1:1/db"
            ),
            "pool timed out at postgres://u:***@127.0.0.1:1/db"
        );
        assert_eq!(
            redact("password p refused", "postgres://u:p@h/db"),
            "password *** refused"
        );
        // A long one anywhere, glued to other characters or not.
        assert_eq!(
            redact("got Xs3cretpassX", "postgres://u:s3cretpass@h/db"),
            "got X***X"
        );
    }

    #[tokio::test]
    async fn bad_urls_say_what_failed() {
        let err = Ledger::open("mysql://root:hunter2@x/db").await.unwrap_err();
        assert!(err.contains("unsupported URL scheme"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = Ledger::open("postgres://u:hunter2@127.0.0.1:1/db")
            .await
            .unwrap_err();
        assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn in_memory_ledger_works() {
        let ledger = Ledger::open("sqlite::memory:").await.unwrap();
        let row = Row {
            key: "k".into(),
            status: 200,
            input_tokens: 3,
            ..Row::default()
        };
        ledger.insert(&[row.clone(), row]).await.unwrap();
        let report = ledger.report(None, By::Key).await.unwrap();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].requests, 2);
        assert_eq!(report[0].input_tokens, 6);
        assert_eq!(report[0].cost_usd, 0.0);
    }
}
