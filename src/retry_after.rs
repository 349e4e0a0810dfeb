//! `Retry-After` as RFC 9110 §10.2.3 defines it (delay-seconds or an HTTP-date),
//! read by both upstream clients (Kaizala, Dataverse) so neither trusts a server's
//! number with arithmetic: every value is capped before it becomes a `Duration`, and
//! nothing here can overflow or panic, whatever the header holds.

use std::time::{Duration, SystemTime};

/// The cap when the configuration names none: an hour, past which a server asking us
/// to wait is more likely broken than busy.
pub const DEFAULT_MAX: Duration = Duration::from_secs(3600);

/// How long a `Retry-After` value asks to wait, measured from `now`, at most `max`.
/// `None` when the value is neither form (the caller then uses its own default).
/// An HTTP-date in the past means "now" (zero).
pub fn parse(value: &str, now: SystemTime, max: Duration) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // delay-seconds = 1*DIGIT, of any length: a value too long for u64 is capped,
        // not refused.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds.min(max.as_secs())).min(max));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default().min(max))
}

/// The `Retry-After` header of `headers`, parsed with [`parse`] against the clock.
pub fn from_headers(headers: &reqwest::header::HeaderMap, max: Duration) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse(value, SystemTime::now(), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn delay_seconds_are_read_and_capped() {
        let now = at(1_000_000_000);
        assert_eq!(parse("7", now, DEFAULT_MAX), Some(Duration::from_secs(7)));
        assert_eq!(parse(" 0 ", now, DEFAULT_MAX), Some(Duration::ZERO));
        assert_eq!(
            parse("18446744073709551615", now, DEFAULT_MAX),
            Some(DEFAULT_MAX)
        );
        assert_eq!(
            parse("99999999999999999999999999", now, DEFAULT_MAX),
            Some(DEFAULT_MAX)
        );
        assert_eq!(
            parse("7200", now, Duration::from_secs(60)),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn http_dates_count_from_now_and_the_past_is_now() {
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 s after the epoch.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse(date, at(784_111_777 - 30), DEFAULT_MAX),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse(date, at(784_111_777 + 30), DEFAULT_MAX),
            Some(Duration::ZERO)
        );
        assert_eq!(parse(date, at(0), DEFAULT_MAX), Some(DEFAULT_MAX));
    }

    #[test]
    fn anything_else_is_not_a_retry_after() {
        let now = at(1_000_000_000);
        for value in [
            "",
            "-1",
            "1.5",
            "soon",
            "7 seconds",
            "+3",
            "0x10",
            "\u{202e}9",
        ] {
            assert_eq!(parse(value, now, DEFAULT_MAX), None, "{value:?}");
        }
    }
}
