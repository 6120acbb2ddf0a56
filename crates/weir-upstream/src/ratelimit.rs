//! What an upstream's response headers say about the key's rate limits.
//!
//! Upstreams report their limits on every response, not only on 429s. This module reads
//! the header families of the providers Weir talks to and boils them down to two answers:
//! how long to wait before retrying a refused request ([`RateLimitInfo::retry_after`]) and
//! whether the key has already run dry, so it can be skipped without spending a request
//! ([`RateLimitInfo::exhausted_for`]).
//!
//! The headers read are listed on [`rate_limit_info`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// The longest wait any header can ask for; longer values are cut down to this.
///
/// A key parked longer than this (Cerebras reports a daily limit's reset in seconds, up to
/// a day) is simply looked at again an hour later.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// How long a limit whose remaining count is 0 is taken to last when its reset is missing
/// or does not parse.
///
/// Short on purpose: skipping a key too long wastes capacity, while trying it too early
/// costs one refused request, whose answer then tells us the real wait.
pub const UNKNOWN_RESET: Duration = Duration::from_secs(1);

/// What an upstream's response headers say about the key's rate limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// How long the upstream asked to wait before retrying (meant for 429 and 503
    /// answers): `retry-after-ms`, else `retry-after`, else [`Self::exhausted_for`], else
    /// `None`.
    pub retry_after: Option<Duration>,
    /// `Some(d)` when a header says a limit's remaining count is 0: the key should be
    /// skipped for `d`, until every exhausted limit has reset (the longest of their
    /// resets). A limit without a readable reset counts as [`UNKNOWN_RESET`]; a reset
    /// already in the past counts as zero. `None` when no limit is at 0.
    pub exhausted_for: Option<Duration>,
}

/// Reads the rate-limit headers of a response (any status), with `now` the time the
/// response arrived, against which absolute resets and HTTP dates are measured.
///
/// Supported headers:
///
/// - `retry-after-ms`: milliseconds, possibly fractional.
/// - `retry-after`: seconds (possibly fractional) or an HTTP date, taken relative to the
///   `now` passed in (a date in the past means "now").
/// - Anthropic: `anthropic-ratelimit-<limit>-remaining` paired with
///   `anthropic-ratelimit-<limit>-reset`, the reset an RFC 3339 timestamp
///   (`2026-11-22T04:10:00Z`, fractional seconds and offsets allowed). `<limit>` is any
///   name: `requests`, `tokens`, `input-tokens`, `output-tokens`, ...
/// - OpenAI, Groq, Cerebras and their kin: `x-ratelimit-remaining-<limit>` paired with
///   `x-ratelimit-reset-<limit>`, the reset relative: a Go duration (`6m0s`, `1m30.5s`,
///   `20ms`, `2h1m`) or bare seconds (`11.38`). `<limit>` is any name: `requests`,
///   `tokens`, `requests-day`, `tokens-minute`, ...
///
/// The suffix-less `x-ratelimit-remaining` / `x-ratelimit-reset` pair is not read: what its
/// reset means (seconds to go, a Unix time in seconds or milliseconds) differs between
/// services, and guessing wrong could park a key for an hour.
///
/// Every duration is capped at [`MAX_WAIT`]. Values that do not parse are ignored; nothing
/// here panics on what an upstream sends.
pub fn rate_limit_info(headers: &HeaderMap, now: SystemTime) -> RateLimitInfo {
    let exhausted_for = exhausted_for(headers, now);
    let retry_after = explicit_retry_after(headers, now).or(exhausted_for);
    RateLimitInfo {
        retry_after,
        exhausted_for,
    }
}

/// The value of a header as trimmed text, when it is present and visible ASCII.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// `retry-after-ms`, then `retry-after` (seconds or an HTTP date).
fn explicit_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let ms = header(headers, "retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| from_secs(ms / 1000.0));
    ms.or_else(|| {
        let v = header(headers, "retry-after")?;
        match v.parse::<f64>() {
            Ok(secs) => from_secs(secs),
            Err(_) => {
                let at = httpdate::parse_http_date(v).ok()?;
                Some(until(at, now))
            }
        }
    })
}

