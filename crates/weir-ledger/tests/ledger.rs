//! The ledger against SQLite (in a temporary directory) and, when
//! `WEIR_TEST_POSTGRES_URL` is set, PostgreSQL: inserts, reports, reopening and the
//! batching writer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_ledger::{render, By, Ledger, ReportRow, Row, Writer};

/// 2024-03-01T10:00:00Z and the next day.
const DAY1: i64 = 1_709_287_200_000;
const DAY2: i64 = DAY1 + 86_400_000;

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique("weir-ledger-test"));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    id: &str,
    unix_ms: i64,
    key: &str,
    model: &str,
    provider: &str,
    status: u16,
    input: i64,
    output: i64,
    cost: Option<f64>,
) -> Row {
    Row {
        unix_ms,
        request_id: id.to_string(),
        key: key.to_string(),
        model: model.to_string(),
        provider: provider.to_string(),
        upstream_model: if provider == "-" { "-" } else { model }.to_string(),
        status,
        error_kind: (status >= 400).then(|| "upstream".to_string()),
        latency_ms: 12.5,
        ttft_ms: Some(3.25),
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: 1,
        cache_write_tokens: 2,
        cost_usd: cost,
    }
}

/// Two keys, two models, two days; one failure with no provider and no cost.
fn rows(prefix: &str) -> Vec<Row> {
    vec![
        row(
            &format!("{prefix}-1"),
            DAY1,
            "alice",
            "gpt",
            "openai",
            200,
            10,
            20,
            Some(0.5),
        ),
        row(
            &format!("{prefix}-2"),
            DAY1 + 1_000,
            "alice",
            "claude",
            "anthropic",
            200,
            100,
            200,
            Some(1.25),
        ),
        row(
            &format!("{prefix}-3"),
            DAY1 + 2_000,
            "bob",
            "gpt",
            "-",
            502,
            0,
            0,
            None,
        ),
        row(
            &format!("{prefix}-4"),
            DAY2,
            "bob",
            "claude",
            "anthropic",
            200,
            1000,
            2000,
            Some(2.0),
        ),
        row(
            &format!("{prefix}-5"),
            DAY2 + 1_000,
            "bob",
            "gpt",
            "openai",
            429,
            5,
            0,
            Some(0.0),
        ),
    ]
}

fn rr(group: &str, requests: i64, errors: i64, input: i64, output: i64, cost: f64) -> ReportRow {
    ReportRow {
        group: group.to_string(),
        requests,
        errors,
        input_tokens: input,
        output_tokens: output,
        // Every row read 1 token from the cache and wrote 2 (see `row`).
        cache_read_tokens: requests,
        cache_write_tokens: 2 * requests,
        cost_usd: cost,
    }
}

