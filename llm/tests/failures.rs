//! Upstream statuses, broken streams, timeouts and network errors, for every provider.

mod common;

use std::time::Duration;

use common::*;
use llmselect_fake_llm::{FakeConfig, FakeLlm};
use llmselect_llm::{ChatMessage, LlmClient, LlmConfig, LlmError, Provider};

fn hello() -> [ChatMessage; 1] {
    [ChatMessage::user("Hello")]
}

/// A fake with `config` and a test client that gives up after 150 ms without a byte.
async fn setup_with_short_read_timeout(config: FakeConfig) -> (FakeLlm, LlmClient) {
    let fake = spawn_fake(config).await;
    let cfg = LlmConfig {
        read_timeout: Duration::from_millis(150),
        ..test_config(&fake)
    };
    let client = LlmClient::new(cfg).unwrap();
    (fake, client)
}

#[tokio::test]
async fn upstream_statuses_become_status_errors_with_redacted_payloads() {
    let (fake, client) = setup().await;
    for provider in Provider::ALL {
        let key = key_for(provider);
        for status in [401u16, 429, 500] {
            fake.reset();
            let model = model_for(provider, &format!("fail-{status}"));
            let err = client
                .chat(provider, &model, key, &hello())
                .await
                .unwrap_err();
            let LlmError::Status {
                provider: p,
                status: got,
                payload,
            } = &err
            else {
                panic!("{provider} {status}: expected a status error, got {err:?}");
            };
            assert_eq!((*p, *got), (provider, status));
            assert!(!payload.is_empty());
            assert!(payload.chars().count() <= 501);
            assert!(!payload.contains(key), "{provider} {status}: {payload}");
            if status == 401 {
                // The fake echoes the key it got; the client must have cut it out.
                assert!(payload.contains("[REDACTED]"), "{payload}");
            }
            assert_no_key(&err, key);
            assert_eq!(err.status_code(), Some(status));
            assert_eq!(
                err.api_error_message(),
                format!("{} API error", provider.display_name())
            );

            // The same before the first byte of a stream: the outer Err, not a stream item.
            let err = match client.chat_stream(provider, &model, key, &hello()).await {
                Err(err) => err,
                Ok(_) => panic!("{provider} {status}: stream opened despite the error"),
            };
            assert_eq!(err.status_code(), Some(status));
            assert_no_key(&err, key);
            // One plain and one streamed call, neither retried.
            assert!(fake.requests(&chat_path(provider, &model, true)) >= 1);
            assert_eq!(fake.total_requests(), 2);
        }
    }
}

/// Streams until the end and checks: at least one delta, then exactly one error, last.
async fn deltas_then_error(client: &LlmClient, provider: Provider, marker: &str) -> LlmError {
    let model = model_for(provider, marker);
    let stream = client
        .chat_stream(provider, &model, key_for(provider), &hello())
        .await
        .unwrap_or_else(|e| panic!("{provider} {marker}: {e:?}"));
    let mut items = collect(stream).await;
    let last = items.pop().expect("at least one item");
    assert!(
        !items.is_empty(),
        "{provider} {marker}: no delta before the error"
    );
    assert!(
        items.iter().all(Result::is_ok),
        "{provider} {marker}: {items:?}"
    );
    let err = last.expect_err("the stream must end with an error");
    assert_no_key(&err, key_for(provider));
    err
}

#[tokio::test]
async fn mid_stream_drop_is_a_stream_error_after_some_deltas() {
    let (_fake, client) = setup().await;
    for provider in Provider::ALL {
        let err = deltas_then_error(&client, provider, "drop-mid-stream").await;
        assert!(
            matches!(err, LlmError::Network { provider: p, .. } if p == provider),
            "{provider}: {err:?}"
        );
    }
}

#[tokio::test]
async fn malformed_frame_is_a_malformed_error_after_some_deltas() {
    let (_fake, client) = setup().await;
    for provider in Provider::ALL {
        let err = deltas_then_error(&client, provider, "malformed").await;
        assert!(
            matches!(err, LlmError::Malformed { provider: p, .. } if p == provider),
            "{provider}: {err:?}"
        );
    }
}

#[tokio::test]
async fn in_stream_error_events_are_upstream_errors() {
    let (_fake, client) = setup().await;
    for provider in Provider::ALL {
        let err = deltas_then_error(&client, provider, "stream-error").await;
        assert!(
            matches!(err, LlmError::Upstream { provider: p, .. } if p == provider),
            "{provider}: {err:?}"
        );
    }
}

#[tokio::test]
async fn slow_first_byte_hits_the_read_timeout() {
    let (_fake, client) = setup_with_short_read_timeout(FakeConfig::instant()).await;
    for provider in Provider::ALL {
        let model = model_for(provider, "slow-5000");
        let err = client
            .chat(provider, &model, key_for(provider), &hello())
            .await
            .unwrap_err();
        assert_eq!(err, LlmError::Timeout { provider });
        let err = match client
            .chat_stream(provider, &model, key_for(provider), &hello())
            .await
        {
            Err(err) => err,
            Ok(_) => panic!("{provider}: stream opened despite the timeout"),
        };
        assert_eq!(err, LlmError::Timeout { provider });
    }
}

#[tokio::test]
async fn refused_connection_is_a_network_error_without_the_key() {
    // Bind and release a port so nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = LlmClient::new(LlmConfig::for_local_fake(&format!(
        "http://127.0.0.1:{port}"
    )))
    .unwrap();
    let err = client
        .chat(Provider::OpenAi, "gpt-4o", OPENAI_KEY, &hello())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::Network {
                provider: Provider::OpenAi,
                ..
            }
        ),
        "{err:?}"
    );
    assert_no_key(&err, OPENAI_KEY);
}

#[tokio::test]
async fn keys_that_cannot_be_headers_are_rejected_before_sending() {
    let (fake, client) = setup().await;
    let err = client
        .chat(Provider::Anthropic, "claude", "bad\nkey", &hello())
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Config(_)), "{err:?}");
    assert!(!format!("{err}").contains("bad\nkey"));
    assert_eq!(fake.total_requests(), 0);
}

#[tokio::test]
async fn idle_gap_mid_stream_hits_the_read_timeout() {
    let (_fake, client) = setup_with_short_read_timeout(FakeConfig {
        chunk_delay: Duration::from_secs(5),
        ..FakeConfig::instant()
    })
    .await;
    let stream = client
        .chat_stream(Provider::OpenAi, "gpt-4o", OPENAI_KEY, &hello())
        .await
        .unwrap();
    let items = collect(stream).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items[0].as_ref().is_ok_and(|d| !d.is_empty()));
    assert_eq!(
        items[1],
        Err(LlmError::Timeout {
            provider: Provider::OpenAi
        })
    );
}
