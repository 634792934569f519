//! Owned buffers for completion-style io.
//!
//! With io_uring the kernel reads or writes a buffer after the call that
//! submitted the operation has returned, possibly after the future that owns
//! the operation was dropped. So operations take their buffer by value and
//! hand it back with the result: `read(buf) -> (io::Result<usize>, B)`. The
//! traits below say which types can be lent that way: their bytes live at an
//! address that does not change when the value moves, and nothing else can
//! reach them while the operation owns the value.

/// A buffer the kernel may read from while an operation owns it.
///
/// # Safety
/// `stable_ptr` must point at `bytes_init()` initialised bytes (and room for
/// `bytes_total()`), and that address must not change when the value is
/// moved, nor while no `&mut` method is called on it.
pub unsafe trait IoBuf: Unpin + Send + 'static {
    /// Where the bytes start.
    fn stable_ptr(&self) -> *const u8;
    /// How many bytes are initialised (what a write sends).
    fn bytes_init(&self) -> usize;
    /// How many bytes fit (what a read may fill).
    fn bytes_total(&self) -> usize;
}

/// A buffer the kernel may write into while an operation owns it.
///
/// A read fills `buf[0..bytes_total()]` (for a `Vec`, its whole capacity) and
/// then raises the initialised length to the count read if that is larger,
/// so `Vec::with_capacity(n)` and `vec![0; n]` both work: use the returned
/// count, not the length.
///
/// # Safety
/// As for [`IoBuf`], and `stable_mut_ptr` must be valid for writes of
/// `bytes_total()` bytes.
pub unsafe trait IoBufMut: IoBuf {
    /// Where the bytes start, for writing.
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Records that the first `n` bytes are initialised.
    ///
    /// # Safety
    /// The first `n` bytes (`n <= bytes_total()`) must have been written.
    unsafe fn set_init(&mut self, n: usize);
}

// SAFETY: a Vec's heap block does not move when the Vec does; `len` bytes are
// initialised and `capacity` fit.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: as above; writes stay within the capacity.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        if n > self.len() {
            // SAFETY: the caller guarantees the first `n <= capacity` bytes
            // were written.
            unsafe { self.set_len(n) };
        }
    }
}

// SAFETY: a boxed slice's block does not move with the box; all of it is
// initialised.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; all of it is always initialised.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _n: usize) {}
}

// SAFETY: static data never moves and is never freed.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: as for `&'static [u8]`.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: a String's heap block does not move with the String.
unsafe impl IoBuf for String {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_read_raises_len_only_upwards() {
        let mut v = Vec::with_capacity(16);
        assert_eq!(v.bytes_total(), v.capacity());
        // SAFETY: 4 bytes written below before set_init.
        unsafe {
            std::ptr::copy_nonoverlapping(b"abcd".as_ptr(), v.stable_mut_ptr(), 4);
            v.set_init(4);
        }
        assert_eq!(v, b"abcd");
        let mut full = vec![7u8; 8];
        // SAFETY: 2 <= len, nothing to initialise.
        unsafe { full.set_init(2) };
        assert_eq!(full.len(), 8);
    }
}
