//! Domain newtypes that can only hold valid values, each parsed with a message saying
//! what would be accepted.

use std::fmt;

use crate::error::{Error, FieldError};

/// A CNPJ (Brazilian company registry number): 14 digits with two check digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cnpj(String);

impl Cnpj {
    /// Accepts `12.345.678/0001-95` or `12345678000195`.
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let digits: Vec<u32> = input
            .chars()
            .filter(|c| !matches!(c, '.' | '/' | '-' | ' '))
            .map(|c| c.to_digit(10).ok_or(()))
            .collect::<Result<_, _>>()
            .map_err(|_| "a CNPJ has 14 digits, optionally formatted as 00.000.000/0000-00")?;
        if digits.len() != 14 {
            return Err("a CNPJ has 14 digits, optionally formatted as 00.000.000/0000-00");
        }
        if digits.iter().all(|&d| d == digits[0]) {
            return Err("this CNPJ is not valid (all digits equal)");
        }
        let check = |len: usize| {
            let weights = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];
            let offset = 13 - len;
            let sum: u32 = digits[..len]
                .iter()
                .zip(&weights[offset..])
                .map(|(d, w)| d * w)
                .sum();
            let rest = sum % 11;
            if rest < 2 { 0 } else { 11 - rest }
        };
        if check(12) != digits[12] || check(13) != digits[13] {
            return Err("this CNPJ's check digits do not match");
        }
        Ok(Cnpj(
            digits
                .iter()
                .map(|d| char::from_digit(*d, 10).unwrap_or('0'))
                .collect(),
        ))
    }

    /// The 14 digits, unformatted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An e-mail address, trimmed, with a plausible shape. Compared case-insensitively.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let email = input.trim();
        let valid = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            })
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.matches('@').count() == 1;
        if valid {
            Ok(Email(email.to_owned()))
        } else {
            Err("an e-mail address such as ana@clinica.com.br")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// E-mail addresses are personal data: never print them by accident.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(..)")
    }
}

/// An IANA time zone name such as `America/Sao_Paulo`.
pub fn time_zone(input: &str) -> Result<chrono_tz::Tz, &'static str> {
    input
        .parse::<chrono_tz::Tz>()
        .map_err(|_| "an IANA time zone name such as America/Sao_Paulo or America/Manaus")
}

/// A password the clinic's staff may choose.
pub fn password(input: &str) -> Result<(), &'static str> {
    let chars = input.chars().count();
    if chars < 10 {
        return Err("at least 10 characters");
    }
    if input.len() > 256 {
        return Err("at most 256 bytes");
    }
    Ok(())
}

/// A person's or clinic's name: 1 to 200 characters, no control characters.
pub fn name(input: &str) -> Result<String, &'static str> {
    let trimmed = input.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 {
        return Err("between 1 and 200 characters");
    }
    if trimmed.chars().any(|c| c.is_control()) {
        return Err("no control characters");
    }
    Ok(trimmed.to_owned())
}

/// Free text: trimmed, at most `max` characters, and no control characters (NUL
/// included, which PostgreSQL cannot store); `multiline` text may hold line breaks and
/// tabs.
pub fn text(input: &str, max: usize, multiline: bool) -> Result<String, &'static str> {
    let trimmed = input.trim();
    if trimmed.chars().count() > max {
        return Err(match max {
            20 => "too long: at most 20 characters",
            40 => "too long: at most 40 characters",
            64 => "too long: at most 64 characters",
            80 => "too long: at most 80 characters",
            120 => "too long: at most 120 characters",
            200 => "too long: at most 200 characters",
            500 => "too long: at most 500 characters",
            2000 => "too long: at most 2,000 characters",
            4000 => "too long: at most 4,000 characters",
            10_000 => "too long: at most 10,000 characters",
            _ => "too long for this field",
        });
    }
    let allowed = |c: char| multiline && (c == '\n' || c == '\t');
    if trimmed.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(if multiline {
            "no control characters (line breaks and tabs are fine)"
        } else {
            "no control characters or line breaks"
        });
    }
    Ok(trimmed.to_owned())
}

/// Collects field errors and turns them into one 422.
#[derive(Debug, Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    /// Runs `check` and records its message under `field` if it fails.
    pub fn check<T>(&mut self, field: &str, result: Result<T, &'static str>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.0.push(FieldError::new(field, message));
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnpj_accepts_valid_numbers_formatted_or_not() {
        assert_eq!(
            Cnpj::parse("11.222.333/0001-81").map(|c| c.0),
            Ok("11222333000181".into())
        );
        assert!(Cnpj::parse("11222333000181").is_ok());
    }

    #[test]
    fn cnpj_rejects_wrong_check_digits_lengths_and_repeated_digits() {
        assert!(Cnpj::parse("11.222.333/0001-82").is_err());
        assert!(Cnpj::parse("1122233300018").is_err());
        assert!(Cnpj::parse("00000000000000").is_err());
        assert!(Cnpj::parse("11a22333000181").is_err());
    }

    #[test]
    fn email_shape() {
        assert!(Email::parse(" ana@clinica.com.br ").is_ok());
        for bad in [
            "ana",
            "ana@",
            "@x.com",
            "a b@x.com",
            "ana@x",
            "a@@x.com",
            "ana@x..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert!(time_zone("America/Sao_Paulo").is_ok());
        assert!(time_zone("BRT").is_err());
    }
}
