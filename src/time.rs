//! UTC instants with nanosecond precision, and their strict RFC 3339 text form.
//!
//! Parsing and formatting are hand-written: formatting runs once per event on
//! export, so it writes digits straight into the output `String` and converts
//! days to civil dates with Howard Hinnant's algorithms instead of going
//! through `chrono`'s general formatter.

use std::fmt;
use std::str::FromStr;

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
const NANOS_PER_DAY: i64 = SECS_PER_DAY * NANOS_PER_SEC;
/// Longest formatted form: `2262-04-11T23:47:16.854775807Z`.
const MAX_FORMATTED_LEN: usize = 30;
/// Inputs quoted in error messages are cut to this many characters.
const MAX_QUOTED_CHARS: usize = 64;

/// UTC instant, nanoseconds since the Unix epoch.
///
/// The representable range is `1677-09-21T00:12:43.145224192Z` ..=
/// `2262-04-11T23:47:16.854775807Z`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

/// Why a timestamp could not be parsed or built; the message says what is wrong
/// and quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimeError(pub String);

impl Timestamp {
    /// The earliest representable instant, `1677-09-21T00:12:43.145224192Z`.
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The latest representable instant, `2262-04-11T23:47:16.854775807Z`.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// The instant `n` nanoseconds after the Unix epoch (before it if negative).
    pub const fn from_nanos(n: i64) -> Self {
        Timestamp(n)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// `None` if `t` is outside the range of i64 nanoseconds.
    pub fn from_chrono(t: chrono::DateTime<chrono::Utc>) -> Option<Self> {
        t.timestamp_nanos_opt().map(Timestamp)
    }

    /// The same instant as a chrono value (always representable).
    pub fn to_chrono(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_nanos(self.0)
    }

    /// The current time (saturating at the ends of the range).
    pub fn now() -> Self {
        let now = chrono::Utc::now();
        match now.timestamp_nanos_opt() {
            Some(n) => Timestamp(n),
            None if now.timestamp() < 0 => Timestamp::MIN,
            None => Timestamp::MAX,
        }
    }

    /// Strict RFC 3339: `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+hh:mm|-hh:mm)`.
    ///
    /// `t` and `z` are accepted for `T` and `Z`; the offset is required; a leap
    /// second (`:60`) is rejected; the instant must be within the i64
    /// nanosecond range. The error says what is wrong and quotes the input.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeError> {
        parse_rfc3339_nanos(s.as_bytes())
            .map(Timestamp)
            .map_err(|problem| time_error(&problem, s))
    }

    /// Admin-tool form: an RFC 3339 instant, or a `YYYY-MM-DD` date meaning
    /// 00:00:00Z of that day.
    pub fn parse_instant_or_date(s: &str) -> Result<Self, TimeError> {
        instant_or_date_nanos(s.as_bytes())
            .and_then(|nanos| i64::try_from(nanos).map_err(|_| out_of_range_problem()))
            .map(Timestamp)
            .map_err(|problem| time_error(&problem, s))
    }

    /// [`Timestamp::parse_instant_or_date`], with instants before
    /// [`Timestamp::MIN`] or after [`Timestamp::MAX`] (years 0000-9999 are
    /// written) taken as those bounds: for the ends of a range, where
    /// "from year 1" or "to 9999-12-31" mean "everything".
    pub fn parse_instant_or_date_saturating(s: &str) -> Result<Self, TimeError> {
        instant_or_date_nanos(s.as_bytes())
            .map(|nanos| Timestamp(nanos.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64))
            .map_err(|problem| time_error(&problem, s))
    }

    /// The UTC calendar date `(year, month, day)` of an instant or date in
    /// the admin-tool form, any year 0000-9999 (not only the representable
    /// ones): request dates are checked against their own rules.
    pub fn parse_utc_date(s: &str) -> Result<(i64, u32, u32), TimeError> {
        instant_or_date_nanos(s.as_bytes())
            .map(|nanos| civil_from_days(nanos.div_euclid(i128::from(NANOS_PER_DAY)) as i64))
            .map_err(|problem| time_error(&problem, s))
    }

    /// Appends the UTC RFC 3339 form with a `Z` suffix and 0, 3, 6 or 9
    /// fractional digits (the fewest that keep the value), e.g.
    /// `2026-06-01T00:00:00Z`, `2026-06-01T00:00:00.120Z`,
    /// `2026-06-01T00:00:00.000001Z`.
    pub fn write_rfc3339(self, out: &mut String) {
        let (buf, len) = self.format_bytes();
        // The buffer holds ASCII only, so this never fails.
        if let Ok(s) = std::str::from_utf8(&buf[..len]) {
            out.push_str(s);
        }
    }

    /// [`Timestamp::write_rfc3339`] into bytes.
    pub fn write_rfc3339_bytes(self, out: &mut Vec<u8>) {
        let (buf, len) = self.format_bytes();
        out.extend_from_slice(buf.get(..len).unwrap_or_default());
    }

