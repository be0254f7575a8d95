//! Compression of the per-user conversation list through the whole edge: stored encoded per
//! user and per `Accept-Encoding` bucket, never crossing users.

use crate::{edge, titles, LIST};
use llmselect_e2e::origin::TestUser;
use llmselect_e2e::stack::Stack;
use reqwest::Method;
use std::io::Read;

struct Fetched {
    x_cache: String,
    encoding: String,
    body: Vec<u8>,
}

async fn fetch(s: &Stack, user: &TestUser, accept_encoding: Option<&str>) -> Fetched {
    let mut req = s.proxy().request_as(user, Method::GET, LIST);
    if let Some(ae) = accept_encoding {
        req = req.header("accept-encoding", ae);
    }
    let r = req.send().await.expect("list");
    assert_eq!(r.status(), 200);
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (x_cache, encoding) = (h("x-cache"), h("content-encoding"));
    let body = r.bytes().await.expect("body").to_vec();
    Fetched {
        x_cache,
        encoding,
        body,
    }
}

fn list_titles(f: &Fetched) -> Vec<String> {
    let mut json = Vec::new();
    match f.encoding.as_str() {
        "" => json.clone_from(&f.body),
        "br" => {
            brotli::Decompressor::new(&f.body[..], 4096)
                .read_to_end(&mut json)
                .expect("brotli");
        }
        "gzip" => {
            flate2::read::GzDecoder::new(&f.body[..])
                .read_to_end(&mut json)
                .expect("gzip");
        }
        other => panic!("unexpected coding {other}"),
    }
    titles(&serde_json::from_slice(&json).expect("JSON list"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conversation_list_is_stored_compressed_per_user() {
    let e = edge().await;
    let alice = e.user();
    let bob = e.origin().user("bob").await;
    for i in 0..20 {
        let title = format!("Conversation {i} about caching");
        e.origin().create_conversation(alice, Some(&title)).await;
    }
    e.origin().create_conversation(&bob, Some("bob's")).await;
    let browser = Some("gzip, deflate, br, zstd");

    let br = fetch(&e, alice, browser).await;
    assert_eq!((br.x_cache.as_str(), br.encoding.as_str()), ("MISS", "br"));
    assert_eq!(list_titles(&br).len(), 20);
    let again = fetch(&e, alice, browser).await;
    assert_eq!(again.x_cache, "HIT");
    assert_eq!(again.body, br.body);

    // another user with the same Accept-Encoding: their own list
    let bobs = fetch(&e, &bob, browser).await;
    assert_ne!(bobs.x_cache, "HIT");
    assert_eq!(list_titles(&bobs), vec!["bob's"]);

    let plain = fetch(&e, alice, None).await;
    assert_eq!(plain.encoding, "");
    assert_eq!(list_titles(&plain), list_titles(&br));
    let gz = fetch(&e, alice, Some("gzip")).await;
    assert_eq!(gz.encoding, "gzip");
    assert_eq!(list_titles(&gz), list_titles(&br));
    // the sizes behind the README's figure (`--no-capture` shows them)
    println!(
        "conversation list, 20 rows: identity {} B, br {} B, gzip {} B",
        plain.body.len(),
        br.body.len(),
        gz.body.len()
    );
    assert!(br.body.len() * 3 < plain.body.len());
    assert_eq!(
        e.origin()
            .requests_served("GET /api/v1/conversations")
            .await,
        4,
        "alice br, bob br, alice identity, alice gzip"
    );
}
