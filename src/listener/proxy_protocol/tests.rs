use super::*;
use tokio::io::AsyncReadExt;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A v2 header: signature, version/command, family, length, then `block`.
fn v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(ver_cmd);
    h.push(family);
    h.extend_from_slice(&(block.len() as u16).to_be_bytes());
    h.extend_from_slice(block);
    h
}

fn v2_tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&src);
    b.extend_from_slice(&dst);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(tlvs);
    v2(0x21, 0x11, &b)
}

/// Reads the header off an in-memory stream holding `header` + `after` and checks that
/// exactly `after` is left.
async fn read_then_rest(header: &[u8], after: &[u8]) -> Result<ProxyHeader, ProxyProtocolError> {
    let mut data = header.to_vec();
    data.extend_from_slice(after);
    let mut io = std::io::Cursor::new(data);
    let h = read_header(&mut io, Duration::from_secs(1)).await?;
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, after, "the parser consumed bytes past the header");
    Ok(h)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test]
async fn v1_tcp4_line_from_haproxy_gives_addresses_and_leaves_request_unread() {
    let h = read_then_rest(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", GET)
        .await
        .unwrap();
    assert_eq!(h.source, Some(sa("192.168.0.1:56324")));
    assert_eq!(h.destination, Some(sa("192.168.0.11:443")));
}

#[tokio::test]
async fn v1_tcp6_line_gives_v6_addresses() {
    let h = read_then_rest(
        b"PROXY TCP6 2001:db8::1 2001:db8::ffff:1 65535 0\r\n",
        b"\x16\x03\x01",
    )
    .await
    .unwrap();
    assert_eq!(h.source, Some(sa("[2001:db8::1]:65535")));
    assert_eq!(h.destination, Some(sa("[2001:db8::ffff:1]:0")));
}

#[tokio::test]
async fn v1_unknown_gives_no_addresses_and_ignores_the_rest_of_the_line() {
    for line in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
    ] {
        let h = read_then_rest(line, GET).await.unwrap();
        assert_eq!(h.source, None);
        assert_eq!(h.destination, None);
    }
}

#[tokio::test]
async fn v1_longest_legal_line_is_accepted() {
    // The spec's worst case: 107 bytes.
    let line = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(line.len(), 107);
    read_then_rest(line, GET).await.unwrap();
}

#[tokio::test]
async fn v1_line_without_crlf_within_107_bytes_is_refused_without_reading_further() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(200, b'a');
    let mut io = std::io::Cursor::new(line);
    let e = read_header(&mut io, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(e, ProxyProtocolError::V1TooLong), "{e}");
    assert_eq!(io.position(), V1_MAX_LEN as u64);
}

#[tokio::test]
async fn malformed_v1_lines_are_refused() {
    let cases: &[&[u8]] = &[
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n", // bare LF
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",   // missing port
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 1\r\n",
        b"PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n", // double space
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n", // trailing space
        b"PROXY TCP5 192.168.0.1 192.168.0.11 56324 443\r\n",
        b"PROXY tcp4 192.168.0.1 192.168.0.11 56324 443\r\n",
        b"PROXY TCP4 2001:db8::1 192.168.0.11 56324 443\r\n", // v6 in TCP4
        b"PROXY TCP6 192.168.0.1 2001:db8::1 56324 443\r\n",  // v4 in TCP6
        b"PROXY TCP4 192.168.0.256 192.168.0.11 56324 443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 +1 443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 0443 443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11  443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\r\n",
        b"PROXY TCP4 192.168.0.1\x00 192.168.0.11 56324 443\r\n",
        b"PROXY \xff\xfe\r\n",
        b"PROXY \r\n",
    ];
    for c in cases {
        let r = read_then_rest(c, b"").await;
        assert!(
            matches!(r, Err(ProxyProtocolError::V1Malformed(_))),
            "{:?} gave {r:?}",
            String::from_utf8_lossy(c)
        );
    }
}

#[tokio::test]
async fn v2_tcp4_gives_addresses_and_leaves_request_unread() {
    let h = read_then_rest(&v2_tcp4([10, 0, 0, 1], [10, 0, 0, 2], 51000, 443, &[]), GET)
        .await
        .unwrap();
    assert_eq!(h.source, Some(sa("10.0.0.1:51000")));
    assert_eq!(h.destination, Some(sa("10.0.0.2:443")));
}

#[tokio::test]
async fn v2_tlvs_after_the_addresses_are_skipped_exactly() {
    // PP2_TYPE_AUTHORITY "meet.contoso.com", PP2_TYPE_NOOP, an AWS VPC endpoint TLV.
    let mut tlvs = vec![0x02, 0x00, 16];
    tlvs.extend_from_slice(b"meet.contoso.com");
    tlvs.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]);
    tlvs.extend_from_slice(&[0xEA, 0x00, 0x05, 0x01, b'v', b'p', b'c', b'e']);
    let h = read_then_rest(
        &v2_tcp4([203, 0, 113, 7], [10, 0, 0, 2], 1, 443, &tlvs),
        b"\x16\x03\x01\x02\x00",
    )
    .await
    .unwrap();
    assert_eq!(h.source, Some(sa("203.0.113.7:1")));
}

