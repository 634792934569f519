//! The buffered types against scripted streams: each read or write takes
//! the next step of a script (bytes, an error, or a wait), so fragments,
//! failures and drops land exactly where a test wants them.

use std::{
    collections::VecDeque,
    future::Future,
    io,
    pin::pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};

use super::*;
use crate::io::{AsyncReadOwned, AsyncWriteOwned, IoBuf, IoBufMut};

/// One step of a scripted stream.
#[derive(Debug)]
enum Step {
    /// A read gets these bytes (what does not fit its room comes next).
    Data(&'static [u8]),
    /// A write takes at most this many bytes.
    Take(usize),
    Fail(io::ErrorKind),
    /// The op fails as one in an explicitly cancelled scope does.
    Cancel,
    /// The op waits once (returns `Pending`), then takes the next step.
    Wait,
}

#[derive(Debug, Default, Clone)]
struct Script(Arc<Mutex<Shared>>);

#[derive(Debug, Default)]
struct Shared {
    steps: VecDeque<Step>,
    /// The room each read was offered.
    rooms: Vec<usize>,
    /// What each write sent.
    sent: Vec<Vec<u8>>,
}

impl Script {
    fn new(steps: impl IntoIterator<Item = Step>) -> Script {
        let s = Script::default();
        s.0.lock().unwrap().steps.extend(steps);
        s
    }

    fn rooms(&self) -> Vec<usize> {
        self.0.lock().unwrap().rooms.clone()
    }

    fn sent(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap().sent.clone()
    }

