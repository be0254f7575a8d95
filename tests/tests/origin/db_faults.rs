//! Issue 16, item 7: PostgreSQL restarted and stopped under write load, then every acknowledged
//! write checked in the database. The scenario ([`pg_faults::run`]) runs the origin on a private
//! PostgreSQL server, so the shared server of the other tests is never touched; it is also the
//! `postgres` scenario of `scripts/reliability.sh`.

use llmselect_e2e::pg_faults::{self, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_postgres_restart_and_outage() {
    let f = pg_faults::run(Settings::default()).await;
    println!(
        "postgres faults: {}",
        serde_json::to_string(&f).expect("figures")
    );
    assert!(f.acknowledged > 0);
    assert_eq!(f.lost, Vec::<String>::new(), "acknowledged but missing");
    assert_eq!(f.present, f.acknowledged);
    assert_eq!(f.half_written, 0, "half-written rows");
    assert_eq!(f.hangs, Vec::<String>::new(), "requests without an answer");
    assert_eq!(
        f.unclean_errors,
        Vec::<String>::new(),
        "a failed write is a 503 service_unavailable"
    );
    assert!(
        f.errors_during_outage > 0,
        "no write failed while the server was down"
    );
    assert_eq!(f.health_during_outage["status"], "degraded");
    assert_eq!(f.health_during_outage["database"]["connected"], false);
    assert_eq!(f.final_write_status, 201, "the origin writes again");
}
