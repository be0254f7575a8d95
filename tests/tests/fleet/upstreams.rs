//! Several origins behind one proxy: idempotent requests move to a live origin when one dies,
//! mutations are never sent twice, and `/stats` shows each origin's health.

use llmselect_e2e::http::send;
use llmselect_e2e::proxy::spawn_proxy;
use llmselect_e2e::scripted_origin::{Route, ScriptedOrigin};
use llmselect_e2e::wait::eventually_true;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_moves_to_the_live_origin_without_failing_an_idempotent_request() {
    let (o1, o2) = (ScriptedOrigin::start().await, ScriptedOrigin::start().await);
    for o in [&o1, &o2] {
        o.route("GET", "/x", Route::ok("x").cache("no-store"));
        o.route("POST", "/w", Route::status(201, "w"));
        o.route("GET", "/health", Route::ok("{\"status\":\"ok\"}"));
    }
    let urls = vec![o1.url(), o2.url()];
    let p = spawn_proxy(&o1.url(), move |c| c.upstreams = urls).await;
    for _ in 0..10 {
        assert_eq!(send(p.get("/x")).await.status, 200);
    }
    assert!(
        o1.count("/x") > 0 && o2.count("/x") > 0,
        "balanced over both"
    );
    o1.refuse_connections();
    let (before1, before2) = (o1.count("/x"), o2.count("/x"));
    for i in 0..40 {
        let r = send(p.get("/x")).await;
        assert_eq!(r.status, 200, "request {i} after the origin died");
    }
    assert_eq!(o1.count("/x"), before1);
    assert_eq!(o2.count("/x"), before2 + 40);
    eventually_true("the dead origin is reported down", || async {
        let s = p.stats().await;
        let ups = s["upstreams"].as_array().unwrap().clone();
        ups.len() == 2
            && ups
                .iter()
                .any(|u| u["healthy"] == false && u["address"] == o1.addr.to_string())
    })
    .await;
    // mutations: every acknowledged one reached exactly one origin, once
    let mut created = 0;
    for _ in 0..10 {
        if send(p.client.post(p.url("/w"))).await.status == 201 {
            created += 1;
        }
    }
    assert_eq!(
        created, 10,
        "the health check keeps mutations off the dead origin"
    );
    assert_eq!(o1.count("/w") + o2.count("/w"), created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_stops_answering_is_marked_down_after_one_timeout() {
    let (o1, o2) = (ScriptedOrigin::start().await, ScriptedOrigin::start().await);
    for o in [&o1, &o2] {
        o.route("GET", "/x", Route::ok("x").cache("no-store"));
    }
    // o1 hangs (but its health checks pass: only the request timeout can tell)
    o1.route(
        "GET",
        "/x",
        Route::ok("late")
            .cache("no-store")
            .delay(std::time::Duration::from_secs(30)),
    );
    for o in [&o1, &o2] {
        o.route("GET", "/health", Route::ok("{\"status\":\"ok\"}"));
    }
    let urls = vec![o1.url(), o2.url()];
    let p = spawn_proxy(&o1.url(), move |c| {
        c.upstreams = urls;
        c.timeouts.read_ms = 300;
        // a long judgement window, so the suspension is what keeps it out
        c.health_check.interval_ms = 5_000;
    })
    .await;
    let mut timeouts = 0;
    for _ in 0..10 {
        match send(p.get("/x")).await.status {
            200 => {}
            504 => timeouts += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(
        timeouts, 1,
        "only the first request waited for the hung origin"
    );
    assert_eq!(o1.count("/x"), 1);
    let s = p.stats().await;
    assert!(s["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["healthy"] == false && u["address"] == o1.addr.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_origin_set_and_its_health_checks_and_keeps_the_cache() {
    let origins = [
        ScriptedOrigin::start().await,
        ScriptedOrigin::start().await,
        ScriptedOrigin::start().await,
    ];
    for (i, o) in origins.iter().enumerate() {
        o.route("GET", "/who", Route::ok(&format!("o{i}")).cache("no-store"));
        o.route(
            "GET",
            "/kept",
            Route::ok("kept").cache("public, max-age=600"),
        );
        o.route("GET", "/health", Route::ok("{\"status\":\"ok\"}"));
    }
    let first_two = vec![origins[0].url(), origins[1].url()];
    let mut cfg = None;
    let p = spawn_proxy(&origins[0].url(), |c| {
        c.upstreams = first_two;
        cfg = Some(c.clone());
    })
    .await;
    assert_eq!(send(p.get("/kept")).await.x_cache(), "MISS");
    let handle = p.handle.as_ref().unwrap();
    let mut cfg = cfg.unwrap();
    cfg.upstreams = vec![origins[1].url(), origins[2].url()];
    let report = handle.reload(cfg).unwrap();
    assert_eq!(report.applied, vec!["upstreams"]);
    let before = origins[0].count("/who");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(send(p.get("/who")).await.body);
    }
    assert_eq!(
        origins[0].count("/who"),
        before,
        "the removed origin gets nothing"
    );
    assert_eq!(seen, ["o1", "o2"].map(String::from).into());
    eventually_true("/stats lists the new set, health-checked", || async {
        let s = p.stats().await;
        let mut ups: Vec<String> = s["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["checked"] == true && u["healthy"] == true)
            .map(|u| u["address"].as_str().unwrap().to_string())
            .collect();
        ups.sort();
        let mut want = vec![origins[1].addr.to_string(), origins[2].addr.to_string()];
        want.sort();
        ups == want
    })
    .await;
    assert_eq!(send(p.get("/kept")).await.x_cache(), "HIT");
}
