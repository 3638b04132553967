//! Days and times as people write them in Brazilian Portuguese: "amanhã à tarde",
//! "próxima terça às 15h", "dia 12/12 às 9:30", "sexta de manhã", "meio-dia", "depois das
//! três", read against the clinic's local date.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

/// A part of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Morning,
    Afternoon,
    Evening,
}

impl Period {
    /// The local times the period spans, start included, end excluded.
    pub fn span(self) -> (NaiveTime, NaiveTime) {
        let at = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN);
        match self {
            Period::Morning => (at(6), at(12)),
            Period::Afternoon => (at(12), at(18)),
            Period::Evening => (at(18), at(23)),
        }
    }

    pub fn name_pt(self) -> &'static str {
        match self {
            Period::Morning => "manhã",
            Period::Afternoon => "tarde",
            Period::Evening => "noite",
        }
    }
}

/// Which day or days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Day {
    On(NaiveDate),
    /// Both ends included.
    Between(NaiveDate, NaiveDate),
}

impl Day {
    /// The first and last day.
    pub fn bounds(self) -> (NaiveDate, NaiveDate) {
        match self {
            Day::On(d) => (d, d),
            Day::Between(a, b) => (a, b),
        }
    }
}

/// When in the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeOfDay {
    At(NaiveTime),
    In(Period),
    /// At or after.
    After(NaiveTime),
    /// Before (the time itself excluded).
    Before(NaiveTime),
}

impl TimeOfDay {
    /// Whether a local start time suits what was asked. An exact time also accepts starts
    /// up to 30 minutes either side, so that "às 15h" finds 15:30 when 15:00 is taken;
    /// callers prefer the exact match.
    pub fn admits(self, t: NaiveTime) -> bool {
        match self {
            TimeOfDay::At(at) => (t - at).num_minutes().abs() <= 30,
            TimeOfDay::In(p) => {
                let (from, to) = p.span();
                t >= from && t < to
            }
            TimeOfDay::After(at) => t >= at,
            TimeOfDay::Before(at) => t < at,
        }
    }
}

/// A day and a time of day, either of which may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct When {
    pub day: Option<Day>,
    pub time: Option<TimeOfDay>,
}

impl When {
    pub fn is_empty(&self) -> bool {
        self.day.is_none() && self.time.is_none()
    }

    /// A compact form for tests and logs: `2026-12-10 15:00`, `2026-12-10 tarde`,
    /// `2026-12-14..2026-12-20 >15:00`, `- -`.
    pub fn describe(&self) -> String {
        let day = match self.day {
            None => "-".to_owned(),
            Some(Day::On(d)) => d.to_string(),
            Some(Day::Between(a, b)) => format!("{a}..{b}"),
        };
        let time = match self.time {
            None => "-".to_owned(),
            Some(TimeOfDay::At(t)) => t.format("%H:%M").to_string(),
            Some(TimeOfDay::In(p)) => p.name_pt().replace('ã', "a"),
            Some(TimeOfDay::After(t)) => format!(">{}", t.format("%H:%M")),
            Some(TimeOfDay::Before(t)) => format!("<{}", t.format("%H:%M")),
        };
        format!("{day} {time}")
    }
}

/// Reads the day and the time of day out of normalized words ([`super::text::tokens`]),
/// relative to the clinic's local `today`.
pub fn parse(words: &[String], today: NaiveDate) -> When {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut used = vec![false; w.len()];
    let day = find_day(&w, today, &mut used);
    let time = find_time(&w, &mut used);
    When { day, time }
}

fn weekday(word: &str) -> Option<Weekday> {
    Some(match word {
        "segunda" => Weekday::Mon,
        "terca" => Weekday::Tue,
        "quarta" => Weekday::Wed,
        "quinta" => Weekday::Thu,
        "sexta" => Weekday::Fri,
        "sabado" => Weekday::Sat,
        "domingo" => Weekday::Sun,
        _ => return None,
    })
}

/// The months, as [`super::text::normalize`] writes them.
pub const MONTHS: [&str; 12] = [
    "janeiro",
    "fevereiro",
    "marco",
    "abril",
    "maio",
    "junho",
    "julho",
    "agosto",
    "setembro",
    "outubro",
    "novembro",
    "dezembro",
];

fn month(word: &str) -> Option<u32> {
    const SHORT: [&str; 12] = [
        "jan", "fev", "mar", "abr", "mai", "jun", "jul", "ago", "set", "out", "nov", "dez",
    ];
    MONTHS
        .iter()
        .position(|m| *m == word)
        .or_else(|| SHORT.iter().position(|m| *m == word))
        .map(|i| i as u32 + 1)
}

