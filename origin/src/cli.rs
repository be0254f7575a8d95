//! Command line of the `llmselect-origin` binary: `serve` (default), `migrate`, `seed`, `token`,
//! and account administration `user list|create|disable|enable|delete|reset-password` (the same
//! writes as the admin API, `crate::accounts`).
//!
//! [`main`] parses the process's arguments; [`run_args`] runs a command line against a given
//! configuration, input and output (tests).

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::accounts::{self, Writer};
use crate::db::QueryObserver;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::repo::users;
use crate::{db, seed, App};
use crate::{Config, Overrides};

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
    /// Log lines on stderr: `human` on a terminal and `json` otherwise by default.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human on a terminal, JSON otherwise.
    Auto,
    Human,
    Json,
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
    /// Administer user accounts (migrates the database first).
    #[command(subcommand)]
    User(UserCommand),
}

/// `llmselect-origin user …`. With a `[bus]`, each write that changes cached data records its
/// invalidation (`user:<id>`) in the outbox, as the admin API does; without one, the proxy keeps
/// that user's cached responses until they expire (at most `CDN_PER_USER_MAX_AGE_SECS`) unless the
/// change goes through the API or an admin purge.
#[derive(Debug, Subcommand)]
enum UserCommand {
    /// List every user.
    List,
    /// Create a user, whatever the registration policy.
    Create {
        username: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input (otherwise a random one is
        /// generated and printed).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: no login, and every token they hold is refused.
    Disable { username: String },
    /// Enable a disabled user again.
    Enable { username: String },
    /// Delete a user and everything they own (conversations, comparisons, keys).
    Delete {
        username: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Set a new password and revoke every token the user holds.
    ResetPassword {
        username: String,
        /// Read the password from the first line of standard input (otherwise a random one is
        /// generated and printed).
        #[arg(long)]
        password_stdin: bool,
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

/// The binary's entry point: parses the arguments, loads the configuration, runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config, cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut output = std::io::stdout();
    match runtime.block_on(run(cli.command, config, &mut input, &mut output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "exiting");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, crate::ConfigErrors> {
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
    Config::load(cli.config.as_deref(), &overrides)
}

/// Runs the command line `args` (without the program name, e.g. `["user", "disable", "bob"]`)
/// against `config` instead of the configuration the flags would load, reading `input` and
/// writing to `output` what the binary reads from stdin and prints on stdout.
pub async fn run_args(
    args: &[&str],
    config: Config,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(std::iter::once("llmselect-origin").chain(args.iter().copied()))?;
    run(cli.command, config, input, output).await
}

fn init_tracing(config: &Config, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let human = match format {
        LogFormat::Auto => terminal,
        LogFormat::Human => true,
        LogFormat::Json => false,
    };
    if human {
        builder.with_ansi(terminal).init();
    } else {
        builder.json().with_current_span(false).init();
    }
}

async fn run(
    command: Option<Command>,
    config: Config,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> anyhow::Result<()> {
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
            let applied = crate::migrate(&pool).await?;
            eprintln!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
            Ok(())
        }
        Command::Seed(args) => {
            let pool = db::build_pool(&config)?;
            crate::migrate(&pool).await?;
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
                    "SELECT id, token_generation FROM users WHERE username = $1",
                    &[&username.to_lowercase()],
                )
                .await?
                .with_context(|| format!("no user named {username:?}"))?;
            let keys = crate::JwtKeys::new(&config.auth.jwt_secret_key);
            let issued = keys.issue_for(
                row.get(0),
                row.get(1),
                "access",
                config.auth.access_token_expires_minutes * 60,
            )?;
            writeln!(output, "{}", issued.token)?;
            Ok(())
        }
        Command::User(command) => user_command(command, &config, input, output).await,
    }
}

/// The error of an account operation, with the validation details a 422 would carry.
fn account_error(e: AppError) -> anyhow::Error {
    match e {
        AppError::Validation(details) => anyhow::anyhow!("invalid input: {details}"),
        other => anyhow::anyhow!("{other}"),
    }
}

/// The password of `create`/`reset-password`: the first line of `input`, or a random one that is
/// printed once.
fn new_password(
    from_input: bool,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> anyhow::Result<String> {
    if from_input {
        let mut line = String::new();
        input.read_line(&mut line).context("reading the password")?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        accounts::check_password("password", &password).map_err(account_error)?;
        return Ok(password);
    }
    let password: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    writeln!(output, "generated password: {password}")?;
    Ok(password)
}

async fn find_user(
    conn: &db::PgConn,
    obs: &QueryObserver,
    username: &str,
) -> anyhow::Result<users::UserSummary> {
    users::by_username(&conn.db(obs), &username.to_lowercase())
        .await?
        .with_context(|| format!("no user named {username:?}"))
}

async fn user_command(
    command: UserCommand,
    config: &Config,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> anyhow::Result<()> {
    let pool = db::build_pool(config)?;
    crate::migrate(&pool).await?;
    let mut conn = pool.get().await.context("connecting to the database")?;
    let obs = QueryObserver::new(
        std::sync::Arc::new(Metrics::new()),
        std::time::Duration::from_millis(config.database.slow_query_threshold_ms),
    );
    let outbox = Outbox::new(config.bus.enabled());
    let writer = Writer {
        outbox: &outbox,
        obs: &obs,
        target: None,
    };
    let log_n = config.auth.password_hash_log_n;
    match command {
        UserCommand::List => {
            for u in users::list(&conn.db(&obs)).await? {
                writeln!(
                    output,
                    "{}\t{}\t{}\t{}",
                    u.id,
                    u.username,
                    if u.is_admin { "admin" } else { "user" },
                    if u.disabled { "disabled" } else { "enabled" },
                )?;
            }
        }
        UserCommand::Create {
            username,
            admin,
            password_stdin,
        } => {
            let username = accounts::normalise_username(&username).map_err(account_error)?;
            let password = new_password(password_stdin, input, output)?;
            let hash = accounts::hash_password(password, log_n)
                .await
                .map_err(account_error)?;
            let u = accounts::create(&mut conn, &obs, &username, &hash, admin)
                .await
                .map_err(account_error)?;
            let role = if u.is_admin { "administrator" } else { "user" };
            writeln!(output, "created {role} {} (id {})", u.username, u.id)?;
        }
        UserCommand::Disable { username } => {
            let u = find_user(&conn, &obs, &username).await?;
            accounts::set_disabled(&mut conn, &writer, u.id, true)
                .await
                .map_err(account_error)?;
            writeln!(output, "disabled {} (id {})", u.username, u.id)?;
        }
        UserCommand::Enable { username } => {
            let u = find_user(&conn, &obs, &username).await?;
            accounts::set_disabled(&mut conn, &writer, u.id, false)
                .await
                .map_err(account_error)?;
            writeln!(output, "enabled {} (id {})", u.username, u.id)?;
        }
        UserCommand::Delete { username, yes } => {
            if !yes {
                anyhow::bail!("deleting {username:?} removes all their data: add --yes to confirm");
            }
            let u = find_user(&conn, &obs, &username).await?;
            accounts::delete(&mut conn, &writer, u.id)
                .await
                .map_err(account_error)?;
            writeln!(output, "deleted {} (id {})", u.username, u.id)?;
        }
        UserCommand::ResetPassword {
            username,
            password_stdin,
        } => {
            let u = find_user(&conn, &obs, &username).await?;
            let password = new_password(password_stdin, input, output)?;
            let hash = accounts::hash_password(password, log_n)
                .await
                .map_err(account_error)?;
            accounts::reset_password(&mut conn, &writer, u.id, &hash)
                .await
                .map_err(account_error)?;
            writeln!(
                output,
                "password of {} reset; every token they held is revoked",
                u.username
            )?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_flag() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert_eq!(
            parse(&["llmselect-origin"]).unwrap().log_format,
            LogFormat::Auto
        );
        let cli = parse(&["llmselect-origin", "migrate", "--log-format", "human"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Human);
        assert!(parse(&["llmselect-origin", "--log-format", "xml"]).is_err());
    }
}
