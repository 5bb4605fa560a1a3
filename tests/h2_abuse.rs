//! h2 abuse: a client that resets streams as fast as it opens them (rapid reset,
//! CVE-2023-44487) is cut off, and a well-behaved client on another connection is not.

mod common;

use common::*;
use portico::demo::backend::Role;
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_client_is_cut_off_without_hurting_others() {
    let lab = Lab::new();
    let proxy_ip = unique_loopback();
    let member = unique_loopback();
    let _m = lab
        .plain_member(SocketAddr::new(member, 8080), "fe01", Role::FrontEnd)
        .await;
    let cfg = lab.write_config(&one_member_config(proxy_ip, member, "", ""));
    let addr = SocketAddr::new(proxy_ip, 8081);
    let _p = Portico::start(&cfg, addr);
    // h2 with prior knowledge on the clear-text listener.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn_task = tokio::spawn(conn);
    let mut cut_off = false;
    for _ in 0..5000 {
        let req = http::Request::get("http://app.contoso.com/long-poll?secs=5")
            .body(())
            .unwrap();
        match client.send_request(req, true) {
            Ok((resp, _stream)) => drop(resp), // dropping the handle resets the stream
            Err(_) => {
                cut_off = true;
                break;
            }
        }
        match tokio::time::timeout(Duration::from_millis(50), client.clone().ready()).await {
            Ok(Ok(c)) => client = c,
            Ok(Err(_)) => {
                cut_off = true;
                break;
            }
            Err(_) => {}
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), conn_task).await;
    assert!(
        cut_off || matches!(ended, Ok(Ok(Err(_)))),
        "the abusive connection was never cut off"
    );
    // Another client is served normally.
    let mut c = H1::connect(addr).await.unwrap();
    assert_eq!(
        c.get("app.contoso.com", "/echo", &[]).await.unwrap().status,
        200
    );
}
