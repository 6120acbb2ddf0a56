//! How long an upstream asked us to wait.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::rate_limit_info;

/// The wait an upstream asked for, as of now: `retry-after-ms`, then `retry-after`
/// (seconds, or an HTTP date measured from the local clock; a past date is zero), else the
/// reset of an exhausted rate limit, capped at an hour.
///
/// Shorthand for [`rate_limit_info`]`(headers, SystemTime::now()).retry_after`.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    rate_limit_info(headers, SystemTime::now()).retry_after
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, http::HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn milliseconds_win_over_seconds() {
        assert_eq!(
            retry_after(&h(&[("retry-after", "3"), ("retry-after-ms", "1500")])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        // HTTP dates are honoured now; this one is long past, so: retry at once.
        assert_eq!(
            retry_after(&h(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "999999")])),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(retry_after(&h(&[])), None);
    }

    #[test]
    fn future_http_date_counts_from_now() {
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let mut m = HeaderMap::new();
        m.insert("retry-after", http::HeaderValue::from_str(&at).unwrap());
        let d = retry_after(&m).unwrap();
        // Whole seconds in the header, and the clock moves on while the test runs.
        assert!(
            d > Duration::from_secs(110) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }

    #[test]
    fn exhausted_limit_reset_stands_in() {
        assert_eq!(
            retry_after(&h(&[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1m30.5s"),
            ])),
            Some(Duration::from_millis(90_500))
        );
    }
}