/// A number written in digits or in words, up to 59.
pub fn number(word: &str) -> Option<u32> {
    if !word.is_empty() && word.len() <= 4 && word.bytes().all(|b| b.is_ascii_digit()) {
        return word.parse().ok();
    }
    const WORDS: [&str; 21] = [
        "zero",
        "um",
        "dois",
        "tres",
        "quatro",
        "cinco",
        "seis",
        "sete",
        "oito",
        "nove",
        "dez",
        "onze",
        "doze",
        "treze",
        "quatorze",
        "quinze",
        "dezesseis",
        "dezessete",
        "dezoito",
        "dezenove",
        "vinte",
    ];
    match word {
        "uma" => Some(1),
        "duas" => Some(2),
        "catorze" => Some(14),
        "trinta" => Some(30),
        "quarenta" => Some(40),
        "cinquenta" => Some(50),
        _ => WORDS.iter().position(|w| *w == word).map(|n| n as u32),
    }
}

/// The next `day` strictly after `today`, or from `today` on when `inclusive`.
fn next_weekday(today: NaiveDate, day: Weekday, inclusive: bool) -> NaiveDate {
    let ahead = (day.num_days_from_monday() + 7 - today.weekday().num_days_from_monday()) % 7;
    let ahead = if ahead == 0 && !inclusive { 7 } else { ahead };
    today + Duration::days(i64::from(ahead))
}

/// Monday of the week after `today`'s.
fn next_monday(today: NaiveDate) -> NaiveDate {
    today + Duration::days(7 - i64::from(today.weekday().num_days_from_monday()))
}

/// `day`/`month` in the coming twelve months; `None` if there is no such date.
fn upcoming(today: NaiveDate, day: u32, month: u32, year: Option<i32>) -> Option<NaiveDate> {
    if let Some(year) = year {
        let year = if year < 100 { 2000 + year } else { year };
        return NaiveDate::from_ymd_opt(year, month, day);
    }
    let this = NaiveDate::from_ymd_opt(today.year(), month, day);
    match this {
        Some(d) if d >= today => Some(d),
        _ => NaiveDate::from_ymd_opt(today.year() + 1, month, day),
    }
}

