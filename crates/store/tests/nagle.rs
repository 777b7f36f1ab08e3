//! PostgreSQL over TCP: the store's connections have Nagle's algorithm off, so a large statement
//! is not held back ~40 ms for the server's delayed ACK (sqlx 0.9.0 did not set `TCP_NODELAY`;
//! the store sets it on its own connections whatever the driver does). Its own test binary: no other test's connections share the process.

#![cfg(target_os = "linux")]

use std::str::FromStr as _;

use evaltap_store::{Store, create_scratch_database, delayed_sockets_to, drop_scratch_database};

#[tokio::test]
async fn store_connections_to_postgres_do_not_wait_for_delayed_acks() {
    // Before anything runs on this test's runtime (finding PostgreSQL may start a cluster).
    let Some(postgres) = evaltap_testenv::postgres_or_skip() else { return };
    evaltap_testenv::ran_on("PostgreSQL");
    let admin = postgres.admin_url.clone();
    let port = sqlx::postgres::PgConnectOptions::from_str(&admin).expect("url").get_port();
    let (url, name) = create_scratch_database(&admin, "evaltap_nagle").await.expect("database");
    let store = Store::connect(&url).await.expect("store");
    // Several connections open at once, so the pool holds more than one.
    let counts = futures::future::join_all((0..6).map(|_| store.count_exchanges())).await;
    assert!(counts.iter().all(Result::is_ok), "{counts:?}");
    assert_eq!(
        delayed_sockets_to(port).expect("inspect sockets"),
        0,
        "a store connection still has Nagle on"
    );
    // The check itself sees a socket that has it on: a plain TCP connection to the server
    // (sqlx's own connections have it off again since 0.9.1).
    let host = sqlx::postgres::PgConnectOptions::from_str(&admin).expect("url").get_host().to_string();
    let plain = std::net::TcpStream::connect((host.as_str(), port)).expect("plain connection");
    assert!(!plain.nodelay().expect("nodelay"), "a plain socket has Nagle on");
    assert!(delayed_sockets_to(port).expect("inspect sockets") >= 1, "the check would miss a delayed socket");
    drop(plain);
    drop(store);
    drop_scratch_database(&admin, &name).await.expect("drop");
}
