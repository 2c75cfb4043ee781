//! How a thread of work behind the acknowledgement path competes for the CPU.

/// The CPU class of a thread. The acknowledgement path (HTTP, decoding, the partition writers)
/// stays `Normal`; what only has to catch up (indexing, the lake, compressing sealed segments)
/// runs `Idle`, so that a burst of ingest takes the CPU it needs at once and the work behind it
/// follows when the burst ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreadPriority {
    /// As every other thread of the process.
    #[default]
    Normal,
    /// A smaller share among normal threads (`nice` 1 to 19): it still takes part of a busy CPU.
    Nice(i32),
    /// Linux's `SCHED_IDLE`: runs on CPU that no normal thread wants, and gives it up as soon as
    /// one wakes. A nice value only lowers a thread's share; a woken normal thread may still wait
    /// for a niced one's time slice, and on a busy two-core machine those waits, a few on every
    /// request, are what bounded small requests. Elsewhere than Linux: nice 19.
    Idle,
}

impl ThreadPriority {
    /// Applies this class to the calling thread; threads it starts afterwards inherit it.
    pub fn apply_to_current_thread(self) -> std::io::Result<()> {
        match self {
            ThreadPriority::Normal => Ok(()),
            ThreadPriority::Nice(n) => set_nice(n),
            ThreadPriority::Idle => set_idle(),
        }
    }
}

fn set_nice(n: i32) -> std::io::Result<()> {
    // On Linux a thread id names the thread alone.
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), n).map_err(std::io::Error::from)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_idle() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` reads one `sched_param` through the pointer, which points at a
    // live local for the whole call; pid 0 is the calling thread. No memory is shared with Rust.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn set_idle() -> std::io::Result<()> {
    set_nice(19)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A thread put in the idle class is in it (as `chrt -p` would show), and so are the threads
    /// it starts; the rest of the process is not.
    #[test]
    fn idle_applies_to_the_thread_and_what_it_starts() {
        #[allow(unsafe_code)]
        fn policy() -> i32 {
            // SAFETY: no arguments but the calling thread's id (0).
            unsafe { libc::sched_getscheduler(0) }
        }
        let (own, child) = std::thread::spawn(|| {
            ThreadPriority::Idle.apply_to_current_thread().unwrap();
            (policy(), std::thread::spawn(policy).join().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!((own, child), (libc::SCHED_IDLE, libc::SCHED_IDLE));
        assert_eq!(policy(), libc::SCHED_OTHER);
        ThreadPriority::Normal.apply_to_current_thread().unwrap();
        assert_eq!(policy(), libc::SCHED_OTHER);
    }
}
