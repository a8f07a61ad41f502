use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;

fn key(b: u8) -> Vec<u8> {
    vec![b; 32]
}

fn ring(keys: &[Vec<u8>]) -> KeyRing {
    KeyRing::new("net1", 4098, keys).unwrap()
}

#[test]
fn a_sealed_frame_opens_with_any_ring_holding_its_key() {
    let sender = ring(&[key(1), key(2)]);
    let frame = b"an ethernet frame, more or less".to_vec();
    let mut out = Vec::new();
    assert!(sender.seal(&frame, &mut out));
    assert_eq!(out.len(), frame.len() + OVERHEAD);
    // The frame is not in clear in the datagram.
    assert!(!out.windows(8).any(|w| w == &frame[..8]));
    let h = Header::parse(&out).unwrap();
    assert_eq!((h.vni, h.key_id, h.counter), (4098, key_id(&key(1)), 0));

    // Another node whose primary is key 2 but which still holds key 1.
    let other = ring(&[key(2), key(1)]);
    let mut rx = Receiver::default();
    let mut d = out.clone();
    assert_eq!(rx.open(&other, &mut d).unwrap(), &frame[..]);
    // Counters grow.
    assert!(sender.seal(&frame, &mut out));
    assert_eq!(Header::parse(&out).unwrap().counter, 1);
}

#[test]
fn wrong_key_other_network_and_tampering_are_rejected() {
    let sender = ring(&[key(1)]);
    let mut out = Vec::new();
    assert!(sender.seal(b"payload payload payload", &mut out));
    let mut rx = Receiver::default();

    let mut d = out.clone();
    assert_eq!(rx.open(&ring(&[key(9)]), &mut d), Err(Rejected::UnknownKey));
    // Same key on another VNI: refused before any crypto.
    let other_net = KeyRing::new("net2", 4099, &[key(1)]).unwrap();
    let mut d = out.clone();
    assert_eq!(rx.open(&other_net, &mut d), Err(Rejected::Malformed));
    // Each header byte and a body byte, flipped, fails authentication (or parsing).
    let receiver_ring = ring(&[key(1)]);
    for i in [0, 2, 5, 9, 17, 23, 24, out.len() - 1] {
        let mut d = out.clone();
        d[i] ^= 0x40;
        assert!(rx.open(&receiver_ring, &mut d).is_err(), "byte {i}");
    }
    // The VNI is authenticated: a datagram re-labelled for another network whose ring has
    // the same key does not open there.
    let mut d = out.clone();
    d[3] ^= 1;
    let relabelled = KeyRing::new("net2", 4098 ^ 1, &[key(1)]).unwrap();
    assert_eq!(rx.open(&relabelled, &mut d), Err(Rejected::Forged));
    assert_eq!(rx.sessions(), 0, "forgeries leave no session behind");
    let mut d = out.clone();
    assert!(rx.open(&receiver_ring, &mut d).is_ok());
    assert_eq!(rx.sessions(), 1);
}

#[test]
fn replays_are_dropped_and_reordering_within_the_window_is_not() {
    let sender = ring(&[key(1)]);
    let receiver = ring(&[key(1)]);
    let datagrams: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            let mut out = Vec::new();
            assert!(sender.seal(format!("frame {i}").as_bytes(), &mut out));
            out
        })
        .collect();
    let mut rx = Receiver::default();
    let mut open = |i: usize| {
        let mut d = datagrams[i].clone();
        rx.open(&receiver, &mut d).map(|f| f.to_vec())
    };
    assert_eq!(open(5).unwrap(), b"frame 5");
    assert_eq!(open(5), Err(Rejected::Replayed));
    // Older but within the window: once.
    assert_eq!(open(2).unwrap(), b"frame 2");
    assert_eq!(open(2), Err(Rejected::Replayed));
    assert_eq!(open(200).unwrap(), b"frame 200");
    // 200 - 5 > 128: too old, even though never seen.
    assert_eq!(open(6), Err(Rejected::Replayed));
    assert_eq!(open(100).unwrap(), b"frame 100");
    assert_eq!(open(299).unwrap(), b"frame 299");
    assert_eq!(open(200), Err(Rejected::Replayed));
}

