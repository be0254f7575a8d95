//! Command line of `llmselect-proxy`: `run` (the default), `check` (validate and print the
//! effective configuration, like `nginx -t`), and `stats` / `purge`, which talk to a running
//! proxy's admin listener for scripts and runbooks.
//!
//! `stats` and `purge` find the admin address in the configuration (or `--admin`) and the token
//! in `PROXY_ADMIN_TOKEN`, `--token-file`, the configuration, or the token file a proxy without
//! a configured token generated (see [`crate::admin_token`]), in that order.

use crate::config::{Config, ConfigErrors, Overrides, ADMIN_TOKEN_ENV};
use crate::logging::{LogFormat, LogHandle};
use crate::{admin_token, ProxyHandle};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// RFC 9111 caching reverse proxy (pingora) for llmselect-edge.
#[derive(Debug, Parser)]
#[command(name = "llmselect-proxy", version, about)]
pub struct Cli {
    /// TOML configuration file (see config/proxy.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Proxy listen address (overrides `listen`).
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Origin base URL (overrides `upstream`); several, comma-separated, are balanced with
    /// health checks (overrides `upstreams`).
    #[arg(long, global = true, value_name = "URL")]
    pub upstream: Option<String>,
    /// Admin listen address (overrides `admin_listen`).
    #[arg(long, global = true, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Log lines: `human` on a terminal and `json` otherwise by default.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Run {
        /// Zero-downtime upgrade: take the listening sockets over from the running proxy
        /// (through `server.upgrade_sock`), which must get SIGQUIT within 5 s.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate the configuration, print the effective values (secrets redacted) and exit:
    /// 0 when valid, 2 otherwise.
    Check,
    /// Print a running proxy's counters (`GET /stats` on its admin listener).
    Stats {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Purge a running proxy's cache (`POST /purge`); name exactly one of --url, --prefix,
    /// --group, --all.
    Purge {
        #[command(flatten)]
        admin: AdminArgs,
        /// A URL (`http://host/path`) or a path on every host; repeatable.
        #[arg(long = "url", value_name = "URL")]
        urls: Vec<String>,
        /// Every URL whose path starts with this.
        #[arg(long, value_name = "PATH")]
        prefix: Option<String>,
        /// A cache group (`Cache-Groups` / `Surrogate-Key`); repeatable.
        #[arg(long = "group", value_name = "NAME")]
        groups: Vec<String>,
        /// Everything.
        #[arg(long)]
        all: bool,
        /// Mark stale (revalidated on next use) instead of removing.
        #[arg(long)]
        soft: bool,
        /// This node only (in a fleet a purge is published to every node by default).
        #[arg(long)]
        local: bool,
    },
}

/// Where and how to reach the admin listener.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin base URL (default: `http://` + the configuration's `admin_listen`).
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// File holding the admin token (default: `PROXY_ADMIN_TOKEN`, the configuration, or the
    /// generated token file).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            admin_listen: self.admin_listen.clone(),
        }
    }

    /// Loads and validates the configuration the flags name, with the generated admin token when
    /// none is configured; the token file's path is returned when one is used.
    pub fn load_config(&self) -> Result<(Config, Option<PathBuf>), ConfigErrors> {
        let mut config = Config::load(self.config.as_deref(), self.overrides())?;
        let generated = admin_token::ensure(&mut config)
            .map_err(|e| ConfigErrors(vec![format!("admin token: {e:#}")]))?;
        Ok((config, generated))
    }

    /// Whether the command runs the proxy (`None` or `run`).
    pub fn runs_proxy(&self) -> bool {
        matches!(self.command, None | Some(Command::Run { .. }))
    }

    /// Whether `run --upgrade` was asked for.
    pub fn upgrade(&self) -> bool {
        matches!(self.command, Some(Command::Run { upgrade: true }))
    }
}

