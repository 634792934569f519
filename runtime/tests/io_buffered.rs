//! Buffered io and buffer slices over loopback TCP, on both io drivers: a
//! line protocol whose client writes in odd fragments (the server reads
//! with `read_line` and `read_until`, answers through a `BufWriter`), a
//! line longer than the buffer, the end of the stream in the middle of a
//! line, a line that is not UTF-8, a `read_line` interrupted by its task's
//! deadline or by an explicit cancel and then resumed with nothing lost,
//! a `BufWriter` that sends only on flush and reports a reset peer, halves
//! in separate tasks through the generic traits, and reads and writes of
//! part of a buffer through `IoBuf::slice`. Every test checks that no fd,
//! io op or task outlives it.
mod common;

use std::{
    io::{self, Read},
    net::Shutdown,
    time::Duration,
};

use common::{
    net::{
        cancelled_of, fd_count, on_each_driver, read_exact, reset, std_client_pair, tcp_pair,
        wait_fds_at_most, wait_io_idle, NetRt,
    },
    Gate,
};
use futures_util::{AsyncBufReadExt, AsyncReadExt, TryStreamExt};
use weft::{
    cancel::Cause,
    io::{AsyncReadOwned, AsyncWriteOwned, BufReader, BufWriter, Driver, IoBuf},
    net::{TcpStream, UnixStream},
    task::Builder,
    time::sleep,
};

on_each_driver!(
    a_line_protocol_in_odd_fragments,
    a_line_longer_than_the_buffer,
    the_end_of_the_stream_in_the_middle_of_a_line,
    a_line_that_is_not_utf8_is_invalid_data_and_dropped,
    a_read_line_past_its_deadline_resumes_without_losing_bytes,
    a_read_line_cancelled_explicitly_resumes_without_losing_bytes,
    a_buf_writer_sends_on_flush_and_reports_a_reset_peer,
    halves_in_separate_tasks_through_the_generic_traits,
    reads_and_writes_of_part_of_a_buffer,
    the_futures_io_traits_share_the_buffer,
    a_line_protocol_over_a_unix_stream,
);

/// The deadline the test gives its read_line: long enough that the half
/// line already sent is read before it even on a loaded machine (the test
/// checks that it was).
const DEADLINE: Duration = Duration::from_millis(200);

/// Line `i` of the protocol: a command, a key, a value of varying length.
fn request(i: usize) -> String {
    format!("SET key{i} {}\n", "v".repeat(i % 37))
}

/// Writes `data` in fragments of 1, 2, 3, ... 11 bytes (cycling), with a
/// yield between some of them so the server sees partial lines.
async fn write_fragmented(stream: &TcpStream, data: &[u8]) {
    let mut at = 0;
    for k in 0.. {
        if at == data.len() {
            return;
        }
        let n = (1 + k % 11).min(data.len() - at);
        let (res, _) = stream.write_all(data[at..at + n].to_vec()).await;
        res.expect("client write");
        at += n;
        if k % 7 == 0 {
            sleep(Duration::from_millis(1)).await.unwrap();
        }
    }
}

