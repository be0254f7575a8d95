//! The front end: with `static_dir` set, the origin serves a built single-page app (the upstream
//! LLMSelect React app's build output); without it, `GET /` answers a small page naming this
//! server.
//!
//! - `/static/...`: hashed assets, `Cache-Control: public, max-age=31536000, immutable`.
//! - other paths that name a file at the top of the directory (`/favicon.ico`, `/manifest.json`):
//!   that file, `no-cache`.
//! - every other non-API path: `index.html` (`no-cache`), so that client-side routes such as
//!   `/c/123` load the app; a missing path whose last segment has an extension (`/logo.png`) is a
//!   404 instead, and so is any missing asset under `/static/`.
//! - `/api`, `/api/...` and `/metrics` are never answered from here: unknown API paths stay JSON
//!   404s.
//!
//! Every answer has a strong `ETag` computed from the file's content (so a deploy that replaces a
//! file changes it, whatever the file's dates), a 304 for a matching `If-None-Match`, and
//! `Cache-Groups: "static"` so a deploy can purge the proxy's copies by group.
//!
//! Files are read from disk on every request, not cached in memory: a deploy replaces files (or
//! swaps the directory behind a symlink, which is resolved on every request too) and is picked up
//! at once, with no invalidation logic in the origin. The cost is small: the kernel's page cache
//! holds the files, `index.html` is small, and hashed assets are `immutable`, so the proxy (and
//! browsers) fetch each of them about once per deploy.
//!
//! Paths are checked before anything is opened: each segment is percent-decoded and refused when
//! it is empty (except a trailing one), `.` or `..`, starts with a dot (no dotfiles), or contains
//! `/`, `\`, `:` or NUL; the joined path is then canonicalized (symlinks resolved) and must stay
//! inside the canonicalized directory. Refused paths are JSON 404s, never the SPA fallback.
//! Directories are never listed.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Method, StatusCode};
use percent_encoding::percent_decode_str;

use crate::error::AppError;
use crate::http::response::{bytes_response, etag_of, Cacheable, Response};
use crate::state::AppState;

/// The cache group of every response of this module.
pub const GROUP: &str = "static";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// Route labels (metrics and logs).
pub const ROUTE_ASSET: &str = "GET /static/{file}";
pub const ROUTE_FILE: &str = "GET /{file}";
pub const ROUTE_INDEX: &str = "GET /{app}";
pub const ROUTE_LANDING: &str = "GET /";

/// The answer to a `GET`/`HEAD` that matched no API route, with its route label; `None` when this
/// module does not serve the path (not GET/HEAD, an API path, or `/metrics`), which stays a 404.
pub async fn serve(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<(&'static str, Response)> {
    if (method != Method::GET && method != Method::HEAD) || reserved(path) {
        return None;
    }
    let Some(dir) = state.config.static_dir.as_deref() else {
        return (path == "/").then(|| (ROUTE_LANDING, landing(headers)));
    };
    Some(match serve_dir(dir, path, headers).await {
        Ok(served) => served,
        Err(e) => ("unmatched", e.into_response()),
    })
}

/// Paths that belong to the API or operations, never to the front end.
fn reserved(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/metrics" || path == "/health"
}

fn not_found() -> AppError {
    AppError::not_found("The requested URL was not found on the server.")
}

/// The decoded segments of `path`, or `None` when any segment is refused (see the module docs).
fn segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let raw: Vec<&str> = rest.split('/').collect();
    let last = raw.len() - 1;
    let mut out = Vec::with_capacity(raw.len());
    for (i, seg) in raw.iter().enumerate() {
        if seg.is_empty() {
            if i == last {
                break;
            }
            return None;
        }
        let decoded = percent_decode_str(seg).decode_utf8().ok()?;
        if decoded.starts_with('.')
            || decoded
                .chars()
                .any(|c| matches!(c, '/' | '\\' | ':' | '\0'))
        {
            return None;
        }
        out.push(decoded.into_owned());
    }
    Some(out)
}

