//! The admin token of a proxy started without one on a loopback admin address: generated once,
//! kept in `<state_dir>/admin-token` (mode 0600, directory 0700) and reused on later starts, so
//! an operator on the machine can read it and `llmselect-proxy stats|purge` find it.

use crate::config::Config;
use anyhow::Context;
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the generated token inside the state directory.
pub const TOKEN_FILE: &str = "admin-token";

/// The state directory: `state_dir`, else `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else
/// `$XDG_STATE_HOME/llmselect-proxy`, else `~/.local/state/llmselect-proxy`.
pub fn state_dir(config: &Config) -> PathBuf {
    if let Some(d) = &config.state_dir {
        return d.clone();
    }
    let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
    if let Some(d) = var("STATE_DIRECTORY") {
        // systemd may list several, separated by ':'
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        return PathBuf::from(first);
    }
    if let Some(d) = var("XDG_STATE_HOME") {
        return PathBuf::from(d).join("llmselect-proxy");
    }
    match var("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/llmselect-proxy"),
        None => std::env::temp_dir().join("llmselect-proxy"),
    }
}

/// The path of the generated token for `config`.
pub fn token_path(config: &Config) -> PathBuf {
    state_dir(config).join(TOKEN_FILE)
}

/// When no token is configured and the admin address is loopback, loads the generated token
/// (creating it on first use) into `config` and returns the file's path. `None` when a token is
/// configured or the address is not loopback (validation refuses that case).
pub fn ensure(config: &mut Config) -> anyhow::Result<Option<PathBuf>> {
    if config.admin_token.as_deref().is_some_and(|t| !t.is_empty()) {
        return Ok(None);
    }
    if !config.admin_addr().is_some_and(|a| a.ip().is_loopback()) {
        return Ok(None);
    }
    let path = token_path(config);
    let token = match read(&path)? {
        Some(t) => t,
        None => create(&path)?,
    };
    config.admin_token = Some(token);
    Ok(Some(path))
}

/// Reads a token file (trimmed); `None` when it does not exist or is empty.
pub fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => {
            // tighten a file someone loosened
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).ok();
            Ok(Some(t.trim().to_string()))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn create(path: &Path) -> anyhow::Result<String> {
    let dir = path.parent().context("token path has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(format!("{token}\n").as_bytes())?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("llmselect-token-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = Config {
            admin_token: None,
            state_dir: Some(dir.clone()),
            ..Config::default()
        };
        let path = ensure(&mut cfg).unwrap().expect("generated");
        let token = cfg.admin_token.clone().unwrap();
        assert_eq!(token.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let mut again = Config {
            admin_token: None,
            state_dir: Some(dir.clone()),
            ..Config::default()
        };
        ensure(&mut again).unwrap();
        assert_eq!(again.admin_token, Some(token));
        // a configured token is left alone, and a public address never gets one generated
        let mut set = Config {
            admin_token: Some("mine".into()),
            state_dir: Some(dir.clone()),
            ..Config::default()
        };
        assert!(ensure(&mut set).unwrap().is_none());
        let mut public = Config {
            admin_listen: "0.0.0.0:9090".into(),
            state_dir: Some(dir.clone()),
            ..Config::default()
        };
        assert!(ensure(&mut public).unwrap().is_none());
        assert!(public.admin_token.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
