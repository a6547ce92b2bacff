//! Writes while PostgreSQL restarts: a write answered 2xx is in the table, and one
//! answered 5xx is not. Its own test binary: it stops the cluster its other tests would
//! share.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What each insert was answered: (id, status), status 0 when no HTTP answer came.
fn insert_until(base: &str, first_id: i64, stop: &AtomicBool) -> Vec<(i64, u16)> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(15))
        .build();
    let mut answers = Vec::new();
    let mut id = first_id;
    while !stop.load(Ordering::Relaxed) {
        let status = match agent
            .post(&format!("{base}/commit_probe"))
            .set("Content-Type", "application/json")
            .send_string(&format!(r#"{{"id":{id}}}"#))
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(_) => 0,
        };
        answers.push((id, status));
        id += 1;
    }
    answers
}

#[test]
fn a_write_answered_2xx_is_committed_and_one_answered_5xx_is_not() {
    let h = common::harness();
    common::sql_exec(
        "CREATE TABLE test_api.commit_probe (id bigint PRIMARY KEY);
         GRANT SELECT, INSERT ON test_api.commit_probe TO test_anon;",
    );
    let s = common::server_with(&[("PGRST_DB_POOL", "8")]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (base, stop) = (s.base.clone(), stop.clone());
            std::thread::spawn(move || insert_until(&base, w * 1_000_000, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    h.cluster.pause().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    h.cluster.resume().unwrap();
    // Until writes succeed again, then a little more.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while common::server_with(&[("PGRST_DB_POOL", "8")])
        .get("/commit_probe?limit=1")
        .status
        != 200
    {
        assert!(std::time::Instant::now() < deadline, "no recovery");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let answers: Vec<(i64, u16)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let stored: BTreeSet<i64> = common::sql_rows("SELECT id FROM test_api.commit_probe")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    let answered = |pred: fn(u16) -> bool| -> Vec<i64> {
        answers
            .iter()
            .filter(|(_, status)| pred(*status))
            .map(|(id, _)| *id)
            .collect()
    };
    let committed = answered(|s| (200..300).contains(&s));
    let failed = answered(|s| s >= 500);
    assert!(committed.len() > 20, "too few writes: {answers:?}");
    assert!(
        !failed.is_empty(),
        "the restart failed no write: {answers:?}"
    );
    let lost: Vec<_> = committed.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "answered 2xx but absent: {lost:?}");
    let phantom: Vec<_> = failed.iter().filter(|id| stored.contains(id)).collect();
    assert!(
        phantom.is_empty(),
        "answered 5xx but committed: {phantom:?}"
    );
}
