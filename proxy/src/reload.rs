//! Configuration reload (SIGHUP): the new file is validated first (and its origins resolved), and
//! only when all is well are the parts that can change without a restart swapped in: the admin
//! token, the authentication cookies, `set_cookie` and the default stale windows, the origins and
//! their health checks (`live`), and the log level (swapped by the binary's logger). The cache
//! stays as it is. Everything else (listen addresses, store sizes, the bus...) needs a restart or
//! a binary upgrade: a reload reports those keys and keeps running with the old values. So does
//! going from one origin to several on a node started without a background runtime (no bus, one
//! origin).

use crate::cache::policy::PolicyOptions;
use crate::config::{Config, ConfigErrors};
use crate::live::Live;
use crate::upstreams::Upstreams;
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
pub const RELOADABLE: [&str; 11] = [
    "admin_token",
    "log_level",
    "cache.auth_cookies",
    "cache.set_cookie",
    "cache.default_stale_while_revalidate_secs",
    "cache.default_stale_if_error_secs",
    "upstream",
    "upstreams",
    "health_check.path",
    "health_check.interval_ms",
    "health_check.timeout_ms",
];

/// The keys that describe the origins.
fn is_upstream_key(key: &str) -> bool {
    key == "upstream" || key == "upstreams" || key.starts_with("health_check.")
}

/// Validates `new` and swaps its reloadable parts into `live`; `current` is what runs now and
/// `runtime` the background runtime (health checks of several origins), when there is one.
/// Returns the report and the configuration now in effect.
pub fn apply(
    live: &Live,
    current: &Config,
    new: &Config,
    runtime: Option<&tokio::runtime::Handle>,
) -> Result<(Report, Config), ConfigErrors> {
    new.validate()?;
    let changed = changed_keys(current, new);
    let several = new.upstreams().map(|u| u.len() > 1).unwrap_or(false);
    // origins: only with a runtime for their health checks when there are several
    let origins_reloadable = runtime.is_some() || !several;
    let upstreams = if origins_reloadable && changed.iter().any(|k| is_upstream_key(k)) {
        let built = Upstreams::new(new, runtime)
            .map_err(|e| ConfigErrors(vec![format!("upstreams: {e:#}")]))?;
        Some(built)
    } else {
        None
    };
    let mut report = Report::default();
    for key in changed {
        match RELOADABLE.iter().find(|r| **r == key) {
            Some(r) if origins_reloadable || !is_upstream_key(r) => report.applied.push(r),
            _ => report.needs_restart.push(key),
        }
    }
    // the admin token is redacted in `flatten`: compare it directly
    if current.admin_token != new.admin_token {
        report.applied.push("admin_token");
    }
    report.applied.sort_unstable();
    report.applied.dedup();
    let effective = applied(current, new, origins_reloadable);
    live.set_admin_token(new.admin_token.clone());
    live.set_policy(PolicyOptions::of(&effective));
    if let Some(u) = upstreams {
        live.set_upstreams(u);
    }
    Ok((report, effective))
}

/// The keys whose values differ (the admin token is redacted: see [`apply`]).
fn changed_keys(current: &Config, new: &Config) -> Vec<String> {
    let (old, next) = (flatten(current), flatten(new));
    let mut keys: Vec<&String> = old.iter().chain(&next).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| {
            let before = old.iter().find(|(k, _)| k == *key).map(|(_, v)| v);
            let after = next.iter().find(|(k, _)| k == *key).map(|(_, v)| v);
            before != after
        })
        .cloned()
        .collect()
}

/// `current` with the reloadable values of `new` (the origins too when `origins`): the
/// configuration in effect after a reload.
fn applied(current: &Config, new: &Config, origins: bool) -> Config {
    let mut c = current.clone();
    if origins {
        c.upstream = new.upstream.clone();
        c.upstreams = new.upstreams.clone();
        c.health_check = new.health_check.clone();
    }
    c.admin_token = new.admin_token.clone();
    c.log_level = new.log_level.clone();
    c.cache.auth_cookies = new.cache.auth_cookies.clone();
    c.cache.set_cookie = new.cache.set_cookie;
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

    fn live_for(c: &Config) -> Live {
        Live::new(
            c.admin_token.clone(),
            PolicyOptions::of(c),
            Upstreams::new(c, None).unwrap(),
        )
    }

    #[test]
    fn reloadable_parts_apply_and_the_rest_is_reported() {
        let current = Config::for_upstream("http://127.0.0.1:1");
        let live = live_for(&current);
        let mut new = current.clone();
        new.admin_token = Some("rotated".into());
        new.cache.auth_cookies = vec!["sid".into()];
        new.cache.default_stale_if_error_secs = 30;
        new.upstream = "http://127.0.0.1:2".into();
        new.listen = "127.0.0.1:2".into();
        let (report, _) = apply(&live, &current, &new, None).unwrap();
        assert_eq!(
            report.applied,
            vec![
                "admin_token",
                "cache.auth_cookies",
                "cache.default_stale_if_error_secs",
                "upstream"
            ]
        );
        assert_eq!(report.needs_restart, vec!["listen".to_string()]);
        assert_eq!(live.admin_token().as_deref(), Some("rotated"));
        assert_eq!(live.policy().auth_cookies, vec!["sid".to_string()]);
        assert_eq!(live.policy().default_sie_secs, 30);
        let addr = live.upstreams().select(&[]).unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:2");
        assert_eq!(applied(&current, &new, true).listen, current.listen);
    }

    #[test]
    fn several_origins_need_a_runtime() {
        let current = Config::for_upstream("http://127.0.0.1:1");
        let live = live_for(&current);
        let mut new = current.clone();
        new.upstreams = vec!["http://127.0.0.1:2".into(), "http://127.0.0.1:3".into()];
        let (report, _) = apply(&live, &current, &new, None).unwrap();
        assert_eq!(report.needs_restart, vec!["upstreams".to_string()]);
        assert!(report.applied.is_empty());
        assert_eq!(
            live.upstreams().select(&[]).unwrap().to_string(),
            "127.0.0.1:1"
        );
    }

    #[test]
    fn a_token_set_for_the_first_time_is_reported_once() {
        let mut current = Config::for_upstream("http://127.0.0.1:1");
        current.admin_token = None;
        let live = live_for(&current);
        let mut new = current.clone();
        new.admin_token = Some("t".into());
        let (report, _) = apply(&live, &current, &new, None).unwrap();
        assert_eq!(report.applied, vec!["admin_token"]);
        assert!(report.needs_restart.is_empty());
    }

    #[test]
    fn an_invalid_file_changes_nothing() {
        let current = Config::for_upstream("http://127.0.0.1:1");
        let live = live_for(&current);
        let mut bad = current.clone();
        bad.admin_token = Some("new".into());
        bad.cache.shards = 3;
        assert!(apply(&live, &current, &bad, None).is_err());
        // an origin that does not resolve is refused too
        let mut unresolvable = current.clone();
        unresolvable.admin_token = Some("new".into());
        unresolvable.upstream = "http://no-such-host.invalid:80".into();
        assert!(apply(&live, &current, &unresolvable, None).is_err());
        assert_eq!(live.admin_token().as_deref(), Some("test-admin-token"));
    }
}
