//! Part 2: the origin's hot endpoints, measured directly (no proxy) without and then with the
//! performance-index migration, with statements per request read from the origin's own
//! `origin_db_statements_per_request` histogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::Method;
use serde::Serialize;

use crate::fixtures::{self, User, BULK_PASSWORD, CURSOR_PAGE_LIMIT};
use crate::loadgen::{self, Plan, Req, Scenario};
use crate::promtext;

/// The measured endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ListFirst,
    ListCursor,
    /// A search for a word most conversations contain (the filler's vocabulary).
    SearchFrequent,
    /// A search nothing matches: every message of the user is read.
    SearchNoMatch,
    Detail,
    Comparisons,
    Models,
    Login,
}

impl Endpoint {
    pub const ALL: [Endpoint; 8] = [
        Endpoint::ListFirst,
        Endpoint::ListCursor,
        Endpoint::SearchFrequent,
        Endpoint::SearchNoMatch,
        Endpoint::Detail,
        Endpoint::Comparisons,
        Endpoint::Models,
        Endpoint::Login,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ListFirst => "conversation list, first page (limit 20)",
            Endpoint::ListCursor => "conversation list, cursor page (limit 5)",
            Endpoint::SearchFrequent => "conversation search, frequent word (limit 20)",
            Endpoint::SearchNoMatch => "conversation search, no match (limit 20)",
            Endpoint::Detail => "conversation detail",
            Endpoint::Comparisons => "comparisons list",
            Endpoint::Models => "models",
            Endpoint::Login => "login",
        }
    }

    /// The origin's route template (the metrics label).
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::ListFirst
            | Endpoint::ListCursor
            | Endpoint::SearchFrequent
            | Endpoint::SearchNoMatch => "GET /api/v1/conversations",
            Endpoint::Detail => "GET /api/v1/conversations/{id}",
            Endpoint::Comparisons => "GET /api/v1/comparisons",
            Endpoint::Models => "GET /api/v1/models",
            Endpoint::Login => "POST /api/v1/auth/login",
        }
    }
}

/// The search term of [`Endpoint::SearchFrequent`]: a word of the seed's filler vocabulary, in
/// most conversations' messages.
pub const SEARCH_FREQUENT: &str = "timeout";
/// The search term of [`Endpoint::SearchNoMatch`]: in no seeded text, so the search reads every
/// message of the user (the worst case without a usable trigram index).
pub const SEARCH_NO_MATCH: &str = "lisbon";

impl Endpoint {
    /// Measured without the performance indexes too? Searches are not: without
    /// `idx_message_conversation_created` each request scans the messages table, for minutes of
    /// benchmark time that show nothing the list rows do not.
    pub fn before_indexes(self) -> bool {
        !matches!(self, Endpoint::SearchFrequent | Endpoint::SearchNoMatch)
    }
}

/// Requests of one endpoint, spread over the logged-in users.
struct EndpointScenario {
    endpoint: Endpoint,
    users: Arc<Vec<User>>,
    /// `Bearer <token>` of each user, by index.
    bearers: Arc<Vec<Option<HeaderValue>>>,
}

impl Scenario for EndpointScenario {
    fn next(&self, conn: usize, seq: u64) -> Req {
        let n = self.users.len();
        let i = (conn.wrapping_mul(7919) + seq as usize * 31) % n;
        let user = &self.users[i];
        let req = match self.endpoint {
            Endpoint::ListFirst => Req::get("/api/v1/conversations?limit=20"),
            Endpoint::ListCursor => match &user.cursor {
                Some(c) => Req::get(format!(
                    "/api/v1/conversations?limit={CURSOR_PAGE_LIMIT}&cursor={c}"
                )),
                None => Req::get(format!("/api/v1/conversations?limit={CURSOR_PAGE_LIMIT}")),
            },
            Endpoint::SearchFrequent => Req::get(format!(
                "/api/v1/conversations?limit=20&search={SEARCH_FREQUENT}"
            )),
            Endpoint::SearchNoMatch => Req::get(format!(
                "/api/v1/conversations?limit=20&search={SEARCH_NO_MATCH}"
            )),
            Endpoint::Detail => {
                let convs = &user.conversations;
                match convs.get(seq as usize % convs.len().max(1)) {
                    Some(id) => Req::get(format!("/api/v1/conversations/{id}")),
                    None => Req::get("/api/v1/conversations?limit=20"),
                }
            }
            Endpoint::Comparisons => Req::get("/api/v1/comparisons"),
            Endpoint::Models => return Req::get("/api/v1/models"),
            Endpoint::Login => {
                let body =
                    serde_json::json!({"username": user.username, "password": BULK_PASSWORD});
                let mut r = Req::get("/api/v1/auth/login").header(CONTENT_TYPE, "application/json");
                r.method = Method::POST;
                r.body = Bytes::from(body.to_string());
                return r;
            }
        };
        req.header_value(AUTHORIZATION, self.bearers[i].as_ref())
    }
}

/// One endpoint in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct OriginRow {
    pub endpoint: String,
    pub indexes: bool,
    pub connections: usize,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub statements_per_request: f64,
}

/// Measures every endpoint once against `origin` (metrics read from its operations listener
/// `origin_ops`).
pub async fn measure_all(
    origin: SocketAddr,
    origin_ops: SocketAddr,
    users: Arc<Vec<User>>,
    connections: usize,
    duration: Duration,
    indexes: bool,
) -> anyhow::Result<Vec<OriginRow>> {
    let mut rows = Vec::new();
    let bearers = Arc::new(fixtures::bearer_headers(&users));
    for endpoint in Endpoint::ALL {
        if !indexes && !endpoint.before_indexes() {
            continue;
        }
        let before = promtext::scrape(origin_ops).await?;
        let plan = Plan {
            addr: origin,
            spread: Vec::new(),
            connections,
            duration,
            warmup: duration / 5,
            max_requests: None,
        };
        let scenario = Arc::new(EndpointScenario {
            endpoint,
            users: users.clone(),
            bearers: bearers.clone(),
        });
        let result = loadgen::run(&plan, scenario).await?;
        let after = promtext::scrape(origin_ops).await?;
        let stmt = |text: &str, suffix: &str| {
            promtext::sum(
                text,
                &format!("origin_db_statements_per_request_{suffix}"),
                &[("route", endpoint.route())],
            )
        };
        let count = stmt(&after, "count") - stmt(&before, "count");
        let sum = stmt(&after, "sum") - stmt(&before, "sum");
        let t = &result.total;
        rows.push(OriginRow {
            endpoint: endpoint.label().to_string(),
            indexes,
            connections,
            requests: t.requests,
            errors: t.errors,
            rps: result.rps(),
            p50_us: t.latency.p50_us,
            p99_us: t.latency.p99_us,
            statements_per_request: if count > 0.0 { sum / count } else { f64::NAN },
        });
        eprintln!(
            "  origin {:<42} indexes={:<5} {:>8.0} req/s p50 {:>9.0} µs p99 {:>9.0} µs ({} errors)",
            endpoint.label(),
            indexes,
            result.rps(),
            t.latency.p50_us,
            t.latency.p99_us,
            t.errors
        );
    }
    Ok(rows)
}
