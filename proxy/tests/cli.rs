//! The `llmselect-proxy` binary: help text, start-up validation, `check`, the generated admin token, the `stats` / `purge`
//! client commands, SIGHUP reload and the log formats. Each test runs the real binary on
//! ephemeral loopback ports with its own state directory.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_llmselect-proxy");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A private directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmselect-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A configuration file for a proxy on fresh ports whose origin is not running (the tests do
/// not need one), keeping its state in `dir`.
fn write_config(dir: &Path, admin_port: u16, extra: &str) -> PathBuf {
    let path = dir.join("proxy.toml");
    let text = format!(
        "listen = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
         upstream = \"http://127.0.0.1:{}\"\nstate_dir = \"{}\"\n{extra}\n\
         [server]\nthreads = 1\ngrace_period_secs = 0\npid_file = \"{}\"\nupgrade_sock = \"{}\"\n",
        free_port(),
        free_port(),
        dir.join("state").display(),
        dir.join("proxy.pid").display(),
        dir.join("upgrade.sock").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn cli(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("PROXY_ADMIN_TOKEN")
        .env_remove("RUST_LOG");
    c
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = cli(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A running proxy binary; killed on drop. Its stdout (the log) goes to `log`.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(config: &Path, dir: &Path, extra_args: &[&str], admin_port: u16) -> Running {
        let log = dir.join("proxy.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = cli(&[&["--config", config.to_str().unwrap()], extra_args].concat())
            .stdout(Stdio::from(out))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // the start-up line comes once both listeners accept (the admin one may be first)
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("proxy running")
        {
            assert!(Instant::now() < deadline, "the proxy did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(TcpStream::connect(("127.0.0.1", admin_port)).is_ok());
        Running { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Retries `check` for up to 15 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn check_prints_the_effective_configuration_or_every_error() {
    let dir = scratch("check");
    let config = write_config(&dir, free_port(), "admin_token = \"s3cret\"");
    let ok = run(&["check", "--config", config.to_str().unwrap()], &[]);
    assert!(ok.status.success(), "{ok:?}");
    let out = stdout(&ok);
    assert!(out.contains("# configuration OK"), "{out}");
    assert!(
        out.contains("[cache]") && out.contains("capacity_bytes"),
        "{out}"
    );
    assert!(out.contains("admin_token = \"<redacted>\""), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    // without a token: says where the generated one lives, and creates nothing
    let tokenless = write_config(&dir, free_port(), "");
    let ok = run(&["check", "--config", tokenless.to_str().unwrap()], &[]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(stdout(&ok).contains("state/admin-token"), "{}", stdout(&ok));
    assert!(!dir.join("state").exists());

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"nope\"\nadmin_listen = \"0.0.0.0:9\"\n[cache]\nshards = 3\n",
    )
    .unwrap();
    let failed = run(&["check", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(failed.status.code(), Some(2));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("listen"), "{err}");
    assert!(err.contains("admin token is required"), "{err}");
    assert!(err.contains("shards"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generated_token_serves_the_stats_and_purge_commands() {
    let dir = scratch("token");
    let admin = free_port();
    let config = write_config(&dir, admin, "");
    let cfg = config.to_str().unwrap();
    let proxy = Running::start(&config, &dir, &[], admin);
    let token_file = dir.join("state/admin-token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.trim().len(), 64);
    // the log says where the token is
    eventually("the token path in the log", || {
        proxy.log().contains("admin-token")
    });

    // found through the configuration's state directory
    let stats = run(&["stats", "--config", cfg], &[]);
    assert!(stats.status.success(), "{stats:?}");
    assert!(stdout(&stats).contains("hit ratio"), "{}", stdout(&stats));
    let json = run(&["stats", "--config", cfg, "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["entries"], 0);
    let purge = run(&["purge", "--config", cfg, "--prefix", "/api/"], &[]);
    assert!(purge.status.success(), "{purge:?}");
    assert_eq!(stdout(&purge).trim(), "purged 0 entries (prefix)");
    // the environment, or a token file, win; a wrong token is a clear failure
    let wrong = run(
        &["stats", "--config", cfg],
        &[("PROXY_ADMIN_TOKEN", "wrong")],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"));
    let by_file = run(
        &[
            "stats",
            "--admin",
            &format!("http://127.0.0.1:{admin}"),
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(by_file.status.success(), "{by_file:?}");
    // a purge needs exactly one selector: the proxy's 400 is reported
    let none = run(&["purge", "--config", cfg], &[]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("exactly one"));

    // a restart reuses the token
    drop(proxy);
    let _again = Running::start(&config, &dir, &[], admin);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sighup_reloads_the_token_and_keeps_the_old_configuration_on_errors() {
    let dir = scratch("reload");
    let admin = free_port();
    let config = write_config(&dir, admin, "admin_token = \"first\"");
    let cfg = config.to_str().unwrap();
    let proxy = Running::start(&config, &dir, &["--log-format", "json"], admin);
    let stats_with = |token: &str| {
        run(&["stats", "--config", cfg], &[("PROXY_ADMIN_TOKEN", token)])
            .status
            .success()
    };
    assert!(stats_with("first"));

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "admin_token = \"first\"",
            "admin_token = \"second\"\nlog_level = \"debug\"",
        ),
    )
    .unwrap();
    proxy.signal("-HUP");
    eventually("the new token", || stats_with("second"));
    assert!(!stats_with("first"));
    let log = proxy.log();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(
        log.contains("admin_token") && log.contains("log_level"),
        "{log}"
    );

    // an invalid file changes nothing
    std::fs::write(
        &config,
        text.replace("admin_token = \"first\"", "[cache]\nshards = 3"),
    )
    .unwrap();
    proxy.signal("-HUP");
    eventually("the refusal in the log", || {
        proxy.log().contains("reload refused")
    });
    assert!(stats_with("second"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn logs_are_json_when_piped_and_human_on_request_without_pingora_noise() {
    let dir = scratch("logs");
    let admin = free_port();
    let config = write_config(&dir, admin, "admin_token = \"t\"");
    let proxy = Running::start(&config, &dir, &[], admin);
    eventually("the start-up line", || {
        proxy.log().contains("proxy running")
    });
    let log = proxy.log();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let target = v["target"].as_str().unwrap_or_default();
        assert!(
            !(target.starts_with("pingora") && v["level"] == "INFO"),
            "pingora start-up noise: {line}"
        );
    }
    drop(proxy);

    let proxy = Running::start(&config, &dir, &["--log-format", "human"], admin);
    eventually("the start-up line", || {
        proxy.log().contains("proxy running")
    });
    let log = proxy.log();
    let line = log.lines().find(|l| l.contains("proxy running")).unwrap();
    assert!(!line.trim_start().starts_with('{'), "{line}");
    assert!(line.contains("INFO"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// The original start-up checks of the binary.

#[test]
fn help_lists_the_flags() {
    let out = cli(&[]).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--listen", "--upstream", "--admin-listen"] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

#[test]
fn invalid_configuration_reports_every_error_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("llmselect-proxy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "upstream = \"ftp://x\"\nadmin_listen = \"0.0.0.0:9999\"\n[cache]\nshards = 3\n",
    )
    .unwrap();
    let out = cli(&[])
        .arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg("not-an-address")
        .env_remove("PROXY_ADMIN_TOKEN")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["listen", "only http", "not loopback", "shards"] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
}

#[test]
fn shipped_development_config_is_accepted() {
    // --listen on port 0 would be fine for pingora, but validation is what is checked here:
    // an unreachable upstream is not a start-up error, so give it a bad admin address to stop.
    let out = cli(&[])
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/proxy.toml"))
        .arg("--admin-listen")
        .arg("bad")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(1 error)"),
        "only the overridden address is wrong:\n{err}"
    );
}

/// A plain HTTP/1.1 origin on a std thread: `/slow` answers after `slow` (and is announced on
/// the returned channel when it arrives), anything else at once.
fn slow_origin(slow: Duration) -> (u16, std::sync::mpsc::Receiver<()>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (arrived, slow_seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let arrived = arrived.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                if buf.starts_with(b"GET /slow") {
                    let _ = arrived.send(());
                    std::thread::sleep(slow);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\n\
                      connection: close\r\n\r\nok",
                );
            });
        }
    });
    (port, slow_seen)
}

/// One `GET path` on a new connection through the proxy: the status line and body, or the error.
fn fetch(port: u16, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    match out.starts_with("HTTP/1.1 200") && out.ends_with("ok") {
        true => Ok(out),
        false => Err(format!("unexpected answer: {out:?}")),
    }
}

#[test]
fn binary_upgrade_hands_the_sockets_over_without_refusing_or_cutting_requests() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = scratch("upgrade");
    let admin = free_port();
    let listen = free_port();
    // longer than pingora's 5 s hand-over: still in flight when the old process shuts down
    // (and than the default 5 s origin timeout of ordinary routes: raised below)
    let (origin, slow_seen) = slow_origin(Duration::from_millis(6500));
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             upstream = \"http://127.0.0.1:{origin}\"\nadmin_token = \"t\"\n\
             [server]\nthreads = 2\ngrace_period_secs = 10\npid_file = \"{}\"\n\
             upgrade_sock = \"{}\"\n\
             [timeouts]\nread_ms = 30000\n",
            dir.join("proxy.pid").display(),
            dir.join("upgrade.sock").display(),
        ),
    )
    .unwrap();
    let mut old = Running::start(&config, &dir, &[], admin);
    let first = fetch(listen, "/fast");
    assert!(first.is_ok(), "{first:?}");

    // clients all along: a new connection every few milliseconds, and one slow request
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (stop, results) = (stop.clone(), results.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = fetch(listen, "/fast");
                results.lock().unwrap().push(r);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let slow = std::thread::spawn(move || fetch(listen, "/slow"));
    slow_seen
        .recv_timeout(Duration::from_secs(10))
        .expect("the slow request reached the origin");

    // the new binary waits for the sockets; the old one gets SIGQUIT and sends them
    let new_log = dir.join("new.log");
    // killed on drop, also when an assertion below fails
    let new = Running {
        child: cli(&["--config", config.to_str().unwrap(), "run", "--upgrade"])
            .stdout(Stdio::from(std::fs::File::create(&new_log).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        log: new_log.clone(),
    };
    // it creates the upgrade socket when it is ready to receive
    eventually("the new process waiting for the sockets", || {
        dir.join("upgrade.sock").exists()
    });
    old.signal("-QUIT");
    eventually("the new process running", || {
        std::fs::read_to_string(&new_log)
            .unwrap_or_default()
            .contains("proxy running")
    });
    // the old process finishes its slow request, then exits
    let deadline = Instant::now() + Duration::from_secs(30);
    while old.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // some more requests, answered by the new process alone
    let until_the_old_exited = results.lock().unwrap().len();
    eventually("requests after the hand-over", || {
        results.lock().unwrap().len() > until_the_old_exited + 20
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    let slow = slow.join().unwrap();
    assert!(slow.is_ok(), "the in-flight request was cut: {slow:?}");
    let results = results.lock().unwrap();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );
    assert!(results.len() > 50, "{} requests", results.len());
    // the new process alone serves now, the admin listener included
    let after = fetch(listen, "/fast");
    assert!(after.is_ok(), "{after:?}");
    let stats = run(
        &["stats", "--config", config.to_str().unwrap(), "--json"],
        &[],
    );
    assert!(stats.status.success(), "{stats:?}");
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(v["origin_fetches"].as_u64().unwrap() > 0, "{v}");
    drop(new);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_upgrade_needs_a_fixed_upgrade_socket() {
    let dir = scratch("upgrade-sock");
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\nadmin_token = \"t\"\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let out = run(
        &["--config", config.to_str().unwrap(), "run", "--upgrade"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.upgrade_sock"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
