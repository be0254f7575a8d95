//! [`LlmClient`]: one reqwest client, four adapters, optional gateway.

use std::sync::Arc;

use futures::stream::BoxStream;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use url::Url;

use crate::config::LlmConfig;
use crate::error::LlmError;
use crate::redact::redact_payload;
use crate::sanitize::sanitize_messages;
use crate::stream::{delta_stream, Decoder};
use crate::{anthropic, gemini, models, openai, ChatMessage, Provider};

/// Cheap to clone; all clones share one connection pool.
#[derive(Clone)]
pub struct LlmClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    cfg: LlmConfig,
    openai: Url,
    anthropic: Url,
    gemini: Url,
    mistral: Url,
    gateway: Option<Url>,
}

/// How one call goes out.
enum Wire {
    /// OpenAI-compatible (OpenAI, Mistral, gateway).
    OpenAi,
    Anthropic,
    Gemini,
}

/// A built request plus what is needed to read its answer.
struct Call {
    request: RequestBuilder,
    wire: Wire,
    /// The key actually sent, to redact it from anything the provider echoes.
    key: String,
}

fn parse_base(name: &str, raw: &str) -> Result<Url, LlmError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| LlmError::Config(format!("{name} base URL is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(LlmError::Config(format!(
            "{name} base URL must be an http(s) URL"
        )));
    }
    Ok(url)
}

/// `base` with `segments` appended to its path (each percent-encoded as one segment).
fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A header carrying a secret: marked sensitive so it never shows in debug output.
fn secret_header(value: &str) -> Result<HeaderValue, LlmError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        LlmError::Config("API key contains characters not allowed in an HTTP header".into())
    })?;
    header.set_sensitive(true);
    Ok(header)
}

fn auth_headers(name: HeaderName, value: HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    headers
}

/// `Authorization: Bearer <key>` (OpenAI, Mistral, gateway).
fn bearer(key: &str) -> Result<HeaderMap, LlmError> {
    Ok(auth_headers(
        reqwest::header::AUTHORIZATION,
        secret_header(&format!("Bearer {key}"))?,
    ))
}

/// `x-goog-api-key: <key>` (Gemini; the key never travels in the URL).
fn goog_api_key(key: &str) -> Result<HeaderMap, LlmError> {
    Ok(auth_headers(
        HeaderName::from_static("x-goog-api-key"),
        secret_header(key)?,
    ))
}

/// Reads a 2xx body as JSON; `what` names it in the error.
async fn read_json(
    provider: Provider,
    response: Response,
    key: &str,
    what: &str,
) -> Result<Value, LlmError> {
    let body = response
        .bytes()
        .await
        .map_err(|e| LlmError::from_reqwest(provider, e, key))?;
    serde_json::from_slice(&body)
        .map_err(|e| LlmError::malformed(provider, format!("{what} is not JSON: {e}")))
}

impl Inner {
    /// The direct (non-gateway) base URL of `provider`.
    fn base(&self, provider: Provider) -> &Url {
        match provider {
            Provider::OpenAi => &self.openai,
            Provider::Anthropic => &self.anthropic,
            Provider::Gemini => &self.gemini,
            Provider::Mistral => &self.mistral,
        }
    }
}

