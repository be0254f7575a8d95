//! A small router: method + path segments → a named route template.
//!
//! To add a route, add a row to [`ROUTES`] with a new [`Handler`] variant and a match arm in
//! `routes::dispatch`. The row's name (`"GET /api/v1/conversations/{id}"`) labels metrics and logs.

use http::Method;

/// What a matched route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Health,
    Register,
    Login,
    Logout,
    Refresh,
    Me,
    ChangePassword,
    KeysList,
    KeysSave,
    KeysDelete,
    SystemKeys,
    Models,
    ConversationsList,
    ConversationCreate,
    ConversationGet,
    ConversationRename,
    ConversationDelete,
    ConversationExport,
    MessageCreate,
    ComparisonsList,
    ComparisonCreate,
    ComparisonVote,
    ComparisonDelete,
    Chat,
    ChatStream,
    Compare,
    CompareStream,
    CompareAnalyze,
    AdminCacheClear,
    AdminCacheStats,
    AdminHealthDetailed,
    AdminUsersList,
    AdminUserCreate,
    AdminUserUpdate,
    AdminUserDelete,
    AdminUserResetPassword,
}

/// Which rate limit (origin-api.md §2.7) applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateGroup {
    None,
    Api,
    Register,
    Login,
    Logout,
    Refresh,
}

#[derive(Debug)]
pub struct RouteDef {
    pub method: Method,
    /// Path template; `{id}` matches one segment, `{n}` one all-digit segment.
    pub pattern: &'static str,
    /// `"<METHOD> <pattern>"`, the label used in metrics and logs.
    pub name: &'static str,
    pub handler: Handler,
    pub rate: RateGroup,
}

macro_rules! route {
    ($method:ident, $pattern:literal, $handler:ident, $rate:ident) => {
        RouteDef {
            method: Method::$method,
            pattern: $pattern,
            name: concat!(stringify!($method), " ", $pattern),
            handler: Handler::$handler,
            rate: RateGroup::$rate,
        }
    };
}

pub static ROUTES: &[RouteDef] = &[
    route!(GET, "/health", Health, None),
    route!(POST, "/api/v1/auth/register", Register, Register),
    route!(POST, "/api/v1/auth/login", Login, Login),
    route!(POST, "/api/v1/auth/logout", Logout, Logout),
    route!(POST, "/api/v1/auth/refresh", Refresh, Refresh),
    route!(GET, "/api/v1/auth/me", Me, None),
    route!(POST, "/api/v1/auth/password", ChangePassword, Login),
    route!(GET, "/api/v1/keys", KeysList, Api),
    route!(POST, "/api/v1/keys", KeysSave, Api),
    route!(GET, "/api/v1/keys/system-keys", SystemKeys, Api),
    route!(DELETE, "/api/v1/keys/{id}", KeysDelete, Api),
    route!(GET, "/api/v1/models", Models, Api),
    route!(GET, "/api/v1/conversations", ConversationsList, Api),
    route!(POST, "/api/v1/conversations", ConversationCreate, Api),
    route!(GET, "/api/v1/conversations/{id}", ConversationGet, Api),
    route!(PATCH, "/api/v1/conversations/{id}", ConversationRename, Api),
    route!(
        DELETE,
        "/api/v1/conversations/{id}",
        ConversationDelete,
        Api
    ),
    route!(
        GET,
        "/api/v1/conversations/{id}/export",
        ConversationExport,
        Api
    ),
    route!(
        POST,
        "/api/v1/conversations/{id}/messages",
        MessageCreate,
        Api
    ),
    route!(GET, "/api/v1/comparisons", ComparisonsList, Api),
    route!(POST, "/api/v1/comparisons", ComparisonCreate, Api),
    route!(POST, "/api/v1/comparisons/{n}/vote", ComparisonVote, Api),
    route!(DELETE, "/api/v1/comparisons/{n}", ComparisonDelete, Api),
    route!(POST, "/api/v1/chat", Chat, Api),
    route!(POST, "/api/v1/chat/stream", ChatStream, Api),
    route!(POST, "/api/v1/compare", Compare, Api),
    route!(POST, "/api/v1/compare/stream", CompareStream, Api),
    route!(POST, "/api/v1/compare/analyze", CompareAnalyze, Api),
    route!(POST, "/api/v1/admin/cache/clear", AdminCacheClear, None),
    route!(GET, "/api/v1/admin/cache/stats", AdminCacheStats, None),
    route!(
        GET,
        "/api/v1/admin/health/detailed",
        AdminHealthDetailed,
        None
    ),
    route!(GET, "/api/v1/admin/users", AdminUsersList, None),
    route!(POST, "/api/v1/admin/users", AdminUserCreate, None),
    route!(PATCH, "/api/v1/admin/users/{n}", AdminUserUpdate, None),
    route!(DELETE, "/api/v1/admin/users/{n}", AdminUserDelete, None),
    route!(
        POST,
        "/api/v1/admin/users/{n}/password",
        AdminUserResetPassword,
        None
    ),
];

/// The outcome of routing one request.
#[derive(Debug)]
pub enum Routed {
    /// The route and its path parameters in order.
    Found(&'static RouteDef, Vec<String>),
    /// The path exists for other methods.
    MethodNotAllowed,
    NotFound,
}

fn match_path(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return Some(params),
            (Some(tp), Some(seg)) => {
                if tp == "{id}" {
                    if seg.is_empty() {
                        return None;
                    }
                    params.push(seg.to_string());
                } else if tp == "{n}" {
                    if seg.is_empty() || seg.len() > 18 || !seg.bytes().all(|b| b.is_ascii_digit())
                    {
                        return None;
                    }
                    params.push(seg.to_string());
                } else if tp != seg {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// `path` without trailing slashes (`/` stays `/`), as routes are matched.
fn normalise(path: &str) -> &str {
    if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    }
}

/// Routes `method path`; `HEAD` falls back to the `GET` route.
pub fn route(method: &Method, path: &str) -> Routed {
    let path = normalise(path);
    let mut path_exists = false;
    for def in ROUTES {
        if let Some(params) = match_path(def.pattern, path) {
            path_exists = true;
            if def.method == method || (method == Method::HEAD && def.method == Method::GET) {
                return Routed::Found(def, params);
            }
        }
    }
    if path_exists {
        Routed::MethodNotAllowed
    } else {
        Routed::NotFound
    }
}

/// True when some route has this path (for CORS preflights).
pub fn path_exists(path: &str) -> bool {
    let path = normalise(path);
    ROUTES.iter().any(|d| match_path(d.pattern, path).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_segments() {
        match route(&Method::GET, "/api/v1/conversations/abc") {
            Routed::Found(def, params) => {
                assert_eq!(def.name, "GET /api/v1/conversations/{id}");
                assert_eq!(params, vec!["abc"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            route(&Method::HEAD, "/api/v1/models"),
            Routed::Found(..)
        ));
        assert!(matches!(
            route(&Method::PUT, "/api/v1/models"),
            Routed::MethodNotAllowed
        ));
        assert!(matches!(
            route(&Method::DELETE, "/api/v1/comparisons/x1"),
            Routed::NotFound
        ));
        assert!(matches!(route(&Method::GET, "/nope"), Routed::NotFound));
    }

    #[test]
    fn route_names_are_unique() {
        let mut names: Vec<_> = ROUTES.iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ROUTES.len());
    }
}
