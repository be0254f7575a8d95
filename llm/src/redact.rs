//! Redaction and truncation of provider payloads before they reach errors or logs.

/// Longest payload kept in an error, in characters.
pub const MAX_PAYLOAD_CHARS: usize = 500;

const REDACTED: &str = "[REDACTED]";

/// Key-like token prefixes: OpenAI/Anthropic (`sk-`, `sk-proj-`, `sk-ant-`) and Google (`AIza`).
const KEY_PREFIXES: &[&str] = &["sk-", "AIza"];

/// Fewest token characters after a prefix for it to count as a key.
const MIN_KEY_TAIL: usize = 6;

/// Removes `secret` (if long enough to be a key) and anything that looks like an API key, then
/// truncates to [`MAX_PAYLOAD_CHARS`].
pub fn redact_payload(text: &str, secret: &str) -> String {
    truncate(&redact(text, secret), MAX_PAYLOAD_CHARS)
}

/// Replaces every occurrence of `secret` and every key-like token with `[REDACTED]`.
pub fn redact(text: &str, secret: &str) -> String {
    let mut out = if secret.trim().len() >= 4 {
        text.replace(secret, REDACTED)
    } else {
        text.to_owned()
    };
    for prefix in KEY_PREFIXES {
        out = redact_prefixed(&out, prefix);
    }
    out = redact_bearer(&out);
    out
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '.')
}

/// Replaces `<prefix><token chars>` (at a word start, with a long enough tail) by
/// `<prefix>[REDACTED]`.
fn redact_prefixed(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(prefix) {
        let at_word_start = rest[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        let after = &rest[pos + prefix.len()..];
        let tail_len: usize = after
            .chars()
            .take_while(|c| is_token_char(*c))
            .map(char::len_utf8)
            .sum();
        out.push_str(&rest[..pos + prefix.len()]);
        if at_word_start && after[..tail_len].chars().count() >= MIN_KEY_TAIL {
            out.push_str(REDACTED);
            rest = &after[tail_len..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Replaces the token after `Bearer ` (any case) by `[REDACTED]`.
fn redact_bearer(text: &str) -> String {
    const BEARER: &str = "bearer ";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut search_from = 0;
    while let Some(found) = lower[search_from..].find(BEARER) {
        let start = search_from + found + BEARER.len();
        let tail_len: usize = text[start..]
            .chars()
            .take_while(|c| is_token_char(*c))
            .map(char::len_utf8)
            .sum();
        if tail_len > 0 && !text[start..start + tail_len].starts_with(REDACTED) {
            out.push_str(&text[last..start]);
            out.push_str(REDACTED);
            last = start + tail_len;
        }
        search_from = start + tail_len;
    }
    out.push_str(&text[last..]);
    out
}

/// At most `max` characters of `text`, with `…` appended when something was cut.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_key_and_key_like_tokens() {
        let text = "Incorrect API key provided: mysecretkey123. Also sk-proj-abc123DEF456, \
                    sk-ant-api03-xyzxyzxyz, AIzaSyA1234567890abc and Bearer tok_987654.";
        let out = redact(text, "mysecretkey123");
        assert!(!out.contains("mysecretkey123"));
        assert!(!out.contains("abc123DEF456"));
        assert!(!out.contains("xyzxyzxyz"));
        assert!(!out.contains("SyA1234567890abc"));
        assert!(!out.contains("tok_987654"));
        assert!(out.contains("Incorrect API key provided: [REDACTED]."));
        assert!(out.contains("sk-[REDACTED]"));
        assert!(out.contains("AIza[REDACTED]"));
        assert!(out.contains("Bearer [REDACTED]"));
    }

    #[test]
    fn leaves_ordinary_words_alone() {
        let text = "task-force of disk-based sk-1 ok";
        assert_eq!(redact(text, ""), text);
        // A short or blank "secret" must not wipe ordinary text.
        assert_eq!(redact("a b c", " "), "a b c");
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo", 2), "hé…");
        let long = "é".repeat(600);
        let out = redact_payload(&long, "");
        assert_eq!(out.chars().count(), MAX_PAYLOAD_CHARS + 1);
    }
}
