//! The one fixture of the end-to-end suites: [`Stack::builder`] names the pieces a test needs,
//! [`StackBuilder::start`] starts them on ephemeral loopback ports, wired to each other:
//!
//! ```ignore
//! let s = Stack::builder()
//!     .fake_llm(FakeConfig::instant()) // the origin's provider base URLs point at the fake
//!     .bus()                           // a private nats-server: origin and proxy get `bus.url`
//!     .origin(|cfg| cfg.providers.sse_keepalive_ms = 200)
//!     .user("alice")                   // registered and logged in on the real origin
//!     .proxy(|_| {})                   // in front of the real origin, else the scripted one
//!     .start()
//!     .await;
//! s.proxy().request_as(s.user(), Method::GET, "/api/v1/conversations");
//! ```
//!
//! The configuration closures run after the stack's own wiring, so a test can override it.
//! [`Stack::start_proxy`] and [`Stack::start_origin`] add further nodes wired the same way (a
//! fleet, several origins on one database).

use llmselect_origin::Config as OriginConfig;
use llmselect_proxy::Config as ProxyConfig;

use crate::db::TestDb;
use crate::fake_llm::{spawn_fake_llm_with, FakeConfig, FakeLlm};
use crate::nats::TestNats;
use crate::origin::{spawn_origin_on, TestOrigin, TestUser};
use crate::proxy::{spawn_proxy, TestProxy};
use crate::scripted_origin::ScriptedOrigin;

type Customize<'a, C> = Box<dyn FnOnce(&mut C) + 'a>;

/// What [`Stack::builder`] will start; see the module documentation.
#[derive(Default)]
#[must_use = "nothing starts before .start().await"]
pub struct StackBuilder<'a> {
    database: Option<TestDb>,
    origin: Option<Customize<'a, OriginConfig>>,
    user: Option<String>,
    scripted: bool,
    fake_llm: Option<FakeConfig>,
    bus: bool,
    proxy: Option<Customize<'a, ProxyConfig>>,
}

impl<'a> StackBuilder<'a> {
    /// The real origin (`llmselect-origin`) on a fresh database; `customize` edits its test
    /// configuration (`Config::for_database`) after the stack's wiring.
    pub fn origin(mut self, customize: impl FnOnce(&mut OriginConfig) + 'a) -> Self {
        self.origin = Some(Box::new(customize));
        self
    }

    /// Runs the real origin on `db` instead of a fresh database.
    pub fn database(mut self, db: TestDb) -> Self {
        self.database = Some(db);
        self
    }

    /// Registers and logs in `username` on the real origin ([`Stack::user`]).
    pub fn user(mut self, username: &str) -> Self {
        self.user = Some(username.to_string());
        self
    }

    /// The scripted origin ([`ScriptedOrigin`]: programmed routes, counters, failure switches).
    pub fn scripted_origin(mut self) -> Self {
        self.scripted = true;
        self
    }

    /// The fake LLM provider; the real origin's four provider base URLs point at it.
    pub fn fake_llm(mut self, config: FakeConfig) -> Self {
        self.fake_llm = Some(config);
        self
    }

    /// A private nats-server with JetStream; the real origin and every proxy get its URL as
    /// `bus.url`.
    pub fn bus(mut self) -> Self {
        self.bus = true;
        self
    }

    /// The caching proxy in front of the real origin, or of the scripted origin when there is no
    /// real one; `customize` edits its test configuration (`Config::for_upstream`).
    pub fn proxy(mut self, customize: impl FnOnce(&mut ProxyConfig) + 'a) -> Self {
        self.proxy = Some(Box::new(customize));
        self
    }

    /// Starts everything: bus and fake first, then the origins, the user, the proxy.
    pub async fn start(self) -> Stack {
        init_logging();
        let bus = match self.bus {
            true => Some(TestNats::start().await),
            false => None,
        };
        let fake = match self.fake_llm {
            Some(config) => Some(spawn_fake_llm_with(config).await),
            None => None,
        };
        let mut stack = Stack {
            proxy: None,
            scripted: None,
            origin: None,
            user: None,
            fake,
            bus,
        };
        if let Some(customize) = self.origin {
            let db = match self.database {
                Some(db) => db,
                None => TestDb::new().await,
            };
            stack.origin = Some(stack.spawn_origin(db, customize).await);
        } else {
            assert!(self.database.is_none(), ".database() needs .origin()");
        }
        if let Some(username) = self.user {
            stack.user = Some(stack.origin().user(&username).await);
        }
        if self.scripted {
            stack.scripted = Some(ScriptedOrigin::start().await);
        }
        if let Some(customize) = self.proxy {
            stack.proxy = Some(stack.start_proxy(customize).await);
        }
        stack
    }
}

