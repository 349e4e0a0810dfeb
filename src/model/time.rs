//! Times as the services write them. One helper, on humantime's calendar, instead of
//! civil-date arithmetic written out wherever a date is shown.

use std::time::{Duration, UNIX_EPOCH};

/// The last millisecond RFC 3339 can show (the end of the year 9999).
const LAST_MS: i64 = 253_402_300_799_999;

/// Epoch milliseconds as RFC 3339 in UTC, whole seconds (`2017-09-26T00:04:07Z`);
/// `None` for a time before 1970 or past the year 9999, which a value from outside
/// may hold and which humantime would refuse.
pub fn rfc3339_from_ms(ms: i64) -> Option<String> {
    if !(0..=LAST_MS).contains(&ms) {
        return None;
    }
    let time = UNIX_EPOCH.checked_add(Duration::from_millis(ms as u64))?;
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_as_rfc3339_and_out_of_range_ones_are_none() {
        assert_eq!(
            rfc3339_from_ms(1_506_384_247_000).as_deref(),
            Some("2017-09-26T00:04:07Z")
        );
        assert_eq!(rfc3339_from_ms(-1), None);
        assert_eq!(rfc3339_from_ms(LAST_MS + 1), None);
        assert_eq!(
            rfc3339_from_ms(LAST_MS).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
    }
}
