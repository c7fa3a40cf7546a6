//! WebSockets through a restart: the demo's `GET /ws` echo (tungstenite over
//! grace's upgraded connections) against 20 tungstenite clients.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error, Message, WebSocket};

use common::*;

const T: Duration = Duration::from_secs(30);
const CLIENTS: usize = 20;
/// Each client sends at most this many messages before the restart.
const MAX_MESSAGES: usize = 5_000;

fn ws_connect(addr: SocketAddr) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(T)).unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://{addr}/ws"), stream).expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// What one client saw.
struct Seen {
    sent: Vec<String>,
    echoed: Vec<String>,
    close_code: Option<CloseCode>,
    old_alive_at_close: bool,
    after: String,
    /// `/pid` of whoever served the reconnection.
    after_pid: u32,
}

/// Sends numbered messages one at a time, each after the echo of the one
/// before, until the server closes; then reconnects and echoes once more.
fn client(i: usize, addr: SocketAddr, old: u32, echoes: Arc<AtomicUsize>) -> Seen {
    let mut ws = ws_connect(addr);
    let mut seen = Seen {
        sent: Vec::new(),
        echoed: Vec::new(),
        close_code: None,
        old_alive_at_close: false,
        after: String::new(),
        after_pid: 0,
    };
    'talk: for n in 0..MAX_MESSAGES {
        let m = format!("client {i} message {n}");
        if ws.send(Message::text(m.clone())).is_err() {
            break;
        }
        seen.sent.push(m);
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    seen.echoed.push(t.to_string());
                    echoes.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Message::Close(frame)) => {
                    // The old generation sends its close and waits for ours:
                    // it cannot have exited yet.
                    seen.old_alive_at_close = process_running(old);
                    seen.close_code = frame.map(|f| f.code);
                    break 'talk;
                }
                Ok(_) => {}
                Err(e) => panic!("client {i}: {e}"),
            }
        }
        // Paced: 20 clients, not 20 busy loops.
        std::thread::sleep(Duration::from_millis(2));
    }
    // Complete the closing handshake (tungstenite replies to the close).
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => break,
            Err(e) => panic!("client {i}: closing: {e}"),
        }
    }
    // And again, to whoever serves now.
    let mut ws = ws_connect(addr);
    ws.send(Message::text(format!("client {i} is back")))
        .unwrap();
    if let Ok(Message::Text(t)) = ws.read() {
        seen.after = t.to_string();
    }
    let _ = ws.close(None);
    seen.after_pid = parse_pid_gen(&get(addr, "/pid").unwrap().body_str()).0;
    seen
}

/// The old generation's drain-start line with its counts (the parked set
/// logs its own "draining N idle connection(s)" line, in either order).
fn drain_start_line(s: &Server, pid: u32) -> String {
    let mut from = 0;
    loop {
        let (i, line) = s.log.wait_line(&format!("[{pid}] draining"), from, T);
        if !line.contains("idle connection(s)") {
            return line;
        }
        from = i + 1;
    }
}

/// The old generation's last drain line, with its counts (an earlier one
/// says it stays for the probation).
fn final_drain_line(s: &Server, pid: u32) -> String {
    let mut from = 0;
    loop {
        let (i, line) = s.log.wait_line(&format!("[{pid}] drained in"), from, T);
        if line.contains("open at start") {
            return line;
        }
        from = i + 1;
    }
}

#[test]
fn twenty_websockets_are_closed_with_1012_at_a_restart_and_reconnect() {
    let mut s = Server::start(&[]);
    let pid0 = s.first_pid();
    let echoes = Arc::new(AtomicUsize::new(0));
    let addr = s.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let echoes = echoes.clone();
            std::thread::spawn(move || client(i, addr, pid0, echoes))
        })
        .collect();
    // Every client is talking before the restart.
    wait_for("5 echoes per client", T, || {
        (echoes.load(Ordering::Relaxed) >= 5 * CLIENTS).then_some(())
    });
    let before = Instant::now();
    Server::signal(pid0, libc::SIGUSR2);
    let seen: Vec<Seen> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    eprintln!(
        "{CLIENTS} clients closed and reconnected {:?} after SIGUSR2; {} echoes before",
        before.elapsed(),
        seen.iter().map(|s| s.echoed.len()).sum::<usize>()
    );
    let (pid1, _) = s.pid_gen();
    assert_ne!(pid1, pid0);
    for (i, c) in seen.iter().enumerate() {
        assert_eq!(
            c.close_code,
            Some(CloseCode::Restart),
            "client {i}: close code"
        );
        assert!(
            c.old_alive_at_close,
            "client {i}: the close came before the old exit"
        );
        // Every echo is the message sent, in order, once; at most the one
        // message in flight when the close came went unanswered.
        assert!(!c.echoed.is_empty(), "client {i} echoed nothing");
        assert_eq!(c.echoed[..], c.sent[..c.echoed.len()], "client {i}: echoes");
        assert!(
            c.sent.len() - c.echoed.len() <= 1,
            "client {i}: lost echoes"
        );
        assert_eq!(c.after, format!("client {i} is back"), "client {i}: after");
        assert_ne!(
            c.after_pid, pid0,
            "client {i} reconnected to the new generation"
        );
    }
    // The old generation counted them as upgraded, and drained cleanly.
    let draining = drain_start_line(&s, pid0);
    assert!(
        draining.contains(&format!("{CLIENTS} upgraded")),
        "{draining}"
    );
    let drained = final_drain_line(&s, pid0);
    assert!(
        drained.contains(&format!("{CLIENTS} upgraded")),
        "{drained}"
    );
    assert!(drained.contains(" 0 forced"), "{drained}");
    assert_eq!(s.wait_first(T), Some(0));
}

#[test]
fn a_websocket_is_forced_closed_at_the_stop_timeout() {
    // A client that ignores the close frame is shut down with the rest at
    // the stop timeout, and the old process still exits 0.
    let mut s = Server::start(&["--stop-timeout-ms", "1500"]);
    let pid0 = s.first_pid();
    let stream = TcpStream::connect(s.addr).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let raw = stream.try_clone().unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{}/ws", s.addr), stream).unwrap();
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hi"));
    Server::signal(pid0, libc::SIGUSR2);
    // Read raw bytes (so no close reply is sent) until the server's end.
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let mut raw = raw;
    loop {
        match std::io::Read::read(&mut raw, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "closed after {waited:?}"
    );
    let drained = final_drain_line(&s, pid0);
    assert!(
        drained.contains("1 upgraded") && drained.contains("1 forced"),
        "{drained}"
    );
    assert_eq!(s.wait_first(T), Some(0));
}