    fn left(&self) -> usize {
        self.0.lock().unwrap().steps.len()
    }
}

/// Returns `Pending` once (waking itself), then `Ready`.
struct WaitOnce(bool);

impl Future for WaitOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Script {
    async fn next_step(&self) -> Option<Step> {
        loop {
            let step = self.0.lock().unwrap().steps.pop_front();
            match step {
                Some(Step::Wait) => WaitOnce(false).await,
                other => return other,
            }
        }
    }
}

impl AsyncReadOwned for Script {
    async fn read<B: IoBufMut>(&mut self, mut buf: B) -> (io::Result<usize>, B) {
        let room = buf.bytes_total();
        self.0.lock().unwrap().rooms.push(room);
        match self.next_step().await {
            None => (Ok(0), buf),
            Some(Step::Data(data)) => {
                let n = data.len().min(room);
                if n < data.len() {
                    self.0
                        .lock()
                        .unwrap()
                        .steps
                        .push_front(Step::Data(&data[n..]));
                }
                // SAFETY: `n <= bytes_total()` bytes are written before
                // `set_init` records them.
                unsafe {
                    std::ptr::copy_nonoverlapping(data.as_ptr(), buf.stable_mut_ptr(), n);
                    buf.set_init(n);
                }
                (Ok(n), buf)
            }
            Some(Step::Fail(kind)) => (Err(kind.into()), buf),
            Some(step) => panic!("a read met {step:?}"),
        }
    }
}

impl AsyncWriteOwned for Script {
    async fn write<B: IoBuf>(&mut self, buf: B) -> (io::Result<usize>, B) {
        match self.next_step().await {
            Some(Step::Take(max)) => {
                // SAFETY: `bytes_init()` initialised bytes at `stable_ptr()`.
                let bytes =
                    unsafe { std::slice::from_raw_parts(buf.stable_ptr(), buf.bytes_init()) };
                let n = bytes.len().min(max);
                self.0.lock().unwrap().sent.push(bytes[..n].to_vec());
                (Ok(n), buf)
            }
            Some(Step::Fail(kind)) => (Err(kind.into()), buf),
            Some(Step::Cancel) => (Err(explicit_cancel()), buf),
            step => panic!("a write met {step:?}"),
        }
    }
}

/// Runs a future whose waits all wake themselves at once.
fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10_000 {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("the future did not finish");
}

/// Polls `f` once (it must be waiting) and drops it.
fn poll_once_and_drop<F: Future>(f: F) {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(f.as_mut().poll(&mut cx).is_pending(), "the call waits");
}

use Step::{Cancel, Data, Fail, Take, Wait};

fn line(r: &mut BufReader<Script>) -> io::Result<(usize, String)> {
    let mut s = String::new();
    run(r.read_line(&mut s)).map(|n| (n, s))
}

#[test]
fn lines_in_odd_fragments() {
    let script = Script::new([
        Data(b"he"),
        Data(b"llo\nwor"),
        Data(b"ld\r\n\n"),
        Data(b"x"),
    ]);
    let mut r = BufReader::with_capacity(16, script.clone());
    assert_eq!(line(&mut r).unwrap(), (6, "hello\n".into()));
    assert_eq!(run(r.next_line()).unwrap().as_deref(), Some("world"));
    assert_eq!(line(&mut r).unwrap(), (1, "\n".into()), "an empty line");
    assert_eq!(
        line(&mut r).unwrap(),
        (1, "x".into()),
        "the end ends a line"
    );
    assert_eq!(line(&mut r).unwrap(), (0, String::new()), "then the end");
    assert_eq!(run(r.next_line()).unwrap(), None);
    // The second read went behind "wor"'s predecessor bytes: its room was
    // what the first left, not a fresh buffer.
    assert_eq!(script.rooms()[..2], [16, 14]);
}

#[test]
fn read_line_appends_to_what_the_string_holds() {
    let mut r = BufReader::new(Script::new([Data(b"b\nc\n")]));
    let mut s = String::from("a");
    assert_eq!(run(r.read_line(&mut s)).unwrap(), 2);
    assert_eq!(run(r.read_line(&mut s)).unwrap(), 2);
    assert_eq!(s, "ab\nc\n");
}

#[test]
fn a_line_longer_than_the_buffer_grows_it_then_it_shrinks_back() {
    let script = Script::new([Data(b"0123456789abcdefghij\nshort\n")]);
    let mut r = BufReader::with_capacity(4, script.clone());
    assert_eq!(line(&mut r).unwrap(), (21, "0123456789abcdefghij\n".into()));
    // Doubling growth: at most twice what it had to hold.
    assert!(
        r.buf.capacity() <= 2 * 27,
        "{} after the line",
        r.buf.capacity()
    );
    assert_eq!(line(&mut r).unwrap(), (6, "short\n".into()));
    assert_eq!(r.buf.capacity(), 4, "back to its capacity once drained");
    assert!(script.rooms().iter().all(|&room| room > 0));
}

#[test]
fn a_character_split_across_reads_is_whole_in_the_line() {
    let mut r = BufReader::with_capacity(8, Script::new([Data(b"caf\xc3"), Data(b"\xa9\n")]));
    assert_eq!(line(&mut r).unwrap(), (6, "café\n".into()));
}

#[test]
fn invalid_utf8_fails_drops_that_line_and_leaves_the_string() {
    let mut r = BufReader::new(Script::new([Data(b"ok\nb\xffd\nnext\n")]));
    assert_eq!(line(&mut r).unwrap().1, "ok\n");
    let mut s = String::from("kept");
    let err = run(r.read_line(&mut s)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let msg = err.to_string();
    assert!(msg.contains("a line of 4 bytes is not UTF-8"), "{msg}");
    assert!(msg.contains("index 1"), "says where: {msg}");
    assert_eq!(s, "kept", "the string is unchanged");
    assert_eq!(
        run(r.read_line(&mut s)).unwrap(),
        5,
        "the next line follows"
    );
    assert_eq!(s, "keptnext\n");
}

#[test]
fn an_error_mid_line_keeps_the_partial_line_buffered() {
    let mut r = BufReader::new(Script::new([
        Data(b"par"),
        Fail(io::ErrorKind::TimedOut),
        Data(b"tial\n"),
    ]));
    let mut s = String::from(">");
    let err = run(r.read_line(&mut s)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(s, ">", "nothing appended");
    assert_eq!(r.buffer(), b"par", "the partial line is buffered");
    assert_eq!(run(r.read_line(&mut s)).unwrap(), 8);
    assert_eq!(s, ">partial\n");
}

#[test]
fn read_until_appends_as_it_goes_like_std() {
    let mut r = BufReader::with_capacity(
        4,
        Script::new([
            Data(b"ab"),
            Data(b"cd"),
            Fail(io::ErrorKind::Interrupted),
            Data(b"e;f;"),
        ]),
    );
    let mut out = Vec::new();
    let err = run(r.read_until(b';', &mut out)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    assert_eq!(out, b"abcd", "what was read before the error is in the Vec");
    assert_eq!(run(r.read_until(b';', &mut out)).unwrap(), 2);
    assert_eq!(out, b"abcde;");
    out.clear();
    assert_eq!(run(r.read_until(b';', &mut out)).unwrap(), 2);
    assert_eq!(run(r.read_until(b';', &mut out)).unwrap(), 0);
    assert_eq!(out, b"f;");
}

#[test]
fn read_exact_copies_only_once_it_has_everything() {
    let mut r = BufReader::with_capacity(
        4,
        Script::new([Data(b"12"), Fail(io::ErrorKind::TimedOut), Data(b"345678")]),
    );
    let mut out = [0u8; 7];
    let err = run(r.read_exact(&mut out)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(out, [0; 7], "untouched");
    assert_eq!(r.buffer(), b"12");
    run(r.read_exact(&mut out)).unwrap();
    assert_eq!(
        &out, b"1234567",
        "larger than the capacity: the buffer grew"
    );
    let mut rest = [0u8; 2];
    let err = run(r.read_exact(&mut rest)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().contains("after 1 of 2 bytes"), "{err}");
    assert_eq!(r.buffer(), b"8", "what came before the end stays buffered");
    let mut last = [0u8; 1];
    run(r.read_exact(&mut last)).unwrap();
    assert_eq!(&last, b"8");
}

#[test]
fn fill_buf_consume_and_fill_more_frame_by_hand() {
    // Length-prefixed frames: one length byte, then the payload.
    let mut r = BufReader::with_capacity(8, Script::new([Data(b"\x03ab"), Data(b"c\x01z")]));
    let mut frames = Vec::new();
    loop {
        let held = run(r.fill_buf()).unwrap();
        if held.is_empty() {
            break;
        }
        let need = 1 + held[0] as usize;
        while r.buffer().len() < need {
            assert_ne!(run(r.fill_more()).unwrap(), 0, "the end inside a frame");
        }
        frames.push(r.buffer()[1..need].to_vec());
        r.consume(need);
    }
    assert_eq!(frames, [b"abc".to_vec(), b"z".to_vec()]);
    r.consume(100);
    assert!(
        r.buffer().is_empty(),
        "consume is clamped to what is buffered"
    );
}

#[test]
fn into_parts_hands_back_the_unread_bytes() {
    let mut r = BufReader::new(Script::new([Data(b"one\ntwo")]));
    assert_eq!(line(&mut r).unwrap().1, "one\n");
    let (_, rest) = r.into_parts();
    assert_eq!(rest, b"two");
}

#[test]
fn a_dropped_read_with_nothing_buffered_loses_nothing_of_the_reader() {
    let script = Script::new([Wait, Data(b"x\n")]);
    let mut r = BufReader::new(script.clone());
    poll_once_and_drop(r.fill_buf());
    assert!(r.buffer().is_empty());
    // The dropped read took the step it waited on; the next gets the data.
    assert_eq!(line(&mut r).unwrap().1, "x\n");
}

#[test]
fn a_dropped_read_holding_a_partial_line_is_reported_ever_after() {
    let script = Script::new([Data(b"half"), Wait, Data(b" line\n")]);
    let mut r = BufReader::new(script.clone());
    let mut s = String::new();
    poll_once_and_drop(r.read_line(&mut s));
    assert!(
        r.buffer().is_empty(),
        "consistent, if empty, after the drop"
    );
    for _ in 0..2 {
        let err = run(r.read_line(&mut s)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert!(err.to_string().contains("lost 4 buffered bytes"), "{err}");
    }
    assert!(run(r.fill_buf()).is_err(), "every call fails");
    assert_eq!(script.left(), 1, "and none of them read");
}

#[test]
#[should_panic(expected = "BufReader capacity must be at least 1 byte, got 0")]
fn a_reader_without_room_is_rejected() {
    let _ = BufReader::with_capacity(0, Script::default());
}

#[test]
#[should_panic(expected = "BufWriter capacity must be at least 1 byte, got 0")]
fn a_writer_without_room_is_rejected() {
    let _ = BufWriter::with_capacity(0, Script::default());
}

#[test]
fn small_writes_go_out_in_one_send_on_flush() {
    let script = Script::new([Take(usize::MAX)]);
    let mut w = BufWriter::with_capacity(16, script.clone());
    for part in [&b"a"[..], b"bc", b"def"] {
        run(w.write_all(part)).unwrap();
    }
    assert!(script.sent().is_empty(), "nothing sent before the flush");
    assert_eq!(w.buffer(), b"abcdef");
    run(w.flush()).unwrap();
    assert_eq!(script.sent(), [b"abcdef".to_vec()]);
    assert!(w.buffer().is_empty());
    run(w.flush()).unwrap();
    assert_eq!(script.sent().len(), 1, "an empty flush sends nothing");
}

#[test]
fn a_write_that_does_not_fit_sends_the_buffer_first() {
    let script = Script::new([Take(usize::MAX), Take(usize::MAX)]);
    let mut w = BufWriter::with_capacity(4, script.clone());
    run(w.write_all(b"abc")).unwrap();
    run(w.write_all(b"defgh")).unwrap();
    assert_eq!(script.sent(), [b"abc".to_vec()]);
    assert_eq!(
        w.buffer(),
        b"defgh",
        "larger than the capacity: buffered whole"
    );
    run(w.flush()).unwrap();
    assert_eq!(script.sent()[1], b"defgh");
    assert_eq!(w.buf.capacity(), 4, "back to its capacity");
}

#[test]
fn a_failed_send_keeps_exactly_the_unsent_bytes() {
    let script = Script::new([
        Take(2),
        Fail(io::ErrorKind::ConnectionReset),
        Take(1),
        Wait,
        Take(usize::MAX),
    ]);
    let mut w = BufWriter::new(script.clone());
    run(w.write_all(b"hello")).unwrap();
    let err = run(w.flush()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(
        w.buffer(),
        b"llo",
        "what the peer took is gone, the rest kept"
    );
    run(w.flush()).unwrap();
    assert_eq!(
        script.sent(),
        [b"he".to_vec(), b"l".to_vec(), b"lo".to_vec()]
    );
}

#[test]
fn a_write_all_that_cannot_make_room_buffers_none_of_its_bytes() {
    let script = Script::new([Fail(io::ErrorKind::BrokenPipe)]);
    let mut w = BufWriter::with_capacity(4, script);
    run(w.write_all(b"abc")).unwrap();
    let err = run(w.write_all(b"de")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    assert_eq!(w.buffer(), b"abc", "none of \"de\"");
}

#[test]
fn a_signal_is_retried_a_stream_that_takes_nothing_is_an_error() {
    let script = Script::new([Fail(io::ErrorKind::Interrupted), Take(1), Take(0)]);
    let mut w = BufWriter::new(script.clone());
    run(w.write_all(b"xy")).unwrap();
    let err = run(w.flush()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    assert!(
        err.to_string().contains("none of 1 buffered bytes"),
        "{err}"
    );
    assert_eq!(w.buffer(), b"y");
}

fn explicit_cancel() -> io::Error {
    use crate::cancel::{Cancelled, Cause};
    io::Error::from(Cancelled {
        cause: Cause::Explicit,
        origin: Cause::Explicit,
        reason: None,
    })
}

#[test]
fn a_cancellation_is_not_retried_as_a_signal() {
    let script = Script::new([Take(1), Cancel, Take(usize::MAX)]);
    let mut w = BufWriter::new(script.clone());
    run(w.write_all(b"abc")).unwrap();
    let err = run(w.flush()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    assert!(is_cancellation(&err));
    assert_eq!(w.buffer(), b"bc", "it stopped at the cancellation");
    assert_eq!(script.left(), 1);
    run(w.flush()).unwrap();
    assert_eq!(script.sent(), [b"a".to_vec(), b"bc".to_vec()]);
}

#[test]
fn a_dropped_flush_is_reported_ever_after() {
    let script = Script::new([Wait, Take(usize::MAX)]);
    let mut w = BufWriter::new(script.clone());
    run(w.write_all(b"abc")).unwrap();
    poll_once_and_drop(w.flush());
    for _ in 0..2 {
        let err = run(w.write_all(b"d")).unwrap_err();
        assert!(
            err.to_string().contains("lost track of 3 unsent bytes"),
            "{err}"
        );
    }
    assert!(run(w.flush()).is_err());
    assert!(script.sent().is_empty());
    let (_, unsent) = w.into_parts();
    assert!(unsent.is_empty(), "the buffer went with the dropped send");
}
