//! Comparison results.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::GenericClient;

use crate::db::{Db, Sql};
use crate::repo::fmt_ts;

#[derive(Debug, Clone)]
pub struct Comparison {
    pub id: i64,
    pub prompt: String,
    pub results: Value,
    pub preferred_index: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Comparison {
    /// The wire shape (snake_case keys, timestamps with `Z`).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "prompt": self.prompt,
            "results": self.results,
            "preferred_index": self.preferred_index,
            "created_at": fmt_ts(&self.created_at),
            "updated_at": fmt_ts(&self.updated_at),
        })
    }
}

const LIST_OFFSET: Sql = Sql {
    name: "comparison_list_page",
    text: "SELECT id, prompt, results, preferred_index, created_at, updated_at
FROM comparison_results WHERE user_id = $1
ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
};

const LIST_KEYSET: Sql = Sql {
    name: "comparison_list_keyset",
    text: "SELECT id, prompt, results, preferred_index, created_at, updated_at
FROM comparison_results WHERE user_id = $1 AND (created_at, id) < ($3, $4)
ORDER BY created_at DESC, id DESC LIMIT $2",
};

const CREATE: Sql = Sql {
    name: "comparison_create",
    text: "WITH ins AS (
  INSERT INTO comparison_results (user_id, prompt, results) VALUES ($1, $2, $3)
  RETURNING id, prompt, results, preferred_index, created_at, updated_at),
bump AS (UPDATE users SET cache_version = cache_version + 1 WHERE id = $1)
SELECT * FROM ins",
};

const VOTE: Sql = Sql {
    name: "comparison_vote",
    text: "WITH upd AS (
  UPDATE comparison_results SET preferred_index = $3, updated_at = clock_timestamp()
  WHERE id = $1 AND user_id = $2 AND $3 < jsonb_array_length(results)
  RETURNING id, prompt, results, preferred_index, created_at, updated_at),
bump AS (UPDATE users SET cache_version = cache_version + 1
         WHERE id = $2 AND EXISTS (SELECT 1 FROM upd))
SELECT * FROM upd",
};

const EXISTS: Sql = Sql {
    name: "comparison_exists",
    text: "SELECT 1 FROM comparison_results WHERE id = $1 AND user_id = $2",
};

const DELETE: Sql = Sql {
    name: "comparison_delete",
    text:
        "WITH del AS (DELETE FROM comparison_results WHERE id = $1 AND user_id = $2 RETURNING id),
bump AS (UPDATE users SET cache_version = cache_version + 1
         WHERE id = $2 AND EXISTS (SELECT 1 FROM del))
SELECT id FROM del",
};

fn comparison(r: &tokio_postgres::Row) -> Comparison {
    Comparison {
        id: r.get(0),
        prompt: r.get(1),
        results: r.get(2),
        preferred_index: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
    }
}

pub async fn list_page(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<Comparison>, tokio_postgres::Error> {
    let rows = db.query(&LIST_OFFSET, &[&user_id, &limit, &offset]).await?;
    Ok(rows.iter().map(comparison).collect())
}

/// A page after the keyset cursor `(created_at, id)`.
pub async fn list_after(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    limit: i64,
    after: (DateTime<Utc>, i64),
) -> Result<Vec<Comparison>, tokio_postgres::Error> {
    let rows = db
        .query(&LIST_KEYSET, &[&user_id, &limit, &after.0, &after.1])
        .await?;
    Ok(rows.iter().map(comparison).collect())
}

/// Inserts a comparison; `results` must be a JSON array.
pub async fn create(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    prompt: &str,
    results: &Value,
) -> Result<Comparison, tokio_postgres::Error> {
    let r = db.query_one(&CREATE, &[&user_id, &prompt, results]).await?;
    Ok(comparison(&r))
}

/// The outcome of a vote.
#[derive(Debug)]
pub enum Vote {
    Recorded(Comparison),
    OutOfRange,
    NotFound,
}

pub async fn vote(
    db: &Db<'_, impl GenericClient + Sync>,
    id: i64,
    user_id: i64,
    index: i32,
) -> Result<Vote, tokio_postgres::Error> {
    if let Some(r) = db.query_opt(&VOTE, &[&id, &user_id, &index]).await? {
        return Ok(Vote::Recorded(comparison(&r)));
    }
    Ok(
        if db.query_opt(&EXISTS, &[&id, &user_id]).await?.is_some() {
            Vote::OutOfRange
        } else {
            Vote::NotFound
        },
    )
}

pub async fn delete(
    db: &Db<'_, impl GenericClient + Sync>,
    id: i64,
    user_id: i64,
) -> Result<bool, tokio_postgres::Error> {
    Ok(db.query_opt(&DELETE, &[&id, &user_id]).await?.is_some())
}
