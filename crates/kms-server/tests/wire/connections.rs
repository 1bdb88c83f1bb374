//! The listener's bounds on connections: an idle keep-alive connection is closed after the idle
//! timeout, past the maximum no connection is served until one closes, and shutdown does not wait
//! on idle clients.

use std::time::{Duration, Instant};

use keyward_kms_server::{serve_with_limits, ConnectionLimits, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raw::{signed_headers, RawClient};
use crate::support::{start, Harness};

/// The harness's engine served on a second listener with `limits`: its endpoint, the server's
/// task and the sender that stops it.
async fn serve_limited(
    h: &Harness,
    limits: ConnectionLimits,
) -> (
    String,
    tokio::task::JoinHandle<keyward_kms_server::Result<()>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine = h.server.engine().clone();
    let task = tokio::spawn(serve_with_limits(
        listener,
        engine,
        ServeOptions::default(),
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
    (endpoint, task, stop)
}

/// A signed ListKeys over `client`.
async fn list_keys(h: &Harness, client: &mut RawClient) -> u16 {
    let headers = signed_headers(
        &h.creds(),
        client.host(),
        "kms",
        "TrentService.ListKeys",
        b"{}",
        time::OffsetDateTime::now_utc(),
    );
    client
        .send("POST", "/", &headers, b"{}")
        .await
        .expect("an answer")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let h = start().await;
    let idle = Duration::from_millis(500);
    let (endpoint, server, stop) = serve_limited(
        &h,
        ConnectionLimits {
            idle_timeout: idle,
            max_connections: 16,
        },
    )
    .await;
    let address = endpoint.trim_start_matches("http://").to_owned();
    // A connection that never sends a request, and one that sends one and then idles.
    let mut silent = TcpStream::connect(&address).await.unwrap();
    let mut used = TcpStream::connect(&address).await.unwrap();
    used.write_all(b"GET / HTTP/1.1\r\nhost: kms\r\n\r\n")
        .await
        .unwrap();
    let start_at = Instant::now();
    for (name, stream) in [("silent", &mut silent), ("used", &mut used)] {
        let mut bytes = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
            .await
            .unwrap_or_else(|_| panic!("the {name} connection is still open after 10 s"))
            .unwrap();
        if name == "used" {
            assert!(
                bytes.starts_with(b"HTTP/1.1 "),
                "answered first: {:?}",
                String::from_utf8_lossy(&bytes)
            );
        } else {
            assert!(bytes.is_empty());
        }
    }
    assert!(
        start_at.elapsed() >= idle - Duration::from_millis(50),
        "closed before the idle timeout: {:?}",
        start_at.elapsed()
    );
    // A connection in use is not cut: requests within the timeout keep it.
    let mut client = RawClient::connect(&endpoint).await;
    for _ in 0..4 {
        assert_eq!(list_keys(&h, &mut client).await, 200);
        tokio::time::sleep(idle / 3).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_maximum_a_connection_waits_for_one_to_close_and_shutdown_skips_idle_ones() {
    let h = start().await;
    let (endpoint, server, stop) = serve_limited(
        &h,
        ConnectionLimits {
            idle_timeout: Duration::from_secs(30),
            max_connections: 2,
        },
    )
    .await;
    let mut first = RawClient::connect(&endpoint).await;
    let mut second = RawClient::connect(&endpoint).await;
    assert_eq!(list_keys(&h, &mut first).await, 200);
    assert_eq!(list_keys(&h, &mut second).await, 200);
    // Both slots are held by idle keep-alive connections: a third is not served...
    let third = {
        let creds_harness_endpoint = endpoint.clone();
        let creds = h.creds();
        tokio::spawn(async move {
            let mut client = RawClient::connect(&creds_harness_endpoint).await;
            let headers = signed_headers(
                &creds,
                client.host(),
                "kms",
                "TrentService.ListKeys",
                b"{}",
                time::OffsetDateTime::now_utc(),
            );
            client
                .send("POST", "/", &headers, b"{}")
                .await
                .unwrap()
                .status
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!third.is_finished(), "a third connection was served");
    // ...until one closes.
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(status, 200);
    // Shutdown closes the idle connections instead of waiting out their timeout.
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops without waiting for idle clients")
        .unwrap()
        .unwrap();
    assert!(
        second.send("POST", "/", &[], b"{}").await.is_err(),
        "the idle connection was closed at shutdown"
    );
}