/// Day `day` of this month, or of the next one if it has passed.
fn day_of_month(today: NaiveDate, day: u32) -> Option<NaiveDate> {
    if let Some(d) = NaiveDate::from_ymd_opt(today.year(), today.month(), day)
        && d >= today
    {
        return Some(d);
    }
    let (y, m) = if today.month() == 12 {
        (today.year() + 1, 1)
    } else {
        (today.year(), today.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, day)
}

fn month_span(today: NaiveDate, months_ahead: u32) -> (NaiveDate, NaiveDate) {
    let index = today.month0() + months_ahead;
    let (y, m) = (today.year() + (index / 12) as i32, index % 12 + 1);
    let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(today);
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    (first, next.map_or(first, |n| n - Duration::days(1)))
}

/// `dd/mm`, `dd/mm/yy(yy)` or `dd-mm`.
fn slashed_date(word: &str, today: NaiveDate) -> Option<NaiveDate> {
    let parts: Vec<&str> = word.split(['/', '-']).collect();
    let num = |s: &str| s.parse::<u32>().ok().filter(|_| (1..=4).contains(&s.len()));
    match parts.as_slice() {
        [d, m] => upcoming(today, num(d)?, num(m)?, None),
        [d, m, y] => upcoming(today, num(d)?, num(m)?, Some(num(y)? as i32)),
        _ => None,
    }
}

fn find_day(w: &[&str], today: NaiveDate, used: &mut [bool]) -> Option<Day> {
    let at = |i: usize| w.get(i).copied().unwrap_or("");
    let mark = |from: usize, n: usize, used: &mut [bool]| {
        for u in used.iter_mut().skip(from).take(n) {
            *u = true;
        }
    };
    for i in 0..w.len() {
        let word = w[i];
        // "depois de amanhã", "amanhã", "hoje"
        if word == "depois" && at(i + 1) == "de" && at(i + 2) == "amanha" {
            mark(i, 3, used);
            return Some(Day::On(today + Duration::days(2)));
        }
        if word == "amanha" {
            mark(i, 1, used);
            return Some(Day::On(today + Duration::days(1)));
        }
        if word == "hoje" {
            mark(i, 1, used);
            return Some(Day::On(today));
        }
        // "daqui a 3 dias", "em 2 dias", "daqui a uma semana"
        if (word == "daqui" && at(i + 1) == "a") || word == "em" {
            let n_at = if word == "daqui" { i + 2 } else { i + 1 };
            if let Some(n) = number(at(n_at)) {
                let unit = at(n_at + 1);
                let days = match unit {
                    "dia" | "dias" => Some(n),
                    "semana" | "semanas" => Some(n * 7),
                    _ => None,
                };
                if let Some(days) = days.filter(|d| *d <= 90) {
                    mark(i, n_at + 2 - i, used);
                    return Some(Day::On(today + Duration::days(i64::from(days))));
                }
            }
        }
        // Weekdays, with what qualifies them.
        let named = weekday(word).or_else(|| {
            // "ter" is also the verb "to have": a day only as "ter(ça)-feira" or after "na".
            (word == "ter"
                && (at(i + 1) == "feira" || matches!(at(i.wrapping_sub(1)), "na" | "proxima")))
            .then_some(Weekday::Tue)
        });
        if let Some(day) = named {
            let before = if i > 0 { w[i - 1] } else { "" };
            let mut end = i + 1;
            if at(end) == "feira" {
                end += 1;
            }
            let next_week = (at(end) == "da" || at(end) == "na")
                && ((at(end + 1) == "semana" && at(end + 2) == "que" && at(end + 3) == "vem")
                    || (at(end + 1) == "proxima" && at(end + 2) == "semana"));
            let date = if next_week {
                let monday = next_monday(today);
                end += if at(end + 1) == "semana" { 4 } else { 3 };
                monday + Duration::days(i64::from(day.num_days_from_monday()))
            } else {
                let this_one = matches!(before, "essa" | "esta" | "nessa" | "nesta");
                if at(end) == "que" && at(end + 1) == "vem" {
                    end += 2;
                }
                next_weekday(today, day, this_one)
            };
            mark(i, end - i, used);
            return Some(Day::On(date));
        }
        // 12/12, 12/12/2026
        if word.contains(['/', '-'])
            && let Some(date) = slashed_date(word, today)
        {
            mark(i, 1, used);
            return Some(Day::On(date));
        }
        // "12 de dezembro", "dia 5 de janeiro", "1 de maio"
        if let Some(n) = number(word).filter(|n| (1..=31).contains(n))
            && at(i + 1) == "de"
            && let Some(m) = month(at(i + 2))
            && let Some(date) = upcoming(today, n, m, None)
        {
            let from = if i > 0 && w[i - 1] == "dia" { i - 1 } else { i };
            mark(from, i + 3 - from, used);
            return Some(Day::On(date));
        }
        // "dia 12"
        if word == "dia"
            && let Some(n) = number(at(i + 1)).filter(|n| (1..=31).contains(n))
            && at(i + 1).bytes().all(|b| b.is_ascii_digit())
            && !(at(i + 2) == "de" && month(at(i + 3)).is_some())
            && let Some(date) = day_of_month(today, n)
        {
            mark(i, 2, used);
            return Some(Day::On(date));
        }
        // Weeks and months.
        let week_after = (word == "semana" && at(i + 1) == "que" && at(i + 2) == "vem")
            || (word == "proxima" && at(i + 1) == "semana");
        if week_after {
            mark(i, if word == "semana" { 3 } else { 2 }, used);
            let monday = next_monday(today);
            return Some(Day::Between(monday, monday + Duration::days(6)));
        }
        if matches!(word, "essa" | "esta" | "nessa" | "nesta") && at(i + 1) == "semana" {
            mark(i, 2, used);
            return Some(Day::Between(today, next_monday(today) - Duration::days(1)));
        }
        if matches!(word, "fim" | "final") && at(i + 1) == "de" && at(i + 2) == "semana" {
            mark(i, 3, used);
            let saturday = if today.weekday() == Weekday::Sun {
                today
            } else {
                next_weekday(today, Weekday::Sat, true)
            };
            let sunday = next_weekday(today, Weekday::Sun, true);
            return Some(Day::Between(saturday.min(sunday), sunday));
        }
        let month_after = (word == "mes" && at(i + 1) == "que" && at(i + 2) == "vem")
            || (word == "proximo" && at(i + 1) == "mes");
        if month_after {
            mark(i, if word == "mes" { 3 } else { 2 }, used);
            let (a, b) = month_span(today, 1);
            return Some(Day::Between(a, b));
        }
    }
    None
}

/// `15h`, `15h30`, `15hs`, `15horas`, `15:30`, `9:30h`: hour and minutes.
fn clock(word: &str) -> Option<(u32, Option<u32>)> {
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() || digits.len() > 2 {
        return None;
    }
    let hour: u32 = digits.parse().ok()?;
    let rest = &word[digits.len()..];
    let minutes = |s: &str| -> Option<u32> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
            .filter(|m| *m < 60)
    };
    if let Some(after) = rest.strip_prefix(':') {
        let after = after.trim_end_matches('h');
        return Some((hour, Some(minutes(after)?)));
    }
    for suffix in ["horas", "hrs", "hs", "hr", "h"] {
        if let Some(after) = rest.strip_prefix(suffix) {
            if after.is_empty() {
                return Some((hour, None));
            }
            return minutes(after).map(|m| (hour, Some(m)));
        }
    }
    None
}

