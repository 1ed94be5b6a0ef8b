//! Wall-clock timestamps in the API server's format: RFC 3339, UTC, to the second.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2025-01-01T00:00:00Z` for now.
#[must_use]
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_rfc3339(secs)
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (the last second of 9999 beyond it).
#[must_use]
pub fn format_rfc3339(secs: u64) -> String {
    format_rfc3339_signed(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".to_owned())
}

/// Formats seconds since the Unix epoch (negative before 1970) as RFC 3339 UTC, or `None`
/// outside the years 0000–9999 that the format can spell.
#[must_use]
pub fn format_rfc3339_signed(secs: i64) -> Option<String> {
    const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(MIN..=MAX).contains(&secs) {
        return None;
    }
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    ))
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            super::format_rfc3339_signed(-1).as_deref(),
            Some("1969-12-31T23:59:59Z")
        );
        assert_eq!(super::format_rfc3339_signed(253_402_300_800), None);
    }
}
