//! Configuration reload (SIGHUP): the new file is validated first, and only when it is valid are
//! the parts that can change without a restart swapped in: the admin token, the authentication
//! cookies and the default stale windows (`live`), and the log level (swapped by the binary's
//! logger). The cache stays as it is. Everything else (listen addresses, upstreams, store sizes,
//! the bus...) needs a restart or a binary upgrade: a reload reports those keys and keeps running
//! with the old values.

use crate::cache::policy::PolicyOptions;
use crate::config::{Config, ConfigErrors};
use crate::live::Live;
use serde_json::Value;

/// What a reload changed and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Reloadable keys whose value changed (now in effect).
    pub applied: Vec<&'static str>,
    /// Keys that changed but only take effect after a restart (ignored until then).
    pub needs_restart: Vec<String>,
}

/// The keys a reload applies.
pub const RELOADABLE: [&str; 5] = [
    "admin_token",
    "log_level",
    "cache.auth_cookies",
    "cache.default_stale_while_revalidate_secs",
    "cache.default_stale_if_error_secs",
];

/// Validates `new` and swaps its reloadable parts into `live`; `current` is what runs now.
pub fn apply(live: &Live, current: &Config, new: &Config) -> Result<Report, ConfigErrors> {
    new.validate()?;
    let (old, next) = (flatten(current), flatten(new));
    let mut report = Report::default();
    let mut keys: Vec<&String> = old.iter().chain(&next).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let before = old.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let after = next.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        if before == after {
            continue;
        }
        match RELOADABLE.iter().find(|r| **r == key) {
            Some(r) => report.applied.push(r),
            None => report.needs_restart.push(key.clone()),
        }
    }
    // the admin token is redacted in `flatten`: compare it directly
    if current.admin_token != new.admin_token {
        report.applied.push("admin_token");
    }
    report.applied.sort_unstable();
    report.applied.dedup();
    live.set_admin_token(new.admin_token.clone());
    live.set_policy(PolicyOptions::of(&applied(current, new)));
    Ok(report)
}

/// `current` with the reloadable values of `new`: the configuration in effect after a reload.
pub fn applied(current: &Config, new: &Config) -> Config {
    let mut c = current.clone();
    c.admin_token = new.admin_token.clone();
    c.log_level = new.log_level.clone();
    c.cache.auth_cookies = new.cache.auth_cookies.clone();
    c.cache.default_stale_while_revalidate_secs = new.cache.default_stale_while_revalidate_secs;
    c.cache.default_stale_if_error_secs = new.cache.default_stale_if_error_secs;
    c
}

/// Every leaf of the configuration as `section.key` → value.
fn flatten(c: &Config) -> Vec<(String, Value)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::to_value(c) {
        walk("", &v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloadable_parts_apply_and_the_rest_is_reported() {
        let current = Config::for_upstream("http://127.0.0.1:1");
        let live = Live::new(current.admin_token.clone(), PolicyOptions::of(&current));
        let mut new = current.clone();
        new.admin_token = Some("rotated".into());
        new.cache.auth_cookies = vec!["sid".into()];
        new.cache.default_stale_if_error_secs = 30;
        new.upstream = "http://127.0.0.1:2".into();
        let report = apply(&live, &current, &new).unwrap();
        assert_eq!(
            report.applied,
            vec![
                "admin_token",
                "cache.auth_cookies",
                "cache.default_stale_if_error_secs"
            ]
        );
        assert_eq!(report.needs_restart, vec!["upstream".to_string()]);
        assert_eq!(live.admin_token().as_deref(), Some("rotated"));
        assert_eq!(live.policy().auth_cookies, vec!["sid".to_string()]);
        assert_eq!(live.policy().default_sie_secs, 30);
        assert_eq!(applied(&current, &new).upstream, current.upstream);
    }

    #[test]
    fn a_token_set_for_the_first_time_is_reported_once() {
        let mut current = Config::for_upstream("http://127.0.0.1:1");
        current.admin_token = None;
        let live = Live::new(None, PolicyOptions::of(&current));
        let mut new = current.clone();
        new.admin_token = Some("t".into());
        let report = apply(&live, &current, &new).unwrap();
        assert_eq!(report.applied, vec!["admin_token"]);
        assert!(report.needs_restart.is_empty());
    }

    #[test]
    fn an_invalid_file_changes_nothing() {
        let current = Config::for_upstream("http://127.0.0.1:1");
        let live = Live::new(current.admin_token.clone(), PolicyOptions::of(&current));
        let mut bad = current.clone();
        bad.admin_token = Some("new".into());
        bad.cache.shards = 3;
        assert!(apply(&live, &current, &bad).is_err());
        assert_eq!(live.admin_token().as_deref(), Some("test-admin-token"));
    }
}
