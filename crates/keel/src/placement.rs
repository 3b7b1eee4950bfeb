//! Which VMs of a boot start, and on which host CPU; Keel's final status;
//! the `xl list`-like status table. Pure logic, tested on the host; the
//! hypervisor (`hosting.rs`) feeds it the configurations and the machine.
//!
//! Each vCPU goes to the least loaded host CPU its VM's `cpus` allows
//! (the fewest vCPUs placed there so far, the lowest number on a tie);
//! vCPUs that share a CPU are time-sliced by the scheduler (`run_queue`),
//! so more VMs than CPUs all start. A vCPU stays on its CPU.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// What placement needs of one VM configuration.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub name: &'a str,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// `cpus`: bit N allows host CPU N; `None` allows every CPU.
    pub cpus: Option<u64>,
}

/// Status of a VM that could not start (as Keel's status when a single VM
/// cannot start; docs/ARCHITECTURE.md "Exit status").
pub const NOT_STARTED_STATUS: u8 = 122;

/// For each request, in order: the host CPUs its vCPUs run on (vCPU n on
/// the n-th), or why the VM does not start (naming the VM and the key). One VM's refusal never
/// keeps another from starting; no VM is refused for CPUs being busy. `host_cpus` CPUs are numbered 0..host_cpus;
/// `free_mib` is the RAM free for guests.
pub fn place(
    requests: &[Request<'_>],
    host_cpus: usize,
    free_mib: u64,
) -> Vec<Result<Vec<usize>, String>> {
    let mut load = [0u32; 64];
    let mut out = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        out.push(place_one(requests, i, r, host_cpus, free_mib, &mut load));
    }
    out
}

fn place_one(
    requests: &[Request<'_>],
    i: usize,
    r: &Request<'_>,
    host_cpus: usize,
    free_mib: u64,
    load: &mut [u32; 64],
) -> Result<Vec<usize>, String> {
    let name = r.name;
    if let Some(first) = requests[..i].iter().position(|o| o.name == name) {
        return Err(format!(
            "VM '{name}' (configuration {}): name = \"{name}\" is already the name of configuration {}; every VM needs its own name",
            i + 1,
            first + 1
        ));
    }
    let cpus = host_cpus.min(64);
    if r.vcpus as usize > cpus {
        return Err(format!(
            "VM '{name}': vcpus = {}, but this machine has {cpus} CPU{}",
            r.vcpus,
            if cpus == 1 { "" } else { "s" }
        ));
    }
    if u64::from(r.memory_mib) > free_mib {
        return Err(format!(
            "VM '{name}': memory = {}, but this machine has {free_mib} MiB free for guests",
            r.memory_mib
        ));
    }
    let all = if cpus == 64 {
        u64::MAX
    } else {
        (1u64 << cpus) - 1
    };
    let allowed = r.cpus.unwrap_or(all);
    if allowed & !all != 0 {
        let absent = (allowed & !all).trailing_zeros();
        return Err(format!(
            "VM '{name}': cpus names CPU {absent}, but this machine has CPUs 0 to {}",
            cpus - 1
        ));
    }
    if allowed == 0 {
        return Err(format!("VM '{name}': cpus names no CPU"));
    }
    // A VM's vCPUs go to different CPUs while its `cpus` allows.
    let mut mine = 0u64;
    let mut placed = Vec::with_capacity(r.vcpus.max(1) as usize);
    for _ in 0..r.vcpus.max(1) {
        let fresh = if allowed & !mine != 0 {
            allowed & !mine
        } else {
            allowed
        };
        let cpu = (0..cpus)
            .filter(|&c| fresh & (1 << c) != 0)
            .min_by_key(|&c| (load[c], c))
            .unwrap_or(0);
        load[cpu] += 1;
        mine |= 1 << cpu;
        placed.push(cpu);
    }
    Ok(placed)
}

/// Keel's status when every VM has ended: the first non-zero status in
/// configuration order, 0 when every VM ended with 0 (powered off).
pub fn final_status(statuses: &[u8]) -> u8 {
    statuses.iter().copied().find(|&s| s != 0).unwrap_or(0)
}

/// A VM's line in the status table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row<'a> {
    pub name: &'a str,
    /// The host CPU its first vCPU runs on, if it started.
    pub cpu: Option<usize>,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub state: &'a str,
    pub exits: u64,
    /// Host CPU time its vCPUs have had together (`sched::cpu_time_ns`), ms.
    pub cpu_ms: u64,
}

