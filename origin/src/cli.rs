//! Command line: `serve` (default), `migrate`, `seed`, `token`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use llmselect_origin::{db, seed, App};
use llmselect_origin::{Config, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "llmselect-origin",
    version,
    about = "LLMSelect JSON API origin"
)]
struct Cli {
    /// TOML configuration file (environment variables and flags override it).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:3044.
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Address of the operations listener (/metrics, detailed /health), e.g. 127.0.0.1:9464.
    #[arg(long, global = true, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// PostgreSQL URL.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// A built single-page app to serve at / (index.html, hashed assets under static/).
    #[arg(long, global = true, value_name = "DIR")]
    static_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve {
        /// Apply pending migrations before serving (overrides the configuration).
        #[arg(long)]
        migrate: bool,
        /// Do not apply migrations at start.
        #[arg(long, conflicts_with = "migrate")]
        no_migrate: bool,
    },
    /// Apply pending migrations and exit.
    Migrate,
    /// Insert demo or bulk data.
    Seed(SeedArgs),
    /// Print a fresh access token for a user.
    Token {
        #[arg(long)]
        username: String,
    },
}

#[derive(Debug, Args)]
struct SeedArgs {
    /// Demo users alice (admin) and bob with a few conversations and comparisons (idempotent).
    #[arg(long)]
    demo: bool,
    /// Bulk: number of users.
    #[arg(long, default_value_t = 0)]
    users: i64,
    /// Bulk: conversations in total, spread over the bulk users.
    #[arg(long, default_value_t = 0)]
    conversations: i64,
    /// Bulk: messages in total, spread over the bulk conversations.
    #[arg(long, default_value_t = 0)]
    messages: i64,
    /// Bulk: comparisons in total, spread over the bulk users.
    #[arg(long, default_value_t = 0)]
    comparisons: i64,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = Overrides {
        listen: cli.listen,
        metrics_listen: cli.metrics_listen,
        database_url: cli.database_url.clone(),
        run_migrations_on_start: None,
        static_dir: cli.static_dir.clone(),
    };
    if let Some(Command::Serve {
        migrate,
        no_migrate,
    }) = &cli.command
    {
        if *migrate {
            overrides.run_migrations_on_start = Some(true);
        } else if *no_migrate {
            overrides.run_migrations_on_start = Some(false);
        }
    }
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "exiting");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .init();
}

async fn run(command: Option<Command>, config: Config) -> anyhow::Result<()> {
    match command.unwrap_or(Command::Serve {
        migrate: false,
        no_migrate: false,
    }) {
        Command::Serve { .. } => {
            let app = App::build(config).await?;
            app.run(async {
                shutdown_signal().await;
                tracing::info!("shutdown requested");
            })
            .await
        }
        Command::Migrate => {
            let pool = db::build_pool(&config)?;
            let applied = llmselect_origin::migrate(&pool).await?;
            eprintln!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
            Ok(())
        }
        Command::Seed(args) => {
            let pool = db::build_pool(&config)?;
            llmselect_origin::migrate(&pool).await?;
            let mut conn = pool
                .dedicated_connection()
                .await
                .context("connecting to the database")?;
            if args.demo {
                seed::demo(&mut conn.client, config.auth.password_hash_log_n).await?;
                eprintln!(
                    "demo data ready: alice (admin) and bob, password {}",
                    seed::DEMO_PASSWORD
                );
            }
            if args.users > 0 {
                let report = seed::bulk(
                    &mut conn.client,
                    &seed::BulkSpec {
                        users: args.users,
                        conversations: args.conversations,
                        messages: args.messages,
                        comparisons: args.comparisons,
                    },
                )
                .await?;
                eprintln!("{report}");
            }
            Ok(())
        }
        Command::Token { username } => {
            let pool = db::build_pool(&config)?;
            let conn = pool
                .dedicated_connection()
                .await
                .context("connecting to the database")?;
            let row = conn
                .client
                .query_opt(
                    "SELECT id FROM users WHERE username = $1",
                    &[&username.to_lowercase()],
                )
                .await?
                .with_context(|| format!("no user named {username:?}"))?;
            let keys = llmselect_origin::JwtKeys::new(&config.auth.jwt_secret_key);
            let issued = keys.issue(
                row.get(0),
                "access",
                config.auth.access_token_expires_minutes * 60,
            )?;
            println!("{}", issued.token);
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
