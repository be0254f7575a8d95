//! Provider keys at rest: Fernet tokens (origin-api.md §4.2), interoperable with Python's
//! `cryptography.fernet`.

use anyhow::Context;

pub struct KeyCipher(fernet::Fernet);

impl std::fmt::Debug for KeyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCipher(..)")
    }
}

impl KeyCipher {
    /// `key` is base64url of 32 bytes.
    pub fn new(key: &str) -> anyhow::Result<KeyCipher> {
        fernet::Fernet::new(key.trim())
            .map(KeyCipher)
            .context("ENCRYPTION_KEY is not a valid Fernet key")
    }

    /// The Fernet token's ASCII bytes, as stored in `api_keys.key_encrypted`.
    pub fn encrypt(&self, plaintext: &str) -> Vec<u8> {
        self.0.encrypt(plaintext.as_bytes()).into_bytes()
    }

    /// Decrypts a stored token. The error never contains key material.
    pub fn decrypt(&self, token: &[u8]) -> anyhow::Result<String> {
        let token = std::str::from_utf8(token).context("stored key is not a Fernet token")?;
        let bytes = self.0.decrypt(token).map_err(|_| {
            anyhow::anyhow!("stored key could not be decrypted (wrong ENCRYPTION_KEY?)")
        })?;
        String::from_utf8(bytes).context("decrypted key is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = KeyCipher::new(&fernet::Fernet::generate_key()).unwrap();
        let token = c.encrypt("sk-test");
        assert!(token.starts_with(b"gAAAA"));
        assert_eq!(c.decrypt(&token).unwrap(), "sk-test");
        assert!(c.decrypt(b"gAAAAbogus").is_err());
    }
}
