use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use super::*;

fn issue(ca: &RootCa, node: &str, role: NodeRole) -> NodeIdentity {
    test_identity(ca, node, role, &Id::from("cluster1"))
}

#[test]
fn root_ca_roundtrips_through_pem() {
    let ca = RootCa::generate().unwrap();
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let again = RootCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
    assert_eq!(again.digest(), ca.digest());
    assert!(ca.digest_string().starts_with("sha256:") && ca.digest_string().len() == 7 + 64);
    let public_only = RootCa::from_pem(ca.cert_pem(), None).unwrap();
    assert!(public_only.key_pem().is_none());
    let (_, csr) = new_key_and_csr().unwrap();
    let err = public_only.issue(
        &csr,
        &Id::from("n"),
        NodeRole::Worker,
        &Id::from("c"),
        Duration::from_secs(60),
    );
    assert!(matches!(err, Err(CaError::Crypto(m)) if m.contains("does not hold")));
}

#[test]
fn a_node_certificate_is_not_a_root() {
    let ca = RootCa::generate().unwrap();
    let node = issue(&ca, "node1", NodeRole::Worker);
    let err = RootCa::from_pem(node.cert_pem(), None).unwrap_err();
    assert!(matches!(err, CaError::BadCertificate(m) if m.contains("not a CA")));
    assert!(matches!(
        RootCa::from_pem("garbage", None),
        Err(CaError::BadCertificate(_))
    ));
}

#[test]
fn tokens_pin_the_ca_and_carry_a_secret() {
    let ca = RootCa::generate().unwrap();
    let worker = ca.new_join_token();
    let manager = ca.new_join_token();
    assert_ne!(worker, manager);
    assert!(worker.starts_with("SWMTKN-1-"));
    let parts: Vec<&str> = worker.split('-').collect();
    assert_eq!((parts[2].len(), parts[3].len()), (50, 25));
    let t = JoinToken::parse(&worker).unwrap();
    assert_eq!(t.ca_digest, ca.digest());
    t.check_ca(ca.cert_der()).unwrap();
    let other = RootCa::generate().unwrap();
    assert!(matches!(
        t.check_ca(other.cert_der()),
        Err(CaError::CaMismatch { .. })
    ));
    assert_eq!(t.role_in(&worker, &manager).unwrap(), NodeRole::Worker);
    assert_eq!(
        JoinToken::parse(&manager)
            .unwrap()
            .role_in(&worker, &manager)
            .unwrap(),
        NodeRole::Manager
    );
    // After rotation the old token is refused with a clear error.
    let rotated = ca.new_join_token();
    let err = t.role_in(&rotated, &manager).unwrap_err();
    assert_eq!(err, CaError::TokenRejected);
    assert!(err.to_string().contains("rotated"));
    assert!(
        !format!("{t:?}").contains(&t.secret),
        "Debug hides the secret"
    );
}

#[test]
fn malformed_tokens_say_what_is_wrong() {
    let ca = RootCa::generate().unwrap();
    let good = ca.new_join_token();
    let p: Vec<&str> = good.split('-').collect();
    for (bad, needle) in [
        ("", "expected SWMTKN-1"),
        ("hello", "expected SWMTKN-1"),
        (&format!("SWMTKN-2-{}-{}", p[2], p[3]) as &str, "version"),
        (
            &format!("SWMTKN-1-{}-{}", &p[2][1..], p[3]),
            "50 characters",
        ),
        (&format!("SWMTKN-1-{}-{}!", p[2], &p[3][1..]), "not base 36"),
        (
            &format!("SWMTKN-1-{}-{}", "z".repeat(50), p[3]),
            "not base 36",
        ),
    ] {
        let err = JoinToken::parse(bad).unwrap_err();
        assert!(
            matches!(&err, CaError::InvalidToken(m) if m.contains(needle)),
            "{bad}: {err}"
        );
    }
    assert!(
        JoinToken::parse(&format!("  {good}\n")).is_ok(),
        "surrounding whitespace is fine"
    );
}

#[test]
fn base36_roundtrips() {
    for bytes in [
        [0u8; 32],
        [0xff; 32],
        ring::digest::digest(&ring::digest::SHA256, b"x")
            .as_ref()
            .try_into()
            .unwrap(),
    ] {
        let s = base36(&bytes, 50);
        assert_eq!(s.len(), 50);
        assert_eq!(unbase36::<32>(&s).unwrap(), bytes);
    }
    assert_eq!(base36(&[0, 35], 3), "00z");
}