/// Running pieces of an end-to-end test; dropping it stops them (proxy first, bus last).
pub struct Stack {
    proxy: Option<TestProxy>,
    scripted: Option<ScriptedOrigin>,
    origin: Option<TestOrigin>,
    user: Option<TestUser>,
    fake: Option<FakeLlm>,
    bus: Option<TestNats>,
}

impl Stack {
    pub fn builder<'a>() -> StackBuilder<'a> {
        StackBuilder::default()
    }

    /// The real origin.
    pub fn origin(&self) -> &TestOrigin {
        self.origin.as_ref().expect("the stack has no .origin()")
    }

    /// The user of [`StackBuilder::user`].
    pub fn user(&self) -> &TestUser {
        self.user.as_ref().expect("the stack has no .user()")
    }

    /// The scripted origin.
    pub fn scripted(&self) -> &ScriptedOrigin {
        self.scripted
            .as_ref()
            .expect("the stack has no .scripted_origin()")
    }

    /// The proxy of [`StackBuilder::proxy`].
    pub fn proxy(&self) -> &TestProxy {
        self.proxy.as_ref().expect("the stack has no .proxy()")
    }

    /// The fake LLM provider.
    pub fn fake(&self) -> &FakeLlm {
        self.fake.as_ref().expect("the stack has no .fake_llm()")
    }

    /// The nats-server.
    pub fn bus(&self) -> &TestNats {
        self.bus.as_ref().expect("the stack has no .bus()")
    }

    /// The URL a proxy of this stack forwards to: the real origin, else the scripted one.
    pub fn upstream_url(&self) -> String {
        match (&self.origin, &self.scripted) {
            (Some(o), _) => o.base_url.clone(),
            (None, Some(s)) => s.url(),
            (None, None) => panic!("a proxy needs .origin() or .scripted_origin()"),
        }
    }

    /// Starts another proxy wired like the stack's own (same upstream, same bus): a fleet node.
    pub async fn start_proxy(&self, customize: impl FnOnce(&mut ProxyConfig)) -> TestProxy {
        let bus_url = self.bus.as_ref().map(TestNats::url);
        spawn_proxy(&self.upstream_url(), move |cfg| {
            if bus_url.is_some() {
                cfg.bus.url = bus_url;
            }
            customize(cfg);
        })
        .await
    }

    /// Starts another instance of the real origin on the same database, bus and fake.
    pub async fn start_origin(&self, customize: impl FnOnce(&mut OriginConfig)) -> TestOrigin {
        self.spawn_origin(self.origin().db.shared(), customize)
            .await
    }

    async fn spawn_origin(
        &self,
        db: TestDb,
        customize: impl FnOnce(&mut OriginConfig),
    ) -> TestOrigin {
        spawn_origin_on(db, |cfg| {
            if let Some(bus) = &self.bus {
                cfg.bus.url = Some(bus.url());
            }
            if let Some(fake) = &self.fake {
                let root = fake.base_url();
                let p = &mut cfg.providers;
                p.openai_base_url = format!("{root}/v1");
                p.mistral_base_url = format!("{root}/v1");
                p.anthropic_base_url = root.clone();
                p.gemini_base_url = format!("{root}/v1beta");
            }
            customize(cfg);
        })
        .await
    }

    /// Stops the proxy and the real origin and waits for them (dropping the stack does not wait).
    pub async fn shutdown(mut self) {
        if let Some(p) = self.proxy.take() {
            p.shutdown().await;
        }
        if let Some(o) = &self.origin {
            o.stop().await;
        }
    }
}

/// Logs (the proxy's access log, pingora's bridged `log` output, the origin's events) to the
/// test's output when `RUST_LOG` is set; a no-op when a subscriber is already installed.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