    /// The form written by [`Timestamp::write_rfc3339`], as a new `String`.
    pub fn to_rfc3339(self) -> String {
        let mut s = String::with_capacity(MAX_FORMATTED_LEN);
        self.write_rfc3339(&mut s);
        s
    }

    /// The UTC calendar date of this instant.
    pub fn date(self) -> chrono::NaiveDate {
        self.to_chrono().date_naive()
    }

    /// 00:00:00Z of `d`, or `None` if that is outside the representable range.
    pub fn start_of_day(d: chrono::NaiveDate) -> Option<Self> {
        Self::from_chrono(d.and_hms_opt(0, 0, 0)?.and_utc())
    }

    /// `self + s` seconds, or `None` on overflow of the range.
    pub fn checked_add_secs(self, s: i64) -> Option<Self> {
        s.checked_mul(NANOS_PER_SEC)
            .and_then(|n| self.0.checked_add(n))
            .map(Timestamp)
    }

    /// `self - d` days, clamped to [`Timestamp::MIN`].
    pub fn saturating_sub_days(self, d: u32) -> Self {
        Timestamp(self.0.saturating_sub(i64::from(d).saturating_mul(NANOS_PER_DAY)))
    }

    /// `self + d` days, clamped to [`Timestamp::MAX`].
    pub fn saturating_add_days(self, d: u32) -> Self {
        Timestamp(self.0.saturating_add(i64::from(d).saturating_mul(NANOS_PER_DAY)))
    }

