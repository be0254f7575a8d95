//! The chat memory budget (`providers.chat_history_max_chars`): what `/chat` and `/chat/stream`
//! send to the provider.
//!
//! The budget counts characters of message content (Unicode scalar values, as PostgreSQL's
//! `char_length`), roughly 4 per token, one budget for every model. Messages are kept from the
//! newest back while their total fits; the first message that does not fit ends the history (no
//! older message is picked to fill the gap), so what is sent is always the most recent part of
//! the conversation. The newest message is always sent, even when it alone is over budget (the
//! provider then decides). A kept history never starts with an assistant message: the reply to
//! a question that was dropped goes with it.

use llmselect_llm::ChatMessage;

fn chars(m: &ChatMessage) -> usize {
    m.content.chars().count()
}

/// The characters left for the history once `newest` is counted (0 when it alone is over).
pub fn history_budget(newest: &ChatMessage, budget: usize) -> usize {
    budget.saturating_sub(chars(newest))
}

/// The newest messages of `messages` (oldest first) that fit `budget` characters, the last one
/// always included; see the module documentation.
pub fn fit(mut messages: Vec<ChatMessage>, budget: usize) -> Vec<ChatMessage> {
    let Some(newest) = messages.last() else {
        return messages;
    };
    let mut used = chars(newest);
    let mut first = messages.len() - 1;
    while first > 0 {
        let n = chars(&messages[first - 1]);
        if used + n > budget {
            break;
        }
        used += n;
        first -= 1;
    }
    let last = messages.len() - 1;
    while first < last && messages[first].role == "assistant" {
        first += 1;
    }
    messages.drain(..first);
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo(turns: &[(&str, &str)]) -> Vec<ChatMessage> {
        turns
            .iter()
            .map(|(r, c)| ChatMessage::new(*r, *c))
            .collect()
    }

    fn contents(m: &[ChatMessage]) -> Vec<&str> {
        m.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn drops_the_oldest_first_and_keeps_the_newest() {
        let m = convo(&[
            ("user", "aaaa"),
            ("assistant", "bbbb"),
            ("user", "cccc"),
            ("assistant", "dddd"),
            ("user", "eeee"),
        ]);
        assert_eq!(contents(&fit(m.clone(), 100)).len(), 5);
        assert_eq!(contents(&fit(m.clone(), 20)).len(), 5);
        // 12 characters: e, d, c fit; b does not, and the history then starts at c.
        assert_eq!(contents(&fit(m.clone(), 12)), ["cccc", "dddd", "eeee"]);
        // 8: e and d fit, but d is the reply to a dropped question.
        assert_eq!(contents(&fit(m.clone(), 8)), ["eeee"]);
        // The newest message is sent even alone over budget.
        assert_eq!(contents(&fit(m, 2)), ["eeee"]);
    }

    #[test]
    fn the_first_message_over_budget_ends_the_history() {
        let m = convo(&[
            ("user", "a"),
            ("assistant", "b"),
            ("user", "a long question"),
            ("assistant", "ok"),
            ("user", "next"),
        ]);
        // "a" and "b" would fit, but they are older than the long question that does not.
        assert_eq!(contents(&fit(m, 8)), ["next"]);
    }

    #[test]
    fn counts_characters_not_bytes() {
        let m = convo(&[("user", "ééé"), ("assistant", "ü"), ("user", "ñ")]);
        assert_eq!(fit(m, 5).len(), 3);
        assert_eq!(history_budget(&ChatMessage::user("ñññ"), 5), 2);
        assert_eq!(history_budget(&ChatMessage::user("ñññ"), 2), 0);
        assert!(fit(Vec::new(), 10).is_empty());
    }
}
