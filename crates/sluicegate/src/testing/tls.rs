//! A tansu broker reached over TLS, for tests of clients' TLS settings.
//!
//! tansu 0.6.0 cannot serve TLS itself: its `--cert` and `--key` options are declared as
//! mutually exclusive (one clap argument group), and it needs both. So the broker listens in
//! plain TCP on one port and advertises another, where a TLS terminator of this process
//! (native-tls, i.e. OpenSSL) forwards the bytes unchanged: every client connection, bootstrap
//! and per-broker alike, is TLS. The certificate authority and the server certificate (for
//! `127.0.0.1`) are made with the `openssl` command at start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tokio::net::{TcpListener, TcpStream};

use super::tansu::{free_port, start, Setup, TansuBroker};

/// A tansu broker behind a TLS terminator, started by [`tansu_with_tls`].
#[derive(Debug)]
pub struct TlsTansu {
    bootstrap_servers: String,
    ca_location: PathBuf,
    broker: TansuBroker,
}

impl TlsTansu {
    /// The `bootstrap.servers` value: the TLS port.
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap_servers.clone()
    }

    /// The certificate authority that signed the broker's certificate (PEM), for
    /// `ssl.ca.location`.
    pub fn ca_location(&self) -> &Path {
        &self.ca_location
    }

    /// The broker behind the terminator (its directory holds the certificates too).
    pub fn broker(&self) -> &TansuBroker {
        &self.broker
    }
}

/// The TLS-fronted tansu broker of this test binary, started on first use.
///
/// # Panics
///
/// As [`tansu()`](super::tansu()), or if the certificates cannot be made (the `openssl`
/// command is needed) or the terminator cannot start.
pub fn tansu_with_tls() -> &'static TlsTansu {
    static TANSU: OnceLock<Result<TlsTansu, String>> = OnceLock::new();
    match TANSU.get_or_init(start_with_tls) {
        Ok(broker) => broker,
        Err(message) => panic!("{message}"),
    }
}

fn start_with_tls() -> Result<TlsTansu, String> {
    let tls_port = free_port()?;
    let broker = start(&Setup {
        advertised_port: Some(tls_port),
        ..Setup::default()
    })?;
    let dir = broker.dir().join("tls");
    make_certificates(&dir)?;
    let read =
        |file: &str| std::fs::read(dir.join(file)).map_err(|e| format!("cannot read {file}: {e}"));
    let identity = native_tls::Identity::from_pkcs8(&read("server.pem")?, &read("server.key")?)
        .map_err(|e| format!("the server certificate: {e}"))?;
    let acceptor =
        native_tls::TlsAcceptor::new(identity).map_err(|e| format!("a TLS acceptor: {e}"))?;
    let upstream = broker.bootstrap_servers();
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sluicegate-tls-terminator".into())
        .spawn(move || terminate_tls(tls_port, acceptor.into(), upstream, ready))
        .map_err(|e| format!("cannot start the TLS terminator: {e}"))?;
    started
        .recv()
        .map_err(|_| "the TLS terminator stopped at start".to_string())??;
    Ok(TlsTansu {
        bootstrap_servers: format!("127.0.0.1:{tls_port}"),
        ca_location: dir.join("ca.pem"),
        broker,
    })
}

/// A certificate authority and a server certificate for 127.0.0.1 that it signed, in `dir`.
fn make_certificates(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
        .map_err(|e| format!("cannot write the certificate extension: {e}"))?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=sluicegate test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    ];
    for args in steps {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("cannot run openssl (install it): {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "openssl {} failed: {}",
                args[0],
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(())
}

/// Accepts TLS on `port` and forwards each connection's bytes to `upstream`, for as long as
/// the test process runs.
fn terminate_tls(
    port: u16,
    acceptor: tokio_native_tls::TlsAcceptor,
    upstream: String,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(format!("a runtime for the TLS terminator: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => listener,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot listen on 127.0.0.1:{port}: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A client that fails the handshake (an untrusted certificate) just goes away.
                let Ok(mut client) = acceptor.accept(client).await else {
                    return;
                };
                if let Ok(mut broker) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                }
            });
        }
    });
}
