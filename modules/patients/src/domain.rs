//! The patient registry's value types, each parsed with a message saying what would be
//! accepted: CPF, CEP, Brazilian phone numbers, genders, states, and search normalization.

use chrono::{Datelike, NaiveDate};
use unicode_normalization::UnicodeNormalization;

/// A CPF (Brazilian individual taxpayer number): 11 digits with two check digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Cpf(String);

// A CPF identifies a person: never print one by accident.
impl std::fmt::Debug for Cpf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cpf(..)")
    }
}

pub const CPF_HINT: &str = "a CPF: 11 digits with valid check digits, e.g. 529.982.247-25";

impl Cpf {
    /// Accepts `529.982.247-25` or `52998224725`.
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let digits: Vec<u32> = input
            .chars()
            .filter(|c| !matches!(c, '.' | '-' | ' '))
            .map(|c| c.to_digit(10).ok_or(CPF_HINT))
            .collect::<Result<_, _>>()?;
        if digits.len() != 11 || digits.iter().all(|&d| d == digits[0]) {
            return Err(CPF_HINT);
        }
        let check = |len: usize| {
            let sum: u32 = digits[..len]
                .iter()
                .zip((2..=len as u32 + 1).rev())
                .map(|(d, w)| d * w)
                .sum();
            let rest = (sum * 10) % 11;
            if rest == 10 { 0 } else { rest }
        };
        if check(9) != digits[9] || check(10) != digits[10] {
            return Err("this CPF's check digits do not match; check for a typo");
        }
        Ok(Cpf(digits
            .iter()
            .filter_map(|d| char::from_digit(*d, 10))
            .collect()))
    }

    /// The 11 digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// `000.000.000-00`.
    pub fn formatted(&self) -> String {
        let d = &self.0;
        format!("{}.{}.{}-{}", &d[0..3], &d[3..6], &d[6..9], &d[9..11])
    }
}

/// A CEP (postal code): 8 digits, stored as `00000-000`.
pub fn cep(input: &str) -> Result<String, &'static str> {
    let digits: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | ' '))
        .collect();
    if digits.len() == 8 && digits.chars().all(|c| c.is_ascii_digit()) && digits != "00000000" {
        Ok(format!("{}-{}", &digits[..5], &digits[5..]))
    } else {
        Err("a CEP: 8 digits, e.g. 01310-100")
    }
}

/// The 27 federative units.
pub const STATES: [&str; 27] = [
    "AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA", "PB", "PR",
    "PE", "PI", "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO",
];

pub fn state(input: &str) -> Result<String, &'static str> {
    let upper = input.trim().to_uppercase();
    if STATES.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err("a state abbreviation (UF) such as SP, RJ or MG")
    }
}

/// Genders the registry accepts; `other` comes with a free description.
pub const GENDERS: [&str; 7] = [
    "female",
    "male",
    "non_binary",
    "trans_female",
    "trans_male",
    "other",
    "not_informed",
];

pub fn gender(input: &str) -> Result<String, &'static str> {
    if GENDERS.contains(&input) {
        Ok(input.to_owned())
    } else {
        Err("one of female, male, non_binary, trans_female, trans_male, other, not_informed")
    }
}

/// A phone number as typed, its E.164 form and the WhatsApp id it corresponds to.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone {
    pub typed: String,
    /// `+5511912345678`.
    pub e164: String,
    /// The digits WhatsApp uses, e.g. `5511912345678`.
    pub whatsapp_id: String,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Phone(..)")
    }
}

pub const PHONE_HINT: &str = "a phone number such as (11) 91234-5678 or +55 11 91234-5678";

