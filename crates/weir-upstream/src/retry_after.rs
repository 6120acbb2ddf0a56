//! How long an upstream asked us to wait.

use std::time::Duration;

use http::HeaderMap;

/// The wait an upstream asked for: `retry-after-ms`, then `retry-after` (seconds; an
/// HTTP date is not honoured, as clocks differ), capped at an hour.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let d = if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    } else {
        let secs = get("retry-after")?.parse::<f64>().ok()?;
        Duration::from_secs_f64(secs.max(0.0))
    };
    Some(d.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            retry_after(&h(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])),
            None
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "999999")])),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(retry_after(&h(&[])), None);
    }
}
