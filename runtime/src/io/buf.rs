//! Owned buffers for completion-style io.
//!
//! With io_uring the kernel reads or writes a buffer after the call that
//! submitted the operation has returned, possibly after the future that owns
//! the operation was dropped. So operations take their buffer by value and
//! hand it back with the result: `read(buf) -> (io::Result<usize>, B)`. The
//! traits below say which types can be lent that way: their bytes live at an
//! address that does not change when the value moves, and nothing else can
//! reach them while the operation owns the value.
//!
//! [`IoBuf::slice`] lends part of a buffer: a read into the room after the
//! bytes a `Vec` already holds, or a write of the bytes not sent yet, without
//! copying them out. The [`Slice`] owns the whole buffer and gives it back
//! with [`Slice::into_inner`].

use std::ops::{Bound, RangeBounds};

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

    /// A view of `range` of this buffer that owns it, for an operation on
    /// that part only: a write sends the view's initialised bytes, a read
    /// fills it from its start.
    ///
    /// The range is in `0..=bytes_total()` (for a `Vec`, its capacity:
    /// `Vec::with_capacity(64).slice(0..64)` is a 64-byte read target),
    /// and it must start at or before `bytes_init()`: a read into a view
    /// that started after the initialised bytes would leave uninitialised
    /// bytes in front of what it read, which no length could then cover.
    /// A read's count raises the buffer's initialised length to the end of
    /// what it read if that is larger (a `Vec`'s `len`), never past it.
    ///
    /// ```
    /// use weft::io::{IoBuf, IoBufMut};
    ///
    /// let mut v = Vec::with_capacity(16);
    /// v.extend_from_slice(b"head");
    /// // The room after "head": what a read into `tail` gets lands behind it.
    /// let tail = v.slice(4..);
    /// assert_eq!((tail.begin(), tail.end()), (4, 16));
    /// assert_eq!(tail.bytes_total(), 12);
    /// let v = tail.into_inner();
    /// // The part of it a write would send.
    /// let mid = v.slice(1..3);
    /// assert_eq!(&mid[..], b"ea");
    /// ```
    ///
    /// # Panics
    /// If the range ends past `bytes_total()`, starts after it ends, or
    /// starts past `bytes_init()`, with a message saying which, as slicing a
    /// `Vec` out of range does.
    #[track_caller]
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        let total = self.bytes_total();
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n
                .checked_add(1)
                .unwrap_or_else(|| panic!("slice start bound {n}+1 overflows usize")),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n
                .checked_add(1)
                .unwrap_or_else(|| panic!("slice end bound {n}+1 overflows usize")),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => total,
        };
        assert!(
            end <= total,
            "slice end {end} is out of range for a buffer of {total} bytes (bytes_total)"
        );
        assert!(begin <= end, "slice starts at {begin} but ends at {end}");
        let init = self.bytes_init();
        assert!(
            begin <= init,
            "slice start {begin} is past the buffer's {init} initialised bytes: \
             a read there would leave uninitialised bytes before it"
        );
        Slice {
            buf: self,
            begin,
            end,
        }
    }
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

/// Part of an owned buffer, `begin..end`, lent to an operation in place of
/// the whole (see [`IoBuf::slice`]).
///
/// As an [`IoBuf`] it offers the initialised bytes inside the range; as an
/// [`IoBufMut`] the whole range, and a read's count raises the buffer's own
/// initialised length to `begin + count` if that is larger. It derefs to the
/// initialised bytes of the range.
pub struct Slice<B> {
    buf: B,
    begin: usize,
    end: usize,
}

impl<B> Slice<B> {
    /// Where the view starts in the buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// Where the view ends in the buffer (exclusive).
    pub fn end(&self) -> usize {
        self.end
    }

    /// The whole buffer.
    pub fn get_ref(&self) -> &B {
        &self.buf
    }

    /// Gives the whole buffer back (with what a read put into the view).
    pub fn into_inner(self) -> B {
        self.buf
    }
}

impl<B: IoBuf> std::ops::Deref for Slice<B> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `begin <= bytes_init()` (checked by `slice`, and a
        // buffer's initialised length never shrinks while the slice owns
        // it: only `set_init` changes it, upwards), so `bytes_init()` of the
        // view initialised bytes start at `stable_ptr()`.
        unsafe { std::slice::from_raw_parts(IoBuf::stable_ptr(self), IoBuf::bytes_init(self)) }
    }
}

impl<B: IoBuf> std::fmt::Debug for Slice<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slice")
            .field("begin", &self.begin)
            .field("end", &self.end)
            .field("bytes_init", &IoBuf::bytes_init(self))
            .finish()
    }
}

// SAFETY: the view's bytes are the buffer's `begin..end`, inside its
// `bytes_total()` (checked by `slice`); they are at a stable address because
// the buffer's are, and the view's initialised prefix is the buffer's
// initialised bytes inside the range.
unsafe impl<B: IoBuf> IoBuf for Slice<B> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: `begin <= bytes_total()`: in bounds or one past the end.
        unsafe { self.buf.stable_ptr().add(self.begin) }
    }
    fn bytes_init(&self) -> usize {
        self.buf
            .bytes_init()
            .min(self.end)
            .saturating_sub(self.begin)
    }
    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
}

