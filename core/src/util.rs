//! Small helpers shared by the kernel: randomness, hashing and encodings.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing means the machine cannot do cryptography at all.
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    bytes
}

/// `n` random bytes as unpadded URL-safe base64.
pub fn random_base64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

pub fn b64url_encode(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// A new time-ordered UUID (v7), the form of every primary key.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
