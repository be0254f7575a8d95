//! Conversations and their messages.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::db::{Db, Sql};
use crate::repo::users::{self, TokenUser};

/// One row of the conversation list page.
#[derive(Debug, Clone)]
pub struct ListItem {
    pub id: Uuid,
    pub title: Option<String>,
    pub provider: String,
    pub model: String,
    pub last_message_at: DateTime<Utc>,
    pub message_count: i64,
    pub preview: String,
}

/// A list page and the total of conversations matching the search (all pages).
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<ListItem>,
    pub total: i64,
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: Uuid,
    pub title: Option<String>,
    pub provider: String,
    pub model: String,
    pub last_message_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Conversation {
    /// The title the API shows: the stored one, or `"<provider> - <model>"`.
    pub fn display_title(&self) -> String {
        display_title(self.title.as_deref(), &self.provider, &self.model)
    }
}

pub fn display_title(title: Option<&str>, provider: &str, model: &str) -> String {
    match title {
        Some(t) => t.to_string(),
        None => format!("{provider} - {model}"),
    }
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: i64,
    pub role: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

/// Search filter: `None`, or an already escaped `ILIKE` pattern (see `repo::like_pattern`).
pub type Search<'a> = Option<&'a str>;

/// A conversation-list statement: the page and the total of matching conversations in one
/// statement. The total is the single row the page is LEFT JOINed to, so a page past the end
/// still yields one row carrying the total, with NULL conversation columns. Message count and
/// preview are correlated subqueries on `idx_message_conversation_created`, evaluated only for the
/// page's rows (not for the rows an OFFSET skips).
///
/// Without a search, `matching` is inlined into the page (`NOT MATERIALIZED`), so the page is read
/// in index order straight from `idx_conversations_user_last_message` (and the keyset condition
/// becomes an index condition), and the total is the user's `conversation_count`
/// ([`user_total!`]). A window `count(*) OVER ()` on the page could not replace either total: it
/// would only count the rows after the cursor.
///
/// With a search (`$2`, an escaped `ILIKE` pattern), a conversation matches when its title,
/// provider or model, or the content of any of its messages, contains the text. `matching` is
/// then `MATERIALIZED`: the filter (with its `EXISTS` over the messages) runs once per
/// conversation of the user, not once for the total and again for the page. The `EXISTS` is
/// either a per-conversation probe of `idx_message_conversation_created` or, when the planner
/// expects few matching messages in the whole table, one bitmap scan of the trigram index
/// `idx_messages_content_trgm` (migration 0006, when `pg_trgm` is available) hashed by
/// conversation id; a user's own conversations bound both, so other users' messages never match.
macro_rules! list_sql {
    ($materialized:literal, $filter:expr, $total:expr, $keyset:literal, $limit:literal) => {
        concat!(
            "WITH matching AS ",
            $materialized,
            " (
  SELECT c.id, c.title, c.provider, c.model, c.last_message_at FROM conversations c
  WHERE c.user_id = $1",
            $filter,
            "),
total AS (",
            $total,
            "),
page AS (
  SELECT * FROM matching",
            $keyset,
            "
  ORDER BY last_message_at DESC, id DESC ",
            $limit,
            ")
SELECT total.n, p.id, p.title, p.provider, p.model, p.last_message_at,
       (SELECT count(*) FROM messages m WHERE m.conversation_id = p.id) AS message_count,
       COALESCE((SELECT left(m.content, 100) FROM messages m
                 WHERE m.conversation_id = p.id AND m.role = 'user'
                 ORDER BY m.created_at DESC, m.id DESC LIMIT 1), '') AS preview
FROM total LEFT JOIN page p ON true
ORDER BY p.last_message_at DESC, p.id DESC"
        )
    };
}

/// The total of an unfiltered list: the user's counter, maintained by [`CREATE`] and [`DELETE`]
/// in the statement that changes the list (migration 0009), instead of counting the user's
/// conversations (10-14 ms for a user with 100k of them).
macro_rules! user_total {
    () => {
        "SELECT u.conversation_count AS n FROM users u WHERE u.id = $1"
    };
}

/// The search condition of the `*_SEARCH` statements (`$2`: the escaped pattern).
macro_rules! search_filter {
    () => {
        "
    AND (c.title ILIKE $2 OR c.provider ILIKE $2 OR c.model ILIKE $2
         OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.content ILIKE $2))"
    };
}

/// The list statement for offset pages (`$2` limit, `$3` offset).
pub const LIST_OFFSET: Sql = Sql {
    name: "conversation_list_page",
    text: list_sql!(
        "NOT MATERIALIZED",
        "",
        user_total!(),
        "",
        "LIMIT $2 OFFSET $3"
    ),
};

/// The list statement for keyset pages after the cursor `($3, $4)` = `(last_message_at, id)`.
pub const LIST_KEYSET: Sql = Sql {
    name: "conversation_list_keyset",
    text: list_sql!(
        "NOT MATERIALIZED",
        "",
        user_total!(),
        " WHERE (last_message_at, id) < ($3, $4)",
        "LIMIT $2"
    ),
};

/// [`LIST_OFFSET`] with a search (`$2` pattern, `$3` limit, `$4` offset).
pub const LIST_SEARCH_OFFSET: Sql = Sql {
    name: "conversation_search_page",
    text: list_sql!(
        "MATERIALIZED",
        search_filter!(),
        "SELECT count(*) AS n FROM matching",
        "",
        "LIMIT $3 OFFSET $4"
    ),
};

/// [`LIST_KEYSET`] with a search (`$2` pattern, `$3` limit, cursor `($4, $5)`).
pub const LIST_SEARCH_KEYSET: Sql = Sql {
    name: "conversation_search_keyset",
    text: list_sql!(
        "MATERIALIZED",
        search_filter!(),
        "SELECT count(*) AS n FROM matching",
        " WHERE (last_message_at, id) < ($4, $5)",
        "LIMIT $3"
    ),
};

/// The user row and, when it exists and is theirs, the conversation `$2`: authentication and the
/// conversation lookup of a detail request in one statement.
const GET_WITH_USER: Sql = Sql {
    name: "conversation_get_with_user",
    text: concat!(
        "SELECT ",
        users::token_user_columns!("$3", "$4"),
        ",
       c.id, c.title, c.provider, c.model, c.last_message_at, c.updated_at
FROM users u LEFT JOIN conversations c ON c.id = $2 AND c.user_id = u.id
WHERE u.id = $1"
    ),
};

const MESSAGES: Sql = Sql {
    name: "conversation_messages",
    text: "SELECT id, role, content, created_at FROM messages
WHERE conversation_id = $1 ORDER BY created_at, id",
};

/// The chat memory of conversation `$1` if it belongs to `$2`: the newest messages whose content
/// fits `$3` characters in total (counted from the newest back; the first one that does not fit
/// ends the history), oldest first. No row: not the user's conversation; one row of NULLs: nothing
/// stored or nothing fits. Reads `idx_message_conversation_created`.
const HISTORY: Sql = Sql {
    name: "conversation_history",
    text: "SELECT h.role, h.content
FROM conversations c
LEFT JOIN LATERAL (
  SELECT m.role, m.content, m.created_at, m.id,
         sum(char_length(m.content)) OVER (ORDER BY m.created_at DESC, m.id DESC) AS used
  FROM messages m WHERE m.conversation_id = c.id) h ON h.used <= $3
WHERE c.id = $1 AND c.user_id = $2
ORDER BY h.created_at, h.id",
};

const CREATE: Sql = Sql {
    name: "conversation_create",
    text: "WITH ins AS (
  INSERT INTO conversations (user_id, provider, model, title) VALUES ($1, $2, $3, $4)
  RETURNING id, title, provider, model, last_message_at, updated_at),
bump AS (UPDATE users SET cache_version = cache_version + 1,
                         conversation_count = conversation_count + 1 WHERE id = $1)
SELECT * FROM ins",
};

const RENAME: Sql = Sql {
    name: "conversation_rename",
    text: "WITH upd AS (
  UPDATE conversations SET title = $3, updated_at = clock_timestamp()
  WHERE id = $1 AND user_id = $2
  RETURNING id, title, provider, model, last_message_at, updated_at),
bump AS (UPDATE users SET cache_version = cache_version + 1
         WHERE id = $2 AND EXISTS (SELECT 1 FROM upd))
SELECT * FROM upd",
};

