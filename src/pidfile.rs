//! The pid file: written atomically (a temporary file in the same directory,
//! then `rename`), so a reader never sees a half-written pid; removed on exit
//! only by the process whose pid it still holds (after a handover it holds
//! the child's).
//!
//! Under a holder (see [`crate::holder`]) the pid written is the holder's:
//! the process a supervisor started, which never changes.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{notify, sys};

/// The pid this process writes: its holder's, or its own.
pub fn own_pid() -> u32 {
    notify::holder_pid().unwrap_or_else(sys::getpid)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", sys::getpid()));
    path.with_file_name(name)
}

/// Writes [`own_pid`] to `path` atomically.
pub fn write(path: &Path) -> io::Result<()> {
    let tmp = temp_path(path);
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("pid file {}: {e}", path.display()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{}", own_pid())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(ctx)?;
    log::debug!("[{}] wrote pid file {}", sys::getpid(), path.display());
    Ok(())
}

/// Reads the pid in `path`.
pub fn read(path: &Path) -> io::Result<u32> {
    let s = std::fs::read_to_string(path)?;
    s.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "pid file holds no pid"))
}

/// Removes `path` if it holds [`own_pid`]. True if removed.
pub fn remove_if_ours(path: &Path) -> bool {
    match read(path) {
        Ok(pid) if pid == own_pid() => match std::fs::remove_file(path) {
            Ok(()) => {
                log::debug!("[{}] removed pid file {}", sys::getpid(), path.display());
                true
            }
            Err(e) => {
                log::warn!(
                    "[{}] remove pid file {}: {e}",
                    sys::getpid(),
                    path.display()
                );
                false
            }
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_read_remove() {
        let dir = std::env::temp_dir().join(format!("grace-pid-{}", crate::sys::getpid()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.pid");
        super::write(&p).unwrap();
        assert_eq!(super::read(&p).unwrap(), crate::sys::getpid());
        std::fs::write(&p, "1\n").unwrap();
        assert!(!super::remove_if_ours(&p), "not ours: kept");
        super::write(&p).unwrap();
        assert!(super::remove_if_ours(&p));
        assert!(!p.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
