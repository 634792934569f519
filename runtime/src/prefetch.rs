//! Prefetch hints for the few places that chase pointers into lines
//! another core wrote last (a cancel's walk over its children, a registry
//! unlink writing its neighbours).
//!
//! A hint changes no result and never faults, whatever the address, so a
//! stale or freed pointer is fine to pass. The lines are about to be
//! *written* (a CAS, a link update), so the hint asks for them exclusive
//! (`PREFETCHW`) where the CPU has it: a plain prefetch fetches a shared
//! copy, and the write then waits for a second round trip to take it.
//! (`prfchw` is not a stable target feature, so the instruction is written
//! out and the CPU asked once through CPUID.)

/// Starts loading the cache line at `ptr` for writing.
#[inline(always)]
pub(crate) fn for_write<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_prefetchw() {
            // SAFETY: the CPU has PREFETCHW (CPUID, below); a prefetch
            // reads and writes nothing architecturally and cannot fault.
            unsafe {
                std::arch::asm!(
                    "prefetchw [{0}]",
                    in(reg) ptr,
                    options(nostack, preserves_flags, readonly)
                )
            }
        } else {
            // SAFETY: SSE is part of x86_64; a prefetch cannot fault.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast())
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// CPUID.80000001H:ECX.PRFCHW, asked once.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_prefetchw() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
    // 0: not asked yet, 1: no, 2: yes. Relaxed: every thread computes the
    // same answer.
    static HAS: AtomicU8 = AtomicU8::new(0);
    match HAS.load(Relaxed) {
        0 => {
            // Leaf 0x8000_0001 exists when the highest extended leaf
            // allows it.
            let yes = std::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0001
                && std::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 8) != 0;
            HAS.store(if yes { 2 } else { 1 }, Relaxed);
            yes
        }
        state => state == 2,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_address_is_a_valid_hint() {
        let x = [0u64; 16];
        super::for_write(x.as_ptr());
        super::for_write(std::ptr::null::<u8>());
        super::for_write(usize::MAX as *const u8);
        assert_eq!(x[0], 0);
    }
}
