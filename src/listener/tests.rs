//! Listeners on 127.0.0.1 and in temporary directories.

use super::*;

#[test]
fn parses_addresses() {
    assert_eq!(
        "127.0.0.1:8080".parse::<ListenAddr>().unwrap(),
        ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap())
    );
    assert_eq!(
        "[::1]:0".parse::<ListenAddr>().unwrap(),
        ListenAddr::Tcp("[::1]:0".parse().unwrap())
    );
    assert_eq!(
        "unix:/tmp/x.sock".parse::<ListenAddr>().unwrap(),
        ListenAddr::Unix("/tmp/x.sock".into())
    );
    assert!("unix:".parse::<ListenAddr>().is_err());
    assert!("nonsense".parse::<ListenAddr>().is_err());
}

#[test]
fn port_zero_reports_real_port() {
    let l = Listener::bind(&"127.0.0.1:0".parse().unwrap(), 16).unwrap();
    match l.local_addr() {
        ListenAddr::Tcp(a) => assert_ne!(a.port(), 0),
        other => panic!("unexpected {other}"),
    }
    assert!(sys::cloexec(l.as_raw_fd()).unwrap());
}

#[test]
fn unix_stale_replaced_live_refused() {
    let dir = std::env::temp_dir().join(format!("grace-ut-{}", sys::getpid()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let addr = ListenAddr::Unix(path.clone());
    // A stale socket file: bound then closed without unlink.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let live = Listener::bind(&addr, 16).expect("stale socket replaced");
    let err = Listener::bind(&addr, 16).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    live.close(true);
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn matching_port_zero() {
    let want: ListenAddr = "127.0.0.1:0".parse().unwrap();
    assert!(want.matches(&"127.0.0.1:4000".parse().unwrap()));
    assert!(!want.matches(&"127.0.0.2:4000".parse().unwrap()));
    let want: ListenAddr = "127.0.0.1:4001".parse().unwrap();
    assert!(!want.matches(&"127.0.0.1:4000".parse().unwrap()));
}
