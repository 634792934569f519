//! What a server's threads cost, read from the kernel's per-thread
//! accounting, and how many heap allocations they make.
//!
//! - CPU split into user and system time: fields 14 and 15 (`utime`,
//!   `stime`, in clock ticks of `sysconf(_SC_CLK_TCK)`, 10 ms) of
//!   `/proc/self/task/TID/stat`, summed over the threads whose name starts
//!   with a server's prefix (the bench names every runtime's threads). The
//!   kernel's io_uring workers (`iou-wrk-*`) are not counted: a socket op
//!   rarely reaches them, and the process-wide CPU clock, which the bench's
//!   headline figure comes from, includes them anyway. The values move in
//!   whole ticks of the kernel's accounting (4 ms at `CONFIG_HZ=250`,
//!   reported in 10 ms units), so read them over long windows.
//! - Context switches: `voluntary_ctxt_switches` and
//!   `nonvoluntary_ctxt_switches` of `/proc/self/task/TID/status`.
//! - Allocations: [`CountingAlloc`], installed as the bench binary's global
//!   allocator, counts every allocation of the threads that did not opt out
//!   with [`exclude_this_thread`] (the load client and the bench's main
//!   thread do).
//!
//! A snapshot before and after a batch, taken while only one server is
//! under load, gives that server's figures for the batch.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    collections::HashMap,
    fs,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// Counts of one group of threads at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadStats {
    /// Per thread id: user ticks, system ticks, voluntary and involuntary
    /// context switches.
    threads: HashMap<u32, [u64; 4]>,
}

/// The difference between two [`ThreadStats`]: what the threads did in
/// between. Threads that exited in between are lost (the benches' server
/// threads live as long as their runtime).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ThreadUsage {
    /// CPU time in user space.
    pub user: Duration,
    /// CPU time in the kernel.
    pub system: Duration,
    /// Voluntary context switches (the thread blocked).
    pub voluntary_switches: u64,
    /// Involuntary context switches (the thread was preempted).
    pub involuntary_switches: u64,
}

impl ThreadUsage {
    /// Adds `other`'s figures to these.
    pub fn merge(&mut self, other: &ThreadUsage) {
        self.user += other.user;
        self.system += other.system;
        self.voluntary_switches += other.voluntary_switches;
        self.involuntary_switches += other.involuntary_switches;
    }

    /// Context switches of both kinds.
    pub fn switches(&self) -> u64 {
        self.voluntary_switches + self.involuntary_switches
    }
}

impl ThreadStats {
    /// Reads the counts of every thread of this process whose name starts
    /// with `prefix`.
    pub fn read(prefix: &str) -> ThreadStats {
        let mut threads = HashMap::new();
        let Ok(dir) = fs::read_dir("/proc/self/task") else {
            return ThreadStats { threads };
        };
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let path = entry.path();
            let Ok(comm) = fs::read_to_string(path.join("comm")) else {
                continue;
            };
            let comm = comm.trim_end();
            if !comm.trim_end().starts_with(prefix) {
                continue;
            }
            if let Some(counts) = read_thread(&path) {
                threads.insert(tid, counts);
            }
        }
        ThreadStats { threads }
    }

    /// What the threads did since `earlier`. A thread born in between counts
    /// from zero.
    pub fn since(&self, earlier: &ThreadStats) -> ThreadUsage {
        let mut sum = [0u64; 4];
        for (tid, now) in &self.threads {
            let before = earlier.threads.get(tid).copied().unwrap_or_default();
            for i in 0..4 {
                sum[i] += now[i].saturating_sub(before[i]);
            }
        }
        let tick = clock_tick();
        ThreadUsage {
            user: tick * sum[0] as u32,
            system: tick * sum[1] as u32,
            voluntary_switches: sum[2],
            involuntary_switches: sum[3],
        }
    }
}