fn a_line_protocol_in_odd_fragments(driver: Driver) {
    const LINES: usize = 120;
    let t = NetRt::new(driver);
    t.in_task(async {
        let fds = fd_count();
        let (client, server) = tcp_pair().await;
        client.set_nodelay(true).unwrap();
        let serving = weft::spawn(async move {
            // A small buffer, so lines also straddle its end.
            let mut reader = BufReader::with_capacity(16, &server);
            let mut writer = BufWriter::with_capacity(64, &server);
            let mut served = 0;
            loop {
                // Alternate the two ways of reading a line.
                let line = if served % 2 == 0 {
                    let mut s = String::new();
                    reader.read_line(&mut s).await.expect("read_line");
                    s.into_bytes()
                } else {
                    let mut v = Vec::new();
                    reader.read_until(b'\n', &mut v).await.expect("read_until");
                    v
                };
                if line.is_empty() {
                    break;
                }
                assert_eq!(line, request(served).as_bytes(), "line {served}");
                let reply = format!("OK {} {}\n", served, line.len());
                writer
                    .write_all(reply.as_bytes())
                    .await
                    .expect("buffer reply");
                served += 1;
                if reader.buffer().is_empty() {
                    // Nothing more waiting: answer what was asked so far.
                    writer.flush().await.expect("flush replies");
                }
            }
            writer.flush().await.expect("last flush");
            server.shutdown(Shutdown::Write).unwrap();
            served
        });

        let requests: String = (0..LINES).map(request).collect();
        write_fragmented(&client, requests.as_bytes()).await;
        client.shutdown(Shutdown::Write).unwrap();
        let mut replies = BufReader::with_capacity(32, &client);
        for i in 0..LINES {
            let line = replies.next_line().await.expect("reply").expect("a reply");
            assert_eq!(line, format!("OK {i} {}", request(i).len()));
        }
        assert_eq!(replies.next_line().await.unwrap(), None, "then the end");
        assert_eq!(serving.await.unwrap(), LINES);
        drop(replies);
        drop(client);
        wait_fds_at_most(fds, "after both ends closed").await;
    });
    t.finish();
}

fn a_line_longer_than_the_buffer(driver: Driver) {
    const LONG: usize = 100_000;
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let long: String = (0..LONG).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let sent = format!("{long}\nshort\n");
        let writer = weft::spawn(async move {
            let (res, _) = client.write_all(sent.into_bytes()).await;
            res.expect("write");
            client
        });
        let mut reader = BufReader::with_capacity(64, server);
        let mut line = String::new();
        assert_eq!(reader.read_line(&mut line).await.unwrap(), LONG + 1);
        assert_eq!(line.len(), LONG + 1);
        assert!(line.starts_with("abcdefghijklmnopqrstuvwxyzabc"));
        assert_eq!(&line[..LONG], long, "every byte, in order");
        assert_eq!(reader.next_line().await.unwrap().as_deref(), Some("short"));
        drop(writer.await.unwrap());
        assert_eq!(reader.next_line().await.unwrap(), None);
    });
    t.finish();
}

fn the_end_of_the_stream_in_the_middle_of_a_line(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let (res, _) = client.write_all(b"complete\npart".to_vec()).await;
        res.unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut reader = BufReader::new(server);
        let mut s = String::new();
        assert_eq!(reader.read_line(&mut s).await.unwrap(), 9);
        assert_eq!(
            reader.read_line(&mut s).await.unwrap(),
            4,
            "the end ends it"
        );
        assert_eq!(s, "complete\npart");
        assert_eq!(reader.read_line(&mut s).await.unwrap(), 0, "then 0");
        let mut v = Vec::new();
        assert_eq!(reader.read_until(b'\n', &mut v).await.unwrap(), 0);
        let mut exact = [0u8; 1];
        let err = reader.read_exact(&mut exact).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    });
    t.finish();
}

fn a_line_that_is_not_utf8_is_invalid_data_and_dropped(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let (res, _) = client
            .write_all(b"good\nbad \xff\xfe bytes\nafter\n".to_vec())
            .await;
        res.unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut reader = BufReader::new(server);
        let mut s = String::new();
        reader.read_line(&mut s).await.unwrap();
        assert_eq!(s, "good\n");
        let err = reader.read_line(&mut s).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(
            err.to_string()
                .contains("invalid utf-8 sequence of 1 bytes from index 4"),
            "{err}"
        );
        assert_eq!(s, "good\n", "the string is unchanged");
        // The bad line was dropped, through its newline; the next follows.
        reader.read_line(&mut s).await.unwrap();
        assert_eq!(s, "good\nafter\n");
    });
    t.finish();
}

/// The half line the interruption tests send before their reader waits.
const HALF: &[u8] = b"hello wo";