/// The report checks shared by both backends, for a ledger holding exactly `rows(..)`.
async fn check_reports(ledger: &Ledger) {
    let by_key = ledger.report(None, By::Key).await.unwrap();
    assert_eq!(
        by_key,
        vec![
            rr("bob", 3, 2, 1005, 2000, 2.0),
            rr("alice", 2, 0, 110, 220, 1.75),
        ]
    );
    let by_model = ledger.report(None, By::Model).await.unwrap();
    assert_eq!(
        by_model,
        vec![
            rr("claude", 2, 0, 1100, 2200, 3.25),
            rr("gpt", 3, 2, 15, 20, 0.5),
        ]
    );
    let by_provider = ledger.report(None, By::Provider).await.unwrap();
    assert_eq!(
        by_provider,
        vec![
            rr("anthropic", 2, 0, 1100, 2200, 3.25),
            rr("openai", 2, 1, 15, 20, 0.5),
            rr("-", 1, 1, 0, 0, 0.0),
        ]
    );
    let by_day = ledger.report(None, By::Day).await.unwrap();
    assert_eq!(
        by_day,
        vec![
            rr("2024-03-01", 3, 1, 110, 220, 1.75),
            rr("2024-03-02", 2, 1, 1005, 2000, 2.0),
        ]
    );
    // `since` keeps rows started at or after it.
    let since = ledger.report(Some(DAY2), By::Day).await.unwrap();
    assert_eq!(since, vec![rr("2024-03-02", 2, 1, 1005, 2000, 2.0)]);
    let since = ledger.report(Some(DAY1 + 1_000), By::Key).await.unwrap();
    assert_eq!(
        since,
        vec![
            rr("bob", 3, 2, 1005, 2000, 2.0),
            rr("alice", 1, 0, 100, 200, 1.25),
        ]
    );
    assert!(ledger
        .report(Some(DAY2 + 86_400_000), By::Model)
        .await
        .unwrap()
        .is_empty());

    // Spend by key counts requests that ended at or after the time (each row took
    // 12.5 ms), with a known cost.
    let spent = |since: i64| async move {
        let mut s = ledger.spent_since(since).await.unwrap();
        s.sort_by(|a, b| a.0.cmp(&b.0));
        s
    };
    assert_eq!(spent(DAY2).await, vec![("bob".to_string(), 2.0)]);
    assert_eq!(
        spent(DAY1 + 1_010).await,
        vec![("alice".to_string(), 1.25), ("bob".to_string(), 2.0)]
    );
    // Started before, ended after.
    assert_eq!(
        spent(DAY1 + 10).await,
        vec![("alice".to_string(), 1.75), ("bob".to_string(), 2.0)]
    );
    assert!(spent(DAY2 + 86_400_000).await.is_empty());
}

#[tokio::test]
async fn sqlite_reports_and_reopen() {
    let dir = TempDir::new();
    let path = dir.0.join("nested").join("ledger.db");
    let url = format!("sqlite://{}", path.display());
    let ledger = Ledger::open(&url).await.unwrap();
    assert!(path.exists(), "the database file is created");
    ledger.insert(&rows("r")).await.unwrap();
    check_reports(&ledger).await;

    let by_key = ledger.report(None, By::Key).await.unwrap();
    let table = render(&by_key, By::Key);
    assert!(table.contains("KEY"), "{table}");
    assert!(table.contains("alice"), "{table}");
    let total = table.lines().last().unwrap();
    assert!(total.starts_with("TOTAL"), "{table}");
    assert!(total.contains(" 5 "), "{table}");
    assert!(total.contains("1115"), "{table}");
    assert!(total.ends_with("3.7500"), "{table}");
    // Aligned: every non-rule line has the same width up to its last column.
    let widths: Vec<usize> = table
        .lines()
        .filter(|l| !l.starts_with('-'))
        .map(str::len)
        .collect();
    assert!(widths.iter().all(|w| *w == widths[0]), "{table}");
    drop(ledger);

    // Reopening runs the migrations again (idempotent) and keeps the rows.
    let ledger = Ledger::open(&url).await.unwrap();
    check_reports(&ledger).await;
}

#[test]
fn render_empty_report_has_a_total() {
    let table = render(&[], By::Day);
    assert!(table.starts_with("DAY"), "{table}");
    assert!(
        table.lines().last().unwrap().starts_with("TOTAL"),
        "{table}"
    );
}

async fn wait_for(writer: &Writer, total: u64) {
    let start = Instant::now();
    while writer.written() + writer.dropped() < total {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "written {} + dropped {} < {total}",
            writer.written(),
            writer.dropped()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_writes_everything() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.0.join("w.db").display());
    let ledger = Ledger::open(&url).await.unwrap();
    let writer = Writer::spawn(ledger.clone(), 2048);
    for i in 0..1000 {
        writer.record(row(
            &format!("w-{i}"),
            DAY1 + i,
            "k",
            "m",
            "p",
            200,
            1,
            2,
            Some(0.001),
        ));
    }
    wait_for(&writer, 1000).await;
    assert_eq!(writer.written(), 1000);
    assert_eq!(writer.dropped(), 0);
    let report = ledger.report(None, By::Key).await.unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].requests, 1000);
    assert_eq!(report[0].input_tokens, 1000);
    assert_eq!(report[0].output_tokens, 2000);
}