// SAFETY: writes stay within `begin..end` of the buffer, which is valid for
// writes up to its `bytes_total()`.
unsafe impl<B: IoBufMut> IoBufMut for Slice<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: as in `stable_ptr`.
        unsafe { self.buf.stable_mut_ptr().add(self.begin) }
    }

    unsafe fn set_init(&mut self, n: usize) {
        // The buffer's bytes `0..begin` are initialised (`slice` checked
        // `begin <= bytes_init()`, which only grows), and the caller says
        // `begin..begin + n` were written: so `0..begin + n` are. The check
        // is a second line of defence; it holds by construction.
        if self.begin <= self.buf.bytes_init() {
            // SAFETY: as just argued, with `begin + n <= end <= bytes_total()`.
            unsafe { self.buf.set_init(self.begin + n.min(self.end - self.begin)) };
        }
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

#[cfg(test)]
mod slice_tests {
    use super::*;

    /// What a read of `data` into `buf` does: the kernel writes from the
    /// start of the view, then the count goes to `set_init`.
    fn fake_read<B: IoBufMut>(mut buf: B, data: &[u8]) -> B {
        assert!(
            data.len() <= buf.bytes_total(),
            "the fake kernel overfilled"
        );
        // SAFETY: `data.len() <= bytes_total()` bytes are written at the
        // mutable pointer before `set_init` records them.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), buf.stable_mut_ptr(), data.len());
            buf.set_init(data.len());
        }
        buf
    }

    #[test]
    fn a_read_into_the_room_after_a_vecs_bytes_extends_its_len() {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(b"head");
        let tail = v.slice(4..);
        assert_eq!((tail.begin(), tail.end()), (4, 16));
        assert_eq!(tail.bytes_total(), 12);
        assert_eq!(tail.bytes_init(), 0, "nothing initialised in the room yet");
        let v = fake_read(tail, b"tail!").into_inner();
        assert_eq!(v, b"headtail!");
        assert_eq!(v.capacity(), 16, "no reallocation, no copy");
    }

    #[test]
    fn a_short_read_into_the_middle_of_initialised_bytes_keeps_the_len() {
        let v = vec![b'.'; 8];
        let mid = fake_read(v.slice(2..6), b"ab").into_inner();
        assert_eq!(mid, b"..ab....", "len stays 8, only 2..4 overwritten");
    }

    #[test]
    fn a_read_into_a_view_ending_inside_the_len_never_shrinks_it() {
        let mut v = Vec::with_capacity(8);
        v.extend_from_slice(b"abcdef");
        let v = fake_read(v.slice(1..3), b"XY").into_inner();
        assert_eq!(v, b"aXYdef");
    }

    #[test]
    fn a_read_reaching_past_the_len_raises_it_to_the_end_of_the_read_only() {
        let mut v = Vec::with_capacity(10);
        v.extend_from_slice(b"abcd");
        // The view starts inside the initialised bytes and reaches into the
        // spare capacity; a 3-byte read ends at 2 + 3 = 5.
        let v = fake_read(v.slice(2..9), b"XYZ").into_inner();
        assert_eq!(v, b"abXYZ");
    }

    #[test]
    fn set_init_past_the_view_is_clamped_to_its_end() {
        let mut v = Vec::with_capacity(8);
        v.extend_from_slice(b"ab");
        let mut s = v.slice(2..4);
        // SAFETY: the two bytes of the view are written first; the count
        // passed is larger than the view on purpose.
        unsafe {
            std::ptr::copy_nonoverlapping(b"cd".as_ptr(), s.stable_mut_ptr(), 2);
            s.set_init(5);
        }
        assert_eq!(s.into_inner(), b"abcd", "no byte past the view exposed");
    }

    #[test]
    fn a_write_view_offers_the_initialised_bytes_inside_its_range() {
        let mut v = Vec::with_capacity(32);
        v.extend_from_slice(b"hello world");
        let s = v.slice(6..);
        assert_eq!(&s[..], b"world");
        assert_eq!(s.bytes_init(), 5);
        assert_eq!(s.bytes_total(), 26);
        let s = s.into_inner().slice(..=4);
        assert_eq!(&s[..], b"hello");
        let s = s.into_inner().slice(11..);
        assert!(s.is_empty(), "a view at the end of the bytes sends nothing");
        assert_eq!(s.get_ref().len(), 11);
    }

    #[test]
    fn views_of_views_and_of_other_buffers() {
        let boxed: Box<[u8]> = b"0123456789".to_vec().into_boxed_slice();
        let inner = boxed.slice(2..9);
        let outer = inner.slice(1..4);
        assert_eq!(&outer[..], b"345");
        let outer = fake_read(outer, b"ab");
        assert_eq!(&*outer.into_inner().into_inner(), b"012ab56789");
        assert_eq!(&"static str".slice(7..)[..], b"str");
        assert_eq!(&(&b"bytes"[..]).slice(..2)[..], b"by");
        assert_eq!(&String::from("string").slice(3..)[..], b"ing");
        // A view of a view of a Vec extends the Vec.
        let mut v = Vec::with_capacity(8);
        v.push(b'a');
        let v = fake_read(v.slice(1..).slice(..3), b"bcd")
            .into_inner()
            .into_inner();
        assert_eq!(v, b"abcd");
    }

    #[test]
    #[should_panic(expected = "slice end 17 is out of range for a buffer of 16 bytes")]
    fn a_view_past_the_capacity_is_rejected() {
        let _ = Vec::<u8>::with_capacity(16).slice(0..17);
    }

    #[test]
    #[should_panic(expected = "slice starts at 5 but ends at 3")]
    fn a_backwards_view_is_rejected() {
        #[allow(clippy::reversed_empty_ranges)]
        let _ = vec![0u8; 8].slice(5..3);
    }

    #[test]
    #[should_panic(expected = "slice start 6 is past the buffer's 4 initialised bytes")]
    fn a_view_starting_in_uninitialised_room_is_rejected() {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(b"abcd");
        let _ = v.slice(6..);
    }

    #[test]
    #[should_panic(expected = "slice end 6 is out of range for a buffer of 5 bytes")]
    fn an_inclusive_end_counts_the_last_byte() {
        let _ = "hello".slice(..=5);
    }
}
