//! The front end served by the origin (`static_dir`): index and SPA fallback, hashed assets,
//! content types, validators, path traversal, the landing page without a front end, and caching
//! through the proxy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use llmselect_e2e::http::{raw_exchange, raw_status, send};
use llmselect_e2e::stack::Stack;

const INDEX: &str = "<!doctype html><html><head><script src=\"/static/js/app.3f9a1c.js\"></script></head><body><div id=\"root\"></div></body></html>";
const JS: &str = "console.log('llmselect');";
const CSS: &str = "body{margin:0}";
const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-STATIC-DIR";

/// A built front end in a fresh temporary directory: `site/` is the static dir, `secret.txt` lies
/// next to it (outside), with symlinks inside pointing out. Removed on drop.
struct Site {
    base: PathBuf,
}

impl Site {
    fn new() -> Site {
        let base = std::env::temp_dir().join(format!("llmselect-static-{}", uuid::Uuid::new_v4()));
        let site = base.join("site");
        let write = |rel: &str, body: &[u8]| {
            let path = site.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        };
        write("index.html", INDEX.as_bytes());
        write("static/js/app.3f9a1c.js", JS.as_bytes());
        write("static/css/app.8b2d4e.css", CSS.as_bytes());
        write("static/js/app.3f9a1c.js.map", b"{\"version\":3}");
        write("static/media/logo.5d5d9e.svg", b"<svg/>");
        write("static/media/icon.png", b"\x89PNG");
        write("static/media/font.woff2", b"wOF2");
        write("favicon.ico", b"\0\0\x01\0");
        write("manifest.json", b"{}");
        write("robots.txt", b"User-agent: *");
        write(".env", SECRET.as_bytes());
        std::fs::write(base.join("secret.txt"), SECRET).unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), site.join("static/js/evil.js"))
            .unwrap();
        std::os::unix::fs::symlink(&base, site.join("outside")).unwrap();
        Site { base }
    }

    fn dir(&self) -> PathBuf {
        self.base.join("site")
    }

    fn secret_path(&self) -> PathBuf {
        self.base.join("secret.txt")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

async fn origin_serving(dir: &Path) -> Stack {
    let dir = dir.to_path_buf();
    Stack::builder()
        .origin(move |c| c.static_dir = Some(dir))
        .start()
        .await
}

#[tokio::test]
async fn index_fallback_assets_and_validators() {
    let site = Site::new();
    let s = origin_serving(&site.dir()).await;
    let o = s.origin();

    for path in ["/", "/c/123", "/settings/keys", "/c/123/"] {
        let r = send(o.http.get(o.url(path))).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, INDEX, "{path}");
        assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
        assert_eq!(r.header("cache-control"), "no-cache", "{path}");
        assert_eq!(r.header("cache-groups"), "\"static\"");
        assert!(r.header("etag").starts_with('"'), "strong ETag");
    }
    let index = send(o.http.get(o.url("/"))).await;
    let etag = index.header("etag").to_string();
    let r = send(o.http.get(o.url("/c/9")).header("if-none-match", &etag)).await;
    assert_eq!((r.status, r.body.as_str()), (304, ""));
    assert_eq!(r.header("etag"), etag);
    assert_eq!(r.header("cache-control"), "no-cache");

    // Unknown API paths and other reserved paths stay JSON 404s.
    for path in ["/api/v1/nope", "/api", "/api/", "/metrics"] {
        let r = send(o.http.get(o.url(path))).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"], "not_found", "{path}");
    }
    // Only GET and HEAD reach the front end.
    let r = send(o.http.post(o.url("/c/123"))).await;
    assert_eq!(r.status, 404);

    for (path, ct, body) in [
        (
            "/static/js/app.3f9a1c.js",
            "text/javascript; charset=utf-8",
            JS,
        ),
        ("/static/css/app.8b2d4e.css", "text/css; charset=utf-8", CSS),
        (
            "/static/js/app.3f9a1c.js.map",
            "application/json",
            "{\"version\":3}",
        ),
        ("/static/media/logo.5d5d9e.svg", "image/svg+xml", "<svg/>"),
        ("/static/media/icon.png", "image/png", "\u{fffd}PNG"),
        ("/static/media/font.woff2", "font/woff2", "wOF2"),
    ] {
        let r = send(o.http.get(o.url(path))).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), ct, "{path}");
        assert_eq!(r.body, body, "{path}");
        assert_eq!(
            r.header("cache-control"),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert_eq!(r.header("cache-groups"), "\"static\"");
        let etag = r.header("etag").to_string();
        let again = send(o.http.get(o.url(path)).header("if-none-match", &etag)).await;
        assert_eq!(again.status, 304, "{path}");
    }
    for (path, ct) in [
        ("/favicon.ico", "image/x-icon"),
        ("/manifest.json", "application/json"),
        ("/robots.txt", "text/plain; charset=utf-8"),
    ] {
        let r = send(o.http.get(o.url(path))).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), ct, "{path}");
        assert_eq!(r.header("cache-control"), "no-cache", "{path}");
    }

    // HEAD: the GET's headers, no body.
    let r = send(o.http.head(o.url("/static/js/app.3f9a1c.js"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), JS.len().to_string());
    assert_eq!(r.body, "");

    // Missing assets and missing files with an extension are 404s, not the app; directories are
    // never listed.
    for path in [
        "/static/js/app.000000.js",
        "/static/",
        "/static",
        "/static/js",
        "/logo.png",
    ] {
        let r = send(o.http.get(o.url(path))).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"], "not_found", "{path}");
    }

    // A deploy that replaces a file is picked up at once, with a new ETag.
    std::fs::write(site.dir().join("index.html"), "<html>v2</html>").unwrap();
    let r = send(o.http.get(o.url("/")).header("if-none-match", &etag)).await;
    assert_eq!((r.status, r.body.as_str()), (200, "<html>v2</html>"));
    assert_ne!(r.header("etag"), etag);
}

