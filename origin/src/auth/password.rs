//! Werkzeug-compatible password hashes (origin-api.md §4.1).
//!
//! New hashes: `scrypt:N:8:1$<16-char alphanumeric salt>$<hex of 64-byte scrypt output>`, with the
//! salt string's UTF-8 bytes as the salt. Verification also accepts `pbkdf2:sha256:ROUNDS$salt$hex`.
//! Both are CPU-bound: call them from `spawn_blocking`.

use std::sync::OnceLock;

use rand::distributions::Alphanumeric;
use rand::Rng;
use subtle::ConstantTimeEq;

fn new_salt() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect()
}

fn scrypt_hash_string(log_n: u8, salt: &str, digest: &[u8; 64]) -> String {
    format!(
        "scrypt:{}:8:1${salt}${}",
        1u64 << log_n,
        hex::encode(digest)
    )
}

/// Hashes `password` with scrypt N = 2^`log_n`, r = 8, p = 1.
pub fn hash(password: &str, log_n: u8) -> String {
    let salt = new_salt();
    let params = scrypt::Params::new(log_n, 8, 1, 64).expect("valid scrypt parameters");
    let mut out = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut out)
        .expect("64-byte output is a valid length");
    scrypt_hash_string(log_n, &salt, &out)
}

/// A hash in exactly the format and with the parameters [`hash`] uses for `log_n`, that no
/// password matches. A login for an unknown username verifies the given password against it, so
/// that it costs one full scrypt run like a wrong password for an existing user, and response
/// times do not tell which usernames exist.
///
/// Built once per `log_n` and then shared. Its salt and digest are random bytes rather than the
/// output of a scrypt run: [`verify`] does the same work whatever the stored digest is, and not
/// running the KDF here keeps the first unknown-username login as fast as the later ones.
pub fn dummy_hash(log_n: u8) -> &'static str {
    // Indexed by `log_n`; the configuration allows 1..=20 and scrypt at most 63.
    static DUMMIES: [OnceLock<String>; 64] = [const { OnceLock::new() }; 64];
    DUMMIES[usize::from(log_n.min(63))].get_or_init(|| {
        let mut digest = [0u8; 64];
        rand::thread_rng().fill(&mut digest[..]);
        scrypt_hash_string(log_n, &new_salt(), &digest)
    })
}

/// Checks `password` against a stored hash in constant time; unknown formats never match.
pub fn verify(password: &str, stored: &str) -> bool {
    let mut parts = stored.splitn(3, '$');
    let (Some(method), Some(salt), Some(expected_hex)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(expected) = hex::decode(expected_hex) else {
        return false;
    };
    if expected.is_empty() || expected.len() > 1024 {
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    let fields: Vec<&str> = method.split(':').collect();
    match fields.as_slice() {
        ["scrypt", n, r, p] => {
            let (Ok(n), Ok(r), Ok(p)) = (n.parse::<u64>(), r.parse::<u32>(), p.parse::<u32>())
            else {
                return false;
            };
            if !n.is_power_of_two() || !(2..=(1 << 22)).contains(&n) {
                return false;
            }
            let Ok(params) = scrypt::Params::new(n.trailing_zeros() as u8, r, p, out.len()) else {
                return false;
            };
            if scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut out).is_err() {
                return false;
            }
        }
        ["pbkdf2", "sha256", rounds] => {
            let Ok(rounds) = rounds.parse::<u32>() else {
                return false;
            };
            if rounds == 0 || rounds > 10_000_000 {
                return false;
            }
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                password.as_bytes(),
                salt.as_bytes(),
                rounds,
                &mut out,
            );
        }
        _ => return false,
    }
    out.ct_eq(&expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_format() {
        let h = hash("correct horse", 4);
        assert!(h.starts_with("scrypt:16:8:1$"));
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts[1].len(), 16);
        assert_eq!(parts[2].len(), 128);
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
    }

    #[test]
    fn dummy_hash_has_the_real_format_and_parameters_and_matches_nothing() {
        let dummy = dummy_hash(4);
        let real = hash("x", 4);
        let fields = |h: &str| {
            let parts: Vec<String> = h.split('$').map(str::to_string).collect();
            (parts[0].clone(), parts[1].len(), parts[2].len())
        };
        assert_eq!(fields(dummy), fields(&real));
        assert!(std::ptr::eq(dummy, dummy_hash(4)), "built once");
        assert_ne!(dummy, dummy_hash(5));
        assert!(dummy_hash(5).starts_with("scrypt:32:8:1$"));
        for pw in ["", "x", "password", "demo-password-123"] {
            assert!(!verify(pw, dummy));
        }
    }

    #[test]
    fn verifies_werkzeug_pbkdf2() {
        // werkzeug.security.generate_password_hash("secret", "pbkdf2:sha256:1000", salt_length=8)
        // computed independently for salt "abcdefgh".
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(b"secret", b"abcdefgh", 1000, &mut out);
        let stored = format!("pbkdf2:sha256:1000$abcdefgh${}", hex::encode(out));
        assert!(verify("secret", &stored));
        assert!(!verify("secret2", &stored));
    }

    #[test]
    fn garbage_never_matches() {
        for s in [
            "",
            "x",
            "scrypt:3:8:1$a$00",
            "md5$a$00",
            "scrypt:16:8:1$a$zz",
        ] {
            assert!(!verify("x", s));
        }
    }
}