#[tokio::test]
async fn v2_tcp6_gives_v6_addresses() {
    let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8::1:2".parse().unwrap();
    let mut b = Vec::new();
    b.extend_from_slice(&src.octets());
    b.extend_from_slice(&dst.octets());
    b.extend_from_slice(&4711u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    let h = read_then_rest(&v2(0x21, 0x21, &b), GET).await.unwrap();
    assert_eq!(h.source, Some(sa("[2001:db8::7]:4711")));
    assert_eq!(h.destination, Some(sa("[2001:db8::1:2]:443")));
}

#[tokio::test]
async fn v2_local_command_gives_no_addresses_whatever_its_block() {
    // A balancer's health check: LOCAL with UNSPEC and no block, or with an address block.
    let h = read_then_rest(&v2(0x20, 0x00, &[]), GET).await.unwrap();
    assert_eq!((h.source, h.destination), (None, None));
    let h = read_then_rest(&v2(0x20, 0x11, &[1; 12]), GET)
        .await
        .unwrap();
    assert_eq!((h.source, h.destination), (None, None));
}

#[tokio::test]
async fn v2_unix_and_unspec_give_no_addresses() {
    let h = read_then_rest(&v2(0x21, 0x31, &[b'/'; 216]), GET)
        .await
        .unwrap();
    assert_eq!((h.source, h.destination), (None, None));
    let h = read_then_rest(&v2(0x21, 0x00, &[]), GET).await.unwrap();
    assert_eq!((h.source, h.destination), (None, None));
}

#[tokio::test]
async fn v2_with_wrong_signature_is_refused() {
    let mut h = v2_tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, &[]);
    h[11] = b'X'; // "\r\n\r\n\0\r\nQUIX"
    let e = read_then_rest(&h, b"").await.unwrap_err();
    assert!(matches!(e, ProxyProtocolError::NoHeader), "{e}");
}

#[tokio::test]
async fn plain_http_or_tls_without_a_header_is_refused() {
    for data in [
        GET,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"PROXY\r\n",
    ] {
        let mut io = std::io::Cursor::new(data.to_vec());
        let e = read_header(&mut io, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, ProxyProtocolError::NoHeader), "{e}");
    }
}

#[tokio::test]
async fn v2_bad_version_command_or_family_is_refused() {
    let block = [0u8; 12];
    let e = read_then_rest(&v2(0x11, 0x11, &block), b"")
        .await
        .unwrap_err();
    assert!(matches!(e, ProxyProtocolError::V2Version(1)), "{e}");
    let e = read_then_rest(&v2(0x22, 0x11, &block), b"")
        .await
        .unwrap_err();
    assert!(matches!(e, ProxyProtocolError::V2Command(2)), "{e}");
    let e = read_then_rest(&v2(0x21, 0x41, &block), b"")
        .await
        .unwrap_err();
    assert!(matches!(e, ProxyProtocolError::V2Family(0x41)), "{e}");
}

#[tokio::test]
async fn v2_address_block_too_short_for_its_family_is_refused() {
    for (family, len) in [(0x11u8, 11usize), (0x21, 35), (0x31, 215)] {
        let e = read_then_rest(&v2(0x21, family, &vec![0; len]), b"")
            .await
            .unwrap_err();
        assert!(
            matches!(e, ProxyProtocolError::V2ShortAddresses { .. }),
            "{family:#x}: {e}"
        );
    }
}

#[tokio::test]
async fn v2_oversize_length_is_refused_before_reading_the_block() {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    let mut io = std::io::Cursor::new(h);
    let e = read_header(&mut io, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(e, ProxyProtocolError::V2TooLong(65535)), "{e}");
    assert_eq!(io.position(), 16);
}

#[tokio::test]
async fn truncated_headers_are_refused() {
    let full_v2 = v2_tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, &[0x04, 0, 1, 0]);
    let full_v1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    for cut in 0..full_v2.len() {
        let mut io = std::io::Cursor::new(full_v2[..cut].to_vec());
        let e = read_header(&mut io, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ProxyProtocolError::Truncated),
            "v2 cut {cut}: {e}"
        );
    }
    for cut in 0..full_v1.len() {
        let mut io = std::io::Cursor::new(full_v1[..cut].to_vec());
        let e = read_header(&mut io, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ProxyProtocolError::Truncated),
            "v1 cut {cut}: {e}"
        );
    }
}

#[tokio::test]
async fn a_client_that_stalls_inside_the_header_times_out() {
    let (mut client, mut server) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut client, b"PROXY TCP4 1.2.3.4")
        .await
        .unwrap();
    let e = read_header(&mut server, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(e, ProxyProtocolError::Timeout(_)), "{e}");
    drop(client);
}

#[tokio::test]
async fn a_header_arriving_byte_by_byte_is_read_whole() {
    let (mut client, mut server) = tokio::io::duplex(1);
    let mut data = v2_tcp4([10, 0, 0, 9], [10, 0, 0, 2], 9, 443, &[]);
    data.extend_from_slice(GET);
    let writer = tokio::spawn(async move {
        tokio::io::AsyncWriteExt::write_all(&mut client, &data)
            .await
            .unwrap();
    });
    let h = read_header(&mut server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(h.source, Some(sa("10.0.0.9:9")));
    let mut rest = vec![0u8; GET.len()];
    server.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest, GET);
    writer.await.unwrap();
}

#[test]
fn parse_slice_reports_the_bytes_used() {
    let mut data = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec();
    let n = data.len();
    data.extend_from_slice(GET);
    let (h, used) = parse_slice(&data).unwrap();
    assert_eq!(used, n);
    assert_eq!(h.source, Some(sa("1.2.3.4:1")));
}
