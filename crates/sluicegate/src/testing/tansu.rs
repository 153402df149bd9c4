//! One tansu broker process per test binary.

use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use std::{env, fs, panic, thread};

/// How long [`tansu()`] waits for the broker to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs tansu (`"$@"`) in `$dir`, polls every 200 ms whether the test process `$parent` is still
/// alive, and once it is gone stops tansu (SIGINT, SIGKILL after 5 s) and removes `$dir`, unless
/// a test panicked and left the `keep` marker there. Records tansu's exit status in
/// `$dir/exited` if tansu stops on its own.
const WATCHDOG: &str = r#"
parent=$1; dir=$2; shift 2
cd "$dir" || exit 1
"$@" >"$dir/tansu.log" 2>&1 </dev/null &
child=$!
while kill -0 "$parent" 2>/dev/null; do
  if [ -n "$child" ] && ! kill -0 "$child" 2>/dev/null; then
    wait "$child"; echo "$?" >"$dir/exited"; child=
  fi
  sleep 0.2
done
if [ -n "$child" ]; then
  # SIGINT: tansu stops at once (on SIGTERM it waits 5 s for connections to finish).
  kill -INT "$child" 2>/dev/null
  i=0
  while kill -0 "$child" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -9 "$child" 2>/dev/null
  wait "$child" 2>/dev/null
fi
[ -e "$dir/keep" ] || rm -rf "$dir"
"#;

/// A tansu broker process started by [`tansu()`], shared by every test of the test binary.
///
/// It listens on a free port of 127.0.0.1 and stores its data in sqlite in a temporary
/// directory. A watchdog stops it and removes the directory after the test process exits; if a
/// test panicked, the directory (with `tansu.log`) is kept and its path printed.
#[derive(Debug)]
pub struct TansuBroker {
    bootstrap_servers: String,
    dir: PathBuf,
    /// The `sh` watchdog that runs tansu. Never waited for: it outlives the test process.
    _watchdog: Child,
}

impl TansuBroker {
    /// The `bootstrap.servers` value that reaches the broker, e.g. `127.0.0.1:41234`.
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap_servers.clone()
    }

    /// The broker's working directory (sqlite database and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that receives the broker's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("tansu.log")
    }
}

/// The tansu broker of this test binary, started on first use.
///
/// The binary is `$SLUICEGATE_TANSU` if set, else `tansu` on `PATH`, else cargo's bin
/// directory (`$CARGO_HOME/bin`, default `~/.cargo/bin`). Its log level is
/// `$SLUICEGATE_TANSU_LOG` (a `RUST_LOG` filter), default `warn`.
///
/// # Panics
///
/// If tansu is not installed (run `scripts/test`, which installs it), or does not accept
/// connections within 30 s (the message includes the end of its log). A failed start is
/// remembered: later calls panic with the same message instead of trying again.
pub fn tansu() -> &'static TansuBroker {
    static TANSU: OnceLock<Result<TansuBroker, String>> = OnceLock::new();
    match TANSU.get_or_init(|| start(&Setup::default())) {
        Ok(broker) => broker,
        Err(message) => panic!("{message}"),
    }
}

/// A SCRAM-SHA-256 user of [`tansu_with_authentication`].
pub const SCRAM_USER: (&str, &str) = ("alice", "wonderland-7f3c");

/// A second tansu broker of this test binary that requires SASL authentication, started on
/// first use: user [`SCRAM_USER`] with mechanism SCRAM-SHA-256 (tansu 0.6.0 offers SCRAM
/// only, not PLAIN). Otherwise as [`tansu()`].
///
/// # Panics
///
/// As [`tansu()`], or if the user cannot be created.
pub fn tansu_with_authentication() -> &'static TansuBroker {
    static TANSU: OnceLock<Result<TansuBroker, String>> = OnceLock::new();
    match TANSU.get_or_init(start_with_users) {
        Ok(broker) => broker,
        Err(message) => panic!("{message}"),
    }
}

/// Creates the user on an unauthenticated broker over the database (tansu refuses user
/// changes from unauthenticated clients once it requires authentication), then runs the
/// broker that requires authentication over the same database.
fn start_with_users() -> Result<TansuBroker, String> {
    let binary = find_binary()?;
    let dir = tempfile::Builder::new()
        .prefix("sluicegate-tansu-users-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory for tansu: {e}"))?;
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let mut setup = Command::new(&binary)
        .current_dir(dir.path())
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start tansu ({}): {e}", binary.display()))?;
    let created = wait_for_port(port).and_then(|()| {
        let (name, password) = SCRAM_USER;
        let status = Command::new(&binary)
            .args([
                "user",
                "create",
                "--broker",
                &url,
                "--mechanism",
                "scram256",
            ])
            .args([name, password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run tansu user create: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("tansu user create failed: {status}"))
    });
    // SIGINT: tansu stops at once and leaves its database complete.
    let _ = Command::new("kill")
        .args(["-INT", &setup.id().to_string()])
        .status();
    let _ = setup.wait();
    created?;
    start(&Setup {
        extra_args: &["--authentication"],
        seed: Some(dir.path()),
        ..Setup::default()
    })
}