const SET_MODEL: Sql = Sql {
    name: "conversation_set_model",
    text: "WITH upd AS (
  UPDATE conversations SET provider = $3, model = $4, updated_at = clock_timestamp()
  WHERE id = $1 AND user_id = $2 AND (provider <> $3 OR model <> $4)
  RETURNING id),
bump AS (UPDATE users SET cache_version = cache_version + 1
         WHERE id = $2 AND EXISTS (SELECT 1 FROM upd))
SELECT count(*) FROM upd",
};

const DELETE: Sql = Sql {
    name: "conversation_delete",
    text: "WITH del AS (DELETE FROM conversations WHERE id = $1 AND user_id = $2 RETURNING id),
bump AS (UPDATE users SET cache_version = cache_version + 1,
                          conversation_count = conversation_count - 1
         WHERE id = $2 AND EXISTS (SELECT 1 FROM del))
SELECT id FROM del",
};

/// Appends a message and moves the conversation up the list. Its new `last_message_at`, the list's
/// sort key, is strictly greater than the old one whatever the clock does (`GREATEST(…, old +
/// 1 µs)`; the old value is the latest committed one, since a concurrent append waits for the row
/// lock and then re-evaluates the expression on the new version). That is all keyset pages need:
/// a cursor compares values, not commit times, so a conversation that is not written keeps its
/// place, and one that is written only ever moves up, so a client paging down never meets it a
/// second time, however late its transaction commits (README, Pagination).
const ADD_MESSAGE: Sql = Sql {
    name: "message_insert",
    text: "WITH conv AS (
  UPDATE conversations
     SET last_message_at = GREATEST(clock_timestamp(), last_message_at + interval '1 microsecond'),
         updated_at = clock_timestamp()
  WHERE id = $1 AND user_id = $2
  RETURNING id, last_message_at),
