//! The servers under test as child processes (release binaries of the workspace, Debian's
//! nginx and nats-server), each optionally pinned with `taskset` to the server CPUs, killed when
//! dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Where the binaries are, where scratch files go, and how to pin servers.
#[derive(Debug, Clone)]
pub struct ProcEnv {
    /// Directory holding `llmselect-origin` and `llmselect-proxy`.
    pub bin_dir: PathBuf,
    /// Scratch directory for configuration files, logs and nginx's cache.
    pub work_dir: PathBuf,
    /// `taskset -c` CPU list for servers (none: no pinning).
    pub server_cpus: Option<String>,
    pub nginx: PathBuf,
    /// HAProxy binary of the peer comparison.
    pub haproxy: PathBuf,
    /// Worker threads of the proxy.
    pub proxy_threads: usize,
    /// nginx worker processes and HAProxy threads.
    pub workers: usize,
    /// `server.work_stealing` of the proxy.
    pub proxy_work_stealing: bool,
}

/// A running child process listening on `addr`.
pub struct Server {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// Extra address (the proxy's admin listener, the origin's operations listener).
    pub admin_addr: Option<SocketAddr>,
    child: Child,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `KILL`, ...) with kill(1).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -s {signal} failed");
        Ok(())
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(
        &mut self,
        limit: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Resident set size in KiB (`VmRSS`), 0 once the process is gone.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // nginx's workers outlive a killed master, and a living master replaces killed workers:
        // note the children, kill the master, then them
        let children = children(self.pid());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for child in children {
            let _ = Command::new("kill")
                .arg("-s")
                .arg("KILL")
                .arg(child.to_string())
                .status();
        }
    }
}

