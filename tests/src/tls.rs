//! Certificates made at test time: a private CA and leaf certificates it signs, written as PEM
//! files for the proxy's `[tls]` settings, and HTTPS clients that trust only that CA.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A test CA and the directory its leaf files are written to (removed on drop).
pub struct TestCa {
    ca: rcgen::Certificate,
    key: KeyPair,
    pub dir: PathBuf,
}

/// A leaf's files.
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "llmselect test CA");
        let ca = params.self_signed(&key).expect("CA certificate");
        let dir = std::env::temp_dir().join(format!("llmselect-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("certificate directory");
        TestCa { ca, key, dir }
    }

    /// The CA certificate (PEM), for clients.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Signs a leaf for `names` and writes it to `cert.pem` / `key.pem` in [`TestCa::dir`]
    /// (replacing what is there).
    pub fn write_leaf(&self, names: &[&str]) -> LeafFiles {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "llmselect edge");
        let cert = params
            .signed_by(&key, &self.ca, &self.key)
            .expect("leaf certificate");
        let files = LeafFiles {
            cert: self.dir.join("cert.pem"),
            key: self.dir.join("key.pem"),
        };
        // key first: a reload between the two writes sees a mismatched pair and keeps the old one
        write_replacing(&files.key, &key.serialize_pem());
        write_replacing(&files.cert, &cert.pem());
        files
    }

    /// An HTTPS client that trusts only this CA and resolves every name in `names` to `addr`.
    pub fn client(&self, names: &[&str], addr: SocketAddr) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.ca_pem().as_bytes()).expect("CA PEM");
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca);
        for n in names {
            b = b.resolve(n, addr);
        }
        b
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes through a temporary file and a rename, as certificate tools do.
fn write_replacing(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write PEM");
    std::fs::rename(&tmp, path).expect("replace PEM");
}

/// A free loopback port (bound, read and released; there is a small race until it is used).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