/// Runs a command other than `run`; returns the process's exit code.
pub fn run_command(cli: &Cli) -> ExitCode {
    let result = match &cli.command {
        None | Some(Command::Run { .. }) => return ExitCode::SUCCESS,
        Some(Command::Check) => return check(cli),
        Some(Command::Stats { admin, json }) => stats(cli, admin, *json),
        Some(Command::Purge {
            admin,
            urls,
            prefix,
            groups,
            all,
            soft,
            local,
        }) => {
            let mut body = json!({"soft": soft, "local": local});
            if !urls.is_empty() {
                body["urls"] = json!(urls);
            }
            if let Some(p) = prefix {
                body["prefix"] = json!(p);
            }
            if !groups.is_empty() {
                body["groups"] = json!(groups);
            }
            if *all {
                body["all"] = json!(true);
            }
            purge(cli, admin, body)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llmselect-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Validates without side effects (no token file is created) and prints the configuration.
fn check(cli: &Cli) -> ExitCode {
    let config = match Config::load(cli.config.as_deref(), cli.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    let source = cli
        .config
        .as_deref()
        .map_or("built-in defaults".to_string(), |p| p.display().to_string());
    println!("# configuration OK ({source})");
    if config.admin_token.as_deref().is_some_and(|t| !t.is_empty()) {
        println!("# admin token: configured");
    } else {
        println!(
            "# admin token: none configured; the proxy uses the generated one in {}",
            admin_token::token_path(&config).display()
        );
    }
    match toml::to_string_pretty(&config) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration for a client command: read without validation (a client only needs the
/// admin address and token), defaults when there is no file.
fn client_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => Config::default(),
    };
    if let Some(a) = &cli.admin_listen {
        config.admin_listen = a.clone();
    }
    Ok(config)
}

/// The admin base URL and token a client command uses.
fn admin_target(cli: &Cli, args: &AdminArgs) -> anyhow::Result<(String, String)> {
    let config = client_config(cli)?;
    let base = match &args.admin {
        Some(a) => a.trim_end_matches('/').to_string(),
        None => format!("http://{}", config.admin_listen),
    };
    let token = match std::env::var(ADMIN_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
    {
        Some(t) => t,
        None => match &args.token_file {
            Some(path) => read_token(path)?,
            None => match config.admin_token.clone().filter(|t| !t.is_empty()) {
                Some(t) => t,
                None => {
                    let path = admin_token::token_path(&config);
                    read_token(&path).with_context(|| {
                        format!(
                            "no admin token: set {ADMIN_TOKEN_ENV}, pass --token-file, or run \
                             on the proxy's host (generated token file {})",
                            path.display()
                        )
                    })?
                }
            },
        },
    };
    Ok((base, token))
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    admin_token::read(path)?
        .ok_or_else(|| anyhow::anyhow!("{} is missing or empty", path.display()))
}

/// Sends one admin request and returns its JSON; a non-2xx answer is an error with its message.
fn admin_request(
    cli: &Cli,
    args: &AdminArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let (base, token) = admin_target(cli, args)?;
    let url = format!("{base}{path}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let mut req = client.request(method, &url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the admin listener at {base}"))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["error"]["message"].as_str().unwrap_or("no message");
            anyhow::bail!("{url}: {status}: {message}");
        }
        Ok(value)
    })
}

fn stats(cli: &Cli, args: &AdminArgs, raw: bool) -> anyhow::Result<()> {
    let s = admin_request(cli, args, reqwest::Method::GET, "/stats", None)?;
    if raw {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    println!(
        "hit ratio     {:.1} %",
        s["hit_ratio"].as_f64().unwrap_or(0.0) * 100.0
    );
    println!(
        "requests      hit {}  miss {}  stale {}  revalidated {}  pass {}  bypass {}  error {}",
        n("hits"),
        n("misses"),
        n("stale"),
        n("revalidated"),
        n("pass"),
        n("bypass"),
        n("errors")
    );
    println!(
        "store         {} entries, {} of {} bytes, {} evictions",
        n("entries"),
        n("bytes"),
        n("capacity"),
        n("evictions")
    );
    println!(
        "purges        {} ({} entries)",
        n("purges"),
        n("purged_entries")
    );
    if let Some(list) = s["upstreams"].as_array() {
        for u in list {
            let state = if u["healthy"].as_bool() == Some(true) {
                "healthy"
            } else {
                "DOWN"
            };
            println!(
                "origin        {} {state}",
                u["address"].as_str().unwrap_or("?")
            );
        }
    }
    if let Some(bus) = s["bus"].as_object() {
        println!(
            "bus           {} (lag {})",
            bus.get("state").and_then(Value::as_str).unwrap_or("?"),
            bus.get("lag").and_then(Value::as_u64).unwrap_or(0)
        );
    }
    Ok(())
}

fn purge(cli: &Cli, args: &AdminArgs, body: Value) -> anyhow::Result<()> {
    let r = admin_request(cli, args, reqwest::Method::POST, "/purge", Some(body))?;
    println!(
        "purged {} entries ({}{}{})",
        r["purged"].as_u64().unwrap_or(0),
        r["kind"].as_str().unwrap_or("?"),
        if r["soft"].as_bool() == Some(true) {
            ", soft"
        } else {
            ""
        },
        if r["fleet"].as_bool() == Some(true) {
            ", published to the fleet"
        } else {
            ""
        }
    );
    Ok(())
}

/// SIGHUP: reloads the configuration the flags name and applies what can change (see
/// [`crate::reload`]); an invalid file is reported and changes nothing.
pub fn reload(cli: &Cli, handle: &ProxyHandle, log: &LogHandle) {
    let (config, _) = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                errors = ?e.0,
                "reload refused: the configuration is invalid; keeping the running one"
            );
            return;
        }
    };
    let level = config.log_level.clone();
    match handle.reload(config) {
        Ok(report) => {
            if let Err(e) = log.set_level(&level) {
                tracing::error!(error = %e, "log level not applied");
            }
            tracing::info!(
                applied = ?report.applied,
                needs_restart = ?report.needs_restart,
                "configuration reloaded"
            );
        }
        Err(e) => {
            tracing::error!(
                errors = ?e.0,
                "reload refused: the configuration is invalid; keeping the running one"
            );
        }
    }
}
