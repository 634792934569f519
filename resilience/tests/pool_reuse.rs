//! A returned object is reset in place and handed out again, keeping its
//! allocation; the metrics count what happened.

use weft_resilience::pool::Pool;

#[test]
fn reuse_keeps_capacity_and_resets() {
    let pool = Pool::builder(Vec::<u8>::new)
        .capacity(4)
        .reset(Vec::clear)
        .build()
        .unwrap();
    let mut buf = pool.get();
    buf.extend_from_slice(&[1; 1000]);
    let addr = buf.as_ptr();
    drop(buf);

    let buf = pool.get();
    assert!(buf.is_empty(), "reset hook did not run");
    assert!(buf.capacity() >= 1000, "capacity lost: {}", buf.capacity());
    assert_eq!(buf.as_ptr(), addr, "not the same allocation");
}

#[test]
fn without_a_reset_hook_state_is_kept() {
    let pool = Pool::builder(|| 0u32).capacity(1).build().unwrap();
    *pool.get() = 41;
    assert_eq!(*pool.get(), 41);
}

#[test]
fn most_recently_returned_object_comes_back_first() {
    let pool = Pool::builder(Vec::<u8>::new).capacity(4).build().unwrap();
    let mut a = pool.get();
    let mut b = pool.get();
    a.push(b'a');
    b.push(b'b');
    drop(a);
    drop(b);
    assert_eq!(*pool.get(), b"b");
}

#[test]
fn metrics_count_creation_reuse_and_peak() {
    let pool = Pool::builder(Vec::<u8>::new).capacity(3).build().unwrap();
    let m = pool.metrics();
    assert_eq!(
        (m.capacity, m.live, m.idle, m.created, m.reused),
        (3, 0, 0, 0, 0)
    );

    let a = pool.get();
    let b = pool.get();
    let m = pool.metrics();
    assert_eq!(
        (m.live, m.idle, m.created, m.reused, m.high_water),
        (2, 0, 2, 0, 2)
    );

    drop(a);
    let m = pool.metrics();
    assert_eq!((m.live, m.idle), (1, 1));

    let c = pool.get(); // reuses a
    let m = pool.metrics();
    assert_eq!(
        (m.live, m.idle, m.created, m.reused, m.high_water),
        (2, 0, 2, 1, 2)
    );

    let d = pool.get();
    let e = pool.get(); // past the bound: unpooled
    assert!(d.is_pooled() && !e.is_pooled());
    let m = pool.metrics();
    assert_eq!(
        (m.live, m.idle, m.created, m.unpooled, m.high_water),
        (4, 0, 3, 1, 4)
    );

    drop((b, c, d, e));
    let m = pool.metrics();
    assert_eq!(
        (m.live, m.idle, m.created, m.reused, m.unpooled),
        (0, 3, 3, 1, 1)
    );
}
