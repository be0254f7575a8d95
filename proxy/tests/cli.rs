//! The `llmselect-proxy` binary: help text and start-up validation.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llmselect-proxy"))
}

#[test]
fn help_lists_the_flags() {
    let out = bin().arg("--help").output().unwrap();
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
    let out = bin()
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
    let out = bin()
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
