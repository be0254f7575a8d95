//! The admin console: one page and its script and style sheet, compiled into the binary (no CDN,
//! no build step), plus the browser protections of every admin answer.
//!
//! The page holds no data and no secret: it asks for the admin token once per browser session,
//! keeps it in `sessionStorage` (gone when the tab closes, never in a cookie or a URL) and sends
//! it as `Authorization: Bearer` with `fetch()` to the JSON endpoints.

use super::AdminError;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use pingora_http::RequestHeader;

const INDEX_HTML: &str = include_str!("../../assets/console/index.html");
const CONSOLE_JS: &str = include_str!("../../assets/console/console.js");
const CONSOLE_CSS: &str = include_str!("../../assets/console/console.css");

/// Only this origin's own script, style and JSON; no framing, no plugins, no form posts.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The console's files, by path.
pub fn asset(path: &str) -> Option<Response<Vec<u8>>> {
    let (body, content_type) = match path {
        "/" | "/index.html" => (INDEX_HTML, "text/html; charset=utf-8"),
        "/console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        "/console.css" => (CONSOLE_CSS, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut resp = Response::new(body.as_bytes().to_vec());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(resp)
}

/// Refuses a state-changing request a browser sent from another site: its `Sec-Fetch-Site` is
/// neither `same-origin` nor `none` (typed by the user), or its `Origin` is not this listener's.
/// Clients that send neither field (curl, the CLI, scripts) are not browsers and pass.
pub fn same_origin(req: &RequestHeader) -> Result<(), AdminError> {
    let field = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = field("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return Err(AdminError::CrossSite("Sec-Fetch-Site is not same-origin"));
        }
    }
    if let Some(origin) = field("origin") {
        let host = field("host").unwrap_or_default();
        if origin != format!("http://{host}") {
            return Err(AdminError::CrossSite("Origin is not this admin listener"));
        }
    }
    Ok(())
}

/// Headers on every admin answer: no framing, no sniffing, no referrer, a strict CSP.
pub fn protect(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(fields: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/purge", None).unwrap();
        r.insert_header("host", "127.0.0.1:9090").unwrap();
        for (k, v) in fields {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn cross_site_posts_are_refused() {
        assert!(same_origin(&req(&[])).is_ok());
        assert!(same_origin(&req(&[
            ("origin", "http://127.0.0.1:9090"),
            ("sec-fetch-site", "same-origin")
        ]))
        .is_ok());
        assert!(same_origin(&req(&[("origin", "http://evil.example")])).is_err());
        assert!(same_origin(&req(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&req(&[("sec-fetch-site", "same-site")])).is_err());
        assert!(same_origin(&req(&[("origin", "null")])).is_err());
    }
}
