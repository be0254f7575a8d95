//! The origin's `origin_llm_*` metrics: one `origin_llm_calls_total` increment per provider call,
//! durations of finished calls and time to first token of streams, with bounded labels.
//!
//! Assertions compare two scrapes (before/after) of exact series lines, so they hold whatever else
//! the origin counted before.

use llmselect_e2e::wait::eventually;
use serde_json::{json, Value};

use super::*;

/// One scrape of the origin's `GET /metrics`.
struct Scrape(String);

impl Scrape {
    async fn of(origin: &TestOrigin) -> Scrape {
        Scrape(origin.metrics_text().await)
    }

    /// Scrapes until `done` holds and returns that scrape.
    async fn until(origin: &TestOrigin, done: impl Fn(&Scrape) -> bool) -> Scrape {
        eventually("a scrape that shows the call", || async {
            let s = Scrape::of(origin).await;
            done(&s).then_some(s)
        })
        .await
    }

    /// The value of the line `<series> <value>`; `series` is the name plus the labels exactly as
    /// exposed (sorted by label name). 0 when the series is absent (never observed).
    fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.parse().expect("numeric sample"))
    }

    fn calls(&self, provider: &str, endpoint: &str, outcome: &str) -> f64 {
        self.value(&calls_series(provider, endpoint, outcome))
    }

    fn duration(&self, provider: &str, endpoint: &str, part: &str) -> f64 {
        self.value(&format!(
            "origin_llm_call_duration_seconds_{part}{{endpoint=\"{endpoint}\",provider=\"{provider}\"}}"
        ))
    }

    fn ttft(&self, provider: &str, part: &str) -> f64 {
        self.value(&format!(
            "origin_llm_time_to_first_token_seconds_{part}{{provider=\"{provider}\"}}"
        ))
    }

    /// Every `origin_llm_` sample line.
    fn llm_lines(&self) -> Vec<&str> {
        self.0
            .lines()
            .filter(|l| l.starts_with("origin_llm_"))
            .collect()
    }
}

fn calls_series(provider: &str, endpoint: &str, outcome: &str) -> String {
    format!(
        "origin_llm_calls_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\",provider=\"{provider}\"}}"
    )
}

const OUTCOMES: [&str; 3] = ["ok", "error", "cancelled"];

/// `(provider, endpoint, outcome)` of every call counted between two scrapes, with its delta.
fn counted(before: &Scrape, after: &Scrape) -> Vec<(String, String, String, f64)> {
    let mut out = Vec::new();
    for provider in ["openai", "anthropic", "gemini", "mistral"] {
        for endpoint in [
            "chat",
            "chat_stream",
            "compare",
            "compare_stream",
            "analyze",
        ] {
            for outcome in OUTCOMES {
                let d = after.calls(provider, endpoint, outcome)
                    - before.calls(provider, endpoint, outcome);
                if d != 0.0 {
                    out.push((provider.into(), endpoint.into(), outcome.into(), d));
                }
            }
        }
    }
    out
}

fn call(provider: &str, endpoint: &str, outcome: &str) -> (String, String, String, f64) {
    (provider.into(), endpoint.into(), outcome.into(), 1.0)
}

