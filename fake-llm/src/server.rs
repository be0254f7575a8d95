//! Routing and request handling.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};

use crate::answer::{answer_text, split_chunks};
use crate::config::{Failure, FakeConfig};
use crate::recorder::{RecordedRequest, Recorder};
use crate::scenario::Scenario;
use crate::wire::Wire;

pub type Body = BoxBody<Bytes, io::Error>;

/// Ids `GET /v1/models` returns: chat models plus a few the clients must filter out.
const OPENAI_COMPATIBLE_MODELS: &[&str] = &[
    "gpt-5.1",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "o3-mini",
    "o4-mini",
    "o1-mini",
    "gpt-3.5-turbo",
    "text-embedding-3-small",
    "whisper-1",
    "dall-e-3",
    "mistral-large-latest",
    "mistral-small-latest",
];

/// `(name, supportedGenerationMethods)` for `GET /v1beta/models`.
const GEMINI_MODELS: &[(&str, &[&str])] = &[
    ("gemini-2.5-pro", &["generateContent", "countTokens"]),
    ("gemini-2.5-flash", &["generateContent", "countTokens"]),
    ("gemini-2.5-flash-lite", &["generateContent", "countTokens"]),
    ("gemini-1.5-flash", &["generateContent", "countTokens"]),
    ("text-embedding-004", &["embedContent"]),
];

/// What a request asks for.
enum Route {
    Chat {
        wire: Wire,
        model: Option<String>,
        stream: bool,
    },
    ListModels(Wire),
    NotFound,
}

fn route(method: &Method, path: &str, query: Option<&str>) -> Route {
    match (method, path) {
        (&Method::POST, "/v1/chat/completions") => Route::Chat {
            wire: Wire::OpenAi,
            model: None,
            stream: false,
        },
        (&Method::POST, "/v1/messages") => Route::Chat {
            wire: Wire::Anthropic,
            model: None,
            stream: false,
        },
        (&Method::GET, "/v1/models") => Route::ListModels(Wire::OpenAi),
        (&Method::GET, "/v1beta/models") => Route::ListModels(Wire::Gemini),
        (&Method::POST, _) => {
            let Some((model, action)) = path
                .strip_prefix("/v1beta/models/")
                .and_then(|rest| rest.rsplit_once(':'))
            else {
                return Route::NotFound;
            };
            let stream = match action {
                "generateContent" => false,
                "streamGenerateContent" => true,
                _ => return Route::NotFound,
            };
            if stream && !query.unwrap_or("").split('&').any(|p| p == "alt=sse") {
                // Without alt=sse Gemini streams a JSON array; the fake only speaks SSE.
                return Route::NotFound;
            }
            Route::Chat {
                wire: Wire::Gemini,
                model: Some(model.to_owned()),
                stream,
            }
        }
        _ => Route::NotFound,
    }
}

/// Handles one request; never fails (errors become HTTP answers).
pub async fn handle(
    req: Request<Incoming>,
    config: FakeConfig,
    recorder: Recorder,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "unreadable body"}),
            ))
        }
    };
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    recorder.record(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    });

    let response = match route(&parts.method, &path, query.as_deref()) {
        Route::NotFound => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"message": format!("no route for {} {path}", parts.method)}}),
        ),
        Route::ListModels(wire) => {
            let scenario = Scenario::for_model(&config, "");
            list_models(wire, &scenario, &parts.headers, query.as_deref()).await
        }
        Route::Chat {
            wire,
            model,
            stream,
        } => {
            chat(
                wire,
                model,
                stream,
                &config,
                &parts.headers,
                query.as_deref(),
                &body,
            )
            .await
        }
    };
    Ok(response)
}