/// The table, one line per VM, like `xl list` with Keel's columns.
pub fn table(rows: &[Row<'_>]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<20} {:>3} {:>5} {:>9} {:<12} {:>12} {:>10}",
        "Name", "CPU", "VCPUs", "Mem(MiB)", "State", "Exits", "Time(s)"
    );
    for r in rows {
        let cpu = r.cpu.map_or(String::from("-"), |c| format!("{c}"));
        let _ = writeln!(
            t,
            "{:<20} {:>3} {:>5} {:>9} {:<12} {:>12} {:>6}.{:03}",
            r.name,
            cpu,
            r.vcpus,
            r.memory_mib,
            r.state,
            r.exits,
            r.cpu_ms / 1000,
            r.cpu_ms % 1000
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn req(name: &str) -> Request<'_> {
        Request {
            name,
            vcpus: 1,
            memory_mib: 64,
            cpus: None,
        }
    }

    #[test]
    fn each_vm_gets_its_own_cpu_and_refusals_leave_the_others() {
        let mut dup = req("a");
        dup.memory_mib = 32;
        let mut big = req("big");
        big.vcpus = 4;
        let mut pinned = req("pinned");
        pinned.cpus = Some(0b1000);
        let mut fat = req("fat");
        fat.memory_mib = 4096;
        let r = place(&[req("a"), dup, big, pinned, fat, req("b")], 2, 1000);
        assert_eq!(r[0], Ok(vec![0]));
        let e = r[1].as_ref().unwrap_err();
        assert!(
            e.contains("VM 'a'") && e.contains("name = \"a\"") && e.contains("configuration 1"),
            "{e}"
        );
        let e = r[2].as_ref().unwrap_err();
        assert!(
            e.contains("VM 'big'") && e.contains("vcpus = 4") && e.contains("2 CPUs"),
            "{e}"
        );
        let e = r[3].as_ref().unwrap_err();
        assert!(
            e.contains("VM 'pinned'") && e.contains("cpus names CPU 3"),
            "{e}"
        );
        let e = r[4].as_ref().unwrap_err();
        assert!(
            e.contains("VM 'fat'") && e.contains("memory = 4096") && e.contains("1000 MiB"),
            "{e}"
        );
        assert_eq!(r[5], Ok(vec![1]));
    }

    #[test]
    fn more_vms_than_cpus_share_the_least_loaded_and_pinning_picks_the_cpu() {
        let mut p = req("p");
        p.cpus = Some(0b10);
        let r = place(&[p, req("x"), req("y"), req("z")], 2, 1000);
        assert_eq!(r[0], Ok(vec![1]));
        assert_eq!(r[1], Ok(vec![0]));
        // Both CPUs carry one vCPU: the lower number on the tie.
        assert_eq!(r[2], Ok(vec![0]));
        assert_eq!(r[3], Ok(vec![1]));
        // Two VMs pinned to the same CPU both start there.
        let mut a = req("a");
        a.cpus = Some(0b1);
        let mut b = req("b");
        b.cpus = Some(0b1);
        let r = place(&[a, b], 2, 1000);
        assert_eq!(r, [Ok(vec![0]), Ok(vec![0])]);
        let mut none = req("none");
        none.cpus = Some(0);
        let e = place(&[none], 2, 1000).remove(0).unwrap_err();
        assert!(e.contains("VM 'none'") && e.contains("cpus"), "{e}");
    }

    #[test]
    fn a_vm_spreads_its_vcpus_and_shares_when_pinned_to_fewer() {
        let mut two = req("two");
        two.vcpus = 2;
        let mut three = req("three");
        three.vcpus = 3;
        let mut pinned = req("pinned");
        pinned.vcpus = 2;
        pinned.cpus = Some(0b1010);
        let mut squeezed = req("squeezed");
        squeezed.vcpus = 2;
        squeezed.cpus = Some(0b1);
        // 4 CPUs: "two" takes 0 and 1; "three" the idle 2 and 3, then 0;
        // "pinned" 3 and 1 (1 vCPU each, the lower first: 1 then 3);
        // "squeezed" both vCPUs on CPU 0.
        let r = place(&[two, three, pinned, squeezed, req("one")], 4, 1000);
        assert_eq!(r[0], Ok(vec![0, 1]));
        assert_eq!(r[1], Ok(vec![2, 3, 0]));
        assert_eq!(r[2], Ok(vec![1, 3]));
        assert_eq!(r[3], Ok(vec![0, 0]));
        // Loads now 0:4 1:2 2:1 3:2.
        assert_eq!(r[4], Ok(vec![2]));
    }

    #[test]
    fn final_status_is_the_first_failure_in_configuration_order() {
        assert_eq!(final_status(&[0, 0]), 0);
        assert_eq!(final_status(&[0, 125, 126]), 125);
        assert_eq!(final_status(&[]), 0);
    }

    #[test]
    fn table_has_a_line_per_vm() {
        let t = table(&[Row {
            name: "a",
            cpu: Some(1),
            vcpus: 1,
            memory_mib: 64,
            state: "crashed",
            exits: 1234,
            cpu_ms: 2050,
        }]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("Name"));
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cols, ["a", "1", "1", "64", "crashed", "1234", "2.050"]);
    }
}