fn find_time(w: &[&str], used: &mut [bool]) -> Option<TimeOfDay> {
    let at = |i: usize| w.get(i).copied().unwrap_or("");
    let mut bound: Option<bool> = None; // Some(true): after, Some(false): before
    let mut period: Option<Period> = None;
    let mut exact: Option<NaiveTime> = None;
    let mut i = 0;
    while i < w.len() {
        if used[i] {
            i += 1;
            continue;
        }
        let word = w[i];
        // Bounds: "depois das", "a partir das", "após as", "antes das", "até as".
        let after = matches!(word, "depois" | "apos") || (word == "partir" && i > 0);
        if (after || matches!(word, "antes" | "ate")) && exact.is_none() {
            bound = Some(after);
            i += 1;
            continue;
        }
        if word == "meio" && at(i + 1) == "dia" {
            let half = at(i + 2) == "e" && at(i + 3) == "meia";
            exact = NaiveTime::from_hms_opt(12, if half { 30 } else { 0 }, 0);
            i += if half { 4 } else { 2 };
            continue;
        }
        if word == "meia" && at(i + 1) == "noite" {
            exact = Some(NaiveTime::MIN);
            i += 2;
            continue;
        }
        // An hour: "15h30", "9:30", or a number after "as"/"das" or before "h"/"horas".
        let previous = if i > 0 { w[i - 1] } else { "" };
        let mut hour_minutes = clock(word);
        let mut end = i + 1;
        if hour_minutes.is_none()
            && let Some(n) = number(word).filter(|n| *n <= 23)
        {
            let cue_before = matches!(previous, "as" | "das" | "a" | "pelas" | "umas");
            let cue_after = matches!(at(i + 1), "h" | "hora" | "horas")
                || (at(i + 1) == "da" && matches!(at(i + 2), "manha" | "tarde" | "noite"))
                || (at(i + 1) == "e" && (at(i + 2) == "meia" || number(at(i + 2)).is_some()));
            if cue_before || cue_after {
                hour_minutes = Some((n, None));
                if matches!(at(i + 1), "h" | "hora" | "horas") {
                    end += 1;
                }
            }
        }
        if let Some((mut hour, mut minutes)) = hour_minutes {
            if minutes.is_none() && at(end) == "e" {
                if at(end + 1) == "meia" {
                    minutes = Some(30);
                    end += 2;
                } else if let Some(m) = number(at(end + 1)).filter(|m| *m < 60) {
                    minutes = Some(m);
                    end += 2;
                    if at(end) == "e"
                        && let Some(units) = number(at(end + 1)).filter(|u| *u < 10)
                    {
                        minutes = minutes.map(|m| m + units);
                        end += 2;
                    }
                    if matches!(at(end), "minutos" | "min") {
                        end += 1;
                    }
                }
            }
            let told = if at(end) == "da" {
                match at(end + 1) {
                    "manha" => Some(Period::Morning),
                    "tarde" => Some(Period::Afternoon),
                    "noite" => Some(Period::Evening),
                    _ => None,
                }
            } else {
                None
            };
            if told.is_some() {
                end += 2;
            }
            hour = match told {
                Some(Period::Morning) => hour,
                Some(_) if hour == 12 && told == Some(Period::Evening) => 0,
                Some(_) if hour < 12 => hour + 12,
                Some(_) => hour,
                // Clinics open by day: "às 3" is three in the afternoon.
                None if (1..=6).contains(&hour) => hour + 12,
                None => hour,
            };
            if hour <= 23 {
                exact = NaiveTime::from_hms_opt(hour, minutes.unwrap_or(0), 0);
            }
            i = end;
            continue;
        }
        // Parts of the day (not "boa tarde", "boa noite", "mais tarde").
        match word {
            "manha" | "cedo" => period = period.or(Some(Period::Morning)),
            "tarde" if !matches!(previous, "boa" | "mais") => {
                let late = matches!(previous, "da" | "do")
                    && matches!(at(i.wrapping_sub(2)), "fim" | "final");
                if late && exact.is_none() {
                    exact = NaiveTime::from_hms_opt(16, 0, 0);
                    bound = Some(true);
                } else {
                    period = period.or(Some(Period::Afternoon));
                }
            }
            "noite" if previous != "boa" => period = period.or(Some(Period::Evening)),
            _ => {}
        }
        i += 1;
    }
    match (exact, bound) {
        (Some(t), Some(true)) => Some(TimeOfDay::After(t)),
        (Some(t), Some(false)) => Some(TimeOfDay::Before(t)),
        (Some(t), None) => Some(TimeOfDay::At(t)),
        (None, _) => period.map(TimeOfDay::In),
    }
}