async fn list_models(
    wire: Wire,
    scenario: &Scenario,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response<Body> {
    tokio::time::sleep(scenario.latency).await;
    let Some(key) = wire.api_key(headers, query) else {
        return error_response(wire, 401, "", "");
    };
    if let Some(Failure::Status(code)) = scenario.failure {
        return error_response(wire, code, &key, "");
    }
    let body = match wire {
        Wire::Gemini => json!({"models": GEMINI_MODELS.iter().map(|(name, methods)| json!({
            "name": format!("models/{name}"),
            "displayName": name,
            "supportedGenerationMethods": methods,
        })).collect::<Vec<_>>()}),
        _ => json!({"object": "list", "data": OPENAI_COMPATIBLE_MODELS.iter().map(|id| json!({
            "id": id, "object": "model", "created": 1_700_000_000u64, "owned_by": "fake"
        })).collect::<Vec<_>>()}),
    };
    json_response(StatusCode::OK, &body)
}

async fn chat(
    wire: Wire,
    path_model: Option<String>,
    gemini_stream: bool,
    config: &FakeConfig,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &Bytes,
) -> Response<Body> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let model = path_model
        .or_else(|| parsed.as_ref()?["model"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let stream = gemini_stream || parsed.as_ref().is_some_and(|b| b["stream"] == true);
    let scenario = Scenario::for_model(config, &model);

    tokio::time::sleep(scenario.latency).await;
    let Some(key) = wire.api_key(headers, query) else {
        return error_response(wire, 401, "", &model);
    };
    if wire == Wire::Anthropic && !headers.contains_key("anthropic-version") {
        return error_response(wire, 400, &key, &model);
    }
    if let Some(Failure::Status(code)) = scenario.failure {
        return error_response(wire, code, &key, &model);
    }
    let Some(parsed) = parsed else {
        return error_response(wire, 400, &key, &model);
    };

    let text = answer_text(&model, &wire.last_user_text(&parsed));
    if !stream {
        return json_response(StatusCode::OK, &wire.full_body(&model, &text));
    }
    let steps = stream_steps(wire, &model, &text, &scenario);
    sse_response(steps, scenario.chunk_delay)
}

/// One step of a streamed reply.
enum Step {
    /// Bytes sent right away.
    Frame(Bytes),
    /// Bytes sent after the chunk gap.
    Delayed(Bytes),
    /// Abort the connection (after the chunk gap).
    Abort,
}

fn stream_steps(wire: Wire, model: &str, text: &str, scenario: &Scenario) -> VecDeque<Step> {
    let pieces = split_chunks(text, scenario.chunks);
    let mut steps: VecDeque<Step> = wire.prologue(model).into_iter().map(Step::Frame).collect();
    // A mid-stream failure comes after the first half of the pieces.
    let sent = match scenario.failure {
        Some(Failure::DropMidStream | Failure::Malformed | Failure::StreamError) => {
            pieces.len().div_ceil(2)
        }
        _ => pieces.len(),
    };
    for (i, piece) in pieces.iter().enumerate().take(sent) {
        let frame = wire.content_frame(model, piece, i + 1 == pieces.len());
        steps.push_back(if i == 0 {
            Step::Frame(frame)
        } else {
            Step::Delayed(frame)
        });
    }
    match scenario.failure {
        Some(Failure::DropMidStream) => steps.push_back(Step::Abort),
        Some(Failure::Malformed) => steps.push_back(Step::Delayed(wire.malformed_frame())),
        Some(Failure::StreamError) => steps.push_back(Step::Delayed(wire.stream_error_frame())),
        _ => steps.extend(wire.epilogue(model).into_iter().map(Step::Frame)),
    }
    steps
}

/// Gap before an abort even when the chunk gap is zero, so the frames before it are flushed
/// to the socket first and the client sees "some deltas, then an error".
const MIN_ABORT_GAP: Duration = Duration::from_millis(20);

fn sse_response(steps: VecDeque<Step>, gap: Duration) -> Response<Body> {
    let frames = stream::unfold(steps, move |mut steps| async move {
        let item = match steps.pop_front()? {
            Step::Frame(bytes) => Ok(Frame::data(bytes)),
            Step::Delayed(bytes) => {
                tokio::time::sleep(gap).await;
                Ok(Frame::data(bytes))
            }
            Step::Abort => {
                tokio::time::sleep(gap.max(MIN_ABORT_GAP)).await;
                steps.clear();
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "injected mid-stream drop",
                ))
            }
        };
        Some((item, steps))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

fn error_response(wire: Wire, status: u16, key: &str, model: &str) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &wire.error_body(status, key, model))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let full = Full::new(Bytes::from(body.to_string())).map_err(|never: Infallible| match never {});
    let mut response = Response::new(BodyExt::boxed(full));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
