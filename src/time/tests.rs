//! Parsing and printing instants and dates.

use super::*;
use chrono::{SecondsFormat, TimeZone, Utc};
use proptest::prelude::*;

fn p(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn err(s: &str) -> String {
    Timestamp::parse_rfc3339(s).unwrap_err().0
}

#[test]
fn formats_with_0_3_6_9_digits() {
    let base = p("2026-06-01T00:00:00Z");
    assert_eq!(base.to_rfc3339(), "2026-06-01T00:00:00Z");
    let at = |n: i64| Timestamp::from_nanos(base.as_nanos() + n).to_rfc3339();
    assert_eq!(at(120_000_000), "2026-06-01T00:00:00.120Z");
    assert_eq!(at(100_000_000), "2026-06-01T00:00:00.100Z");
    assert_eq!(at(1_000), "2026-06-01T00:00:00.000001Z");
    assert_eq!(at(123_456_000), "2026-06-01T00:00:00.123456Z");
    assert_eq!(at(1), "2026-06-01T00:00:00.000000001Z");
    assert_eq!(at(999_999_999), "2026-06-01T00:00:00.999999999Z");
    assert_eq!(at(-1), "2026-05-31T23:59:59.999999999Z");
    assert_eq!(Timestamp::from_nanos(0).to_rfc3339(), "1970-01-01T00:00:00Z");
    assert_eq!(
        Timestamp::from_nanos(-1).to_rfc3339(),
        "1969-12-31T23:59:59.999999999Z"
    );
    assert_eq!(
        p("2026-06-01T00:00:00.000000Z"),
        base,
        "trailing zero digits parse to the same instant"
    );
    let mut out = String::from("x=");
    base.write_rfc3339(&mut out);
    assert_eq!(out, "x=2026-06-01T00:00:00Z");
    assert_eq!(base.to_string(), "2026-06-01T00:00:00Z");
}

#[test]
fn offsets_convert_to_utc() {
    assert_eq!(p("2026-06-01T05:30:00+05:30"), p("2026-06-01T00:00:00Z"));
    assert_eq!(p("2026-05-31T19:00:00.5-05:00"), p("2026-06-01T00:00:00.500Z"));
    assert_eq!(p("2026-06-01T00:00:00-00:00"), p("2026-06-01T00:00:00Z"));
    assert_eq!(p("2026-06-01t00:00:00z"), p("2026-06-01T00:00:00Z"));
    assert_eq!(
        p("2026-01-01T01:00:00+23:59").to_rfc3339(),
        "2025-12-31T01:01:00Z"
    );
}

#[test]
fn saturating_parse_and_utc_dates_reach_any_written_year() {
    let sat = |s: &str| Timestamp::parse_instant_or_date_saturating(s).unwrap();
    assert_eq!(sat("0000-01-01"), Timestamp::MIN);
    assert_eq!(sat("9999-12-31T23:59:59.999999999Z"), Timestamp::MAX);
    assert_eq!(sat("2026-06-01"), p("2026-06-01T00:00:00Z"));
    assert!(Timestamp::parse_instant_or_date_saturating("9999-13-01").is_err());
    let date = |s: &str| Timestamp::parse_utc_date(s).unwrap();
    assert_eq!(date("9999-12-31"), (9999, 12, 31));
    assert_eq!(date("0000-02-29"), (0, 2, 29));
    assert_eq!(date("9999-12-31T23:00:00-05:00"), (10000, 1, 1));
    assert_eq!(date("0000-01-01T01:00:00+02:00"), (-1, 12, 31));
    assert_eq!(date("2026-08-01T23:30:00-01:00"), (2026, 8, 2));
    assert!(Timestamp::parse_utc_date("2026-02-30").is_err());
}

#[test]
fn bounds() {
    assert_eq!(Timestamp::MIN.to_rfc3339(), "1677-09-21T00:12:43.145224192Z");
    assert_eq!(Timestamp::MAX.to_rfc3339(), "2262-04-11T23:47:16.854775807Z");
    assert_eq!(p("1677-09-21T00:12:43.145224192Z"), Timestamp::MIN);
    assert_eq!(p("2262-04-11T23:47:16.854775807Z"), Timestamp::MAX);
    assert!(err("1677-09-21T00:12:43.145224191Z").contains("out of the supported range"));
    assert!(err("2262-04-11T23:47:16.854775808Z").contains("out of the supported range"));
    assert!(err("9999-12-31T23:59:59Z").contains("out of the supported range"));
    assert!(err("0000-01-01T00:00:00Z").contains("out of the supported range"));
    // The offset may bring an instant back into range.
    assert_eq!(p("2262-04-12T01:47:16.854775807+02:00"), Timestamp::MAX);
    assert_eq!(Timestamp::MAX.checked_add_secs(1), None);
    assert_eq!(Timestamp::MAX.saturating_add_days(1), Timestamp::MAX);
    assert_eq!(Timestamp::MIN.saturating_sub_days(u32::MAX), Timestamp::MIN);
    assert_eq!(Timestamp::MAX.saturating_add_days(u32::MAX), Timestamp::MAX);
    assert_eq!(
        p("2026-06-01T00:00:00Z").saturating_sub_days(365),
        p("2025-06-01T00:00:00Z")
    );
    assert_eq!(
        p("2026-06-01T00:00:00Z").saturating_add_days(30),
        p("2026-07-01T00:00:00Z")
    );
    assert_eq!(
        p("2026-06-01T00:00:00Z").checked_add_secs(-1),
        Some(p("2026-05-31T23:59:59Z"))
    );
}

#[test]
fn rejects_malformed_input_with_a_reason() {
    assert_eq!(
        err("2026-06-01T00:00:00"),
        "missing time zone offset in \"2026-06-01T00:00:00\""
    );
    assert!(err("2026-06-01T23:59:60Z").contains("leap second"));
    assert!(err("2026-06-01T00:00:00.1234567891Z").contains("more than 9 fractional digits"));
    assert!(err("2026-06-01T00:00:00.Z").contains("missing fractional digits"));
    assert!(err("2026-13-01T00:00:00Z").starts_with("invalid date"));
    assert!(err("2026-00-01T00:00:00Z").starts_with("invalid date"));
    assert!(err("2026-04-31T00:00:00Z").starts_with("invalid date"));
    assert!(err("2026-06-00T00:00:00Z").starts_with("invalid date"));
    assert!(err("2026-06-01 00:00:00Z").contains("expected 'T'"));
    assert!(err("2026-06-01").contains("missing time"));
    assert!(err("2026-6-1T00:00:00Z").contains("YYYY-MM-DD"));
    assert!(err("2026-06-01T24:00:00Z").contains("hour"));
    assert!(err("2026-06-01T00:60:00Z").contains("minute"));
    assert!(err("2026-06-01T00:00:61Z").contains("second"));
    assert!(err("2026-06-01T0:00:00Z").contains("HH:MM:SS"));
    assert!(err("2026-06-01T00:00:000Z").contains("HH:MM:SS"));
    assert!(err("2026-06-01T00:00:00+0530").contains("invalid time zone offset"));
    assert!(err("2026-06-01T00:00:00+24:00").contains("invalid time zone offset"));
    assert!(err("2026-06-01T00:00:00+05:60").contains("invalid time zone offset"));
    assert!(err("2026-06-01T00:00:00UTC").contains("invalid time zone offset"));
    assert!(err("2026-06-01T00:00:00Zjunk").contains("unexpected characters"));
    assert!(err("2026-06-01T00:00:00Z ").contains("unexpected characters"));
    assert!(err(" 2026-06-01T00:00:00Z").contains("YYYY-MM-DD"));
    assert!(err("").contains("empty"));
    assert!(err("２０２６-06-01T00:00:00Z").contains("YYYY-MM-DD"));
    let long = format!("2026-06-01T00:00:00{}", "x".repeat(1000));
    assert!(err(&long).len() < 200, "long inputs are cut in messages");
}

#[test]
fn february_29() {
    assert_eq!(p("2024-02-29T12:00:00Z").to_rfc3339(), "2024-02-29T12:00:00Z");
    assert_eq!(p("2000-02-29T00:00:00Z").to_rfc3339(), "2000-02-29T00:00:00Z");
    assert!(err("2025-02-29T00:00:00Z").starts_with("invalid date"));
    assert!(err("1900-02-29T00:00:00Z").starts_with("invalid date"));
    assert!(err("2100-02-29T00:00:00Z").starts_with("invalid date"));
    assert!(err("2024-02-30T00:00:00Z").starts_with("invalid date"));
    assert_eq!(
        Timestamp::parse_instant_or_date("2024-02-29").unwrap(),
        p("2024-02-29T00:00:00Z")
    );
    assert!(Timestamp::parse_instant_or_date("2025-02-29")
        .unwrap_err()
        .0
        .starts_with("invalid date"));
}

#[test]
fn instant_or_date() {
    assert_eq!(
        "2026-06-01".parse::<Timestamp>().unwrap(),
        p("2026-06-01T00:00:00Z")
    );
    assert_eq!(
        "2026-06-01T10:00:00+02:00".parse::<Timestamp>().unwrap(),
        p("2026-06-01T08:00:00Z")
    );
    assert!("2026-06-01T10:00:00".parse::<Timestamp>().is_err());
    assert!("yesterday".parse::<Timestamp>().is_err());
    assert!("9999-01-01".parse::<Timestamp>().unwrap_err().0.contains("range"));
    assert!("2026/06/01"
        .parse::<Timestamp>()
        .unwrap_err()
        .0
        .contains("YYYY-MM-DD"));
}

#[test]
fn chrono_interop_and_dates() {
    let t = p("2026-06-01T23:59:59.5Z");
    assert_eq!(Timestamp::from_chrono(t.to_chrono()), Some(t));
    assert_eq!(t.date(), chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap());
    assert_eq!(
        Timestamp::from_nanos(-1).date(),
        chrono::NaiveDate::from_ymd_opt(1969, 12, 31).unwrap()
    );
    assert_eq!(Timestamp::start_of_day(t.date()), Some(p("2026-06-01T00:00:00Z")));
    assert_eq!(
        Timestamp::start_of_day(chrono::NaiveDate::from_ymd_opt(3000, 1, 1).unwrap()),
        None
    );
    let far = Utc.with_ymd_and_hms(3000, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(Timestamp::from_chrono(far), None);
    let now = Timestamp::now();
    assert!(now > p("2020-01-01T00:00:00Z"));
}

#[test]
fn serde_as_string() {
    let t = p("2026-06-01T00:00:00.120+01:00");
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(json, "\"2026-05-31T23:00:00.120Z\"");
    let back: Timestamp = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
    let escaped: Timestamp = serde_json::from_str("\"2026-06-01T00:00:00\\u005a\"").unwrap();
    assert_eq!(escaped, p("2026-06-01T00:00:00Z"));
    let e = serde_json::from_str::<Timestamp>("\"2026-06-01\"").unwrap_err();
    assert!(e.to_string().contains("missing time"), "{e}");
    assert!(serde_json::from_str::<Timestamp>("12").is_err());
}

#[test]
fn civil_conversions_agree_over_a_wide_range() {
    for days in (-150_000i64..150_000).step_by(7) {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
        let c = chrono::DateTime::from_timestamp(days * SECS_PER_DAY, 0).unwrap();
        use chrono::Datelike;
        assert_eq!((c.year() as i64, c.month(), c.day()), (y, m, d));
    }
}

proptest! {
    #[test]
    fn roundtrips_every_i64(n in any::<i64>()) {
        let t = Timestamp::from_nanos(n);
        let mut s = String::new();
        t.write_rfc3339(&mut s);
        prop_assert_eq!(Timestamp::parse_rfc3339(&s), Ok(t));
        // Same text as chrono's "fewest of 0/3/6/9 digits" format.
        prop_assert_eq!(&s, &t.to_chrono().to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }

    #[test]
    fn parses_like_chrono(n in -9_000_000_000_000_000_000i64..9_000_000_000_000_000_000,
                          off_min in -(23 * 60 + 59)..=(23 * 60 + 59i32)) {
        let off = chrono::FixedOffset::east_opt(off_min * 60).unwrap();
        let local = Timestamp::from_nanos(n).to_chrono().with_timezone(&off);
        let text = local.to_rfc3339_opts(SecondsFormat::Nanos, false);
        prop_assert_eq!(Timestamp::parse_rfc3339(&text), Ok(Timestamp::from_nanos(n)));
    }
}
