//! Brazilian national holidays, fixed and Easter-based, and the "pontos facultativos" that
//! many clinics also close on. Each clinic can open on a holiday or close on any other day
//! through its own calendar (`calendar_days`).

use chrono::{Datelike, Duration, NaiveDate};

/// Whether a day is a holiday (closed unless the clinic opens) or an optional day off
/// (open unless the clinic closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolidayKind {
    Holiday,
    Optional,
}

impl HolidayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HolidayKind::Holiday => "holiday",
            HolidayKind::Optional => "optional",
        }
    }
}

/// One holiday of a year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    pub date: NaiveDate,
    pub name: &'static str,
    pub kind: HolidayKind,
}

/// Easter Sunday (anonymous Gregorian algorithm).
pub fn easter(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).unwrap_or_default()
}

/// The national holidays and optional days off of `year`, in date order.
pub fn national(year: i32) -> Vec<Holiday> {
    let day = |m, d| NaiveDate::from_ymd_opt(year, m, d).unwrap_or_default();
    let mut list = vec![
        Holiday {
            date: day(1, 1),
            name: "Confraternização Universal",
            kind: HolidayKind::Holiday,
        },
        Holiday {
            date: day(4, 21),
            name: "Tiradentes",
            kind: HolidayKind::Holiday,
        },
        Holiday {
            date: day(5, 1),
            name: "Dia do Trabalho",
            kind: HolidayKind::Holiday,
        },
        Holiday {
            date: day(9, 7),
            name: "Independência do Brasil",
            kind: HolidayKind::Holiday,
        },
        Holiday {
            date: day(10, 12),
            name: "Nossa Senhora Aparecida",
            kind: HolidayKind::Holiday,
        },
        Holiday {
            date: day(11, 2),
            name: "Finados",
            kind: HolidayKind::Holiday,
        },
        Holiday {
            date: day(11, 15),
            name: "Proclamação da República",
            kind: HolidayKind::Holiday,
        },
        Holiday {
            date: day(12, 25),
            name: "Natal",
            kind: HolidayKind::Holiday,
        },
    ];
    // Lei 14.759/2023, first observed in 2024.
    if year >= 2024 {
        list.push(Holiday {
            date: day(11, 20),
            name: "Dia Nacional de Zumbi e da Consciência Negra",
            kind: HolidayKind::Holiday,
        });
    }
    let e = easter(year);
    let from_easter = |days: i64| e + Duration::days(days);
    list.extend([
        Holiday {
            date: from_easter(-48),
            name: "Carnaval (segunda-feira)",
            kind: HolidayKind::Optional,
        },
        Holiday {
            date: from_easter(-47),
            name: "Carnaval (terça-feira)",
            kind: HolidayKind::Optional,
        },
        Holiday {
            date: from_easter(-46),
            name: "Quarta-feira de Cinzas",
            kind: HolidayKind::Optional,
        },
        Holiday {
            date: from_easter(-2),
            name: "Sexta-feira Santa",
            kind: HolidayKind::Holiday,
        },
        Holiday {
            date: from_easter(60),
            name: "Corpus Christi",
            kind: HolidayKind::Optional,
        },
    ]);
    list.sort_by_key(|h| h.date);
    list
}

/// The national holiday or optional day off on `date`, if any.
pub fn on(date: NaiveDate) -> Option<Holiday> {
    national(date.year()).into_iter().find(|h| h.date == date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn easter_and_the_movable_days_match_the_federal_calendar() {
        assert_eq!(easter(2025), d(2025, 4, 20));
        assert_eq!(easter(2026), d(2026, 4, 5));
        assert_eq!(easter(2027), d(2027, 3, 28));
        assert_eq!(on(d(2025, 4, 18)).unwrap().name, "Sexta-feira Santa");
        assert_eq!(on(d(2025, 3, 3)).unwrap().kind, HolidayKind::Optional);
        assert_eq!(on(d(2025, 6, 19)).unwrap().name, "Corpus Christi");
        assert_eq!(on(d(2026, 2, 16)).unwrap().name, "Carnaval (segunda-feira)");
        assert_eq!(on(d(2026, 6, 4)).unwrap().name, "Corpus Christi");
        assert_eq!(on(d(2027, 3, 26)).unwrap().name, "Sexta-feira Santa");
    }

    #[test]
    fn black_consciousness_day_is_national_from_2024() {
        assert!(on(d(2023, 11, 20)).is_none());
        assert_eq!(on(d(2024, 11, 20)).unwrap().kind, HolidayKind::Holiday);
        assert_eq!(
            national(2026)
                .iter()
                .filter(|h| h.kind == HolidayKind::Holiday)
                .count(),
            10
        );
        assert!(on(d(2026, 12, 3)).is_none());
    }
}