fn a_read_line_past_its_deadline_resumes_without_losing_bytes(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let (res, _) = client.write_all(HALF.to_vec()).await;
        res.unwrap();
        let (res, line, mut reader) = Builder::new()
            .timeout(DEADLINE)
            .spawn(async move {
                let mut reader = BufReader::with_capacity(8, server);
                let mut line = String::from("kept:");
                // The half line arrives, then the wait for the rest
                // outlives the deadline.
                let res = reader.read_line(&mut line).await;
                (res, line, reader)
            })
            .await
            .expect("the task returns its read_line's result");
        let err = res.expect_err("the rest of the line never came in time");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
        assert!(cancelled_of(&err).is_deadline());
        assert_eq!(line, "kept:", "the string is unchanged");
        assert_eq!(reader.buffer(), HALF, "the half line is buffered");

        // Outside the expired task the same reader finishes the line.
        wait_io_idle().await;
        let (res, _) = client.write_all(b"rld\nnext\n".to_vec()).await;
        res.unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        assert_eq!(line, "hello world\n", "no byte lost or doubled");
        assert_eq!(reader.next_line().await.unwrap().as_deref(), Some("next"));
    });
    t.finish();
}

fn a_read_line_cancelled_explicitly_resumes_without_losing_bytes(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let (res, _) = client.write_all(HALF.to_vec()).await;
        res.unwrap();
        let half_read = Gate::new();
        let task = {
            let half_read = half_read.clone();
            weft::spawn(async move {
                let mut reader = BufReader::new(server);
                // Wait until the half line is buffered, so the cancel
                // lands in the wait for the rest.
                let held = reader.fill_buf().await.expect("the half line").len();
                assert!(held > 0);
                while reader.buffer().len() < HALF.len() {
                    reader.fill_more().await.expect("the rest of the half line");
                }
                half_read.open();
                let mut line = String::new();
                let res = reader.read_line(&mut line).await;
                (res, line, reader)
            })
        };
        half_read.wait().await;
        sleep(Duration::from_millis(20)).await.unwrap();
        assert!(
            !task.is_finished(),
            "the line is incomplete: read_line waits"
        );
        assert!(task.cancel());
        let (res, line, mut reader) = task.await.expect("the cancelled task returned");
        let err = res.expect_err("the cancel interrupts the wait");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert_eq!(cancelled_of(&err).cause(), Cause::Explicit);
        assert!(line.is_empty());
        assert_eq!(reader.buffer(), HALF);

        wait_io_idle().await;
        let (res, _) = client.write_all(b"rld\n".to_vec()).await;
        res.unwrap();
        assert_eq!(
            reader.next_line().await.unwrap().as_deref(),
            Some("hello world")
        );
    });
    t.finish();
}

fn a_buf_writer_sends_on_flush_and_reports_a_reset_peer(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let fds = fd_count();
        let (mut peer, server) = std_client_pair().await;
        let mut writer = BufWriter::with_capacity(1024, server);
        for i in 0..10 {
            writer
                .write_all(format!("line {i}\n").as_bytes())
                .await
                .unwrap();
        }
        assert_eq!(writer.buffer().len(), 70);
        // Nothing reaches the peer before the flush.
        peer.set_nonblocking(true).unwrap();
        sleep(Duration::from_millis(20)).await.unwrap();
        let mut probe = [0u8; 1];
        let early = peer.read(&mut probe);
        assert_eq!(
            early.as_ref().map_err(io::Error::kind).err(),
            Some(io::ErrorKind::WouldBlock),
            "nothing sent before the flush: {early:?}"
        );
        writer.flush().await.unwrap();
        assert!(writer.buffer().is_empty());
        peer.set_nonblocking(false).unwrap();
        let mut got = vec![0u8; 70];
        peer.read_exact(&mut got).unwrap();
        let expected: String = (0..10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(got, expected.as_bytes());

        // The peer resets the connection: a flush reports it, and keeps
        // the bytes it could not send.
        reset(peer);
        let mut failed = None;
        for _ in 0..100 {
            writer.write_all(&[b'x'; 512]).await.unwrap();
            if let Err(e) = writer.flush().await {
                failed = Some(e);
                break;
            }
            sleep(Duration::from_millis(1)).await.unwrap();
        }
        let err = failed.expect("a flush to a reset peer fails");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{err:?}"
        );
        // The unsent bytes stay (all 512 of the last write when the reset
        // had arrived before its send, as it has on loopback).
        let kept = writer.buffer();
        assert!(
            !kept.is_empty() && kept.len() <= 512 && kept.iter().all(|&b| b == b'x'),
            "the unsent bytes stay: {} bytes",
            kept.len()
        );
        let err = writer.flush().await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "and the next flush fails too: {err:?}"
        );
        drop(writer);
        wait_fds_at_most(fds, "after the writer was dropped").await;
    });
    t.finish();
}