impl LlmClient {
    /// Validates the base URLs and builds the HTTP client (rustls, connect and idle-read timeouts).
    pub fn new(cfg: LlmConfig) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .build()
            .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))?;
        let inner = Inner {
            openai: parse_base("OpenAI", &cfg.openai_base_url)?,
            anthropic: parse_base("Anthropic", &cfg.anthropic_base_url)?,
            gemini: parse_base("Gemini", &cfg.gemini_base_url)?,
            mistral: parse_base("Mistral", &cfg.mistral_base_url)?,
            gateway: cfg
                .gateway
                .as_ref()
                .map(|g| parse_base("Gateway", &g.base_url))
                .transpose()?,
            http,
            cfg,
        };
        Ok(LlmClient {
            inner: Arc::new(inner),
        })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.inner.cfg
    }

    /// Whether every call goes through the gateway (the per-provider keys are then unused).
    pub fn gateway_mode(&self) -> bool {
        self.inner.gateway.is_some()
    }

    /// One non-streaming completion; returns the answer text.
    pub async fn chat(
        &self,
        provider: Provider,
        model: &str,
        api_key: &str,
        messages: &[ChatMessage],
    ) -> Result<String, LlmError> {
        let call = self.build_chat(provider, model, api_key, messages, false)?;
        let response = self.send(provider, call.request, &call.key).await?;
        let value = read_json(provider, response, &call.key, "response").await?;
        let text = match call.wire {
            Wire::OpenAi => openai::extract_text(&value),
            Wire::Anthropic => anthropic::extract_text(&value),
            Wire::Gemini => gemini::extract_text(&value),
        };
        text.ok_or_else(|| LlmError::malformed(provider, "response has no answer text"))
    }

    /// A streamed completion. Errors before the first byte (status, connect, timeout) are the
    /// outer `Err`; later failures are an `Err` item, after which the stream ends. Items are
    /// non-empty text deltas.
    pub async fn chat_stream(
        &self,
        provider: Provider,
        model: &str,
        api_key: &str,
        messages: &[ChatMessage],
    ) -> Result<BoxStream<'static, Result<String, LlmError>>, LlmError> {
        let call = self.build_chat(provider, model, api_key, messages, true)?;
        let request = call
            .request
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let response = self.send(provider, request, &call.key).await?;
        let decode: Decoder = match call.wire {
            Wire::OpenAi => openai::decode_event,
            Wire::Anthropic => anthropic::decode_event,
            Wire::Gemini => gemini::decode_event,
        };
        Ok(delta_stream(provider, &call.key, response, decode))
    }

    /// The ids the provider offers (§5.2); Anthropic has no list endpoint and gives none.
    /// Retries 429, 5xx, timeouts and network errors `list_models_retries` times.
    pub async fn list_models(
        &self,
        provider: Provider,
        api_key: &str,
    ) -> Result<Vec<String>, LlmError> {
        let inner = &self.inner;
        let (url, headers, key) = match (&inner.gateway, &inner.cfg.gateway, provider) {
            (_, _, Provider::Anthropic) => return Ok(Vec::new()),
            (Some(url), Some(gateway), _) => (
                endpoint(url, &["models"]),
                bearer(&gateway.api_key)?,
                gateway.api_key.clone(),
            ),
            (_, _, Provider::Gemini) => (
                endpoint(&inner.gemini, &["models"]),
                goog_api_key(api_key)?,
                api_key.to_owned(),
            ),
            (_, _, Provider::OpenAi | Provider::Mistral) => (
                endpoint(inner.base(provider), &["models"]),
                bearer(api_key)?,
                api_key.to_owned(),
            ),
        };

        let mut attempt = 0;
        let response = loop {
            let request = inner
                .http
                .get(url.clone())
                .headers(headers.clone())
                .timeout(inner.cfg.list_models_timeout);
            match self.send(provider, request, &key).await {
                Ok(response) => break response,
                Err(err) if attempt < inner.cfg.list_models_retries && retryable(&err) => {
                    tracing::debug!(provider = %provider, attempt, error = %err, "retrying model list");
                    tokio::time::sleep(inner.cfg.retry_backoff * 2u32.saturating_pow(attempt))
                        .await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        };
        let value = read_json(provider, response, &key, "model list").await?;
        Ok(match provider {
            Provider::OpenAi => models::openai_ids(&value),
            Provider::Gemini if !self.gateway_mode() => models::gemini_ids(&value),
            _ => models::data_ids(&value),
        })
    }

    /// Sanitises the messages and builds the provider's request (§6.7).
    fn build_chat(
        &self,
        provider: Provider,
        model: &str,
        api_key: &str,
        messages: &[ChatMessage],
        stream: bool,
    ) -> Result<Call, LlmError> {
        let inner = &self.inner;
        let messages = sanitize_messages(messages);
        let http = &inner.http;
        tracing::debug!(provider = %provider, model, stream, messages = messages.len(), "LLM call");

        if let (Some(url), Some(gateway)) = (&inner.gateway, &inner.cfg.gateway) {
            let body =
                openai::request_body(model, &messages, inner.cfg.max_tokens_stream, stream, true);
            let request = http
                .post(endpoint(url, &["chat", "completions"]))
                .headers(bearer(&gateway.api_key)?)
                .json(&body);
            return Ok(Call {
                request,
                wire: Wire::OpenAi,
                key: gateway.api_key.clone(),
            });
        }

        let max_tokens = if stream {
            inner.cfg.max_tokens_stream
        } else {
            inner.cfg.max_tokens
        };
        let (request, wire) = match provider {
            Provider::OpenAi | Provider::Mistral => {
                // Only OpenAI itself moves reasoning models to `max_completion_tokens`.
                let completion_rule = provider == Provider::OpenAi;
                let body =
                    openai::request_body(model, &messages, max_tokens, stream, completion_rule);
                let request = http
                    .post(endpoint(inner.base(provider), &["chat", "completions"]))
                    .headers(bearer(api_key)?)
                    .json(&body);
                (request, Wire::OpenAi)
            }
            Provider::Anthropic => {
                let body = anthropic::request_body(model, &messages, max_tokens, stream);
                let mut headers = auth_headers(
                    HeaderName::from_static("x-api-key"),
                    secret_header(api_key)?,
                );
                headers.insert(
                    HeaderName::from_static("anthropic-version"),
                    HeaderValue::from_static(anthropic::ANTHROPIC_VERSION),
                );
                let request = http
                    .post(endpoint(inner.base(provider), &["v1", "messages"]))
                    .headers(headers)
                    .json(&body);
                (request, Wire::Anthropic)
            }
            Provider::Gemini => {
                let action = if stream {
                    "streamGenerateContent"
                } else {
                    "generateContent"
                };
                let mut url = endpoint(
                    inner.base(provider),
                    &["models", &format!("{model}:{action}")],
                );
                if stream {
                    url.set_query(Some("alt=sse"));
                }
                let request = http
                    .post(url)
                    .headers(goog_api_key(api_key)?)
                    .json(&gemini::request_body(&messages));
                (request, Wire::Gemini)
            }
        };
        Ok(Call {
            request,
            wire,
            key: api_key.to_owned(),
        })
    }

    /// Sends and turns a non-2xx answer into [`LlmError::Status`] with a redacted payload.
    async fn send(
        &self,
        provider: Provider,
        request: RequestBuilder,
        key: &str,
    ) -> Result<Response, LlmError> {
        let response = request
            .send()
            .await
            .map_err(|e| LlmError::from_reqwest(provider, e, key))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let payload = redact_payload(&text, key);
        tracing::warn!(provider = %provider, status = status.as_u16(), "LLM provider answered with an error");
        Err(LlmError::Status {
            provider,
            status: status.as_u16(),
            payload,
        })
    }
}

/// 429, 5xx, timeouts and network errors are worth another try for idempotent GETs.
fn retryable(err: &LlmError) -> bool {
    match err {
        LlmError::Status { status, .. } => {
            *status == StatusCode::TOO_MANY_REQUESTS.as_u16() || *status >= 500
        }
        LlmError::Timeout { .. } | LlmError::Network { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_append_segments() {
        let base = Url::parse("http://h:1/v1/").unwrap();
        assert_eq!(
            endpoint(&base, &["chat", "completions"]).as_str(),
            "http://h:1/v1/chat/completions"
        );
        let root = Url::parse("http://h:1").unwrap();
        assert_eq!(
            endpoint(&root, &["v1", "messages"]).as_str(),
            "http://h:1/v1/messages"
        );
        let gemini = Url::parse("http://h:1/v1beta").unwrap();
        assert_eq!(
            endpoint(&gemini, &["models", "a/b?c:generateContent"]).as_str(),
            "http://h:1/v1beta/models/a%2Fb%3Fc:generateContent"
        );
    }

    #[test]
    fn rejects_bad_base_urls_and_keys() {
        let cfg = LlmConfig {
            openai_base_url: "not a url".into(),
            ..LlmConfig::default()
        };
        assert!(matches!(LlmClient::new(cfg), Err(LlmError::Config(_))));
        assert!(secret_header("bad\nkey").is_err());
    }
}
