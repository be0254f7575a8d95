//! A private, throwaway PostgreSQL server for tests that stop and restart the server itself: the
//! shared server of `DATABASE_URL`, used by every other test, is never touched. Built from the
//! installed binaries the way `scripts/pg.sh` does it (`pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/<version>/bin`): a cluster in a temporary directory with its socket there,
//! listening on an ephemeral port of 127.0.0.1, trust authentication for `postgres`. PostgreSQL
//! refuses to run as root, so as root every server command runs as the `postgres` system user
//! (`runuser`), which the PostgreSQL packages create.
//!
//! `fsync` is off (the tests stop and restart the server, they never crash the machine, and a fast
//! shutdown checkpoints); `synchronous_commit` keeps its default, so a commit is acknowledged only
//! once its WAL is written.
//!
//! Dropping the handle stops the server (`immediate`) and removes the directory.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Output, Stdio};

/// The cluster owner when the tests run as root.
const OWNER_WHEN_ROOT: &str = "postgres";
/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_WAIT_SECS: &str = "30";

/// A running (or deliberately stopped) private PostgreSQL server.
pub struct PrivatePg {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `Some(user)` when commands run through `runuser -u user` (the tests run as root).
    run_as: Option<String>,
}

impl PrivatePg {
    /// Creates the cluster and starts the server; panics with PostgreSQL's output when it cannot.
    pub async fn start() -> PrivatePg {
        let bin = bin_dir().expect(
            "no PostgreSQL server binaries (initdb) found: install PostgreSQL (scripts/pg.sh does)",
        );
        let dir = std::env::temp_dir().join(format!(
            "llmselect-private-pg-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        let run_as = match std::fs::metadata(&dir).expect("cluster directory").uid() {
            0 => Some(OWNER_WHEN_ROOT.to_string()),
            _ => None,
        };
        if let Some(user) = &run_as {
            let (uid, gid) = user_ids(user).await;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown cluster directory");
        }
        let pg = PrivatePg {
            bin,
            dir,
            port: free_port(),
            run_as,
        };
        let data = pg.data_dir();
        let out = pg
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
            )
            .await;
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        pg.start_again().await;
        pg
    }

    /// The URL of the `postgres` database (the admin URL, as `DATABASE_URL` is for the shared
    /// server).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m fast`: clients are disconnected, the server is back and accepting
    /// connections when this returns (same options, still logging to its file).
    pub async fn restart(&self) {
        let log = self.server_log_path();
        self.pg_ctl(&["restart", "-m", "fast", "-l", &log]).await;
    }

    /// `pg_ctl stop -m fast`: clients are disconnected, the server is down when this returns.
    pub async fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]).await;
    }

    /// Starts the (stopped) server on the same port; it accepts connections when this returns.
    pub async fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=50 \
             -c shared_buffers=16MB -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let log = self.server_log_path();
        self.pg_ctl(&["start", "-l", &log, "-o", &options]).await;
    }

    /// The server's log so far (for failure messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn server_log_path(&self) -> String {
        self.dir.join("server.log").display().to_string()
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs `pg_ctl` and waits for it. Its output goes to a file, not to pipes: the server it
    /// starts inherits them, and reading a pipe to its end would wait for the server to exit.
    async fn pg_ctl(&self, args: &[&str]) {
        let data = self.data_dir();
        let mut all = vec!["-D", &data, "-w", "-t", PG_CTL_WAIT_SECS];
        all.extend_from_slice(args);
        let log_path = self.dir.join("pg_ctl.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open pg_ctl.log");
        let status = self
            .command("pg_ctl", &all)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("pg_ctl.log handle"))
            .stderr(log)
            .status()
            .await
            .expect("run pg_ctl");
        assert!(
            status.success(),
            "pg_ctl {args:?} failed: {}\nserver log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default(),
            self.server_log()
        );
    }

    async fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    fn command(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        let program = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = tokio::process::Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => tokio::process::Command::new(&program),
        };
        // The cluster directory is the working directory: the owner may not enter the caller's.
        cmd.args(args).current_dir(&self.dir);
        cmd
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl", &["-D", &data, "-w", "stop", "-m", "immediate"])
            .into_std()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of `initdb` and `pg_ctl`.
fn bin_dir() -> Option<PathBuf> {
    let from_pg_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(d) = from_pg_config.filter(|d| d.join("initdb").is_file()) {
        return Some(d);
    }
    // Debian's layout: /usr/lib/postgresql/<major>/bin, newest major first.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The numeric user and group ids of `user` (`id -u`, `id -g`).
async fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &'static str| async move {
        let out = tokio::process::Command::new("id")
            .args([flag, user])
            .output()
            .await
            .expect("run id");
        assert!(
            out.status.success(),
            "the tests run as root, so PostgreSQL needs the system user {user:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .expect("numeric id")
    };
    (id("-u").await, id("-g").await)
}

/// A TCP port of 127.0.0.1 that nothing listened on a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