    /// Formats into a stack buffer; returns the buffer and the used length.
    fn format_bytes(self) -> ([u8; 32], usize) {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        // In 0..1e9, so the cast is lossless.
        let nanos = self.0.rem_euclid(NANOS_PER_SEC) as u32;
        let days = secs.div_euclid(SECS_PER_DAY);
        // In 0..86400, so the cast is lossless.
        let sod = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        // The i64 range spans years 1677..=2262: always four digits.
        let year = year.clamp(0, 9999) as u32;

        let mut buf = *b"0000-00-00T00:00:00.000000000Z\0\0";
        put2(&mut buf, 0, year / 100);
        put2(&mut buf, 2, year % 100);
        put2(&mut buf, 5, month);
        put2(&mut buf, 8, day);
        put2(&mut buf, 11, sod / 3600);
        put2(&mut buf, 14, sod / 60 % 60);
        put2(&mut buf, 17, sod % 60);
        if nanos == 0 {
            buf[19] = b'Z';
            return (buf, 20);
        }
        let (ms, us, ns) = (nanos / 1_000_000, nanos / 1_000 % 1_000, nanos % 1_000);
        put3(&mut buf, 20, ms);
        let len = if us == 0 && ns == 0 {
            23
        } else {
            put3(&mut buf, 23, us);
            if ns == 0 {
                26
            } else {
                put3(&mut buf, 26, ns);
                29
            }
        };
        buf[len] = b'Z';
        (buf, len + 1)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (buf, len) = self.format_bytes();
        match std::str::from_utf8(&buf[..len]) {
            Ok(s) => f.write_str(s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;

    /// Accepts what [`Timestamp::parse_instant_or_date`] accepts.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_instant_or_date(s)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (buf, len) = self.format_bytes();
        match std::str::from_utf8(&buf[..len]) {
            Ok(s) => serializer.serialize_str(s),
            Err(_) => Err(serde::ser::Error::custom("timestamp formatting failed")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

fn time_error(problem: &str, input: &str) -> TimeError {
    if input.is_empty() {
        return TimeError(format!("{problem} (empty string)"));
    }
    TimeError(format!("{problem} in {}", quote(input)))
}

/// `s` as a Rust-style quoted string, cut to a readable length.
pub(crate) fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

fn out_of_range_problem() -> String {
    "out of the supported range 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z".to_string()
}

/// Parses `YYYY-MM-DD` (exactly ten bytes) into a valid civil date.
fn parse_date(b: &[u8]) -> Result<(i64, u32, u32), String> {
    if b.len() < 10
        || !b[0..4].iter().all(u8::is_ascii_digit)
        || b[4] != b'-'
        || !b[5..7].iter().all(u8::is_ascii_digit)
        || b[7] != b'-'
        || !b[8..10].iter().all(u8::is_ascii_digit)
    {
        return Err("expected a date as YYYY-MM-DD".to_string());
    }
    let year = i64::from(num(&b[0..4]));
    let month = num(&b[5..7]);
    let day = num(&b[8..10]);
    if !(1..=12).contains(&month) {
        return Err(format!("invalid date: month {month:02} does not exist"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(format!(
            "invalid date: day {day:02} does not exist in {year:04}-{month:02}"
        ));
    }
    Ok((year, month, day))
}

fn parse_rfc3339_nanos(b: &[u8]) -> Result<i64, String> {
    parse_rfc3339_wide(b).and_then(|nanos| i64::try_from(nanos).map_err(|_| out_of_range_problem()))
}

/// An RFC 3339 instant or a `YYYY-MM-DD` date, in nanoseconds since the epoch.
fn instant_or_date_nanos(b: &[u8]) -> Result<i128, String> {
    if b.len() == 10 {
        let (y, m, d) = parse_date(b)?;
        return Ok(i128::from(days_from_civil(y, m, d)) * i128::from(NANOS_PER_DAY));
    }
    parse_rfc3339_wide(b)
}

/// An RFC 3339 instant in nanoseconds since the epoch, years 0000-9999.
fn parse_rfc3339_wide(b: &[u8]) -> Result<i128, String> {
    if b.is_empty() {
        return Err("empty timestamp".to_string());
    }
    if b.len() < 10 {
        return Err("expected a date as YYYY-MM-DD".to_string());
    }
    let (year, month, day) = parse_date(&b[..10])?;
    match b.get(10) {
        None => return Err("missing time (expected YYYY-MM-DDTHH:MM:SS and an offset)".to_string()),
        Some(b'T' | b't') => {}
        Some(_) => return Err("expected 'T' between the date and the time".to_string()),
    }
    let time = b.get(11..19).unwrap_or_default();
    if time.len() != 8
        || !time[0..2].iter().all(u8::is_ascii_digit)
        || time[2] != b':'
        || !time[3..5].iter().all(u8::is_ascii_digit)
        || time[5] != b':'
        || !time[6..8].iter().all(u8::is_ascii_digit)
    {
        return Err("expected a time as HH:MM:SS".to_string());
    }
    let hour = num(&time[0..2]);
    let minute = num(&time[3..5]);
    let second = num(&time[6..8]);
    if hour > 23 {
        return Err(format!("invalid time: hour {hour:02} does not exist"));
    }
    if minute > 59 {
        return Err(format!("invalid time: minute {minute:02} does not exist"));
    }
    if second == 60 {
        return Err("leap second (:60) is not supported".to_string());
    }
    if second > 59 {
        return Err(format!("invalid time: second {second:02} does not exist"));
    }

    let mut pos = 19;
    let mut frac: u32 = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let n = pos - start;
        if n == 0 {
            return Err("missing fractional digits after '.'".to_string());
        }
        if n > 9 {
            return Err("more than 9 fractional digits".to_string());
        }
        frac = num(&b[start..pos]);
        for _ in n..9 {
            frac *= 10;
        }
    }

    let offset_secs: i64 = match b.get(pos) {
        None => return Err("missing time zone offset".to_string()),
        Some(b'Z' | b'z') => {
            pos += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let off = b.get(pos + 1..pos + 6).unwrap_or_default();
            if off.len() != 5
                || !off[0..2].iter().all(u8::is_ascii_digit)
                || off[2] != b':'
                || !off[3..5].iter().all(u8::is_ascii_digit)
            {
                return Err("invalid time zone offset (expected Z, +hh:mm or -hh:mm)".to_string());
            }
            let oh = num(&off[0..2]);
            let om = num(&off[3..5]);
            if oh > 23 || om > 59 {
                return Err("invalid time zone offset (hours 00-23, minutes 00-59)".to_string());
            }
            pos += 6;
            let secs = i64::from(oh * 3600 + om * 60);
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        Some(_) if b[pos - 1].is_ascii_digit() && b[pos].is_ascii_digit() => {
            return Err("expected a time as HH:MM:SS".to_string())
        }
        Some(_) => return Err("invalid time zone offset (expected Z, +hh:mm or -hh:mm)".to_string()),
    };
    if pos != b.len() {
        return Err("unexpected characters after the time zone offset".to_string());
    }

    let secs = days_from_civil(year, month, day) * SECS_PER_DAY
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset_secs;
    Ok(i128::from(secs) * i128::from(NANOS_PER_SEC) + i128::from(frac))
}

/// Decimal value of a short run of ASCII digits (the caller checked them).
fn num(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
}

/// "00" to "99", two ASCII digits each.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `v % 100` as two digits at `buf[at..at + 2]`.
fn put2(buf: &mut [u8; 32], at: usize, v: u32) {
    let i = (v % 100) as usize * 2;
    buf[at] = DIGIT_PAIRS[i];
    buf[at + 1] = DIGIT_PAIRS[i + 1];
}

/// Writes `v % 1000` as three digits at `buf[at..at + 3]`.
fn put3(buf: &mut [u8; 32], at: usize, v: u32) {
    let v = v % 1000;
    buf[at] = b'0' + (v / 100) as u8;
    put2(buf, at + 1, v);
}

fn is_leap_year(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((m + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    // In [0, 146096]: the rest of the algorithm runs in u32 (cheaper divisions).
    let doe = z.rem_euclid(146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = i64::from(yoe) + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
