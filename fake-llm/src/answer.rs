//! The deterministic answer text and how it is cut into streamed chunks.

/// Longest echo of the user's message, in characters.
const MAX_ECHO_CHARS: usize = 200;

/// The answer for `model` to the last user message `prompt`; always the same for the same input.
pub fn answer_text(model: &str, prompt: &str) -> String {
    let prompt = prompt.trim();
    let echo: String = prompt.chars().take(MAX_ECHO_CHARS).collect();
    let ellipsis = if prompt.chars().count() > MAX_ECHO_CHARS {
        "..."
    } else {
        ""
    };
    format!(
        "[{model}] You said: {echo}{ellipsis}. This is a deterministic answer from the fake \
         LLM provider, streamed in small pieces so the demo feels real."
    )
}

/// Splits `text` into at most `n` consecutive pieces of nearly equal length (in characters)
/// whose concatenation is `text`.
pub fn split_chunks(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let n = n.clamp(1, chars.len());
    let base = chars.len() / n;
    let extra = chars.len() % n;
    let mut pieces = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        pieces.push(chars[start..start + len].iter().collect());
        start += len;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_deterministic_and_names_the_model() {
        let a = answer_text("gpt-4o", " Hello ");
        assert_eq!(a, answer_text("gpt-4o", "Hello"));
        assert!(a.starts_with("[gpt-4o] You said: Hello. "));
    }

    #[test]
    fn chunks_concatenate_to_the_text() {
        let text = "héllo wörld, 8 chunks";
        for n in [1, 3, 8, 100] {
            let pieces = split_chunks(text, n);
            assert_eq!(pieces.concat(), text);
            assert_eq!(pieces.len(), n.min(text.chars().count()));
        }
        assert!(split_chunks("", 4).is_empty());
    }
}
