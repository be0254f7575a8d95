//! Reading model ids out of the providers' list answers (§5.2).

use serde_json::Value;

/// OpenAI: `data[].id` that contain `gpt` or start with `o`.
pub fn openai_ids(body: &Value) -> Vec<String> {
    data_ids(body)
        .into_iter()
        .filter(|id| id.contains("gpt") || id.starts_with('o'))
        .collect()
}

/// Mistral (and other OpenAI-shaped lists): every `data[].id`.
pub fn data_ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Gemini: `models[].name` without `models/`, where `supportedGenerationMethods` includes
/// `generateContent`.
pub fn gemini_ids(body: &Value) -> Vec<String> {
    body["models"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|m| {
                    m["supportedGenerationMethods"]
                        .as_array()
                        .is_some_and(|methods| methods.iter().any(|x| x == "generateContent"))
                })
                .filter_map(|m| m["name"].as_str())
                .map(|name| name.strip_prefix("models/").unwrap_or(name).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_as_specified() {
        let list = json!({"data": [{"id": "gpt-4o"}, {"id": "o3"}, {"id": "whisper-1"}, {"id": "chatgpt-4o-latest"}, {"id": "dall-e-3"}]});
        assert_eq!(openai_ids(&list), ["gpt-4o", "o3", "chatgpt-4o-latest"]);
        assert_eq!(data_ids(&list).len(), 5);
        let gemini = json!({"models": [
            {"name": "models/gemini-2.5-pro", "supportedGenerationMethods": ["generateContent"]},
            {"name": "models/embedding-001", "supportedGenerationMethods": ["embedContent"]},
            {"name": "models/no-methods"}
        ]});
        assert_eq!(gemini_ids(&gemini), ["gemini-2.5-pro"]);
        assert!(openai_ids(&json!({"unexpected": true})).is_empty());
    }
}
