//! Message sanitising before sending (not before storing), §6.1.

use crate::ChatMessage;

/// Control characters removed: U+0000–U+0008, U+000B, U+000C, U+000E–U+001F and U+007F.
/// Tab, LF and CR are kept.
fn is_removed_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}')
}

/// Trims surrounding whitespace and removes the control characters above.
pub fn sanitize_text(text: &str) -> String {
    text.chars()
        .filter(|c| !is_removed_control(*c))
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Sanitised copies of `messages` (roles unchanged).
pub fn sanitize_messages(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role.clone(),
            content: sanitize_text(&m.content),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_controls_keeps_tab_lf_cr() {
        assert_eq!(
            sanitize_text("  a\u{0}b\u{7}\tc\nd\re\u{b}\u{c}\u{1b}\u{7f}f  \n"),
            "ab\tc\nd\ref"
        );
        assert_eq!(sanitize_text("\u{1}  hi  \u{2}"), "hi");
    }
}