/// Copies lines from `from` to `to`, upper-cased; generic over the traits.
async fn shout<R: AsyncReadOwned, W: AsyncWriteOwned>(
    from: &mut BufReader<R>,
    to: &mut BufWriter<W>,
) -> io::Result<usize> {
    let mut lines = 0;
    while let Some(line) = from.next_line().await? {
        to.write_all(line.to_uppercase().as_bytes()).await?;
        to.write_all(b"\n").await?;
        lines += 1;
    }
    to.flush().await?;
    Ok(lines)
}

fn halves_in_separate_tasks_through_the_generic_traits(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let fds = fd_count();
        let (client, server) = tcp_pair().await;
        let (read_half, write_half) = server.into_split();
        let server_task = weft::spawn(async move {
            let mut reader = BufReader::new(read_half);
            let mut writer = BufWriter::new(write_half);
            let n = shout(&mut reader, &mut writer).await.expect("shout");
            writer.get_ref().shutdown().unwrap();
            n
        });
        let (client_read, client_write) = client.into_split();
        let feeding = weft::spawn(async move {
            let mut writer = BufWriter::with_capacity(7, client_write);
            for word in ["alpha", "beta", "gamma", "delta"] {
                writer.write_all(word.as_bytes()).await.unwrap();
                writer.write_all(b"\n").await.unwrap();
            }
            writer.flush().await.unwrap();
            writer.into_inner().shutdown().unwrap();
        });
        let mut reader = BufReader::new(client_read);
        let mut got = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            got.push(line);
        }
        assert_eq!(got, ["ALPHA", "BETA", "GAMMA", "DELTA"]);
        feeding.await.unwrap();
        assert_eq!(server_task.await.unwrap(), 4);
        drop(reader);
        wait_fds_at_most(fds, "after the halves were dropped").await;

        // The borrowed halves of `split` too (named in full: futures-util's
        // `AsyncReadExt::split`, imported here, would shadow it).
        let (mut client, mut server) = tcp_pair().await;
        let (mut client_read, client_write) = TcpStream::split(&mut client);
        let (res, _) = client_write.write_all(b"one\ntwo\n".to_vec()).await;
        res.unwrap();
        let (server_read, server_write) = TcpStream::split(&mut server);
        let mut reader = BufReader::new(server_read);
        let mut writer = BufWriter::new(server_write);
        for _ in 0..2 {
            let line = reader.next_line().await.unwrap().unwrap();
            writer
                .write_all(line.to_uppercase().as_bytes())
                .await
                .unwrap();
        }
        writer.flush().await.unwrap();
        let mut got = Vec::with_capacity(16);
        for _ in 0..6 {
            if got.len() == 6 {
                break;
            }
            let at = got.len();
            let (res, slice) = AsyncReadOwned::read(&mut client_read, got.slice(at..)).await;
            assert!(res.unwrap() > 0, "no EOF here");
            got = slice.into_inner();
        }
        assert_eq!(got, b"ONETWO");
    });
    t.finish();
}

