//! The driver choice: `WEFT_IO`, `Builder::io_driver`, bad values, and the
//! fallback to epoll when io_uring is refused (a seccomp filter in a child
//! process makes `io_uring_setup` fail with EPERM, as Docker's default
//! profile does).

use std::{process::Command, time::Duration};

use weft::{
    io::Driver,
    net::{TcpListener, TcpStream},
    runtime::{BuildError, Builder},
};

const CHILD_ENV: &str = "WEFT_TEST_SECCOMP_CHILD";

fn echo_once(rt: &weft::Runtime) {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = weft::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let (n, buf) = conn.read(Vec::with_capacity(16)).await;
            let n = n.unwrap();
            let (res, _) = conn.write_all(buf[..n].to_vec()).await;
            res.unwrap();
        });
        let client = TcpStream::connect(addr).await.unwrap();
        let (res, _) = client.write_all(&b"fallback"[..]).await;
        res.unwrap();
        let (n, buf) = client.read(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..n.unwrap()], b"fallback");
        server.await.unwrap();
    });
}

/// Makes `io_uring_setup` fail with EPERM for this process from now on.
#[cfg(target_arch = "x86_64")]
fn refuse_io_uring() {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const NR_IO_URING_SETUP: u32 = 425;
    // BPF: load arch; if not x86_64 allow; load nr; if io_uring_setup
    // return ERRNO(EPERM); allow.
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        stmt(LD_W_ABS, 4),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 0, 3),
        stmt(LD_W_ABS, 0),
        jump(JEQ_K, NR_IO_URING_SETUP, 0, 1),
        stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(RET_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with a valid filter program that outlives the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ),
            0,
            "installing the seccomp filter: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn refused_io_uring_falls_back_to_epoll() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // In the child: refuse io_uring, then check both choices.
        refuse_io_uring();
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("auto falls back instead of failing");
        assert_eq!(rt.io_driver(), Driver::Epoll);
        echo_once(&rt);
        let err = Builder::new_multi_thread()
            .worker_threads(1)
            .io_driver(Driver::Uring)
            .build()
            .expect_err("a forced io_uring that is refused is an error");
        assert!(matches!(err, BuildError::Io(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("io_uring is not usable"), "{msg}");
        println!("child: fell back to epoll; forced uring said: {msg}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "refused_io_uring_falls_back_to_epoll",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env_remove("WEFT_IO")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("child: fell back to epoll"),
        "the child ran the checks:\n{stdout}"
    );
}

#[test]
fn builder_choice_is_reported_and_used() {
    for driver in [Driver::Uring, Driver::Epoll] {
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .io_driver(driver)
            .build()
            .unwrap();
        assert_eq!(rt.io_driver(), driver);
        assert_eq!(rt.handle().io_driver(), driver);
        assert_eq!(rt.metrics().io_driver, driver);
        echo_once(&rt);
        assert!(rt.shutdown_timeout(Duration::from_secs(5)));
    }
}

#[test]
fn driver_names_parse_and_bad_ones_are_errors() {
    assert_eq!("uring".parse::<Driver>().unwrap(), Driver::Uring);
    assert_eq!("EPOLL".parse::<Driver>().unwrap(), Driver::Epoll);
    assert_eq!(" auto ".parse::<Driver>().unwrap(), Driver::Auto);
    let err = "kqueue".parse::<Driver>().unwrap_err();
    assert!(err.to_string().contains("kqueue"), "{err}");
    assert_eq!(Driver::Uring.to_string(), "uring");
}

#[test]
fn bad_ring_sizes_are_build_errors() {
    for entries in [0, 32769] {
        let err = Builder::new_multi_thread()
            .worker_threads(1)
            .io_ring_entries(entries)
            .build()
            .expect_err("out of range");
        assert!(matches!(err, BuildError::InvalidRingEntries(n) if n == entries));
        assert!(err.to_string().contains("io_ring_entries"), "{err}");
    }
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .io_ring_entries(8)
        .build()
        .unwrap();
    echo_once(&rt);
}

#[test]
fn a_bad_weft_io_value_is_a_clear_error() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let err = Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect_err("WEFT_IO=kqueue names no driver");
        let msg = err.to_string();
        assert!(msg.contains("kqueue") && msg.contains("epoll"), "{msg}");
        println!("child: rejected {msg}");
        return;
    }
    // In a child process: the environment is process-wide.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_bad_weft_io_value_is_a_clear_error",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env("WEFT_IO", "kqueue")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}");
    assert!(stdout.contains("child: rejected"), "{stdout}");
}

#[test]
fn io_spin_is_validated_and_a_spinning_runtime_still_parks_when_idle() {
    let err = Builder::new_multi_thread()
        .worker_threads(1)
        .io_spin(100_001)
        .build()
        .expect_err("too many spins");
    assert!(matches!(err, BuildError::InvalidIoSpin(100_001)), "{err:?}");
    assert!(err.to_string().contains("io_spin"), "{err}");

    for (driver, adaptive) in [
        (Driver::Uring, false),
        (Driver::Epoll, false),
        (Driver::Uring, true),
        (Driver::Epoll, true),
    ] {
        let builder = Builder::new_multi_thread()
            .worker_threads(2)
            .io_driver(driver);
        let mut builder = if adaptive {
            builder.io_spin_adaptive()
        } else {
            builder.io_spin(1_000)
        };
        let rt = builder.build().unwrap();
        echo_once(&rt);
        // A connection left idle with a read in flight: the workers spin a
        // bounded number of polls, then park (they do not poll forever).
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let _client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let reader = weft::spawn(async move {
                let (res, _) = server.read(Vec::with_capacity(8)).await;
                res
            });
            weft::time::sleep(Duration::from_millis(50)).await.unwrap();
            let enters = |rt: &weft::runtime::Handle| -> u64 {
                rt.metrics().worker.iter().map(|w| w.io_enters).sum()
            };
            let handle = weft::runtime::Handle::current();
            let before = enters(&handle);
            weft::time::sleep(Duration::from_millis(200)).await.unwrap();
            let during = enters(&handle) - before;
            // Spinning forever would be ~100k+ polls in 200 ms; a spin of
            // 1,000 per park and a few parks is far below.
            assert!(during < 20_000, "{during} driver entries while idle");
            reader.abort();
        });
        assert!(rt.shutdown_timeout(Duration::from_secs(5)));
    }
}
