//! The process's dealings with the operating system that need `unsafe` libc calls: the one
//! module allowed them. Giving freed memory back, and the open-files limit.
//!
//! ## Freed memory
//!
//! After a burst of connections (thousands of held long polls, a reconnect storm) closes,
//! glibc keeps the freed memory: it only returns the top of its heap on its own.
//! `malloc_trim(0)` also releases whole free pages inside the heap. Measured with
//! bench/longpoll.py (3,000 held, then closed): resident memory fell back from 189 MB to
//! 34 MB within one period, where without it it stayed at 189 MB.

use std::time::Duration;

/// Starts a thread that trims the heap every `every`. A no-op off glibc.
pub fn spawn_trimmer(every: Duration) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let _ = std::thread::Builder::new()
            .name("portico-trim".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                // SAFETY: malloc_trim is thread-safe and takes no pointers.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = every;
}

/// The open-files limit after start: what Portico could raise the soft limit to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub(crate) soft: u64,
    pub(crate) hard: u64,
    /// The soft limit at start, before raising it.
    pub was: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as HAProxy and Go servers do: a shell's
/// common default of 1024 would otherwise cap a proxy at a few hundred held connections
/// (each needs a client and a member descriptor).
pub fn raise_open_files_limit() -> std::io::Result<OpenFiles> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let was = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok(OpenFiles {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
        was,
    })
}

/// Descriptors that the listeners' `max_connections` can take at once: a client and a
/// member connection each, plus a margin for listeners, log files and health checks.
pub fn descriptors_needed(max_connections: impl Iterator<Item = usize>) -> u64 {
    max_connections
        .map(|n| n as u64 * 2)
        .fold(64u64, u64::saturating_add)
}

/// This machine's host name (the ACME order lock says who holds it), or "" if unknown.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let l = raise_open_files_limit().unwrap();
        assert_eq!(l.soft, l.hard);
        assert!(l.was <= l.soft);
    }

    #[test]
    fn each_connection_needs_a_client_and_a_member_descriptor() {
        assert_eq!(descriptors_needed([1000, 10].into_iter()), 64 + 2020);
    }
}
