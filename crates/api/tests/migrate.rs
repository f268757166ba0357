//! Instances that start together on one SQLite file (replicas, or a new release
//! beside the old one) must not race to create the same tables.
#![allow(clippy::unwrap_used)]

use warden_api::db::Db;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_on_a_fresh_sqlite_file_all_start() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("warden.db").display()
        );
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Db::connect(&url, 2).await })
            })
            .collect();
        for start in starts {
            if let Err(error) = start.await.unwrap() {
                panic!("round {round}: an instance failed to start: {error:#}");
            }
        }
    }
}
