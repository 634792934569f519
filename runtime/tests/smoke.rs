use std::time::Duration;

#[test]
fn smoke() {
    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let out = rt.block_on(async {
        let mut hs = Vec::new();
        for i in 0..1000u64 {
            hs.push(weft::spawn(async move {
                weft::task::yield_now().await;
                i
            }));
        }
        let mut sum = 0;
        for h in hs {
            sum += h.await.unwrap();
        }
        weft::time::sleep(Duration::from_millis(5)).await.unwrap();
        sum
    });
    assert_eq!(out, 999 * 1000 / 2);
    // A joiner can see a task's output a moment before the task leaves the
    // registry (the sleep above only makes that likely), so wait, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rt.metrics().alive_tasks != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(rt.metrics().alive_tasks, 0);
}
