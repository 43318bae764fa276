//! sd_notify: the daemon tells systemd READY, RELOADING (with MONOTONIC_USEC, which systemd
//! 257 requires), STOPPING and WATCHDOG over a real `$NOTIFY_SOCKET` datagram socket.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::base_config;
use crate::util::{Daemon, Receiver, Target, tempdir};

/// Collects the datagrams received so far, one string per datagram.
fn drain(sock: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

async fn wait_for(sock: &UnixDatagram, seen: &mut Vec<String>, needle: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        seen.extend(drain(sock));
        if seen.iter().any(|m| m.contains(needle)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_ready_reloading_watchdog_and_stopping() {
    let dir = tempdir();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let target = Target::start().await;
    let slack = Receiver::start().await;
    let cfg = base_config(&target, &slack.url("/slack"), &slack.url("/hook"));
    let notify = path.to_str().unwrap().to_string();
    let mut daemon = Daemon::start(
        dir.path(),
        &cfg,
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "1000000")],
    )
    .await;

    let mut seen = Vec::new();
    assert!(wait_for(&sock, &mut seen, "READY=1").await, "{seen:?}");
    // The watchdog interval is 1 s: pings come every half of it.
    seen.clear();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    seen.extend(drain(&sock));
    let pings = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 2, "{pings} watchdog pings in 1.6 s: {seen:?}");

    seen.clear();
    daemon.signal(Signal::SIGHUP);
    assert!(wait_for(&sock, &mut seen, "READY=1").await, "{seen:?}");
    let reloading = seen
        .iter()
        .find(|m| m.contains("RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1 in {seen:?}"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");

    seen.clear();
    let status = daemon.stop().await.expect("did not stop");
    assert!(status.success());
    seen.extend(drain(&sock));
    assert!(seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:?}");
}

/// A start after SIGKILL repairs the data file, says so, and asks systemd for more time
/// before READY (so that a large file's repair outlasts the unit's start timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_after_sigkill_repairs_the_data_file_with_more_time_asked() {
    let dir = tempdir();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let target = Target::start().await;
    let slack = Receiver::start().await;
    let cfg = base_config(&target, &slack.url("/slack"), &slack.url("/hook"));
    let notify = path.to_str().unwrap().to_string();
    let mut daemon = Daemon::start(dir.path(), &cfg, &[("NOTIFY_SOCKET", &notify)]).await;
    let mut seen = Vec::new();
    assert!(wait_for(&sock, &mut seen, "READY=1").await, "{seen:?}");
    daemon.kill9();

    seen.clear();
    daemon.spawn().await;
    assert!(wait_for(&sock, &mut seen, "READY=1").await, "{seen:?}");
    let extend = seen
        .iter()
        .position(|m| m.contains("EXTEND_TIMEOUT_USEC=30000000"))
        .unwrap_or_else(|| panic!("no EXTEND_TIMEOUT_USEC in {seen:?}"));
    let ready = seen.iter().position(|m| m.contains("READY=1")).unwrap();
    assert!(extend < ready, "{seen:?}");
    assert!(
        daemon
            .log_text()
            .contains("Repairing the data file: it was not closed cleanly"),
        "{}",
        daemon.log_text()
    );
    daemon.stop().await;
}