#[test]
fn window_marks_track_the_top() {
    let mut w = ReplayWindow::default();
    assert!(w.fresh(0));
    w.mark(0);
    assert!(!w.fresh(0));
    w.mark(REPLAY_WINDOW + 10);
    assert!(!w.fresh(10), "fell out of the window");
    assert!(w.fresh(11));
    w.mark(11);
    assert!(!w.fresh(11));
    w.mark(u64::MAX - 1);
    assert!(!w.fresh(11) && w.fresh(u64::MAX - 2) && !w.fresh(u64::MAX - 1));
}

#[test]
fn a_new_ring_draws_a_new_salt_and_restarts_its_counter() {
    let a = ring(&[key(1)]);
    let b = ring(&[key(1)]);
    let (mut da, mut db) = (Vec::new(), Vec::new());
    assert!(a.seal(b"x", &mut da) && b.seal(b"x", &mut db));
    let (ha, hb) = (Header::parse(&da).unwrap(), Header::parse(&db).unwrap());
    assert_eq!((ha.counter, hb.counter), (0, 0));
    assert_ne!(ha.salt, hb.salt);
    assert_ne!(
        da[HEADER_LEN..],
        db[HEADER_LEN..],
        "same frame, other key stream"
    );
    // Both open at one receiver: two sessions.
    let mut rx = Receiver::default();
    let r = ring(&[key(1)]);
    assert!(rx.open(&r, &mut da).is_ok() && rx.open(&r, &mut db).is_ok());
    assert_eq!(rx.sessions(), 2);
}

#[test]
fn key_rings_are_checked() {
    let bad: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![], "0 keys"),
        (vec![key(1), key(2), key(3), key(4)], "4 keys"),
        (vec![vec![1; 15]], "15 bytes"),
        (vec![vec![1; 65]], "65 bytes"),
        (vec![key(1), key(1)], "twice"),
    ];
    for (keys, words) in bad {
        match KeyRing::new("net1", 1, &keys) {
            Err(OverlayError::InvalidArgument(m)) => assert!(m.contains(words), "{m}"),
            other => panic!("{words}: {other:?}"),
        }
    }
    let r = ring(&[vec![7; 16], vec![8; 64], key(3)]);
    assert_eq!(r.key_ids()[0], key_id(&[7; 16]));
    // Debug never shows key bytes.
    assert!(!format!("{r:?}").contains("7, 7"));
}

#[test]
fn the_session_table_is_bounded() {
    let receiver = ring(&[key(1)]);
    let mut rx = Receiver::default();
    for _ in 0..MAX_SESSIONS + 5 {
        let mut d = Vec::new();
        assert!(ring(&[key(1)]).seal(b"hello", &mut d));
        assert!(rx.open(&receiver, &mut d).is_ok());
    }
    assert_eq!(rx.sessions(), MAX_SESSIONS);
}

fn arp_request(asker_mac: [u8; 6], asker: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&asker_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&asker_mac);
    f.extend_from_slice(&asker);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

#[test]
fn arp_requests_for_known_peers_are_answered() {
    let asker = [0x02, 0x42, 10, 0, 10, 2];
    let peer_mac = [0x02, 0x42, 10, 0, 10, 3];
    let lookup = |ip: Ipv4Addr| (ip == Ipv4Addr::new(10, 0, 10, 3)).then_some(peer_mac);
    let req = arp_request(asker, [10, 0, 10, 2], [10, 0, 10, 3]);
    let reply = arp_reply(&req, lookup).unwrap();
    assert_eq!(&reply[0..6], &asker);
    assert_eq!(&reply[6..12], &peer_mac);
    assert_eq!(&reply[20..22], &[0, 2], "a reply");
    assert_eq!(&reply[22..28], &peer_mac);
    assert_eq!(&reply[28..32], &[10, 0, 10, 3]);
    assert_eq!(&reply[32..38], &asker);
    assert_eq!(&reply[38..42], &[10, 0, 10, 2]);
    // Unknown target, a reply, a non-ARP frame, a short one: nothing.
    assert!(arp_reply(&arp_request(asker, [10, 0, 10, 2], [10, 0, 10, 9]), lookup).is_none());
    let mut not_request = req.clone();
    not_request[21] = 2;
    assert!(arp_reply(&not_request, lookup).is_none());
    let mut ipv4 = req.clone();
    ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
    assert!(arp_reply(&ipv4, lookup).is_none());
    assert!(arp_reply(&req[..41], lookup).is_none());
}

