//! Logged-in seeded users (`bulk<n>`, the seed's shared password) with their conversation ids and
//! a keyset cursor, fetched once before measuring.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use tokio::sync::Semaphore;

use crate::client;

/// The seed's password for every bulk user.
pub const BULK_PASSWORD: &str = "demo-password-123";

/// Page size of the cursor-page measurement: seeded users have about ten conversations, so a
/// second page needs a smaller first one.
pub const CURSOR_PAGE_LIMIT: usize = 5;

#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub token: String,
    /// Ids of the user's first page of conversations (newest first).
    pub conversations: Vec<String>,
    /// `nextCursor` of the first page at [`CURSOR_PAGE_LIMIT`].
    pub cursor: Option<String>,
}

/// Each user's `Authorization: Bearer <token>` value, built once (`None` if it is not a valid
/// header value, in which case [`crate::loadgen::Req::header`] would have dropped it too).
pub fn bearer_headers(users: &[User]) -> Vec<Option<HeaderValue>> {
    users
        .iter()
        .map(|u| HeaderValue::from_str(&format!("Bearer {}", u.token)).ok())
        .collect()
}

/// Logs in `bulk1..=bulk<count>` (8 at a time) and reads their conversation lists.
pub async fn users(origin: SocketAddr, count: usize) -> anyhow::Result<Vec<User>> {
    let gate = Arc::new(Semaphore::new(8));
    let mut tasks = Vec::new();
    for n in 1..=count {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let username = format!("bulk{n}");
            let token = client::login(origin, &username, BULK_PASSWORD).await?;
            let page = client::get(origin, "/api/v1/conversations?limit=20", Some(&token))
                .await?
                .json()?;
            let conversations = page["conversations"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let small = client::get(
                origin,
                &format!("/api/v1/conversations?limit={CURSOR_PAGE_LIMIT}"),
                Some(&token),
            )
            .await?
            .json()?;
            let cursor = small["nextCursor"].as_str().map(str::to_string);
            anyhow::Ok(User {
                username,
                token,
                conversations,
                cursor,
            })
        }));
    }
    let mut out = Vec::with_capacity(count);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}
