//! Memory use of another process, read from `/proc/PID/status`.

use anyhow::Context as _;
use serde::Serialize;

/// Resident memory of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessMemory {
    /// Process id.
    pub pid: u32,
    /// Current resident set size (`VmRSS`), in bytes.
    pub rss_bytes: u64,
    /// Peak resident set size since the process started (`VmHWM`), in bytes.
    pub rss_peak_bytes: u64,
}

/// Reads the memory figures of process `pid`.
pub fn read_memory(pid: u32) -> anyhow::Result<ProcessMemory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    parse_status(pid, &status).with_context(|| format!("{path} has no VmRSS and VmHWM lines"))
}

fn parse_status(pid: u32, status: &str) -> Option<ProcessMemory> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some(kib * 1024)
        })
    };
    Some(ProcessMemory { pid, rss_bytes: field("VmRSS")?, rss_peak_bytes: field("VmHWM")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let status = "Name:\tstrata\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t9\n";
        assert_eq!(
            parse_status(7, status),
            Some(ProcessMemory { pid: 7, rss_bytes: 100 * 1024 * 1024, rss_peak_bytes: 200 * 1024 * 1024 })
        );
        assert_eq!(parse_status(7, "Name:\tkthreadd\n"), None);
    }

    #[test]
    fn reads_own_process() {
        let memory = read_memory(std::process::id()).unwrap();
        assert!(memory.rss_bytes > 0 && memory.rss_peak_bytes >= memory.rss_bytes);
    }
}