/// The longest reset among the limits whose remaining count is 0, if any is.
pub(crate) fn exhausted_for(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut longest: Option<Duration> = None;
    for name in headers.keys() {
        let name = name.as_str();
        let reset = if let Some(limit) = name.strip_prefix("x-ratelimit-remaining-") {
            if !is_zero(headers, name) {
                continue;
            }
            header(headers, &format!("x-ratelimit-reset-{limit}")).and_then(relative_reset)
        } else if let Some(limit) = name
            .strip_prefix("anthropic-ratelimit-")
            .and_then(|rest| rest.strip_suffix("-remaining"))
        {
            if !is_zero(headers, name) {
                continue;
            }
            header(headers, &format!("anthropic-ratelimit-{limit}-reset"))
                .and_then(parse_rfc3339)
                .map(|at| until_nanos(at, now))
        } else {
            continue;
        };
        let reset = reset.unwrap_or(UNKNOWN_RESET);
        longest = Some(longest.map_or(reset, |l| l.max(reset)));
    }
    longest
}

/// Whether a remaining-count header reads exactly 0 (anything unreadable is not 0).
fn is_zero(headers: &HeaderMap, name: &str) -> bool {
    header(headers, name).and_then(|v| v.parse::<u64>().ok()) == Some(0)
}

/// A relative reset: bare seconds (`11.38`) or a Go duration (`1m30.5s`).
fn relative_reset(v: &str) -> Option<Duration> {
    match v.parse::<f64>() {
        Ok(secs) => from_secs(secs),
        Err(_) => from_secs(parse_go_duration(v)?),
    }
}

/// Seconds as a [`Duration`] (rounded to the nanosecond), negatives as zero, capped at
/// [`MAX_WAIT`]; `None` when not finite.
fn from_secs(secs: f64) -> Option<Duration> {
    if !secs.is_finite() {
        return None;
    }
    if secs <= 0.0 {
        return Some(Duration::ZERO);
    }
    let nanos = (secs.min(MAX_WAIT.as_secs_f64()) * 1e9).round();
    // In range: at most an hour's nanoseconds, far below u64::MAX.
    Some(Duration::from_nanos(nanos as u64))
}

/// The time from `now` until `at`: zero if `at` has passed, capped at [`MAX_WAIT`].
fn until(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now)
        .unwrap_or(Duration::ZERO)
        .min(MAX_WAIT)
}

/// Like [`until`], for `at` given as nanoseconds since the Unix epoch.
fn until_nanos(at: i128, now: SystemTime) -> Duration {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => i128::try_from(e.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    };
    let left = at.saturating_sub(now).clamp(0, MAX_WAIT.as_nanos() as i128);
    Duration::from_nanos(u64::try_from(left).unwrap_or(0))
}

/// Seconds in a Go duration (`time.Duration.String()` and `time.ParseDuration` syntax):
/// an optional sign, then one or more decimal numbers each followed by a unit (`ns`, `us`,
/// `µs`, `ms`, `s`, `m`, `h`), as in `1h2m3.5s` or `20ms`; or a lone `0`.
fn parse_go_duration(s: &str) -> Option<f64> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        if !number.bytes().any(|c| c.is_ascii_digit()) {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    Some(if negative { -total } else { total })
}