fn reads_and_writes_of_part_of_a_buffer(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        // A write of bytes 4..9 only.
        let (res, slice) = client
            .write_all(b"skip:sent!rest".to_vec().slice(5..10))
            .await;
        res.unwrap();
        assert_eq!((slice.begin(), slice.end()), (5, 10));
        assert_eq!(slice.into_inner(), b"skip:sent!rest", "handed back whole");
        assert_eq!(read_exact(&server, 5).await, b"sent!");

        // Reads into the room behind what a Vec holds: no copy, the length
        // follows the bytes read, the capacity is what was there.
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"head:");
        let (res, _) = client.write_all(b"first".to_vec()).await;
        res.unwrap();
        let mut n = 0;
        while n < 5 {
            let at = buf.len();
            let (res, slice) = server.read(buf.slice(at..)).await;
            let got = res.unwrap();
            assert!(got > 0, "no EOF here");
            n += got;
            buf = slice.into_inner();
            assert_eq!(buf.len(), at + got, "len raised by the count");
        }
        assert_eq!(buf, b"head:first");
        assert_eq!(buf.capacity(), 64, "the same allocation");

        // A read into a view that ends inside the bytes: overwrites, keeps len.
        let (res, _) = client.write_all(b"XY".to_vec()).await;
        res.unwrap();
        let mut filled = 0;
        while filled < 2 {
            let (res, slice) = server.read(buf.slice(filled..2)).await;
            filled += res.unwrap();
            buf = slice.into_inner();
        }
        assert_eq!(buf, b"XYad:first", "only the view changed");
    });
    t.finish();
}

fn the_futures_io_traits_share_the_buffer(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut sent = b"native\nfirst\r\nsecond\nlast".to_vec();
        sent.extend_from_slice(b"\n");
        sent.extend_from_slice(&big);
        let (res, _) = client.write_all(sent).await;
        res.unwrap();
        client.shutdown(Shutdown::Write).unwrap();

        let mut reader = BufReader::with_capacity(16, server);
        // A native call first: what it leaves buffered, the traits see.
        assert_eq!(reader.next_line().await.unwrap().as_deref(), Some("native"));
        let mut line = String::new();
        AsyncBufReadExt::read_line(&mut reader, &mut line)
            .await
            .unwrap();
        assert_eq!(line, "first\r\n");
        // AsyncRead: small reads copy out of the buffer, large ones (with
        // nothing buffered) go straight to the stream.
        let mut rest = String::new();
        AsyncBufReadExt::read_line(&mut reader, &mut rest)
            .await
            .unwrap();
        assert_eq!(rest, "second\n");
        // The lines stream, for one line (the rest is not text).
        let mut lines = AsyncBufReadExt::lines(&mut reader);
        assert_eq!(lines.try_next().await.unwrap().as_deref(), Some("last"));
        drop(lines);
        let mut got = vec![0u8; big.len()];
        AsyncReadExt::read_exact(&mut reader, &mut got)
            .await
            .unwrap();
        assert_eq!(got, big, "every byte, in order");
        let mut end = [0u8; 8];
        assert_eq!(AsyncReadExt::read(&mut reader, &mut end).await.unwrap(), 0);
    });
    t.finish();
}

/// The Unix streams implement the owned-buffer traits too, so the buffered
/// reader and writer work over them unchanged (owned halves here).
fn a_line_protocol_over_a_unix_stream(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let fds = fd_count();
        let (client, server) = UnixStream::pair().unwrap();
        let server_task = weft::spawn(async move {
            let (read_half, write_half) = server.into_split();
            let mut reader = BufReader::with_capacity(5, read_half);
            let mut writer = BufWriter::new(write_half);
            shout(&mut reader, &mut writer).await.expect("shout")
        });
        let mut writer = BufWriter::with_capacity(3, &client);
        writer.write_all(b"left\nright\n").await.unwrap();
        writer.flush().await.unwrap();
        drop(writer);
        client.shutdown(Shutdown::Write).unwrap();
        let mut reader = BufReader::new(&client);
        let mut got = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            got.push(line);
        }
        assert_eq!(got, ["LEFT", "RIGHT"]);
        assert_eq!(server_task.await.unwrap(), 2);
        drop(reader);
        drop(client);
        wait_fds_at_most(fds, "after the unix pair was dropped").await;
    });
    t.finish();
}
