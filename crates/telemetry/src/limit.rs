//! How much memory a process may use before it is killed: the limit a leak is
//! forecast against.

use serde::Serialize;

/// A memory limit and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryLimit {
    /// The limit in bytes.
    pub bytes: u64,
    /// Where it was read.
    pub source: LimitSource,
}

/// Where a [`MemoryLimit`] was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// The process's cgroup (v2 `memory.max` or v1 `memory.limit_in_bytes`).
    Cgroup,
    /// No cgroup limit: the machine's RAM (`MemTotal`).
    MachineRam,
}

/// The memory limit of process `pid` (this process when `None`): its cgroup's limit
/// when it has one below the machine's RAM, else the machine's RAM. `None` when
/// neither can be read (not Linux, or the process is gone).
#[must_use]
pub fn memory_limit(pid: Option<u32>) -> Option<MemoryLimit> {
    let ram = machine_ram_bytes();
    let proc_dir = pid.map_or_else(|| "self".to_owned(), |p| p.to_string());
    let cgroups = std::fs::read_to_string(format!("/proc/{proc_dir}/cgroup")).ok()?;
    let cgroup = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if id == "0" && controllers.is_empty() {
            read_limit(&format!("/sys/fs/cgroup/{path}/memory.max"))
        } else if controllers.split(',').any(|c| c == "memory") {
            read_limit(&format!(
                "/sys/fs/cgroup/memory/{path}/memory.limit_in_bytes"
            ))
            .or_else(|| read_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        } else {
            None
        }
    });
    match (cgroup, ram) {
        (Some(limit), Some(ram)) if limit < ram => Some(MemoryLimit {
            bytes: limit,
            source: LimitSource::Cgroup,
        }),
        (Some(limit), None) => Some(MemoryLimit {
            bytes: limit,
            source: LimitSource::Cgroup,
        }),
        (_, Some(ram)) => Some(MemoryLimit {
            bytes: ram,
            source: LimitSource::MachineRam,
        }),
        (None, None) => None,
    }
}

/// A cgroup limit file: a number of bytes, or `max` (no limit).
fn read_limit(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn machine_ram_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn this_process_has_a_limit_no_larger_than_the_machine() {
        let limit = memory_limit(None).unwrap();
        assert!(limit.bytes > 0);
        assert!(limit.bytes <= machine_ram_bytes().unwrap());
    }

    #[test]
    fn a_missing_process_has_none() {
        assert_eq!(memory_limit(Some(u32::MAX)), None);
    }
}
