//! Times as catgate stores and prints them: fixed-width RFC 3339 UTC with microseconds
//! (`2023-05-28T10:47:19.711027Z`). Fixed width makes text order equal time order in SQLite.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
const DAY: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// Formats an instant in the stored form. Hand-rolled: it runs once per usage record, and
/// `time`'s generic formatter cost ~2k instructions per call.
pub fn format(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return t
            .format(FORMAT)
            .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into());
    }
    let mut out = String::with_capacity(27);
    push_digits(&mut out, year as u32, 4);
    out.push('-');
    push_digits(&mut out, u8::from(t.month()).into(), 2);
    out.push('-');
    push_digits(&mut out, t.day().into(), 2);
    out.push('T');
    push_digits(&mut out, t.hour().into(), 2);
    out.push(':');
    push_digits(&mut out, t.minute().into(), 2);
    out.push(':');
    push_digits(&mut out, t.second().into(), 2);
    out.push('.');
    push_digits(&mut out, t.microsecond(), 6);
    out.push('Z');
    out
}

/// Appends `n` zero-padded to `width` (at most 6) digits.
fn push_digits(out: &mut String, mut n: u32, width: usize) {
    let mut digits = [b'0'; 6];
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(digits[..width].iter().map(|&b| char::from(b)));
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
    month_bounds(OffsetDateTime::now_utc().date())
}

/// The first day of `day`'s month and the first day of the next one.
pub fn month_bounds(day: Date) -> (Date, Date) {
    let first = day.replace_day(1).unwrap_or(day);
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
        let t = OffsetDateTime::from_unix_timestamp_nanos(946_684_799_000_001_000).unwrap();
        assert_eq!(format(t), "1999-12-31T23:59:59.000001Z");
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
