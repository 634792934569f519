//! `#[weft::test]` and `#[weft::main]` as a user writes them.

mod common;

use weft::runtime::Handle;

#[weft::test]
async fn test_attribute_runs_the_body_on_two_workers() {
    let handle = Handle::current();
    assert_eq!(
        handle.metrics().workers,
        2,
        "the documented default for tests"
    );
    assert_eq!(weft::spawn(async { 1 + 1 }).await.unwrap(), 2);
}

#[weft::test(worker_threads = 1)]
async fn test_attribute_accepts_worker_threads() {
    assert_eq!(Handle::current().metrics().workers, 1);
    weft::time::sleep(std::time::Duration::from_millis(1))
        .await
        .unwrap();
}

#[weft::test(worker_threads = 4)]
async fn test_attribute_with_four_workers() {
    assert_eq!(Handle::current().metrics().workers, 4);
    let joins: Vec<_> = (0..100).map(|i| weft::spawn(async move { i })).collect();
    let mut sum = 0;
    for j in joins {
        sum += j.await.unwrap();
    }
    assert_eq!(sum, 99 * 100 / 2);
}

#[weft::test]
async fn test_attribute_supports_result_returns() -> Result<(), weft::JoinError> {
    let v = weft::spawn(async { 3 }).await?;
    assert_eq!(v, 3);
    Ok(())
}

#[weft::test]
#[should_panic(expected = "inside a macro test")]
async fn test_attribute_keeps_other_attributes() {
    panic!("inside a macro test");
}

mod app {
    #[weft::main(worker_threads = 2)]
    pub(crate) async fn main() -> usize {
        let join = weft::spawn(async { weft::runtime::Handle::current().metrics().workers });
        join.await.unwrap()
    }
}

mod default_app {
    #[weft::main]
    pub(crate) async fn main() -> Option<usize> {
        weft::task::try_id().map_or(Some(0), |_| None)
    }
}

#[test]
fn main_attribute_builds_a_runtime_and_blocks_on_the_body() {
    assert_eq!(app::main(), 2);
    // No runtime is left entered afterwards.
    assert!(Handle::try_current().is_none());
}

#[test]
fn main_attribute_without_arguments_uses_the_default_runtime() {
    // The body runs in block_on, not in a task.
    assert_eq!(default_app::main(), Some(0));
}
