//! Device credentials: a random token per device, kept only as an argon2
//! hash (the token is shown once, when issued).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;

/// A newly issued token and the hash to store for it.
pub struct Issued {
    pub token: String,
    pub hash: String,
}

/// Issues a 256-bit random token (URL-safe base64) and its argon2id hash.
pub fn issue() -> Issued {
    let secret: [u8; 32] = rand::random();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes make a valid salt");
    let hash = Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input")
        .to_string();
    Issued { token, hash }
}

/// A new random 256-bit key as URL-safe base64 text (a device's DTLS
/// pre-shared key, kept as is: the DTLS server needs it).
pub fn issue_key() -> String {
    let secret: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
}

/// SHA-256 of a key: what a DTLS session remembers of the key it proved,
/// to notice at once that the key was replaced or revoked.
pub fn key_digest(key: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key).into()
}

/// Whether `token` matches `hash`. Deliberately slow (argon2): call it off
/// the async executor.
pub fn verify(hash: &str, token: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(token.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let a = issue();
        let b = issue();
        assert_ne!(a.token, b.token);
        assert!(a.hash.starts_with("$argon2id$"));
        assert!(!a.hash.contains(&a.token));
        assert!(verify(&a.hash, &a.token));
        assert!(!verify(&a.hash, &b.token));
        assert!(!verify("not a hash", &a.token));
    }
}