/// Dev-only secrets of the bench origin (loopback only, throwaway database).
pub const JWT_SECRET: &str = "bench-only-jwt-secret-not-for-production";
const FERNET_KEY: &str = "bGxtc2VsZWN0LWJlbmNoLWZlcm5ldC1rZXktMzJieXQ=";
pub const PROXY_ADMIN_TOKEN: &str = "bench-admin-token";

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ProcEnv {
    fn command(&self, program: &Path) -> Command {
        let mut cmd = match &self.server_cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        // allocator settings under study reach the servers
        for (name, value) in std::env::vars().filter(|(n, _)| n.starts_with("MIMALLOC_")) {
            cmd.env(name, value);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    fn log_file(&self, name: &str) -> anyhow::Result<std::fs::File> {
        std::fs::File::create(self.work_dir.join(format!("{name}.log")))
            .with_context(|| format!("creating {name}.log"))
    }

    /// The origin's TOML configuration for `database_url`, written to the work directory.
    pub fn origin_config(&self, database_url: &str, pool_size: u32) -> anyhow::Result<PathBuf> {
        let path = self.work_dir.join("origin.toml");
        let text = format!(
            r#"environment = "bench"
log_level = "warn"

[database]
url = "{database_url}"
pool_min_idle = {pool_size}
pool_max_size = {pool_size}
run_migrations_on_start = true
slow_query_threshold_ms = 60000

[auth]
secret_key = "bench-only-secret-key"
jwt_secret_key = "{JWT_SECRET}"
encryption_key = "{FERNET_KEY}"
access_token_expires_minutes = 120
allow_open_registration = true
password_hash_log_n = 10

[http]
slow_request_threshold_ms = 60000

[rate_limit]
enabled = false

[providers]
verify_model_lists = false
"#
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// `llmselect-origin seed` with the bench configuration (set-based SQL in the origin).
    pub fn seed(&self, config: &Path, args: &[String]) -> anyhow::Result<String> {
        let out = Command::new(self.bin_dir.join("llmselect-origin"))
            .env_clear()
            .arg("--config")
            .arg(config)
            .arg("seed")
            .args(args)
            .output()
            .context("running llmselect-origin seed")?;
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        anyhow::ensure!(out.status.success(), "seed failed: {stderr}");
        Ok(stderr
            .lines()
            .rfind(|l| l.starts_with("seeded"))
            .unwrap_or("")
            .to_string())
    }

    /// The origin; its `admin_addr` is the operations listener (`/metrics`, detailed `/health`).
    pub fn start_origin(&self, config: &Path) -> anyhow::Result<Server> {
        self.start_origin_node("origin", config, None)
    }

    /// An origin named `name` (its log is `<name>.log`), on the bus at `nats_url` if given
    /// (env `NATS_URL`: the transactional outbox and its relay).
    pub fn start_origin_node(
        &self,
        name: &'static str,
        config: &Path,
        nats_url: Option<&str>,
    ) -> anyhow::Result<Server> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let ops = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = self.command(&self.bin_dir.join("llmselect-origin"));
        cmd.arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg(ops.to_string())
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(self.log_file(name)?);
        if let Some(url) = nats_url {
            cmd.env("NATS_URL", url);
        }
        let child = cmd.spawn().context("starting llmselect-origin")?;
        wait_listening(name, child, addr, Some(ops))
    }

    pub fn start_proxy(&self, upstream: SocketAddr) -> anyhow::Result<Server> {
        self.start_proxy_node("proxy", &[upstream], None)
    }

    /// A proxy named `name` (its files are `<name>.toml`, `<name>.log`, …) balancing over
    /// `upstreams` (`--upstream a,b` when there are several) and following the invalidation
    /// stream at `nats_url` if given (env `NATS_URL`).
    pub fn start_proxy_node(
        &self,
        name: &'static str,
        upstreams: &[SocketAddr],
        nats_url: Option<&str>,
    ) -> anyhow::Result<Server> {
        let first = upstreams.first().context("a proxy needs an upstream")?;
        // 512 MiB: room for the 50,000 objects of the peers' memory measurement (each is charged
        // about 6 KiB: its bytes plus `ENTRY_OVERHEAD`), so nothing is evicted while it runs
        let settings = "[cache]\ncapacity_bytes = 536870912\nshards = 16\n";
        let (path, addr, admin) = self.proxy_config(name, *first, settings, 1)?;
        let mut cmd = self.command(&self.bin_dir.join("llmselect-proxy"));
        cmd.arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(self.log_file(name)?);
        if upstreams.len() > 1 {
            let list: Vec<String> = upstreams.iter().map(|u| format!("http://{u}")).collect();
            cmd.arg("--upstream").arg(list.join(","));
        }
        if let Some(url) = nats_url {
            cmd.env("NATS_URL", url);
        }
        let child = cmd.spawn().context("starting llmselect-proxy")?;
        wait_listening(name, child, addr, Some(admin))
    }

    /// A proxy in front of `upstream` with `settings` (TOML sections after the addresses), under
    /// an open-file limit of `nofile` if given (`ulimit -n` in a shell that then execs it).
    pub fn start_proxy_with(
        &self,
        name: &'static str,
        upstream: SocketAddr,
        settings: &str,
        nofile: Option<u64>,
    ) -> anyhow::Result<Server> {
        let (mut cmd, addr, admin) = self.proxy_command(name, upstream, settings, nofile)?;
        let child = cmd.spawn().context("starting llmselect-proxy")?;
        wait_listening(name, child, addr, Some(admin))
    }

    /// A proxy process just spawned, not yet listening (to signal it while it starts).
    pub fn spawn_proxy_unready(
        &self,
        name: &'static str,
        upstream: SocketAddr,
    ) -> anyhow::Result<Server> {
        let (mut cmd, addr, admin) = self.proxy_command(name, upstream, "", None)?;
        let child = cmd.spawn().context("starting llmselect-proxy")?;
        Ok(Server {
            name,
            addr,
            admin_addr: Some(admin),
            child,
        })
    }

    /// Writes `<name>.toml` for a proxy in front of `upstream` on two free loopback ports, with
    /// `settings` (TOML sections) before its `[server]` section; returns the path and addresses.
    fn proxy_config(
        &self,
        name: &str,
        upstream: SocketAddr,
        settings: &str,
        grace_period_secs: u64,
    ) -> anyhow::Result<(PathBuf, SocketAddr, SocketAddr)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let path = self.work_dir.join(format!("{name}.toml"));
        let dir = self.work_dir.display();
        std::fs::write(
            &path,
            format!(
                r#"listen = "{addr}"
upstream = "http://{upstream}"
admin_listen = "{admin}"
admin_token = "{PROXY_ADMIN_TOKEN}"
{settings}
[server]
threads = {threads}
{work_stealing}pid_file = "{dir}/{name}.pid"
upgrade_sock = "{dir}/{name}-upgrade.sock"
grace_period_secs = {grace_period_secs}
"#,
                threads = self.proxy_threads,
                // only when not the default, so older proxy builds can be measured too
                work_stealing = if self.proxy_work_stealing {
                    ""
                } else {
                    "work_stealing = false\n"
                },
            ),
        )?;
        Ok((path, addr, admin))
    }

    fn proxy_command(
        &self,
        name: &'static str,
        upstream: SocketAddr,
        settings: &str,
        nofile: Option<u64>,
    ) -> anyhow::Result<(Command, SocketAddr, SocketAddr)> {
        let (path, addr, admin) = self.proxy_config(name, upstream, settings, 30)?;
        let program = self.bin_dir.join("llmselect-proxy");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = self.command(Path::new("sh"));
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(&program);
                c
            }
            None => self.command(&program),
        };
        cmd.arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(self.log_file(name)?);
        Ok((cmd, addr, admin))
    }

    /// A private nats-server with JetStream on a free loopback port, its store in the work
    /// directory; `addr` is its client port (`nats://addr`).
    pub fn start_nats(&self, program: &Path) -> anyhow::Result<Server> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let store = self.work_dir.join("nats");
        let _ = std::fs::remove_dir_all(&store);
        std::fs::create_dir_all(&store)?;
        let mut cmd = self.command(program);
        cmd.arg("-js")
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(addr.port().to_string())
            .arg("-sd")
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(self.log_file("nats-server")?);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        wait_listening("nats-server", child, addr, None)
    }

    /// nginx with `proxy_cache` in front of `upstream`: one process (a master and `workers`
    /// worker processes when there are several), keep-alive to the origin,
    /// cache lock on, caching what `Cache-Control` allows (`public, max-age` on the models list).
    pub fn start_nginx(&self, upstream: SocketAddr) -> anyhow::Result<Server> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let dir = self.work_dir.join("nginx");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cache"))?;
        let d = dir.display();
        let conf = dir.join("nginx.conf");
        let workers = self.workers.max(1);
        let master = if workers > 1 { "on" } else { "off" };
        std::fs::write(
            &conf,
            format!(
                r#"daemon off;
master_process {master};
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy_temp;
  fastcgi_temp_path {d}/fastcgi_temp;
  uwsgi_temp_path {d}/uwsgi_temp;
  scgi_temp_path {d}/scgi_temp;
  proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:16m max_size=256m inactive=10m use_temp_path=off;
  upstream origin {{ server {upstream}; keepalive 64; }}
  server {{
    listen {addr};
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_lock on;
      add_header X-Cache $upstream_cache_status;
    }}
  }}
}}
"#
            ),
        )?;
        let mut cmd = self.command(&self.nginx);
        cmd.arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(self.log_file("nginx")?);
        let child = cmd.spawn().context("starting nginx")?;
        wait_listening("nginx", child, addr, None)
    }
}

