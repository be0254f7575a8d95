//! HS256 tokens with flask-jwt-extended's claims (origin-api.md §2.2).

use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub fresh: bool,
    pub iat: i64,
    pub jti: String,
    /// `access` or `refresh`.
    #[serde(rename = "type")]
    pub token_type: String,
    /// The user id as a string.
    pub sub: String,
    pub nbf: i64,
    pub csrf: String,
    pub exp: i64,
    /// The user's `token_generation` when the token was issued (claim `gen`; 0 when absent): a
    /// password change bumps the user's generation, which refuses every older token.
    #[serde(rename = "gen", default)]
    pub generation: i32,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

/// A freshly issued token and its CSRF value.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub csrf: String,
    pub claims: Claims,
}

impl JwtKeys {
    pub fn new(secret: &str) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Issues an `access` or `refresh` token for `user_id` (generation 0) valid for `ttl_secs`.
    pub fn issue(&self, user_id: i64, token_type: &str, ttl_secs: i64) -> anyhow::Result<Issued> {
        self.issue_for(user_id, 0, token_type, ttl_secs)
    }

    /// Issues an `access` or `refresh` token for `user_id` whose `token_generation` is
    /// `generation`, valid for `ttl_secs`.
    pub fn issue_for(
        &self,
        user_id: i64,
        generation: i32,
        token_type: &str,
        ttl_secs: i64,
    ) -> anyhow::Result<Issued> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            fresh: false,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            token_type: token_type.to_string(),
            sub: user_id.to_string(),
            nbf: now,
            csrf: uuid::Uuid::new_v4().to_string(),
            exp: now + ttl_secs,
            generation,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(Issued {
            token,
            csrf: claims.csrf.clone(),
            claims,
        })
    }

    /// Verifies signature, `exp` and `nbf`, and the token type.
    pub fn verify(&self, token: &str, token_type: &str) -> Result<Claims, AppError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    AppError::unauthorized("token_expired", "Authentication token has expired")
                }
                ErrorKind::InvalidSignature => {
                    AppError::unauthorized("invalid_token", "Signature verification failed")
                }
                ErrorKind::ImmatureSignature => {
                    AppError::unauthorized("invalid_token", "The token is not yet valid (nbf)")
                }
                ErrorKind::InvalidAlgorithm => AppError::unauthorized(
                    "invalid_token",
                    "The specified alg value is not allowed",
                ),
                ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
                    AppError::unauthorized("invalid_token", format!("Invalid claim: {c}"))
                }
                _ => AppError::unauthorized("invalid_token", "Invalid token"),
            })?;
        if data.claims.token_type != token_type {
            return Err(AppError::unauthorized(
                "invalid_token",
                format!("Only {token_type} tokens are allowed"),
            ));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_verify() {
        let keys = JwtKeys::new("s3cret");
        let t = keys.issue(42, "access", 60).unwrap();
        let c = keys.verify(&t.token, "access").unwrap();
        assert_eq!((c.sub.as_str(), c.csrf.as_str()), ("42", t.csrf.as_str()));
        assert!(keys.verify(&t.token, "refresh").is_err());
        let other = JwtKeys::new("other");
        let AppError::Unauthorized { code, .. } = other.verify(&t.token, "access").unwrap_err()
        else {
            panic!()
        };
        assert_eq!(code, "invalid_token");
        let expired = keys.issue(42, "access", -10).unwrap();
        let AppError::Unauthorized { code, .. } =
            keys.verify(&expired.token, "access").unwrap_err()
        else {
            panic!()
        };
        assert_eq!(code, "token_expired");
    }
}
