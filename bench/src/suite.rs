//! Runs the selected parts in order on one seeded database and one set of servers, then writes
//! the report. Servers are stopped and the database dropped on the way out, errors included.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::{Cli, Part, Settings};
use crate::db::{self, BenchDb};
use crate::fixtures;
use crate::fleet::{self, FleetSpec};
use crate::http_bench::{self, Addrs, HttpSpec, PerfSpec};
use crate::machine::Machine;
use crate::origin_bench;
use crate::peers;
use crate::procs::ProcEnv;
use crate::report::{Report, SeedInfo};
use crate::targets;
use crate::workload::{self, WorkloadSpec};

pub async fn run(cli: Cli) -> anyhow::Result<Report> {
    let settings = cli.settings();
    let bin_dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .context("no directory for the current executable")?,
    };
    let work_dir = std::env::temp_dir().join(format!("llmselect-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir)?;
    let env = ProcEnv {
        bin_dir,
        work_dir: work_dir.clone(),
        server_cpus: cli.server_cpus.clone(),
        nginx: PathBuf::from(&cli.nginx),
        haproxy: PathBuf::from(&cli.haproxy),
        proxy_threads: cli.proxy_threads,
        workers: 1,
        proxy_work_stealing: !cli.proxy_no_work_stealing,
    };
    let (bench_db, reused) = match &cli.reuse_db {
        Some(name) => (
            BenchDb {
                admin_url: cli.database_url.clone(),
                url: db::with_database(&cli.database_url, name)?,
                name: name.clone(),
            },
            true,
        ),
        None => (BenchDb::create(&cli.database_url).await?, false),
    };
    eprintln!(
        "bench database {} (work directory {})",
        bench_db.name,
        work_dir.display()
    );
    let outcome = run_on(&cli, &settings, &env, &bench_db, reused).await;
    if cli.keep_db || reused {
        eprintln!("kept database {}", bench_db.name);
    } else if let Err(e) = bench_db.drop_db().await {
        eprintln!("could not drop the bench database: {e:#}");
    }
    let _ = std::fs::remove_dir_all(&work_dir);
    let report = outcome?;
    report.write(&cli.results_dir)?;
    Ok(report)
}

async fn run_on(
    cli: &Cli,
    s: &Settings,
    env: &ProcEnv,
    bench_db: &BenchDb,
    reused: bool,
) -> anyhow::Result<Report> {
    let pool = (cli
        .origin_connections
        .iter()
        .copied()
        .max()
        .unwrap_or(8)
        .max(8) as u32)
        .min(32);
    let config = env.origin_config(&bench_db.url, pool)?;
    let client = bench_db.client().await?;
    let postgres: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map(|r| format!("PostgreSQL {}", r.get::<_, String>(0)))
        .unwrap_or_default();

    let seed = if reused {
        None
    } else {
        eprintln!(
            "seeding {} users, {} conversations, {} messages, {} comparisons",
            s.users, s.conversations, s.messages, s.comparisons
        );
        let started = Instant::now();
        let args: Vec<String> = [
            ("--users", s.users),
            ("--conversations", s.conversations),
            ("--messages", s.messages),
            ("--comparisons", s.comparisons),
        ]
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .collect();
        let summary = env.seed(&config, &args)?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("  {summary} ({seconds:.1} s with the process start)");
        Some(SeedInfo {
            requested: serde_json::json!({
                "users": s.users, "conversations": s.conversations,
                "messages": s.messages, "comparisons": s.comparisons
            }),
            rows: db::counts(&client).await?,
            seconds,
            origin_summary: summary,
        })
    };

    let origin = env.start_origin(&config)?;
    eprintln!("origin on {} (pid {})", origin.addr, origin.pid());
    let origin_ops = origin
        .admin_addr
        .context("the origin runs with an operations listener")?;
    let login_users = s.login_users.min(s.users.max(1) as usize);
    let users = Arc::new(fixtures::users(origin.addr, login_users).await?);
    eprintln!("logged in {} users", users.len());
    let duration = Duration::from_secs_f64(s.duration);

    let mut origin_rows = Vec::new();
    if cli.parts.contains(&Part::Origin) {
        eprintln!("origin endpoints without the performance indexes");
        let dropped = db::drop_indexes(&client).await?;
        let mut before = Ok(Vec::new());
        for &c in &cli.origin_connections {
            let rows = origin_bench::measure_all(
                origin.addr,
                origin_ops,
                users.clone(),
                c,
                duration,
                false,
            )
            .await;
            match (&mut before, rows) {
                (Ok(all), Ok(rows)) => all.extend(rows),
                (_, Err(e)) => before = Err(e),
                _ => {}
            }
        }
        // Recreate even if the measurement failed: the database must end as migrated.
        let t = Instant::now();
        db::create_indexes(&client, &dropped).await?;
        eprintln!(
            "recreated the indexes in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        origin_rows.extend(before?);
        eprintln!("origin endpoints with the performance indexes");
        for &c in &cli.origin_connections {
            origin_rows.extend(
                origin_bench::measure_all(
                    origin.addr,
                    origin_ops,
                    users.clone(),
                    c,
                    duration,
                    true,
                )
                .await?,
            );
        }
    }

    let mut http = None;
    let mut coalescing = Vec::new();
    let mut workload_report = None;
    if cli.parts.contains(&Part::Http) || cli.parts.contains(&Part::Workload) {
        let proxy = env.start_proxy(origin.addr)?;
        eprintln!(
            "proxy on {} (admin {:?}, pid {})",
            proxy.addr,
            proxy.admin_addr,
            proxy.pid()
        );
        if cli.parts.contains(&Part::Http) {
            let nginx = env.start_nginx(origin.addr)?;
            eprintln!("nginx on {}", nginx.addr);
            let addrs = Addrs {
                origin: origin.addr,
                origin_ops,
                proxy: proxy.addr,
                nginx: nginx.addr,
            };
            let spec = HttpSpec {
                levels: cli.levels.clone(),
                rounds: s.rounds,
                duration,
                path: cli.hit_path.clone(),
                wrk: (!cli.no_wrk).then(|| cli.wrk.clone()),
                perf: cli.perf.clone().map(|prefix| PerfSpec {
                    proxy_pid: proxy.pid(),
                    nginx_pid: nginx.pid(),
                    prefix,
                }),
            };
            http = Some(http_bench::run(addrs, &spec).await?);
            for (name, addr) in [("proxy", proxy.addr), ("nginx proxy_cache", nginx.addr)] {
                coalescing.push(http_bench::coalescing(name, addr, origin_ops, s.stampede).await?);
            }
        }
        if cli.parts.contains(&Part::Workload) {
            // A fresh proxy: the miss runs above filled the store with cold keys.
            drop(proxy);
            let proxy = env.start_proxy(origin.addr)?;
            let spec = workload_spec(cli, s, users.len());
            workload_report = Some(
                workload::run(
                    workload::Servers {
                        proxies: &[(proxy.addr, proxy.admin_addr)],
                        origin_ops: &[origin_ops],
                    },
                    users.clone(),
                    spec,
                )
                .await?,
            );
        }
    }

    let mut peers_report = None;
    if cli.parts.contains(&Part::Peers) {
        peers_report = Some(run_peers(cli, s, env).await?);
    }

    let mut fleet_report = None;
    if cli.parts.contains(&Part::Fleet) {
        eprintln!("fleet: nats-server, 2 origins and 3 proxies on one invalidation stream");
        let spec = FleetSpec {
            renames: s.fleet_renames,
            messages: s.fleet_messages,
            in_flight: 1_000,
            workload: workload_spec(cli, s, users.len()),
        };
        fleet_report = Some(
            fleet::run(
                env,
                Path::new(&cli.nats_server),
                &config,
                users.clone(),
                &spec,
            )
            .await?,
        );
    }

    let mut report = Report {
        generated_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: std::env::var("BENCH_COMMAND").unwrap_or_else(|_| Cli::command_line()),
        quick: cli.quick,
        machine: Machine::probe(&cli.nginx, cli.server_cpus.as_deref(), postgres),
        seed,
        origin: origin_rows,
        http,
        coalescing,
        workload: workload_report,
        fleet: fleet_report,
        peers: peers_report,
        targets: Vec::new(),
    };
    report.targets = targets::check(&report);
    Ok(report)
}

/// The peer comparison: the tiny origin, the proxy, nginx and HAProxy in front of it.
async fn run_peers(cli: &Cli, s: &Settings, env: &ProcEnv) -> anyhow::Result<peers::PeerReport> {
    eprintln!(
        "peers: tiny origin, proxy, nginx proxy_cache, HAProxy cache ({} worker(s) each)",
        cli.peer_workers
    );
    let env = &ProcEnv {
        workers: cli.peer_workers,
        proxy_threads: cli.peer_workers,
        ..env.clone()
    };
    let responder = env.start_responder()?;
    let proxy = env.start_proxy_node("peer-proxy", &[responder.addr], None)?;
    let nginx = env.start_nginx(responder.addr)?;
    let haproxy = env.start_haproxy(responder.addr)?;
    let addrs = peers::PeerAddrs {
        proxy: (proxy.addr, proxy.pid()),
        nginx: (nginx.addr, nginx.pid()),
        haproxy: (haproxy.addr, haproxy.pid()),
        responder: (responder.addr, responder.pid()),
    };
    // measured first, while the store has room: the miss runs fill it afterwards
    let entries = if cli.quick { 2_000 } else { 50_000 };
    let admin = proxy
        .admin_addr
        .context("the proxy was started without an admin listener")?;
    let memory = peers::entry_memory(addrs.proxy, admin, responder.addr, entries).await?;
    let mut report = peers::run(
        addrs,
        cli.peer_connections,
        s.rounds,
        Duration::from_secs_f64(s.duration),
        peers::haproxy_version(&cli.haproxy),
    )
    .await?;
    report.workers = cli.peer_workers;
    report.memory = Some(memory);
    report.slow_stampedes = peers::slow_stampedes(addrs, s.stampede, s.rounds).await?;
    Ok(report)
}

/// The read-mostly Zipf mix of the workload part, also spread over the fleet's nodes.
fn workload_spec(cli: &Cli, s: &Settings, users: usize) -> WorkloadSpec {
    WorkloadSpec {
        users,
        zipf_s: cli.zipf,
        write_share: cli.write_share,
        list_share: 0.4,
        models_share: 0.2,
        connections: cli.workload_connections,
        duration_secs: s.workload_secs,
        warm_every_key: true,
    }
}