/// A stream that failed after its 200 (its row has an error kind) counts as an error.
#[tokio::test]
async fn streams_that_failed_after_their_200_count_as_errors() {
    let ledger = Ledger::open("sqlite::memory:").await.unwrap();
    let mut failed = row("s-1", DAY1, "k", "m", "p", 200, 1, 1, None);
    failed.error_kind = Some("Upstream".into());
    let fine = row("s-2", DAY1, "k", "m", "p", 200, 1, 1, None);
    ledger.insert(&[failed, fine]).await.unwrap();
    let report = ledger.report(None, By::Key).await.unwrap();
    assert_eq!((report[0].requests, report[0].errors), (2, 1));
}

#[tokio::test]
async fn writer_drops_when_full() {
    let ledger = Ledger::open("sqlite::memory:").await.unwrap();
    let writer = Writer::spawn(ledger.clone(), 1);
    // A tight loop that never yields: the background task cannot keep up.
    for i in 0..10_000 {
        writer.record(row(&format!("d-{i}"), DAY1, "k", "m", "p", 200, 1, 1, None));
    }
    assert!(writer.dropped() > 0);
    wait_for(&writer, 10_000).await;
    assert_eq!(writer.written() + writer.dropped(), 10_000);
    let report = ledger.report(None, By::Key).await.unwrap();
    assert_eq!(report[0].requests as u64, writer.written());
}

#[tokio::test]
async fn writer_counts_failed_inserts_as_dropped() {
    let dir = TempDir::new();
    let path = dir.0.join("gone.db");
    let url = format!("sqlite://{}", path.display());
    let ledger = Ledger::open(&url).await.unwrap();
    // Break the ledger under the writer: inserts now fail.
    sqlx_drop_table(&url).await;
    let writer = Writer::spawn(ledger, 16);
    for i in 0..3 {
        writer.record(row(&format!("f-{i}"), DAY1, "k", "m", "p", 200, 1, 1, None));
    }
    wait_for(&writer, 3).await;
    assert_eq!(writer.dropped(), 3);
    assert_eq!(writer.written(), 0);
}

async fn sqlx_drop_table(url: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query("DROP TABLE requests")
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_reports() {
    let Ok(base) = std::env::var("WEIR_TEST_POSTGRES_URL") else {
        println!("skipping: WEIR_TEST_POSTGRES_URL is unset");
        return;
    };
    use sqlx::Connection;
    let schema = unique("weir_ledger_test");
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");

    // In a task, so that a failed assertion still drops the schema below.
    let result = tokio::spawn(async move {
        let ledger = Ledger::open(&url).await?;
        ledger.insert(&rows("pg")).await?;
        check_reports(&ledger).await;
        drop(ledger);
        // Reopening migrates idempotently and keeps the rows.
        let ledger = Ledger::open(&url).await?;
        check_reports(&ledger).await;
        // The writer works against PostgreSQL too.
        let writer = Writer::spawn(ledger.clone(), 64);
        writer.record(row(
            "pg-w",
            DAY2 + 5,
            "carol",
            "m",
            "p",
            200,
            7,
            8,
            Some(0.25),
        ));
        wait_for(&writer, 1).await;
        assert_eq!(writer.written(), 1);
        // A NUL (PostgreSQL text cannot hold one) in a client-chosen model name does not
        // fail the batch it is in.
        for (id, model) in [("pg-nul", "no-such-\0model"), ("pg-ok", "m")] {
            writer.record(row(id, DAY2 + 6, "dave", model, "p", 404, 0, 0, None));
        }
        wait_for(&writer, 3).await;
        assert_eq!((writer.written(), writer.dropped()), (3, 0));
        Ok::<_, String>(())
    })
    .await;

    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
    match result {
        Ok(outcome) => outcome.unwrap(),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
