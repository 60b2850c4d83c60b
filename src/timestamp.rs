//! Times as catgate stores and prints them: fixed-width RFC 3339 UTC with microseconds
//! (`2023-05-28T10:47:19.711027Z`). Fixed width makes text order equal time order in SQLite.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
const DAY: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// Formats an instant in the stored form.
pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

/// Now, in the stored form.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Option<Date> {
    Date::parse(text, DAY).ok()
}

/// 00:00 UTC of `day`, in the stored form.
pub fn day_start(day: Date) -> String {
    format(day.midnight().assume_utc())
}

/// The first day of the current UTC month and the first day of the next one.
pub fn current_month() -> (Date, Date) {
    let today = OffsetDateTime::now_utc().date();
    let first = today.replace_day(1).unwrap_or(today);
    let next = match first.month() {
        time::Month::December => {
            Date::from_calendar_date(first.year() + 1, time::Month::January, 1)
        }
        m => Date::from_calendar_date(first.year(), m.next(), 1),
    }
    .unwrap_or(first);
    (first, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_utc() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_685_270_839_711_027_000).unwrap();
        assert_eq!(format(t), "2023-05-28T10:47:19.711027Z");
        let d = parse_day("2023-05-01").unwrap();
        assert_eq!(day_start(d), "2023-05-01T00:00:00.000000Z");
        assert!(parse_day("2023-13-01").is_none());
        assert!(parse_day("2023-5-1x").is_none());
    }

    #[test]
    fn month_bounds() {
        let (a, b) = current_month();
        assert_eq!(a.day(), 1);
        assert_eq!(b.day(), 1);
        assert!(b > a);
    }
}