#[tokio::test]
async fn traversal_attempts_are_404s_and_never_read_outside_the_dir() {
    let site = Site::new();
    let s = origin_serving(&site.dir()).await;
    let addr = s.origin().addr;
    let secret_abs = site.secret_path().display().to_string();
    let encoded_abs = secret_abs.replace('/', "%2F");
    let targets = [
        "/../secret.txt".to_string(),
        "/static/../../secret.txt".to_string(),
        "/static/js/../../../secret.txt".to_string(),
        "/%2e%2e/secret.txt".to_string(),
        "/%2E%2E/%2E%2E/secret.txt".to_string(),
        "/static/%2e%2e/%2e%2e/secret.txt".to_string(),
        "/static/..%2f..%2fsecret.txt".to_string(),
        "/static/..%5c..%5csecret.txt".to_string(),
        "/static\\..\\..\\secret.txt".to_string(),
        "/..\\secret.txt".to_string(),
        format!("/{encoded_abs}"),
        format!("/{secret_abs}"),
        format!("/static/{encoded_abs}"),
        "//etc/passwd".to_string(),
        "/static/js/evil.js".to_string(),
        "/outside/secret.txt".to_string(),
        "/outside".to_string(),
        "/.env".to_string(),
        "/%2eenv".to_string(),
    ];
    for target in &targets {
        let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let response = raw_exchange(addr, request.as_bytes(), Duration::from_secs(5)).await;
        let status = raw_status(&response);
        assert_eq!(status, 404, "{target}:\n{response}");
        assert!(
            response.contains("\"error\":\"not_found\""),
            "{target}:\n{response}"
        );
        assert!(
            !response.contains(SECRET),
            "{target} leaked the file outside the dir:\n{response}"
        );
        assert!(
            !response.contains("id=\"root\""),
            "{target} fell back to the app instead of a 404:\n{response}"
        );
    }
}

#[tokio::test]
async fn without_a_static_dir_the_root_names_the_server() {
    let s = Stack::builder().origin(|_| {}).start().await;
    let o = s.origin();
    let r = send(o.http.get(o.url("/"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(r.header("cache-control"), "no-cache");
    assert!(r.body.contains("LLMSelect API"), "{}", r.body);
    assert!(r.body.contains(env!("CARGO_PKG_VERSION")), "{}", r.body);
    assert!(r.body.contains("href=\"/health\""), "{}", r.body);
    assert!(r.body.contains("README"), "{}", r.body);
    let head = send(o.http.head(o.url("/"))).await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    // No fallback without a front end.
    let r = send(o.http.get(o.url("/c/123"))).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_proxy_assets_hit_and_the_index_is_revalidated() {
    let site = Site::new();
    let dir = site.dir();
    let s = Stack::builder()
        .origin(move |c| c.static_dir = Some(dir))
        .proxy(|_| {})
        .start()
        .await;
    let (p, o) = (s.proxy(), s.origin());
    const ASSET: &str = "GET /static/{file}";
    const INDEX_ROUTE: &str = "GET /{app}";

    let first = send(p.get("/static/js/app.3f9a1c.js")).await;
    assert_eq!((first.status, first.x_cache()), (200, "MISS"));
    let served = o.requests_served(ASSET).await;
    assert_eq!(served, 1);
    let second = send(p.get("/static/js/app.3f9a1c.js")).await;
    assert_eq!((second.status, second.x_cache()), (200, "HIT"));
    assert_eq!(second.body, JS);
    assert_eq!(
        second.header("content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        o.requests_served(ASSET).await,
        served,
        "a hit never reaches the origin"
    );

    // The index is no-cache: stored, and revalidated with the origin on every use (a 304).
    let first = send(p.get("/c/42")).await;
    assert_eq!((first.status, first.body.as_str()), (200, INDEX));
    let second = send(p.get("/c/42")).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, INDEX);
    assert_eq!(second.x_cache(), "REVALIDATED");
    assert_eq!(o.requests_served(INDEX_ROUTE).await, 2);
    let metrics = o.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("origin_http_requests_total{")
                && l.contains("route=\"GET /{app}\"")
                && l.contains("status=\"304\"")),
        "the origin answered the revalidation with a 304:\n{metrics}"
    );

    // A deploy purges the group: the next asset request goes to the origin again.
    let (status, _) = p.purge(serde_json::json!({"groups": ["static"]})).await;
    assert_eq!(status, 200);
    let after = send(p.get("/static/js/app.3f9a1c.js")).await;
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(o.requests_served(ASSET).await, served + 1);
}