#[tokio::test]
async fn successful_chat_counts_one_ok_call_and_one_duration_sample() {
    let s = setup().await;
    let origin = s.origin();
    let before = Scrape::of(origin).await;
    // Every series is there from the start, so the first increment is visible to rate().
    assert!(
        before.0.lines().any(|l| l
            == "origin_llm_calls_total{endpoint=\"chat\",outcome=\"error\",provider=\"openai\"} 0"),
        "{}",
        before.0
    );
    let r = post(
        &s,
        "/api/v1/chat",
        &chat_body("openai", "gpt-4o-slow-150", "secret-user-text"),
    )
    .await;
    assert_eq!(r.status(), 200);

    let after = Scrape::of(origin).await;
    assert!(
        after.0.lines().any(|l| l
            == "origin_llm_calls_total{endpoint=\"chat\",outcome=\"ok\",provider=\"openai\"} 1"),
        "{}",
        after.0
    );
    assert_eq!(counted(&before, &after), [call("openai", "chat", "ok")]);
    let count = |s: &Scrape| s.duration("openai", "chat", "count");
    assert_eq!(count(&after) - count(&before), 1.0);
    let secs = after.duration("openai", "chat", "sum") - before.duration("openai", "chat", "sum");
    assert!((0.15..GENEROUS.as_secs_f64()).contains(&secs), "{secs}");
    assert_eq!(
        after.ttft("openai", "count"),
        before.ttft("openai", "count"),
        "no first token for a non-streaming call"
    );
    // Labels stay bounded: no model names, user text or error texts.
    for line in after.llm_lines() {
        assert!(
            !line.contains("gpt-4o") && !line.contains("secret-user-text"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn provider_failures_count_as_errors() {
    let s = setup().await;
    let origin = s.origin();
    let before = Scrape::of(origin).await;
    let body = |provider: &str, model: &str| chat_body(provider, model, "x");
    let r = post(&s, "/api/v1/chat", &body("openai", "gpt-4o-fail-500")).await;
    assert_eq!(r.status(), 400);
    for (provider, model) in [
        ("anthropic", "claude-fail-429"),
        // Slower than the 1.5 s read timeout of the suite's origin (`llm_stack`).
        ("gemini", "gemini-slow-2500"),
    ] {
        let r = post(&s, "/api/v1/chat/stream", &body(provider, model)).await;
        let events = events_of(r).await;
        assert_eq!(events.last().unwrap(), &json!({"error": STREAM_FAILED}));
    }

    let after = Scrape::of(origin).await;
    assert_eq!(
        counted(&before, &after),
        [
            call("openai", "chat", "error"),
            call("anthropic", "chat_stream", "error"),
            call("gemini", "chat_stream", "error"),
        ]
    );
    // Failed calls finished, so they are timed; none of them produced a first token.
    for (provider, endpoint) in [
        ("openai", "chat"),
        ("anthropic", "chat_stream"),
        ("gemini", "chat_stream"),
    ] {
        let count = |s: &Scrape| s.duration(provider, endpoint, "count");
        assert_eq!(count(&after) - count(&before), 1.0, "{provider} {endpoint}");
        assert_eq!(
            after.ttft(provider, "count"),
            before.ttft(provider, "count")
        );
    }
    let timeout = after.duration("gemini", "chat_stream", "sum")
        - before.duration("gemini", "chat_stream", "sum");
    assert!(timeout >= 1.4, "timed until the timeout: {timeout}");
}

#[tokio::test]
async fn successful_chat_stream_records_time_to_first_token() {
    let s = setup().await;
    let origin = s.origin();
    let before = Scrape::of(origin).await;
    let r = post(
        &s,
        "/api/v1/chat/stream",
        &chat_body("gemini", "gemini-2.5-flash-slow-200", "Stream please"),
    )
    .await;
    let events = events_of(r).await;
    assert_eq!(events.last().unwrap()["done"], true, "{events:?}");

    // The call is recorded before `done` is sent, so one scrape after the body suffices.
    let after = Scrape::of(origin).await;
    assert_eq!(
        counted(&before, &after),
        [call("gemini", "chat_stream", "ok")]
    );
    assert_eq!(
        after.ttft("gemini", "count") - before.ttft("gemini", "count"),
        1.0,
        "one sample per stream, not per delta"
    );
    let ttft = after.ttft("gemini", "sum") - before.ttft("gemini", "sum");
    assert!(
        (0.2..GENEROUS.as_secs_f64()).contains(&ttft),
        "measured from the start of the call: {ttft}"
    );
    let count = |s: &Scrape| s.duration("gemini", "chat_stream", "count");
    assert_eq!(count(&after) - count(&before), 1.0);
    let total = after.duration("gemini", "chat_stream", "sum")
        - before.duration("gemini", "chat_stream", "sum");
    assert!(total >= ttft, "until the stream ended: {total} < {ttft}");
    assert!(after.0.lines().any(|l| l.starts_with(
        "origin_llm_time_to_first_token_seconds_bucket{provider=\"gemini\",le=\"0.25\"}"
    )));
}

#[tokio::test]
async fn compare_counts_one_call_per_provider() {
    let s = setup().await;
    let origin = s.origin();
    let before = Scrape::of(origin).await;
    let r = post(
        &s,
        "/api/v1/compare",
        &compare_body(
            "Hi",
            &[
                ("openai", "gpt-4o"),
                ("anthropic", "claude-3-5-sonnet"),
                // No key for Mistral: failed in place without calling the provider, so not counted.
                ("mistral", "mistral-small"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["results"][2]["error"], true);

    let after = Scrape::of(origin).await;
    assert_eq!(
        counted(&before, &after),
        [
            call("openai", "compare", "ok"),
            call("anthropic", "compare", "ok"),
        ]
    );
    for provider in ["openai", "anthropic"] {
        let count = |s: &Scrape| s.duration(provider, "compare", "count");
        assert_eq!(count(&after) - count(&before), 1.0, "{provider}");
    }
}

#[tokio::test]
async fn compare_stream_counts_one_call_and_one_first_token_per_provider() {
    let s = setup().await;
    let origin = s.origin();
    let before = Scrape::of(origin).await;
    let r = post(
        &s,
        "/api/v1/compare/stream",
        &compare_body(
            "Race",
            &[
                ("openai", "gpt-4o"),
                ("gemini", "gemini-2.5-flash"),
                ("anthropic", "claude-stream-error"),
            ],
        ),
    )
    .await;
    let events = events_of(r).await;
    assert_eq!(events.last().unwrap()["event"], "done", "{events:?}");

    let after = Scrape::of(origin).await;
    assert_eq!(
        counted(&before, &after),
        [
            call("openai", "compare_stream", "ok"),
            call("anthropic", "compare_stream", "error"),
            call("gemini", "compare_stream", "ok"),
        ]
    );
    for provider in ["openai", "gemini"] {
        assert_eq!(
            after.ttft(provider, "count") - before.ttft(provider, "count"),
            1.0,
            "{provider}"
        );
        let count = |s: &Scrape| s.duration(provider, "compare_stream", "count");
        assert_eq!(count(&after) - count(&before), 1.0, "{provider}");
    }
}

#[tokio::test]
async fn analyze_calls_are_counted() {
    let s = setup().await;
    let origin = s.origin();
    let before = Scrape::of(origin).await;
    let outputs = json!([{"model": "a", "response": "One"}, {"model": "b", "response": "Two"}]);
    for (provider, model, status) in [
        ("anthropic", "claude-3-5-sonnet", 200),
        ("openai", "gpt-4o-fail-500", 502),
    ] {
        let r = post(
            &s,
            "/api/v1/compare/analyze",
            &json!({"outputs": outputs, "analysis_provider": provider, "analysis_model": model}),
        )
        .await;
        assert_eq!(r.status(), status, "{provider}");
    }
    let after = Scrape::of(origin).await;
    assert_eq!(
        counted(&before, &after),
        [
            call("openai", "analyze", "error"),
            call("anthropic", "analyze", "ok"),
        ]
    );
}

#[tokio::test]
async fn client_disconnect_counts_a_cancelled_stream() {
    let s = setup_with(chunked(6, 100)).await;
    let origin = s.origin();
    let before = Scrape::of(origin).await;
    leave_a_chat_stream_after_its_first_frame(&s).await;

    let after = Scrape::until(origin, |s| {
        s.calls("openai", "chat_stream", "cancelled") > 0.0
    })
    .await;
    assert_eq!(
        counted(&before, &after),
        [call("openai", "chat_stream", "cancelled")]
    );
    assert_eq!(
        after.ttft("openai", "count") - before.ttft("openai", "count"),
        1.0
    );
    assert_eq!(
        after.duration("openai", "chat_stream", "count"),
        before.duration("openai", "chat_stream", "count"),
        "cancelled calls are counted, not timed"
    );
}

/// A client that leaves `/compare/stream` while every provider is still silent stops every
/// upstream call at once: the calls count as `cancelled`, not as the `error` the read timeout
/// (1.5 s here, before the providers' first byte at 5 s) would give them.
#[tokio::test]
async fn compare_stream_disconnect_cancels_every_upstream_call() {
    let s = setup().await;
    let origin = s.origin();
    let before = Scrape::of(origin).await;
    let r = post(
        &s,
        "/api/v1/compare/stream",
        &compare_body(
            "Leave early",
            &[
                ("openai", "gpt-4o-slow-5000"),
                ("gemini", "gemini-2.5-flash-slow-5000"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    let first = first_frame_then_leave(r).await;
    assert!(first.contains("start"));

    let after = Scrape::until(origin, |s| {
        ["openai", "gemini"]
            .iter()
            .all(|p| s.calls(p, "compare_stream", "cancelled") > 0.0)
    })
    .await;
    assert_eq!(
        counted(&before, &after),
        [
            call("openai", "compare_stream", "cancelled"),
            call("gemini", "compare_stream", "cancelled"),
        ]
    );
    assert_eq!(
        origin.row_count("comparison_results").await,
        0,
        "nothing saved"
    );
}