proptest! {
    #[test]
    fn garbage_never_opens_nor_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                      keep_header in any::<bool>()) {
        let r = ring(&[key(1)]);
        let mut d = bytes.clone();
        if keep_header && d.len() >= HEADER_LEN {
            // A plausible header: right version, VNI and key id.
            let mut real = Vec::new();
            prop_assert!(r.seal(b"x", &mut real));
            d[..8].copy_from_slice(&real[..8]);
        }
        let mut rx = Receiver::default();
        prop_assert!(rx.open(&r, &mut d).is_err());
        prop_assert_eq!(rx.sessions(), 0);
        let _ = arp_reply(&bytes, |_| Some([2, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn any_frame_round_trips(frame in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let r = ring(&[key(1), key(2)]);
        let mut d = Vec::new();
        prop_assert!(r.seal(&frame, &mut d));
        let mut rx = Receiver::default();
        prop_assert_eq!(rx.open(&ring(&[key(2), key(1)]), &mut d).unwrap(), &frame[..]);
    }
}

fn pieces(r: &KeyRing, message: &[u8], piece: usize) -> Vec<Vec<u8>> {
    let mut outs = Vec::new();
    let mut used = 0;
    assert!(r.seal_message(message, piece, &mut outs, &mut used));
    outs.truncate(used);
    outs
}

#[test]
fn long_messages_travel_in_pieces_and_are_reassembled_in_order() {
    let sender = ring(&[key(1)]);
    let receiver = ring(&[key(1)]);
    let message: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let datagrams = pieces(&sender, &message, 1400);
    assert_eq!(datagrams.len(), 8);
    assert!(datagrams.iter().all(|d| d.len() <= 1400 + OVERHEAD));
    let mut rx = Receiver::default();
    let mut got = Vec::new();
    for (i, d) in datagrams.iter().enumerate() {
        let done = rx.accept(&receiver, &mut d.clone(), &mut got).unwrap();
        assert_eq!(done, i == 7, "piece {i}");
    }
    assert_eq!(got, message);

    // A piece missing: the message is dropped, the next one still arrives.
    let second = pieces(&sender, &message, 1400);
    for (i, d) in second.iter().enumerate() {
        if i != 3 {
            assert!(!rx.accept(&receiver, &mut d.clone(), &mut got).unwrap());
        }
    }
    // Pieces swapped: dropped too.
    let third = pieces(&sender, &message, 1400);
    let mut order: Vec<usize> = (0..8).collect();
    order.swap(5, 6);
    for i in order {
        assert!(
            !rx.accept(&receiver, &mut third[i].clone(), &mut got)
                .unwrap()
        );
    }
    let fourth = pieces(&sender, b"short", 1400);
    assert_eq!(fourth.len(), 1);
    assert!(
        rx.accept(&receiver, &mut fourth[0].clone(), &mut got)
            .unwrap()
    );
    assert_eq!(got, b"short");
    // Replayed pieces are refused as any datagram.
    assert_eq!(
        rx.accept(&receiver, &mut datagrams[2].clone(), &mut got),
        Err(Rejected::Replayed)
    );
}

#[test]
fn messages_of_too_many_pieces_are_not_sealed_and_bad_places_not_parsed() {
    let r = ring(&[key(1)]);
    let mut outs = Vec::new();
    let mut used = 0;
    assert!(!r.seal_message(&[0; 65 * 10], 10, &mut outs, &mut used));
    assert_eq!(used, 0);
    assert!(r.seal_message(&[0; 64 * 10], 10, &mut outs, &mut used));
    assert_eq!(used, 64);
    let mut d = outs[0].clone();
    for (index, count) in [(0, 0), (3, 3), (0, 65)] {
        d[24] = index;
        d[25] = count;
        assert!(Header::parse(&d).is_none(), "{index}/{count}");
    }
}