/// An RFC 3339 timestamp (`2026-11-22T04:10:00Z`, `2026-11-22T04:10:00.123+02:00`) as
/// nanoseconds since the Unix epoch. Accepts `t`/space for `T` and `z` for `Z`.
fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
        )
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));

    let year = num(0, 4)?;
    let month = num(5, 7)?;
    let day = num(8, 10)?;
    let hour = num(11, 13)?;
    let minute = num(14, 16)?;
    let second = num(17, 19)?;
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }

    let mut at = 19;
    let mut nanos: i64 = 0;
    if sep(at, b".") {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return None;
        }
        let kept = (at - start).min(9);
        nanos = num(start, start + kept)? * 10i64.pow(9 - kept as u32);
    }

    let offset_secs = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && sep(at + 3, b":") => {
            let (h, m) = (num(at + 1, at + 3)?, num(at + 4, at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// 2026-11-22T04:09:00Z, a minute before the resets the examples use.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_320_540)
    }

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, http::HeaderValue::from_static(v));
        }
        m
    }

    fn info(pairs: &[(&'static str, &'static str)]) -> RateLimitInfo {
        rate_limit_info(&h(pairs), now())
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    fn ms(ms: u64) -> Option<Duration> {
        Some(Duration::from_millis(ms))
    }

    #[test]
    fn no_headers_say_nothing() {
        assert_eq!(info(&[]), RateLimitInfo::default());
        assert_eq!(
            info(&[
                ("content-type", "application/json"),
                ("x-request-id", "abc")
            ]),
            RateLimitInfo::default()
        );
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let i = info(&[("retry-after", "3"), ("retry-after-ms", "1500")]);
        assert_eq!(i.retry_after, ms(1500));
        assert_eq!(i.exhausted_for, None);
        assert_eq!(
            info(&[("retry-after-ms", "250.5")]).retry_after,
            Some(Duration::from_micros(250_500))
        );
        // Unreadable milliseconds fall back to seconds.
        assert_eq!(
            info(&[("retry-after-ms", "soon"), ("retry-after", "4")]).retry_after,
            secs(4)
        );
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(info(&[("retry-after", "2")]).retry_after, secs(2));
        assert_eq!(info(&[("retry-after", " 2 ")]).retry_after, secs(2));
        assert_eq!(info(&[("retry-after", "0.25")]).retry_after, ms(250));
        assert_eq!(info(&[("retry-after", "0")]).retry_after, secs(0));
        assert_eq!(info(&[("retry-after", "-5")]).retry_after, secs(0));
    }

    #[test]
    fn retry_after_http_date_is_relative_to_now() {
        assert_eq!(
            info(&[("retry-after", "Sun, 22 Nov 2026 04:09:30 GMT")]).retry_after,
            secs(30)
        );
        // The obsolete RFC 850 and asctime forms HTTP also allows.
        assert_eq!(
            info(&[("retry-after", "Sunday, 22-Nov-26 04:10:00 GMT")]).retry_after,
            secs(60)
        );
        assert_eq!(
            info(&[("retry-after", "Sun Nov 22 04:09:05 2026")]).retry_after,
            secs(5)
        );
    }

    #[test]
    fn retry_after_date_in_the_past_is_zero() {
        assert_eq!(
            info(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]).retry_after,
            secs(0)
        );
        assert_eq!(
            info(&[("retry-after", "Sun, 22 Nov 2026 04:09:00 GMT")]).retry_after,
            secs(0)
        );
    }

    #[test]
    fn retry_after_is_capped_at_an_hour() {
        assert_eq!(info(&[("retry-after", "999999")]).retry_after, secs(3600));
        assert_eq!(
            info(&[("retry-after-ms", "99999999999")]).retry_after,
            secs(3600)
        );
        assert_eq!(info(&[("retry-after", "1e300")]).retry_after, secs(3600));
        assert_eq!(
            info(&[("retry-after", "Fri, 01 Jan 2100 00:00:00 GMT")]).retry_after,
            secs(3600)
        );
    }

    #[test]
    fn garbage_is_ignored() {
        for v in [
            "",
            "soon",
            "inf",
            "-inf",
            "NaN",
            "1,5",
            "12s",
            "Mon, 99 Foo 2026",
            "0x10",
        ] {
            let i = info(&[("retry-after", v), ("retry-after-ms", v)]);
            assert_eq!(i, RateLimitInfo::default(), "{v:?}");
        }
        // Not visible ASCII at all.
        let mut m = HeaderMap::new();
        m.insert(
            "retry-after",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(rate_limit_info(&m, now()), RateLimitInfo::default());
    }

    #[test]
    fn anthropic_exhausted_requests() {
        let i = info(&[
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2026-11-22T04:10:00Z"),
            ("anthropic-ratelimit-tokens-remaining", "12000"),
            ("anthropic-ratelimit-tokens-reset", "2026-11-22T04:09:05Z"),
        ]);
        assert_eq!(i.exhausted_for, secs(60));
        assert_eq!(i.retry_after, secs(60));
    }

    #[test]
    fn anthropic_every_limit_is_read() {
        for (remaining, reset) in [
            (
                "anthropic-ratelimit-tokens-remaining",
                "anthropic-ratelimit-tokens-reset",
            ),
            (
                "anthropic-ratelimit-input-tokens-remaining",
                "anthropic-ratelimit-input-tokens-reset",
            ),
            (
                "anthropic-ratelimit-output-tokens-remaining",
                "anthropic-ratelimit-output-tokens-reset",
            ),
        ] {
            let i = info(&[(remaining, "0"), (reset, "2026-11-22T04:09:12Z")]);
            assert_eq!(i.exhausted_for, secs(12), "{remaining}");
        }
    }

    #[test]
    fn anthropic_reset_fractions_and_offsets() {
        let at = |reset: &'static str| {
            info(&[
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", reset),
            ])
            .exhausted_for
        };
        assert_eq!(at("2026-11-22T04:09:01.5Z"), ms(1500));
        assert_eq!(
            at("2026-11-22T04:09:01.123456789Z"),
            Some(Duration::new(1, 123_456_789))
        );
        // Digits past nanoseconds are dropped.
        assert_eq!(
            at("2026-11-22T04:09:01.1234567891234Z"),
            Some(Duration::new(1, 123_456_789))
        );
        assert_eq!(at("2026-11-22t04:09:02z"), secs(2));
        assert_eq!(at("2026-11-22 04:09:02Z"), secs(2));
        assert_eq!(at("2026-11-22T06:09:03+02:00"), secs(3));
        assert_eq!(at("2026-11-21T23:39:04-04:30"), secs(4));
        // In the past: exhausted, but already reset.
        assert_eq!(at("2026-11-22T04:08:00Z"), secs(0));
        assert_eq!(at("1969-07-20T20:17:40Z"), secs(0));
        // Far ahead: capped.
        assert_eq!(at("2026-11-23T04:09:00Z"), secs(3600));
        // Unreadable resets: the limit still counts, for the default.
        for bad in [
            "",
            "tomorrow",
            "2026-11-22T04:10:00",
            "2026-11-22T04:10Z",
            "2026-11-22T04:10:00.Z",
            "2026-13-22T04:10:00Z",
            "2026-02-29T04:10:00Z",
            "2026-11-31T04:10:00Z",
            "2026-11-22T24:10:00Z",
            "2026-11-22T04:60:00Z",
            "2026-11-22T04:10:00+2:00",
            "2026-11-22T04:10:00+0200",
            "2026-11-22T04:10:00+24:00",
            "2026-11-22T04:10:00Zjunk",
            "+026-11-22T04:10:00Z",
            "1795320600",
            "60s",
        ] {
            assert_eq!(at(bad), Some(UNKNOWN_RESET), "{bad:?}");
        }
    }

    #[test]
    fn openai_exhausted_limits() {
        let i = info(&[
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-remaining-tokens", "149984"),
            ("x-ratelimit-reset-tokens", "6ms"),
        ]);
        assert_eq!(i.exhausted_for, secs(360));
        assert_eq!(i.retry_after, secs(360));

        let i = info(&[
            ("x-ratelimit-remaining-requests", "59"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ]);
        assert_eq!(i.exhausted_for, ms(20));
    }

    #[test]
    fn go_durations() {
        let at = |reset: &'static str| {
            info(&[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", reset),
            ])
            .exhausted_for
        };
        assert_eq!(at("1s"), secs(1));
        assert_eq!(at("6m0s"), secs(360));
        assert_eq!(at("1m30.5s"), ms(90_500));
        assert_eq!(at("20ms"), ms(20));
        assert_eq!(at("2h1m"), secs(3600)); // 7260s, capped
        assert_eq!(at("0h1m"), secs(60));
        assert_eq!(at("0.5s"), ms(500));
        assert_eq!(at("59.56s"), ms(59_560));
        assert_eq!(at(".5s"), ms(500));
        assert_eq!(at("1.5h"), secs(3600));
        assert_eq!(at("0.25h"), secs(900));
        assert_eq!(at("1500us"), Some(Duration::from_micros(1500)));
        assert_eq!(at("1000000ns"), ms(1));
        assert_eq!(at("0"), secs(0));
        assert_eq!(at("-1s"), secs(0));
        assert_eq!(at("+2s"), secs(2));
        // Bare seconds are a reset too.
        assert_eq!(at("1"), secs(1));
        // Groq's.
        assert_eq!(at("2m59.56s"), ms(179_560));
        assert_eq!(at("7.66s"), ms(7660));
        // Header values are ASCII, but the parser knows Go's other spellings of µs.
        for micro in ["1500µs", "1500μs"] {
            let d = parse_go_duration(micro).and_then(from_secs);
            assert_eq!(d, Some(Duration::from_micros(1500)), "{micro}");
        }
        for bad in [
            "", "s", "1x", "1.2.3s", "1 s", "m1", "1s2", "-", "+", "1d", "..s",
        ] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
            assert_eq!(at(bad), Some(UNKNOWN_RESET), "{bad:?}");
        }
    }

    #[test]
    fn groq_headers() {
        let i = info(&[
            ("x-ratelimit-limit-requests", "14400"),
            ("x-ratelimit-limit-tokens", "18000"),
            ("x-ratelimit-remaining-requests", "14370"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-requests", "2m59.56s"),
            ("x-ratelimit-reset-tokens", "7.66s"),
            ("retry-after", "8"),
        ]);
        assert_eq!(i.exhausted_for, ms(7660));
        // The explicit retry-after wins.
        assert_eq!(i.retry_after, secs(8));
    }

    #[test]
    fn cerebras_bare_seconds() {
        let i = info(&[
            ("x-ratelimit-limit-requests-day", "14400"),
            ("x-ratelimit-limit-tokens-minute", "60000"),
            ("x-ratelimit-remaining-requests-day", "14370"),
            ("x-ratelimit-remaining-tokens-minute", "0"),
            ("x-ratelimit-reset-requests-day", "33011.382867097855"),
            ("x-ratelimit-reset-tokens-minute", "11.38"),
        ]);
        assert_eq!(i.exhausted_for, ms(11_380));
        assert_eq!(i.retry_after, ms(11_380));

        // The daily limit gone too: its reset is the longer, capped at an hour.
        let i = info(&[
            ("x-ratelimit-remaining-requests-day", "0"),
            ("x-ratelimit-remaining-tokens-minute", "0"),
            ("x-ratelimit-reset-requests-day", "33011.382867097855"),
            ("x-ratelimit-reset-tokens-minute", "11.38"),
        ]);
        assert_eq!(i.exhausted_for, secs(3600));
    }

    #[test]
    fn any_suffix_pairs() {
        let i = info(&[
            ("x-ratelimit-remaining-widgets-fortnight", "0"),
            ("x-ratelimit-reset-widgets-fortnight", "42"),
        ]);
        assert_eq!(i.exhausted_for, secs(42));
    }

    #[test]
    fn longest_exhausted_limit_wins_across_families() {
        let i = info(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "30s"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "1m"),
            ("anthropic-ratelimit-output-tokens-remaining", "0"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2026-11-22T04:09:45Z",
            ),
            // Not exhausted, so its longer reset does not count.
            ("anthropic-ratelimit-requests-remaining", "3"),
            ("anthropic-ratelimit-requests-reset", "2026-11-22T04:30:00Z"),
        ]);
        assert_eq!(i.exhausted_for, secs(60));
        assert_eq!(i.retry_after, secs(60));
    }

    #[test]
    fn remaining_above_zero_is_not_exhausted() {
        let i = info(&[
            ("x-ratelimit-remaining-requests", "1"),
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-remaining-tokens", "149984"),
            ("x-ratelimit-reset-tokens", "6ms"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-reset", "2026-11-22T04:10:00Z"),
        ]);
        assert_eq!(i, RateLimitInfo::default());
    }

    #[test]
    fn unreadable_remaining_is_not_exhausted() {
        for v in ["", "none", "-1", "0.0", "00x", "1e0"] {
            let i = info(&[
                ("x-ratelimit-remaining-requests", v),
                ("x-ratelimit-reset-requests", "6m0s"),
            ]);
            assert_eq!(i, RateLimitInfo::default(), "{v:?}");
        }
        // Leading zeros and whitespace are still a count.
        let i = info(&[
            ("x-ratelimit-remaining-requests", " 00 "),
            ("x-ratelimit-reset-requests", "2s"),
        ]);
        assert_eq!(i.exhausted_for, secs(2));
    }

    #[test]
    fn exhausted_without_a_reset_uses_the_default() {
        let i = info(&[("x-ratelimit-remaining-tokens", "0")]);
        assert_eq!(i.exhausted_for, Some(UNKNOWN_RESET));
        assert_eq!(i.retry_after, Some(UNKNOWN_RESET));
        let i = info(&[("anthropic-ratelimit-tokens-remaining", "0")]);
        assert_eq!(i.exhausted_for, Some(UNKNOWN_RESET));
        // A known longer reset elsewhere still wins.
        let i = info(&[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "5s"),
        ]);
        assert_eq!(i.exhausted_for, secs(5));
        // A known shorter one does not.
        let i = info(&[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "5ms"),
        ]);
        assert_eq!(i.exhausted_for, Some(UNKNOWN_RESET));
    }

    #[test]
    fn explicit_retry_after_wins_over_resets() {
        let i = info(&[
            ("retry-after-ms", "100"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "30s"),
        ]);
        assert_eq!(i.retry_after, ms(100));
        assert_eq!(i.exhausted_for, secs(30));
        // A garbage retry-after falls back to the reset.
        let i = info(&[
            ("retry-after", "later"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "30s"),
        ]);
        assert_eq!(i.retry_after, secs(30));
    }

    #[test]
    fn unrelated_lookalikes_are_ignored() {
        let i = info(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1795320600"),
            ("anthropic-ratelimit-unified-status", "rejected"),
            ("anthropic-ratelimit-remaining", "0"),
        ]);
        assert_eq!(i, RateLimitInfo::default());
    }

    #[test]
    fn odd_clocks_do_not_panic() {
        let m = h(&[
            ("retry-after", "Sun, 22 Nov 2026 04:09:30 GMT"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            (
                "anthropic-ratelimit-requests-reset",
                "9999-12-31T23:59:59.999999999-23:59",
            ),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "99999999999999999999h"),
        ]);
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1_000_000);
        let i = rate_limit_info(&m, before_epoch);
        assert_eq!(i.retry_after, secs(3600));
        assert_eq!(i.exhausted_for, secs(3600));
        let i = rate_limit_info(&m, UNIX_EPOCH);
        assert_eq!(i.exhausted_for, secs(3600));
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        let i = rate_limit_info(&m, far);
        assert_eq!(i.retry_after, secs(0));
        assert_eq!(i.exhausted_for, secs(3600)); // the huge Go duration
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-22T04:09:00Z"),
            Some(1_795_320_540 * 1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T12:00:00.5Z"),
            Some(951_825_600 * 1_000_000_000 + 500_000_000)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1_000_000_000));
    }

    #[test]
    fn days_from_civil_agrees_with_counting() {
        let mut days = 0;
        for year in 1970..2200 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(
                        days_from_civil(year, month, day),
                        days,
                        "{year}-{month}-{day}"
                    );
                    days += 1;
                }
            }
        }
    }
}