fn wait_for_port(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() >= deadline {
            return Err(format!(
                "tansu did not listen on {addr} within {START_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// How to start a tansu broker.
#[derive(Default)]
pub(super) struct Setup<'a> {
    /// More arguments of `tansu broker`.
    pub extra_args: &'a [&'a str],
    /// A directory whose database the broker starts from (a copy of it).
    pub seed: Option<&'a Path>,
    /// The port to advertise to clients instead of the one tansu listens on (a proxy's).
    pub advertised_port: Option<u16>,
}

/// Starts a tansu broker as `setup` says.
pub(super) fn start(setup: &Setup<'_>) -> Result<TansuBroker, String> {
    let Setup {
        extra_args,
        seed,
        advertised_port,
    } = *setup;
    let binary = find_binary()?;
    let dir = tempfile::Builder::new()
        .prefix("sluicegate-tansu-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory for tansu: {e}"))?
        // The watchdog removes it once the test process is gone (statics are never dropped).
        .keep();
    if let Some(seed) = seed {
        for file in ["tansu.db", "tansu.db-wal", "tansu.db-shm"] {
            if seed.join(file).exists() {
                fs::copy(seed.join(file), dir.join(file))
                    .map_err(|e| format!("cannot copy tansu's database {file}: {e}"))?;
            }
        }
    }
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{}", advertised_port.unwrap_or(port));
    let log_level = env::var("SLUICEGATE_TANSU_LOG").unwrap_or_else(|_| "warn".to_owned());
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("sluicegate-tansu-watchdog")
        .arg(std::process::id().to_string())
        .arg(&dir)
        .arg(&binary)
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &advertised])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .args(extra_args)
        .env("RUST_LOG", log_level)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own process group: a Ctrl-C on the test run must not kill the watchdog before it
        // has cleaned up.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start tansu ({}) under sh: {e}", binary.display()))?;
    keep_dir_on_panic(dir.clone());

    let broker = TansuBroker {
        bootstrap_servers: format!("127.0.0.1:{port}"),
        dir,
        _watchdog: watchdog,
    };
    wait_until_listening(&broker, port)?;
    Ok(broker)
}

pub(super) fn find_binary() -> Result<PathBuf, String> {
    if let Some(path) = env::var_os("SLUICEGATE_TANSU") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "SLUICEGATE_TANSU={} is not a file; unset it or point it at a tansu 0.6.0 binary",
                path.display()
            ))
        };
    }
    let on_path: Vec<PathBuf> = env::var_os("PATH")
        .map(|paths| {
            env::split_paths(&paths)
                .map(|dir| dir.join("tansu"))
                .collect()
        })
        .unwrap_or_default();
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let in_cargo_bin = cargo_home.map(|home| home.join("bin").join("tansu"));
    on_path
        .into_iter()
        .chain(in_cargo_bin)
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "tansu broker not found (looked at $SLUICEGATE_TANSU, PATH and $CARGO_HOME/bin): \
             run scripts/test, which installs tansu 0.6.0 with cargo install"
                .to_owned()
        })
}

/// A port that was free a moment ago (tansu binds it right after).
pub(super) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind 127.0.0.1:0 to find a free port for tansu: {e}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot read the free port for tansu: {e}"))
}

fn wait_until_listening(broker: &TansuBroker, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(status) = fs::read_to_string(broker.dir.join("exited")) {
            return Err(format!(
                "tansu exited with status {} before accepting connections on {addr}; \
                 end of {}:\n{}",
                status.trim(),
                broker.log_path().display(),
                log_tail(&broker.log_path())
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "tansu did not accept connections on {addr} within {START_TIMEOUT:?}; \
                 end of {}:\n{}",
                broker.log_path().display(),
                log_tail(&broker.log_path())
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The last 4 KiB of the log, or why it can't be read.
fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(4096)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("(cannot read the log: {e})"))
}

/// On the first panic of any test, leaves a `keep` marker so the watchdog keeps the broker's
/// directory, and says where the log is.
fn keep_dir_on_panic(dir: PathBuf) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        previous(info);
        if !REPORTED.swap(true, Ordering::SeqCst) {
            // Best effort: the panic is being reported anyway.
            let _ = fs::write(dir.join("keep"), b"");
            eprintln!(
                "tansu broker log (kept after the tests): {}",
                dir.join("tansu.log").display()
            );
        }
    }));
}