impl Phone {
    /// Parses a number as people type it; Brazilian numbers may omit the country code, and
    /// mobiles written without the ninth digit (as older contacts and some WhatsApp ids
    /// have them) are recognised and completed.
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let typed = input.trim();
        if typed.is_empty() || typed.len() > 30 {
            return Err(PHONE_HINT);
        }
        let international = typed.starts_with('+') || typed.starts_with("00");
        let mut digits: String = typed.chars().filter(char::is_ascii_digit).collect();
        if typed.starts_with("00") {
            digits.drain(..2);
        }
        let has_country_code =
            international || (matches!(digits.len(), 12 | 13) && digits.starts_with("55"));
        if !has_country_code {
            // A national number: drop the trunk prefix (0, or 0 and a carrier code).
            let national = digits.trim_start_matches('0');
            let national = if matches!(national.len(), 12 | 13) {
                &national[2..]
            } else {
                national
            };
            digits = format!("55{national}");
        }
        if let Some(national) = digits.strip_prefix("55") {
            digits = format!("55{}", with_ninth_digit(national));
        }
        let number = phonenumber::parse(None, format!("+{digits}")).map_err(|_| PHONE_HINT)?;
        if !phonenumber::is_valid(&number) {
            return Err(PHONE_HINT);
        }
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        let whatsapp_id = e164.trim_start_matches('+').to_owned();
        Ok(Phone {
            typed: typed.to_owned(),
            e164,
            whatsapp_id,
        })
    }
}

/// Brazilian mobiles gained a ninth digit (a leading 9) in 2012–2016; a number of two area
/// digits and eight subscriber digits starting with 6–9 is such a mobile without it.
fn with_ninth_digit(national: &str) -> String {
    let bytes = national.as_bytes();
    if national.len() == 10 && matches!(bytes[2], b'6'..=b'9') {
        format!("{}9{}", &national[..2], &national[2..])
    } else {
        national.to_owned()
    }
}

/// The form names are searched in: lower case, without accents, single spaces.
pub fn search_form(text: &str) -> String {
    let folded: String = text
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Age in whole years on `today`.
pub fn age_on(birth: NaiveDate, today: NaiveDate) -> i32 {
    let mut age = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpf_check_digits() {
        assert_eq!(
            Cpf::parse("529.982.247-25").unwrap().digits(),
            "52998224725"
        );
        assert_eq!(
            Cpf::parse("52998224725").unwrap().formatted(),
            "529.982.247-25"
        );
        assert!(Cpf::parse("529.982.247-24").is_err());
        assert!(Cpf::parse("111.111.111-11").is_err());
        assert!(Cpf::parse("5299822472").is_err());
        assert!(Cpf::parse("52998224a25").is_err());
    }

    #[test]
    fn cep_and_state() {
        assert_eq!(cep("01310100").unwrap(), "01310-100");
        assert_eq!(cep("01310-100").unwrap(), "01310-100");
        assert!(cep("1310-100").is_err());
        assert_eq!(state("sp").unwrap(), "SP");
        assert!(state("XX").is_err());
    }

    #[test]
    fn brazilian_phones_with_and_without_the_ninth_digit() {
        for typed in [
            "(11) 91234-5678",
            "11912345678",
            "+55 11 91234-5678",
            "5511912345678",
            "011 91234-5678",
        ] {
            assert_eq!(
                Phone::parse(typed).unwrap().e164,
                "+5511912345678",
                "{typed}"
            );
        }
        // A landline (eight digits starting with 2 to 5) stays as it is.
        assert_eq!(Phone::parse("551132345678").unwrap().e164, "+551132345678");
        assert_eq!(
            Phone::parse("(11) 3234-5678").unwrap().e164,
            "+551132345678"
        );
        // An old WhatsApp id without the ninth digit maps to the same number.
        assert_eq!(
            Phone::parse("+55 11 8123-4567").unwrap().whatsapp_id,
            "5511981234567"
        );
        assert_eq!(Phone::parse("551181234567").unwrap().e164, "+5511981234567");
        assert_eq!(
            Phone::parse("+1 415 555 2671").unwrap().e164,
            "+14155552671"
        );
        for bad in ["", "123", "abc", "(11) 1234", "+55 00 91234-5678"] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn search_form_folds_case_accents_and_punctuation() {
        assert_eq!(
            search_form("  José  da Conceição-Araújo "),
            "jose da conceicao araujo"
        );
        assert_eq!(search_form("ÂNGELA"), "angela");
    }

    #[test]
    fn age_counts_birthdays() {
        let birth = NaiveDate::from_ymd_opt(2008, 12, 4).unwrap();
        assert_eq!(
            age_on(birth, NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()),
            17
        );
        assert_eq!(
            age_on(birth, NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()),
            18
        );
    }
}
