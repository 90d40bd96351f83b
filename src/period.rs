//! Calendar periods of key budgets, in UTC: a day, an ISO week (Monday to Monday), a month,
//! or the whole life of the key (`total`). A period is named by its first day, so each period
//! of a key has its own ledger row and a new period starts with the whole budget.

use time::{Date, Duration as Days, Month, OffsetDateTime, Time};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BudgetPeriod {
    Day,
    Week,
    #[default]
    Month,
    Total,
}

/// One period: where it began, where it ends (`None` for `total`), both unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodBounds {
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    /// `month:2026-12-01`, `total`: names the period in ledger rows and views.
    pub label: String,
}

impl PeriodBounds {
    /// Time left in the period (for `Retry-After`); `None` when it never ends.
    pub fn remaining_ms(&self, now_ms: i64) -> Option<i64> {
        self.end_ms.map(|end| (end - now_ms).max(0))
    }
}

impl BudgetPeriod {
    pub const NAMES: &'static [&'static str] = &["day", "week", "month", "total"];

    pub fn parse(word: &str) -> Option<BudgetPeriod> {
        match word.trim().to_ascii_lowercase().as_str() {
            "day" => Some(BudgetPeriod::Day),
            "week" => Some(BudgetPeriod::Week),
            "month" => Some(BudgetPeriod::Month),
            "total" => Some(BudgetPeriod::Total),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Week => "week",
            BudgetPeriod::Month => "month",
            BudgetPeriod::Total => "total",
        }
    }

    /// The period that holds `now_ms` (unix milliseconds, UTC).
    pub fn bounds(self, now_ms: i64) -> PeriodBounds {
        let today = date_of(now_ms);
        let (start, end) = match self {
            BudgetPeriod::Total => {
                return PeriodBounds {
                    start_ms: 0,
                    end_ms: None,
                    label: "total".into(),
                }
            }
            BudgetPeriod::Day => (today, today.next_day()),
            BudgetPeriod::Week => {
                let monday =
                    today - Days::days(i64::from(today.weekday().number_days_from_monday()));
                (monday, monday.checked_add(Days::days(7)))
            }
            BudgetPeriod::Month => {
                let first = today.replace_day(1).unwrap_or(today);
                (first, next_month(first))
            }
        };
        PeriodBounds {
            start_ms: ms_of(start),
            end_ms: end.map(ms_of),
            label: format!("{}:{start}", self.as_str()),
        }
    }
}

fn date_of(now_ms: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .date()
}

fn ms_of(date: Date) -> i64 {
    (date
        .with_time(Time::MIDNIGHT)
        .assume_utc()
        .unix_timestamp_nanos()
        / 1_000_000) as i64
}

fn next_month(first: Date) -> Option<Date> {
    let (year, month) = match first.month() {
        Month::December => (first.year().checked_add(1)?, Month::January),
        m => (first.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).ok()
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000;

    /// `YYYY-MM-DDTHH:MM:SS[.mmm]Z` in unix milliseconds.
    fn at(text: &str) -> i64 {
        let n: Vec<i64> = text
            .trim_end_matches('Z')
            .split(['-', 'T', ':', '.'])
            .map(|part| part.parse().unwrap())
            .collect();
        let month = Month::try_from(n[1] as u8).unwrap();
        let date = Date::from_calendar_date(n[0] as i32, month, n[2] as u8).unwrap();
        ms_of(date) + ((n[3] * 60 + n[4]) * 60 + n[5]) * 1000 + n.get(6).copied().unwrap_or(0)
    }

    #[test]
    fn calendar_periods_in_utc() {
        // (period, instant, start, end, label)
        let cases = [
            (
                BudgetPeriod::Day,
                "2026-12-03T23:59:59.999Z",
                "2026-12-03T00:00:00Z",
                "2026-12-04T00:00:00Z",
                "day:2026-12-03",
            ),
            (
                BudgetPeriod::Day,
                "2026-12-04T00:00:00Z",
                "2026-12-04T00:00:00Z",
                "2026-12-05T00:00:00Z",
                "day:2026-12-04",
            ),
            // 2026-12-03 is a Thursday; ISO weeks start on Monday.
            (
                BudgetPeriod::Week,
                "2026-12-03T10:00:00Z",
                "2026-11-30T00:00:00Z",
                "2026-12-07T00:00:00Z",
                "week:2026-11-30",
            ),
            (
                BudgetPeriod::Week,
                "2026-11-30T00:00:00Z",
                "2026-11-30T00:00:00Z",
                "2026-12-07T00:00:00Z",
                "week:2026-11-30",
            ),
            (
                BudgetPeriod::Week,
                "2026-11-29T23:59:59Z",
                "2026-11-23T00:00:00Z",
                "2026-11-30T00:00:00Z",
                "week:2026-11-23",
            ),
            (
                BudgetPeriod::Month,
                "2026-12-31T23:00:00Z",
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "month:2026-12-01",
            ),
            (
                BudgetPeriod::Month,
                "2028-02-29T12:00:00Z",
                "2028-02-01T00:00:00Z",
                "2028-03-01T00:00:00Z",
                "month:2028-02-01",
            ),
        ];
        for (period, now, start, end, label) in cases {
            let b = period.bounds(at(now));
            assert_eq!(b.start_ms, at(start), "{period:?} {now}");
            assert_eq!(b.end_ms, Some(at(end)), "{period:?} {now}");
            assert_eq!(b.label, label);
        }
        let total = BudgetPeriod::Total.bounds(at("2026-12-03T10:00:00Z"));
        assert_eq!((total.end_ms, total.label.as_str()), (None, "total"));
        assert_eq!(total.remaining_ms(5), None);
    }

    #[test]
    fn words_parse_and_print() {
        for name in BudgetPeriod::NAMES {
            assert_eq!(
                BudgetPeriod::parse(name).map(BudgetPeriod::as_str),
                Some(*name)
            );
        }
        assert_eq!(BudgetPeriod::parse(" Month "), Some(BudgetPeriod::Month));
        assert_eq!(BudgetPeriod::parse("monthly"), None);
        assert_eq!(BudgetPeriod::default(), BudgetPeriod::Month);
    }

    proptest! {
        /// Every instant lies in its period, the next period starts where this one ends, and
        /// periods have their calendar lengths.
        #[test]
        fn an_instant_lies_in_its_period(now in 0i64..4_102_444_800_000) {
            for period in [BudgetPeriod::Day, BudgetPeriod::Week, BudgetPeriod::Month] {
                let b = period.bounds(now);
                let end = b.end_ms.unwrap();
                prop_assert!(b.start_ms <= now && now < end, "{period:?} {b:?} {now}");
                prop_assert_eq!(b.start_ms % DAY, 0);
                let len = end - b.start_ms;
                match period {
                    BudgetPeriod::Day => prop_assert_eq!(len, DAY),
                    BudgetPeriod::Week => prop_assert_eq!(len, 7 * DAY),
                    _ => prop_assert!((28 * DAY..=31 * DAY).contains(&len)),
                }
                prop_assert_eq!(b.remaining_ms(now), Some(end - now));
                let next = period.bounds(end);
                prop_assert_eq!(next.start_ms, end);
                prop_assert_ne!(next.label, b.label);
            }
        }
    }
}