impl ProcEnv {
    /// The peer comparison's tiny origin (`llmselect-bench-responder`, next to this binary).
    pub fn start_responder(&self) -> anyhow::Result<Server> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut cmd = self.command(&self.bin_dir.join("llmselect-bench-responder"));
        cmd.arg(addr.to_string())
            .stdout(Stdio::null())
            .stderr(self.log_file("responder")?);
        let child = cmd.spawn().context("starting llmselect-bench-responder")?;
        wait_listening("responder", child, addr, None)
    }

    /// HAProxy with its `cache` section in front of `upstream`: `workers` threads, keep-alive to the
    /// origin (`http-reuse always`), objects up to 1 MiB, no logging.
    pub fn start_haproxy(&self, upstream: SocketAddr) -> anyhow::Result<Server> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let dir = self.work_dir.join("haproxy");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("haproxy.cfg");
        let workers = self.workers.max(1);
        std::fs::write(
            &conf,
            format!(
                r#"global
  nbthread {workers}
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always

cache bench
  total-max-size 256
  max-object-size 1048576
  max-age 3600

frontend fe
  bind {addr}
  default_backend origin

backend origin
  http-request cache-use bench
  http-response cache-store bench
  server o {upstream} maxconn 64
"#
            ),
        )?;
        let mut cmd = self.command(&self.haproxy);
        cmd.arg("-db")
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(self.log_file("haproxy")?);
        let child = cmd.spawn().context("starting haproxy")?;
        wait_listening("haproxy", child, addr, None)
    }
}

/// CPU time (user + system, all threads) a process and its children (nginx's workers) have used
/// so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let mut total = own_cpu_time(pid)?;
    for child in children(pid) {
        // a child that just exited has no stat any more
        total += own_cpu_time(child).unwrap_or_default();
    }
    Ok(total)
}

/// The processes whose parent is `pid` (field 4 of `/proc/<pid>/stat`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// CPU time of one process (all its threads).
fn own_cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // the command name (field 2) may hold spaces and parentheses: count from its end
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields 14 (utime) and 15 (stime) of stat(5); `rest` starts at field 3
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i - 3)
            .context("short /proc/<pid>/stat")?
            .parse()?)
    };
    let total = ticks(14)? + ticks(15)?;
    Ok(Duration::from_secs_f64(total as f64 / clock_ticks() as f64))
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux architecture the suite runs on; `getconf` says
/// otherwise when it is installed.
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Waits until `addr` (and `admin`) accept connections or the child exits.
fn wait_listening(
    name: &'static str,
    mut child: Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
) -> anyhow::Result<Server> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = |a: SocketAddr| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok();
        if up(addr) && admin.is_none_or(up) {
            return Ok(Server {
                name,
                addr,
                admin_addr: admin,
                child,
            });
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "{name} exited during start-up ({status}); see {name}.log in the work directory"
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{name} did not listen on {addr} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
