//! `X-Hub-Signature-256`: the HMAC-SHA256 of a webhook's body under the Meta app secret.
//!
//! Checked over the raw bytes, in constant time. Meta signs the body with non-ASCII
//! characters escaped as `\uXXXX` (lowercase hex); when the raw bytes hold non-ASCII and
//! do not match, the escaped form is tried before refusing, as the contract describes.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Whether `header` (`sha256=<hex>`) signs `body` under `secret`.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(expected) = header
        .and_then(|h| h.trim().strip_prefix("sha256="))
        .and_then(decode_hex)
    else {
        return false;
    };
    if matches(secret, body, &expected) {
        return true;
    }
    if body.is_ascii() {
        return false;
    }
    match escape_non_ascii(body) {
        Some(escaped) => matches(secret, &escaped, &expected),
        None => false,
    }
}

/// The header value Meta would send for `body`: for the fakes and tests.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let digest = mac(secret, body).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    mac
}

fn matches(secret: &[u8], body: &[u8], expected: &[u8]) -> bool {
    let actual = mac(secret, body).finalize().into_bytes();
    actual.as_slice().ct_eq(expected).into()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The body with every non-ASCII character written as `\uXXXX` per UTF-16 code unit,
/// lowercase hex. `None` if the body is not UTF-8.
pub fn escape_non_ascii(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = String::with_capacity(body.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test_app_secret_6f2d9c1b";

    #[test]
    fn the_worked_examples_of_the_contract_verify() {
        let tiny = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = "sha256=6952db3f5f73062968f53553521f3e7e87e070703866f7d8debef142d8a08c24";
        assert!(verify(SECRET, tiny, Some(header)));
        assert_eq!(sign(SECRET, tiny), header);
        // Meta signs the escaped form: a body delivered with literal UTF-8 still verifies.
        let escaped_sig = "sha256=95c1341ce61b2040b1635e94db88ad55106de9fa9667da0d747711955ed80838";
        assert!(verify(
            SECRET,
            br#"{"text":{"body":"Ol\u00e1"}}"#,
            Some(escaped_sig)
        ));
        assert!(verify(
            SECRET,
            "{\"text\":{\"body\":\"Olá\"}}".as_bytes(),
            Some(escaped_sig)
        ));
        let literal_sig = "sha256=fa44c38e99cd0c12651f80523c82c63fabb41f63918fab9e57d3fc1cb59d9239";
        assert!(verify(
            SECRET,
            "{\"text\":{\"body\":\"Olá\"}}".as_bytes(),
            Some(literal_sig)
        ));
    }

    #[test]
    fn missing_malformed_and_wrong_signatures_fail() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let good = sign(SECRET, body);
        assert!(!verify(SECRET, body, None));
        assert!(!verify(SECRET, body, Some("")));
        assert!(!verify(
            SECRET,
            body,
            Some(&good.replace("sha256=", "sha1="))
        ));
        assert!(!verify(SECRET, body, Some("sha256=zz")));
        assert!(!verify(b"another secret", body, Some(&good)));
        assert!(!verify(SECRET, b"{\"object\":\"x\"}", Some(&good)));
    }

    #[test]
    fn characters_outside_the_basic_plane_escape_as_surrogate_pairs() {
        let escaped = escape_non_ascii("ok 😮 ç".as_bytes()).unwrap();
        assert_eq!(escaped, br"ok \ud83d\ude2e \u00e7");
    }
}
