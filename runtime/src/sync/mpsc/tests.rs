use std::task::Waker;

use super::*;

fn noop_cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

#[test]
fn messages_cross_block_boundaries_in_order() {
    let (tx, mut rx) = unbounded_channel();
    for round in 0..3 {
        for i in 0..100 {
            tx.send(round * 100 + i).unwrap();
        }
        assert_eq!(rx.len(), 100);
        for i in 0..100 {
            assert_eq!(rx.try_recv(), Ok(round * 100 + i));
            assert_eq!(rx.len(), 99 - i as usize);
        }
        assert!(rx.is_empty());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn try_send_reports_full_and_a_receive_frees_a_slot() {
    let (tx, mut rx) = channel(2);
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    assert_eq!(tx.capacity(), 0);
    assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(tx.capacity(), 1);
    tx.try_send(3).unwrap();
    assert_eq!(tx.max_capacity(), 2);
}

#[test]
fn a_dropped_permit_returns_its_slot() {
    let (tx, _rx) = channel::<u8>(1);
    let permit = tx.try_reserve().unwrap();
    assert_eq!(tx.capacity(), 0);
    assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
    drop(permit);
    assert_eq!(tx.capacity(), 1);
}

#[test]
fn close_stops_senders_and_keeps_the_queue() {
    let (tx, mut rx) = channel(4);
    tx.try_send(1).unwrap();
    rx.close();
    assert!(tx.is_closed());
    assert_eq!(tx.try_send(2), Err(TrySendError::Closed(2)));
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert!(matches!(
        rx.poll_recv(&mut noop_cx()),
        Poll::Ready(Err(RecvError::Closed))
    ));
}

#[test]
fn the_last_sender_drop_wakes_the_receiver_to_closed() {
    let (tx, mut rx) = unbounded_channel::<u8>();
    let tx2 = tx.clone();
    assert!(rx.poll_recv(&mut noop_cx()).is_pending());
    drop(tx);
    assert!(rx.poll_recv(&mut noop_cx()).is_pending());
    drop(tx2);
    assert!(matches!(
        rx.poll_recv(&mut noop_cx()),
        Poll::Ready(Err(RecvError::Closed))
    ));
}

#[test]
fn a_waiting_sender_is_granted_the_slot_a_receive_frees() {
    let (tx, mut rx) = channel(1);
    tx.try_send(1).unwrap();
    let mut send = std::pin::pin!(tx.send(2));
    assert!(send.as_mut().poll(&mut noop_cx()).is_pending());
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(tx.capacity(), 0, "the freed slot went to the waiter");
    assert!(matches!(
        send.as_mut().poll(&mut noop_cx()),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(rx.try_recv(), Ok(2));
}

#[test]
fn a_granted_waiter_dropped_hands_the_slot_on() {
    let (tx, mut rx) = channel(1);
    tx.try_send(1).unwrap();
    let mut first = Box::pin(tx.send(2));
    let mut second = Box::pin(tx.send(3));
    assert!(first.as_mut().poll(&mut noop_cx()).is_pending());
    assert!(second.as_mut().poll(&mut noop_cx()).is_pending());
    assert_eq!(rx.try_recv(), Ok(1));
    drop(first);
    assert!(matches!(
        second.as_mut().poll(&mut noop_cx()),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(tx.capacity(), 1);
}

#[test]
fn a_weak_sender_upgrades_only_while_a_sender_lives() {
    let (tx, mut rx) = channel::<u8>(1);
    let weak = tx.downgrade();
    let strong = weak.upgrade().expect("a sender is alive");
    drop(tx);
    strong.try_send(1).unwrap();
    drop(strong);
    assert!(weak.upgrade().is_none(), "every sender is gone");
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    let (utx, _urx) = unbounded_channel::<u8>();
    let uweak = utx.downgrade();
    assert!(uweak.upgrade().is_some_and(|s| s.same_channel(&utx)));
}

#[test]
fn an_owned_permit_takes_over_the_senders_reference_without_adding_one() {
    let (tx, rx) = channel::<u32>(1);
    let chan = Arc::downgrade(&tx.chan);
    let mut reserve = std::pin::pin!(tx.reserve_owned());
    let Poll::Ready(Ok(permit)) = reserve.as_mut().poll(&mut noop_cx()) else {
        panic!("free capacity: the reservation is ready at once");
    };
    // The receiver's and the permit's: two, as the sender's was before.
    assert_eq!(chan.strong_count(), 2);
    let tx = permit.send(7);
    assert_eq!(chan.strong_count(), 2);
    drop((tx, rx));
    assert_eq!(
        chan.strong_count(),
        0,
        "the channel is freed with its last handle"
    );
}

#[test]
fn permits_the_receiver_returns_are_free_at_once_before_and_after_a_fold() {
    // The receiver returns permits to its own counter and folds them into
    // the senders' word 32 at a time: neither `capacity` nor `try_send`
    // may see the difference, on either side of a fold.
    let (tx, mut rx) = channel(100);
    for i in 0..100 {
        tx.try_send(i).unwrap();
    }
    assert_eq!(tx.try_send(100), Err(TrySendError::Full(100)));
    for (received, i) in (0..45).enumerate() {
        assert_eq!(rx.try_recv(), Ok(i));
        assert_eq!(
            tx.capacity(),
            received + 1,
            "after {} receives",
            received + 1
        );
    }
    // 32 permits are in the senders' word, 13 still returned: the first
    // send past the 32 takes all 13 and moves 12 to the word.
    for (sent, i) in (100..145).enumerate() {
        tx.try_send(i).unwrap();
        assert_eq!(tx.capacity(), 45 - sent - 1, "after {} sends", sent + 1);
    }
    assert_eq!(tx.capacity(), 0);
    assert_eq!(tx.try_send(145), Err(TrySendError::Full(145)));
    for i in 45..145 {
        assert_eq!(rx.try_recv(), Ok(i));
    }
    assert_eq!(tx.capacity(), 100, "every permit back, folded or not");
}

#[test]
fn a_sender_queued_behind_another_does_not_overtake_it() {
    // Two senders wait on a full channel; each receive goes to the front
    // one, also when the permit sat in the receiver's counter.
    let (tx, mut rx) = channel(2);
    tx.try_send(0).unwrap();
    tx.try_send(1).unwrap();
    let mut first = Box::pin(tx.send(2));
    let mut second = Box::pin(tx.send(3));
    assert!(first.as_mut().poll(&mut noop_cx()).is_pending());
    assert!(second.as_mut().poll(&mut noop_cx()).is_pending());
    assert_eq!(rx.try_recv(), Ok(0));
    assert_eq!(
        tx.try_send(9),
        Err(TrySendError::Full(9)),
        "queued ones first"
    );
    assert!(second.as_mut().poll(&mut noop_cx()).is_pending());
    assert!(matches!(
        first.as_mut().poll(&mut noop_cx()),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(rx.try_recv(), Ok(1));
    assert!(matches!(
        second.as_mut().poll(&mut noop_cx()),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(tx.capacity(), 2);
}