msg AS (
  INSERT INTO messages (conversation_id, role, content, created_at, updated_at)
  SELECT id, $3, $4, last_message_at, last_message_at FROM conv
  RETURNING id, role, content, created_at),
bump AS (UPDATE users SET cache_version = cache_version + 1
         WHERE id = $2 AND EXISTS (SELECT 1 FROM conv))
SELECT id, role, content, created_at FROM msg",
};

/// A row of a list statement: `None` for the row that only carries the total of an empty page.
fn list_item(r: &tokio_postgres::Row) -> Option<ListItem> {
    Some(ListItem {
        id: r.get::<_, Option<Uuid>>(1)?,
        title: r.get(2),
        provider: r.get(3),
        model: r.get(4),
        last_message_at: r.get(5),
        message_count: r.get(6),
        preview: r.get(7),
    })
}

fn list(rows: &[tokio_postgres::Row]) -> ListPage {
    ListPage {
        // The statement always returns at least the row of the total.
        total: rows.first().map_or(0, |r| r.get(0)),
        items: rows.iter().filter_map(list_item).collect(),
    }
}

fn conversation(r: &tokio_postgres::Row) -> Conversation {
    conversation_at(r, 0)
}

/// The conversation in columns `base..base + 6`.
fn conversation_at(r: &tokio_postgres::Row, base: usize) -> Conversation {
    Conversation {
        id: r.get(base),
        title: r.get(base + 1),
        provider: r.get(base + 2),
        model: r.get(base + 3),
        last_message_at: r.get(base + 4),
        updated_at: r.get(base + 5),
    }
}

fn message(r: &tokio_postgres::Row) -> Message {
    Message {
        id: r.get(0),
        role: r.get(1),
        content: r.get(2),
        created_at: r.get(3),
    }
}

/// A list page by offset, with the total of matching conversations (one statement).
pub async fn list_page(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    search: Search<'_>,
    limit: i64,
    offset: i64,
) -> Result<ListPage, tokio_postgres::Error> {
    let rows = match search {
        None => db.query(&LIST_OFFSET, &[&user_id, &limit, &offset]).await?,
        Some(pattern) => {
            db.query(&LIST_SEARCH_OFFSET, &[&user_id, &pattern, &limit, &offset])
                .await?
        }
    };
    Ok(list(&rows))
}

