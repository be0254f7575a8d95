//! Werkzeug-compatible password hashes (origin-api.md §4.1).
//!
//! New hashes: `scrypt:N:8:1$<16-char alphanumeric salt>$<hex of 64-byte scrypt output>`, with the
//! salt string's UTF-8 bytes as the salt. Verification also accepts `pbkdf2:sha256:ROUNDS$salt$hex`.
//! Both are CPU-bound: call them from `spawn_blocking`.

use rand::distributions::Alphanumeric;
use rand::Rng;
use subtle::ConstantTimeEq;

/// Hashes `password` with scrypt N = 2^`log_n`, r = 8, p = 1.
pub fn hash(password: &str, log_n: u8) -> String {
    let salt: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    let params = scrypt::Params::new(log_n, 8, 1, 64).expect("valid scrypt parameters");
    let mut out = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut out)
        .expect("64-byte output is a valid length");
    format!("scrypt:{}:8:1${salt}${}", 1u64 << log_n, hex::encode(out))
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