#[test]
fn issued_certificates_name_node_role_and_cluster() {
    let ca = RootCa::generate().unwrap();
    let m = issue(&ca, "abcdef0123456789abcdef012", NodeRole::Manager);
    assert_eq!(
        m.peer,
        PeerIdentity {
            node_id: Id::from("abcdef0123456789abcdef012"),
            role: NodeRole::Manager,
            cluster_id: Id::from("cluster1"),
            not_before: m.peer.not_before,
            not_after: m.peer.not_after,
        }
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((m.peer.not_after - now - 3600).abs() < 10);
    // Valid from five minutes back (clock skew); renewed past half its life.
    assert!((now - 300 - m.peer.not_before).abs() < 10);
    let half = m.peer.renew_at(0.5);
    assert_eq!(
        half,
        m.peer.not_before + (m.peer.not_after - m.peer.not_before) / 2
    );
    assert_eq!(m.peer.renew_at(2.0), m.peer.not_after);
    let w = issue(&ca, "worker1", NodeRole::Worker);
    assert_eq!(w.peer.role, NodeRole::Worker);
    // A certificate with someone else's key is refused.
    let (other_key, _) = new_key_and_csr().unwrap();
    assert!(matches!(
        NodeIdentity::from_pem(&other_key, w.cert_pem()),
        Err(CaError::BadCertificate(_))
    ));
    assert!(matches!(
        ca.issue(
            "not a csr",
            &Id::from("n"),
            NodeRole::Worker,
            &Id::from("c"),
            Duration::from_secs(1)
        ),
        Err(CaError::BadCsr(_))
    ));
}

/// Runs a TLS handshake between `server` and `client` over a socket pair and
/// returns what each side saw.
fn handshake(
    ca_server: &RootCa,
    server: &NodeIdentity,
    ca_client: &RootCa,
    client: &NodeIdentity,
) -> (Result<PeerIdentity, String>, Result<String, String>) {
    let (a, b) = UnixStream::pair().unwrap();
    let sconf = server_config(ca_server, server).unwrap();
    let cconf = client_config(ca_client, client).unwrap();
    let srv = std::thread::spawn(move || -> Result<PeerIdentity, String> {
        let conn = rustls::ServerConnection::new(sconf).map_err(|e| e.to_string())?;
        let mut s = rustls::StreamOwned::new(conn, a);
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        s.write_all(b"pong!").map_err(|e| e.to_string())?;
        s.flush().map_err(|e| e.to_string())?;
        peer_identity(s.conn.peer_certificates()).map_err(|e| e.to_string())
    });
    let cli = (|| -> Result<String, String> {
        let name = rustls::pki_types::ServerName::try_from(MANAGER_OU).unwrap();
        let conn = rustls::ClientConnection::new(cconf, name).map_err(|e| e.to_string())?;
        let mut s = rustls::StreamOwned::new(conn, b);
        s.write_all(b"ping!").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf).into())
    })();
    (srv.join().unwrap(), cli)
}

#[test]
fn mutual_tls_between_nodes_of_one_swarm() {
    let ca = RootCa::generate().unwrap();
    let manager = issue(&ca, "manager1", NodeRole::Manager);
    let worker = issue(&ca, "worker1", NodeRole::Worker);
    let (server_saw, client_got) = handshake(&ca, &manager, &ca, &worker);
    assert_eq!(client_got.unwrap(), "pong!");
    let peer = server_saw.unwrap();
    assert_eq!(
        (peer.node_id.as_str(), peer.role),
        ("worker1", NodeRole::Worker)
    );
}

#[test]
fn a_certificate_from_another_swarm_is_refused() {
    let ca = RootCa::generate().unwrap();
    let manager = issue(&ca, "manager1", NodeRole::Manager);
    let stranger_ca = RootCa::generate().unwrap();
    let stranger = issue(&stranger_ca, "intruder", NodeRole::Manager);
    // The server refuses the intruder's client certificate...
    let (server_saw, _) = handshake(&ca, &manager, &ca, &stranger);
    assert!(server_saw.is_err());
    // ...and a node pinned to its own CA refuses an impostor server.
    let (_, client_got) = handshake(&stranger_ca, &stranger, &ca, &manager);
    assert!(client_got.is_err());
}

#[test]
fn workers_cannot_pose_as_managers() {
    let ca = RootCa::generate().unwrap();
    let worker = issue(&ca, "worker1", NodeRole::Worker);
    let other = issue(&ca, "worker2", NodeRole::Worker);
    // A worker's certificate names swarm-worker, not the manager server name.
    let (_, client_got) = handshake(&ca, &worker, &ca, &other);
    let err = client_got.unwrap_err();
    assert!(
        err.to_lowercase().contains("name") || err.contains("certificate"),
        "{err}"
    );
}

#[test]
fn the_cluster_port_negotiates_http2_by_alpn() {
    // gRPC clients that insist on ALPN (grpc-go, grpcio) offer only "h2".
    let ca = RootCa::generate().unwrap();
    let manager = issue(&ca, "manager1", NodeRole::Manager);
    let worker = issue(&ca, "worker1", NodeRole::Worker);
    let (a, b) = UnixStream::pair().unwrap();
    let sconf = cluster_server_config(&ca, &manager).unwrap();
    let mut cconf = (*client_config(&ca, &worker).unwrap()).clone();
    cconf.alpn_protocols = vec![b"h2".to_vec()];
    let srv = std::thread::spawn(move || {
        let conn = rustls::ServerConnection::new(sconf).unwrap();
        let mut s = rustls::StreamOwned::new(conn, a);
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).unwrap();
        s.conn.alpn_protocol().map(<[u8]>::to_vec)
    });
    let name = rustls::pki_types::ServerName::try_from(MANAGER_OU).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cconf), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, b);
    s.write_all(b"x").unwrap();
    s.flush().unwrap();
    assert_eq!(s.conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(srv.join().unwrap().as_deref(), Some(&b"h2"[..]));
}