impl ThreadStats {
    /// The busiest thread's share of the CPU the threads used since
    /// `earlier` (user and system; 0 if they used none): 1/n for n
    /// threads that split the work evenly, 1 for one that did it all. How
    /// the kernel's `SO_REUSEPORT` hashing split a thread-per-core
    /// server's connections shows here, and it moves that server's CPU
    /// per request from run to run.
    pub fn busiest_share(&self, earlier: &ThreadStats) -> f64 {
        let used = |tid: &u32, now: &[u64; 4]| {
            let before = earlier.threads.get(tid).copied().unwrap_or_default();
            (now[0] + now[1]).saturating_sub(before[0] + before[1])
        };
        let (mut total, mut busiest) = (0u64, 0u64);
        for (tid, now) in &self.threads {
            let n = used(tid, now);
            total += n;
            busiest = busiest.max(n);
        }
        if total == 0 {
            0.0
        } else {
            busiest as f64 / total as f64
        }
    }
}

fn clock_tick() -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Duration::from_secs(1) / hz.max(1) as u32
}

/// utime, stime, voluntary and involuntary switches of one thread.
fn read_thread(path: &std::path::Path) -> Option<[u64; 4]> {
    let stat = fs::read_to_string(path.join("stat")).ok()?;
    // The name (field 2) is in parentheses and may hold spaces: count
    // fields from the last ')'. Field 3 (state) comes first after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime = fields.get(14 - 3)?.parse().ok()?;
    let stime = fields.get(15 - 3)?.parse().ok()?;
    let status = fs::read_to_string(path.join("status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .parse()
            .ok()
    };
    Some([
        utime,
        stime,
        field("voluntary_ctxt_switches:")?,
        field("nonvoluntary_ctxt_switches:")?,
    ])
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting allocations (`alloc`, `alloc_zeroed`,
/// and `realloc`, which may move) of every thread not excluded.
#[derive(Debug)]
pub struct CountingAlloc;

impl CountingAlloc {
    fn count() {
        // `try_with`: a thread's allocations while its locals are torn down
        // count too.
        if !EXCLUDED.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Relaxed);
        }
    }
}

// SAFETY: every call goes to `System` unchanged; counting allocates nothing.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations counted so far (0 unless [`CountingAlloc`] is the global
/// allocator).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Relaxed)
}

/// Stops counting the calling thread's allocations (the load client's, the
/// bench driver's).
pub fn exclude_this_thread() {
    EXCLUDED.with(|e| e.set(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_threads_cpu_and_switches() {
        std::thread::Builder::new()
            .name("stats-probe".into())
            .spawn(|| {
                let before = ThreadStats::read("stats-probe");
                assert_eq!(before.threads.len(), 1, "{before:?}");
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_millis(60) {
                    x = x.wrapping_add(std::hint::black_box(1));
                }
                std::thread::sleep(Duration::from_millis(5));
                let usage = ThreadStats::read("stats-probe").since(&before);
                assert!(
                    usage.user + usage.system >= Duration::from_millis(20),
                    "{usage:?}"
                );
                assert!(usage.voluntary_switches >= 1, "{usage:?}");
                assert_eq!(
                    ThreadStats::read("no-such-thread")
                        .since(&before)
                        .switches(),
                    0
                );
                x
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn the_busiest_share_is_the_top_threads_part_of_what_all_used() {
        let at = |counts: &[(u32, [u64; 4])]| ThreadStats {
            threads: counts.iter().copied().collect(),
        };
        let before = at(&[(1, [10, 10, 0, 0]), (2, [5, 5, 0, 0])]);
        // Thread 1 used 30 ticks since, thread 2 10, thread 3 (new) 20.
        let after = at(&[(1, [30, 20, 0, 0]), (2, [10, 10, 0, 0]), (3, [0, 20, 0, 0])]);
        assert!((after.busiest_share(&before) - 0.5).abs() < 1e-9);
        // An even split, and nothing used at all.
        let even = at(&[(1, [20, 20, 0, 0]), (2, [15, 15, 0, 0])]);
        assert!((even.busiest_share(&before) - 0.5).abs() < 1e-9);
        assert_eq!(before.busiest_share(&before), 0.0);
    }
}