/// A list page after the keyset cursor `(last_message_at, id)`, with the total of all matching
/// conversations, not only those after the cursor (one statement).
pub async fn list_after(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    search: Search<'_>,
    limit: i64,
    after: (DateTime<Utc>, Uuid),
) -> Result<ListPage, tokio_postgres::Error> {
    let rows = match search {
        None => {
            db.query(&LIST_KEYSET, &[&user_id, &limit, &after.0, &after.1])
                .await?
        }
        Some(pattern) => {
            db.query(
                &LIST_SEARCH_KEYSET,
                &[&user_id, &pattern, &limit, &after.0, &after.1],
            )
            .await?
        }
    };
    Ok(list(&rows))
}

/// The user `user_id` (`None` when they no longer exist) with the revocation check of the token
/// (`jti`, `generation`) and their conversation `id` (`None` when missing or someone else's), in
/// one statement.
pub async fn get_with_user(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    (jti, generation): (&str, i32),
    id: Uuid,
) -> Result<Option<(TokenUser, Option<Conversation>)>, tokio_postgres::Error> {
    const BASE: usize = users::TOKEN_USER_COLUMNS;
    Ok(db
        .query_opt(&GET_WITH_USER, &[&user_id, &id, &jti, &generation])
        .await?
        .map(|r| {
            let conversation = r
                .get::<_, Option<Uuid>>(BASE)
                .map(|_| conversation_at(&r, BASE));
            (users::token_user(&r), conversation)
        }))
}

/// `(role, content)` of the newest messages of conversation `id` whose content fits `budget`
/// characters, oldest first (see [`HISTORY`]); `None` when the conversation is not `user_id`'s
/// (one statement).
pub async fn history(
    db: &Db<'_, impl GenericClient + Sync>,
    id: Uuid,
    user_id: i64,
    budget: i64,
) -> Result<Option<Vec<(String, String)>>, tokio_postgres::Error> {
    let rows = db.query(&HISTORY, &[&id, &user_id, &budget]).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .filter_map(|r| Some((r.get::<_, Option<String>>(0)?, r.get(1))))
            .collect(),
    ))
}

/// Messages of a conversation, oldest first (check ownership first).
pub async fn messages(
    db: &Db<'_, impl GenericClient + Sync>,
    id: Uuid,
) -> Result<Vec<Message>, tokio_postgres::Error> {
    Ok(db
        .query(&MESSAGES, &[&id])
        .await?
        .iter()
        .map(message)
        .collect())
}

pub async fn create(
    db: &Db<'_, impl GenericClient + Sync>,
    user_id: i64,
    provider: &str,
    model: &str,
    title: Option<&str>,
) -> Result<Conversation, tokio_postgres::Error> {
    let r = db
        .query_one(&CREATE, &[&user_id, &provider, &model, &title])
        .await?;
    Ok(conversation(&r))
}

/// Renames; `None` when missing or not owned.
pub async fn rename(
    db: &Db<'_, impl GenericClient + Sync>,
    id: Uuid,
    user_id: i64,
    title: &str,
) -> Result<Option<Conversation>, tokio_postgres::Error> {
    Ok(db
        .query_opt(&RENAME, &[&id, &user_id, &title])
        .await?
        .as_ref()
        .map(conversation))
}

/// Switches the conversation's provider/model when they differ (for chat); true when changed.
pub async fn set_model(
    db: &Db<'_, impl GenericClient + Sync>,
    id: Uuid,
    user_id: i64,
    provider: &str,
    model: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n: i64 = db
        .query_one(&SET_MODEL, &[&id, &user_id, &provider, &model])
        .await?
        .get(0);
    Ok(n > 0)
}

/// Deletes (messages go by cascade); false when missing or not owned.
pub async fn delete(
    db: &Db<'_, impl GenericClient + Sync>,
    id: Uuid,
    user_id: i64,
) -> Result<bool, tokio_postgres::Error> {
    Ok(db.query_opt(&DELETE, &[&id, &user_id]).await?.is_some())
}

/// Appends a message and moves `last_message_at`; `None` when the conversation is missing or not
/// owned. `role` must be `system`, `user` or `assistant`.
pub async fn add_message(
    db: &Db<'_, impl GenericClient + Sync>,
    id: Uuid,
    user_id: i64,
    role: &str,
    content: &str,
) -> Result<Option<Message>, tokio_postgres::Error> {
    Ok(db
        .query_opt(&ADD_MESSAGE, &[&id, &user_id, &role, &content])
        .await?
        .as_ref()
        .map(message))
}
