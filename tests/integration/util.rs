//! The test harness: temporary directories, a child `sloguard` process, a target HTTP server
//! that can be switched between answers and refusing connections, and a receiver that records
//! what Slack or a webhook would have been sent, answering from a script.
//!
//! Everything listens on 127.0.0.1 only. Every child process is killed by PID when its guard
//! is dropped, so a failing test leaves nothing running.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const BIN: &str = env!("CARGO_BIN_EXE_sloguard");

/// Runs `sloguard` with `args` to completion (bounded by 60 s).
pub fn sloguard(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("SLOGUARD_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sloguard");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for sloguard"),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("sloguard {args:?} did not finish within 60 s");
        }
    }
}

/// A running `sloguard run` child process with its own config file and data directory.
pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    env: Vec<(String, String)>,
    starts: u32,
}

impl Daemon {
    /// Writes `config` into `dir/config.toml` and starts the daemon on it.
    pub async fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut d = Daemon {
            child: None,
            dir: dir.to_path_buf(),
            config: config_path,
            log: dir.join("daemon-1.log"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts: 0,
        };
        d.spawn().await;
        d
    }

    /// Starts the process (again), logging to a new file, and waits until it says it started.
    pub async fn spawn(&mut self) {
        self.starts += 1;
        self.log = self.dir.join(format!("daemon-{}.log", self.starts));
        let log = std::fs::File::create(&self.log).expect("create log");
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .env_remove("NOTIFY_SOCKET")
            .env("SLOGUARD_LOG", "info,sloguard=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn sloguard run"));
        assert!(
            self.wait_log("sloguard started", Duration::from_secs(20))
                .await,
            "daemon did not start; its log:\n{}",
            self.log_text()
        );
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// Everything the current process has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every log of every start of this daemon.
    pub fn all_logs(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("daemon-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the current log contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("send signal");
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits up to 15 s for a clean exit; returns the exit status.
    pub async fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// The status the receiver answered with.
    pub answered: u16,
    pub body: serde_json::Value,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct ReceiverState {
    script: VecDeque<(u16, Option<String>)>,
    default_status: u16,
    got: Vec<Received>,
}

/// A local HTTP server standing in for Slack or a webhook. It answers each request with the
/// next scripted status (and optional `Retry-After`), then with the default status.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    task: Option<JoinHandle<()>>,
}

/// A scripted status of 0 means: answer nothing for 30 s (the sender times out).
pub const HANG: u16 = 0;

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    request_headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let (status, retry_after) = {
        let mut s = state.lock().unwrap();
        let (status, retry_after) = s.script.pop_front().unwrap_or((s.default_status, None));
        s.got.push(Received {
            at: Instant::now(),
            answered: status,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            authorization: request_headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        });
        (status, retry_after)
    };
    let status = if status == HANG {
        tokio::time::sleep(Duration::from_secs(30)).await;
        200
    } else {
        status
    };
    // `Connection: close` on every answer, so that refusing connections takes effect at once.
    let mut headers = HeaderMap::new();
    headers.insert("connection", "close".parse().unwrap());
    if let Some(ra) = retry_after {
        headers.insert("retry-after", ra.parse().unwrap());
    }
    let text = match status {
        200 => "ok",
        404 => "no_service",
        429 => "rate_limited",
        _ => "rollup_error",
    };
    (StatusCode::from_u16(status).unwrap(), headers, text)
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            default_status: 200,
            ..Default::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut r = Receiver {
            addr,
            state,
            task: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = Router::new()
            .fallback(receive)
            .with_state(self.state.clone());
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// Stops listening: connections are refused, as when the receiver is down.
    pub async fn refuse(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port after [`Receiver::refuse`].
    pub async fn listen(&mut self) {
        if self.task.is_none() {
            let listener = TcpListener::bind(self.addr)
                .await
                .expect("rebind receiver port");
            self.serve(listener);
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these statuses (and `Retry-After` values).
    pub fn script(&self, answers: &[(u16, Option<&str>)]) {
        let mut s = self.state.lock().unwrap();
        s.script = answers
            .iter()
            .map(|(c, r)| (*c, r.map(str::to_string)))
            .collect();
    }

    pub fn set_default(&self, status: u16) {
        self.state.lock().unwrap().default_status = status;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }

    /// Requests that were answered with 2xx, i.e. deliveries.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    /// Waits until `n` deliveries arrived; returns them.
    pub async fn wait_delivered(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.delivered();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The probe target: answers `/health` with a switchable status, or refuses connections.
pub struct Target {
    pub addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    task: Option<JoinHandle<()>>,
}

/// How the target answers: status, body, and a delay before answering.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: String,
    delay: Duration,
}

impl Target {
    pub async fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut t = Target {
            addr,
            answer: Arc::new(Mutex::new(Answer {
                status: 200,
                body: "status".into(),
                delay: Duration::ZERO,
            })),
            task: None,
        };
        t.serve(listener);
        t
    }

    fn serve(&mut self, listener: TcpListener) {
        let answer = self.answer.clone();
        // `Connection: close` on every answer, so that refusing connections takes effect at once.
        let app = Router::new().fallback(move || {
            let a = answer.lock().unwrap().clone();
            async move {
                tokio::time::sleep(a.delay).await;
                (
                    StatusCode::from_u16(a.status).unwrap(),
                    [("connection", "close")],
                    a.body,
                )
            }
        });
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// Answers with this body from now on.
    pub fn set_body(&self, body: &str) {
        self.answer.lock().unwrap().body = body.to_string();
    }

    /// Waits this long before each answer from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.answer.lock().unwrap().delay = delay;
    }

    pub fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    /// Answers every request with `code`, listening again if it was refusing.
    pub async fn answer(&mut self, code: u16) {
        self.answer.lock().unwrap().status = code;
        if self.task.is_none() {
            let listener = TcpListener::bind(self.addr)
                .await
                .expect("rebind target port");
            self.serve(listener);
        }
    }

    /// Stops listening: connections are refused.
    pub async fn refuse(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A tmpfs mounted for the test's life, unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root (the test command runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    /// Writes a file until the filesystem is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0xa5u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Whatever is left is less than a block; take it too.
        let small = [0u8; 512];
        while f.write(&small).is_ok_and(|n| n > 0) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A port on 127.0.0.1 that was free a moment ago, for servers that must be told theirs.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sloguard-test-")
        .tempdir()
        .unwrap()
}

/// Checks a message text line by line; `~regex` lines are matched as regular expressions.
pub fn assert_text(actual: &str, expected: &[&str]) {
    let lines: Vec<&str> = actual.lines().collect();
    assert_eq!(
        lines.len(),
        expected.len(),
        "line count differs; got:\n{actual}"
    );
    for (got, want) in lines.iter().zip(expected) {
        match want.strip_prefix('~') {
            Some(re) => assert!(
                regex::Regex::new(&format!("^{re}$")).unwrap().is_match(got),
                "line {got:?} does not match {re:?}; whole text:\n{actual}"
            ),
            None => assert_eq!(got, want, "whole text:\n{actual}"),
        }
    }
}

/// The Slack text of a delivery, unescaped.
pub fn slack_text(r: &Received) -> String {
    r.body["text"]
        .as_str()
        .unwrap_or_default()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// An HTTPS target on 127.0.0.1 whose certificate is signed by a fresh test CA and expires
/// `days_left` days from now (negative: already expired). It answers every request `200 ok`.
pub struct TlsTarget {
    pub addr: SocketAddr,
    /// The test CA's certificate, PEM.
    pub ca_pem: String,
    task: JoinHandle<()>,
}

impl TlsTarget {
    pub async fn start(days_left: i64) -> TlsTarget {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls;

        let (ca_pem, cert, key) = test_certificate(&["127.0.0.1"], days_left);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsTarget { addr, ca_pem, task }
    }

    pub fn url(&self) -> String {
        format!("https://{}/health", self.addr)
    }
}

impl Drop for TlsTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real SMTP server (Debian's `python3-aiosmtpd`) on 127.0.0.1, storing each message it
/// receives in a Maildir. Killed by PID when dropped.
pub struct SmtpServer {
    pub port: u16,
    pub maildir: PathBuf,
    child: Child,
}

impl SmtpServer {
    pub async fn start(dir: &Path) -> SmtpServer {
        let port = free_port();
        let maildir = dir.join("maildir");
        // Debian's python3 has the aiosmtpd package; another python3 on PATH may not.
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd (apt install python3-aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SmtpServer {
            port,
            maildir,
            child,
        }
    }

    /// The raw messages received so far, oldest first.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        // Maildir names do not sort by arrival within a second; the modification time does.
        let mut paths: Vec<(std::time::SystemTime, PathBuf)> =
            std::fs::read_dir(self.maildir.join("new"))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                        .collect()
                })
                .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .filter_map(|(_, p)| std::fs::read(p).ok())
            .collect()
    }

    pub async fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a certificate it signed for `names`: (CA PEM, certificate, its key).
pub fn test_certificate(
    names: &[&str],
    days_left: i64,
) -> (String, rcgen::Certificate, rcgen::KeyPair) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let now = time::OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sloguard test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now + time::Duration::days(days_left);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert, key)
}

/// A private PostgreSQL cluster: `initdb` in a temporary directory, listening on 127.0.0.1 at
/// a free port with its socket in that directory, `pg_stat_statements` preloaded. Runs as the
/// `postgres` user when the tests run as root. The postmaster is stopped by PID on drop.
pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// A CA (PEM) that signed the server's certificate, when started with TLS.
    pub ca_pem: Option<String>,
}

/// The binaries of the newest installed PostgreSQL.
fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (tests/run.sh installs it)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(name)
}

/// The uid and gid to run PostgreSQL as: `postgres` when we are root, else ourselves.
fn pg_user() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("a postgres user (the postgresql package creates it)");
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

impl Postgres {
    /// Creates and starts a cluster; with `tls`, the server also offers TLS with a
    /// certificate for 127.0.0.1 and localhost signed by a test CA.
    pub async fn start(parent: &Path, tls: bool) -> Postgres {
        use std::os::unix::process::CommandExt;
        let dir = parent.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        let user = pg_user();
        if let Some((uid, gid)) = user {
            nix::unistd::chown(&dir, Some(uid.into()), Some(gid.into())).unwrap();
            // The temporary directory above must be enterable by postgres.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut initdb = Command::new(pg_bin("initdb"));
        initdb
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = 'top'\n\
             fsync = off\nsynchronous_commit = off\nmax_connections = 50\n",
            dir = dir.display()
        );
        let mut ca_pem = None;
        if tls {
            let (ca, cert, key) = test_certificate(&["127.0.0.1", "localhost"], 365);
            std::fs::write(data.join("server.crt"), cert.pem()).unwrap();
            std::fs::write(data.join("server.key"), key.serialize_pem()).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            if let Some((uid, gid)) = user {
                for f in ["server.crt", "server.key"] {
                    nix::unistd::chown(&data.join(f), Some(uid.into()), Some(gid.into())).unwrap();
                }
            }
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            ca_pem = Some(ca);
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        // Password logins over TCP for everyone but the admin, who is trusted.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let mut pg = Postgres {
            dir,
            port,
            child: None,
            ca_pem,
        };
        pg.spawn().await;
        pg
    }

    /// Starts the postmaster (again) and waits until it accepts connections.
    pub async fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .unwrap();
        let mut cmd = Command::new(pg_bin("postgres"));
        cmd.args(["-D", self.dir.join("data").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some((uid, gid)) = pg_user() {
            cmd.uid(uid).gid(gid);
        }
        // A process group of its own, so that `hang` reaches every backend.
        cmd.process_group(0);
        self.child = Some(cmd.spawn().expect("start postgres"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.admin().await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "postgres did not start: {}",
                std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Freezes the server and every backend (SIGSTOP to its process group): connections are
    /// accepted by the kernel and then nothing answers, as with a hung host.
    pub fn hang(&self) {
        self.signal_group(Signal::SIGSTOP);
    }

    /// Lets a server frozen by [`Postgres::hang`] run again.
    pub fn resume(&self) {
        self.signal_group(Signal::SIGCONT);
    }

    fn signal_group(&self, sig: Signal) {
        if let Some(child) = &self.child {
            let _ = nix::sys::signal::killpg(Pid::from_raw(child.id() as i32), sig);
        }
    }

    /// Stops the postmaster (fast shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A connection as the superuser, over TCP without TLS.
    pub async fn admin(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        // No test statement may hang the test.
        client
            .batch_execute("SET statement_timeout = '20s'")
            .await?;
        Ok(client)
    }

    /// A `postgres://` URL for `user` with `password`.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `sloguard query --format json` over `data` for the last `since`, with `extra` arguments
/// (`--agg`, `--step`), narrowed by `matchers`.
fn query_json(
    data: &str,
    metric: &str,
    since: &str,
    extra: &[&str],
    matchers: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        "query",
        metric,
        "--data-dir",
        data,
        "--since",
        since,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    for m in matchers {
        args.push("--match");
        args.push(m);
    }
    let out = sloguard(&args, &[]);
    // No series matched: the answer is the empty list, and the command says why and fails.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let nothing = out.status.code() == Some(1)
        && (stderr.starts_with("no series of") || stderr.starts_with("no metric"));
    assert!(out.status.success() || nothing, "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The values of every point of `metric` (narrowed by `matchers`) in the last hour, as
/// `sloguard query --format json` reads them from `data`.
pub fn query_values(data: &str, metric: &str, matchers: &[&str]) -> Vec<f64> {
    query_json(data, metric, "1h", &[], matchers)
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["points"].as_array().unwrap().clone())
        .map(|p| p[1].as_f64().unwrap())
        .collect()
}

/// One aggregate (`--agg`) per series of `metric` over the last `since`: (labels as JSON
/// text, value; NaN for none).
pub fn query_agg(
    data: &str,
    metric: &str,
    since: &str,
    agg: &str,
    matchers: &[&str],
) -> Vec<(String, f64)> {
    query_json(data, metric, since, &["--agg", agg], matchers)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["labels"].to_string(),
                s["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// PgBouncer in transaction mode in front of a [`Postgres`] cluster, standing in for
/// Supavisor's transaction mode (no named prepared statements survive a transaction).
pub struct PgBouncer {
    pub port: u16,
    child: Child,
}

impl PgBouncer {
    /// Starts PgBouncer for `user`/`password` in `dir` (runs as `postgres` when root).
    pub async fn start(dir: &Path, pg: &Postgres, user: &str, password: &str) -> PgBouncer {
        use std::os::unix::process::CommandExt;
        let dir = dir.join("pgbouncer");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        std::fs::write(
            dir.join("userlist.txt"),
            format!("\"{user}\" \"{password}\"\n"),
        )
        .unwrap();
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\npostgres = host=127.0.0.1 port={pg_port} dbname=postgres\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = scram-sha-256\nauth_file = {users}\npool_mode = transaction\n\
                 logfile = {log}\npidfile =\nignore_startup_parameters = extra_float_digits\n\
                 default_pool_size = 2\n",
                pg_port = pg.port,
                users = dir.join("userlist.txt").display(),
                log = dir.join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        if let Some((uid, gid)) = pg_user() {
            for p in [&dir, &ini, &dir.join("userlist.txt")] {
                nix::unistd::chown(p, Some(uid.into()), Some(gid.into())).unwrap();
            }
        }
        let mut cmd = Command::new("/usr/sbin/pgbouncer");
        cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = pg_user() {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .expect("start pgbouncer (tests/run.sh installs it)");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "pgbouncer did not start: {}",
                std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        PgBouncer { port, child }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