/// The canonical path of the regular file `root/segments…`, when it exists and is inside `root`
/// (`root` canonical). `Err` when it exists but resolves outside `root` or is not a file.
async fn resolve(root: &Path, segments: &[String]) -> Result<Option<PathBuf>, AppError> {
    let mut candidate = root.to_path_buf();
    candidate.extend(segments);
    let canonical = match tokio::fs::canonicalize(&candidate).await {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    if !canonical.starts_with(root) {
        tracing::warn!(
            event = "static_path_outside_dir",
            path = %crate::http::server::log_safe(&candidate.display().to_string()),
            "refused a static path that resolves outside static_dir"
        );
        return Err(not_found());
    }
    match tokio::fs::metadata(&canonical).await {
        Ok(m) if m.is_file() => Ok(Some(canonical)),
        _ => Err(not_found()),
    }
}

async fn serve_dir(
    dir: &Path,
    path: &str,
    headers: &HeaderMap,
) -> Result<(&'static str, Response), AppError> {
    let segments = segments(path).ok_or_else(not_found)?;
    let root = tokio::fs::canonicalize(dir).await.map_err(|e| {
        AppError::Internal(anyhow::Error::new(e).context("static_dir is not readable"))
    })?;
    if segments.first().is_some_and(|s| s == "static") {
        let file = resolve(&root, &segments).await?.ok_or_else(not_found)?;
        return Ok((ROUTE_ASSET, file_response(&file, IMMUTABLE, headers).await?));
    }
    if !segments.is_empty() {
        match resolve(&root, &segments).await {
            Ok(Some(file)) => {
                return Ok((ROUTE_FILE, file_response(&file, NO_CACHE, headers).await?))
            }
            // A missing file with an extension is a 404, not the app.
            Ok(None) if segments.last().is_some_and(|s| s.contains('.')) => return Err(not_found()),
            Ok(None) => {}
            // A directory (never listed) is a client-side route; a path leaving the directory
            // is refused.
            Err(e) => {
                let mut inside = root.clone();
                inside.extend(&segments);
                let is_dir_inside = tokio::fs::canonicalize(&inside)
                    .await
                    .is_ok_and(|c| c.starts_with(&root) && c.is_dir());
                if !is_dir_inside {
                    return Err(e);
                }
            }
        }
    }
    let index = resolve(&root, &["index.html".to_string()])
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("static_dir has no index.html")))?;
    Ok((ROUTE_INDEX, file_response(&index, NO_CACHE, headers).await?))
}

/// The file's response (or 304) with `cache_control`, a content-hash ETag and the group.
async fn file_response(
    file: &Path,
    cache_control: &str,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let bytes =
        Bytes::from(tokio::fs::read(file).await.map_err(|e| {
            AppError::Internal(anyhow::Error::new(e).context("reading a static file"))
        })?);
    Ok(cached(bytes, content_type(file), cache_control, headers))
}

/// `bytes` with `cache_control`, a strong ETag over the content and `Cache-Groups: "static"`, or
/// the 304 for a matching `If-None-Match`.
fn cached(
    bytes: Bytes,
    content_type: &'static str,
    cache_control: &str,
    headers: &HeaderMap,
) -> Response {
    let cache = Cacheable {
        cache_control: cache_control.to_string(),
        targeted: None,
        vary: None,
        groups: vec![GROUP.to_string()],
        etag: etag_of(&[&bytes]),
    };
    if cache.matches(headers) {
        return cache.not_modified();
    }
    cache.wrap(bytes_response(StatusCode::OK, content_type, bytes))
}

/// `Content-Type` by file extension (case-insensitive); unknown types are
/// `application/octet-stream`.
pub fn content_type(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// `GET /` without a front end: what this server is, and where to go.
fn landing(headers: &HeaderMap) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    let page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <title>LLMSelect API</title></head>\n<body>\n\
         <h1>LLMSelect API</h1>\n\
         <p>This is <code>llmselect-origin</code> {version}, the JSON API of LLMSelect. \
         No web app is configured on this server (see <code>static_dir</code>).</p>\n\
         <ul>\n\
         <li><a href=\"/health\">/health</a>: readiness</li>\n\
         <li><a href=\"/api/v1/models\">/api/v1/models</a>: the model registry</li>\n\
         <li>API documentation: the README of llmselect-edge (sections Architecture, \
         Configuration, Operations)</li>\n\
         </ul>\n</body>\n</html>\n"
    );
    cached(
        Bytes::from(page),
        "text/html; charset=utf-8",
        NO_CACHE,
        headers,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_refuse_traversal_and_dotfiles() {
        assert_eq!(segments("/").unwrap(), Vec::<String>::new());
        assert_eq!(segments("/c/123/").unwrap(), vec!["c", "123"]);
        assert_eq!(
            segments("/static/app%2Eabc.js").unwrap(),
            vec!["static", "app.abc.js"]
        );
        for bad in [
            "/../etc/passwd",
            "/static/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/static/..%5c..%5cetc",
            "/static\\..\\x",
            "//etc/passwd",
            "/a//b",
            "/.env",
            "/static/.hidden",
            "/c:/x",
            "/%00",
            "/%ff",
            "relative",
        ] {
            assert!(segments(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn content_types() {
        for (name, ct) in [
            ("index.html", "text/html; charset=utf-8"),
            ("a.JS", "text/javascript; charset=utf-8"),
            ("a.css", "text/css; charset=utf-8"),
            ("a.json", "application/json"),
            ("a.js.map", "application/json"),
            ("a.svg", "image/svg+xml"),
            ("a.png", "image/png"),
            ("favicon.ico", "image/x-icon"),
            ("a.woff2", "font/woff2"),
            ("robots.txt", "text/plain; charset=utf-8"),
            ("LICENSE", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), ct, "{name}");
        }
    }
}
