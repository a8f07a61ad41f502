//! Forwarding the names the resolver does not own to the upstream resolvers, and finding
//! those in resolv.conf.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tracing::debug;

/// The port a `nameserver` line of resolv.conf means.
const DNS_PORT: u16 = 53;

/// The nameservers of a resolv.conf text, in order, as `ip:53`.
///
/// Comments (`#`, `;`) and other options are ignored, and so are lines whose address does
/// not parse (an IPv6 address with a `%zone` among them: a zone needs an interface index
/// this resolver does not look up).
pub(crate) fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let addr = words.next()?;
            match addr.parse::<IpAddr>() {
                Ok(ip) => Some(SocketAddr::new(ip, DNS_PORT)),
                Err(_) => {
                    debug!(addr, "resolv.conf: nameserver address not usable, skipped");
                    None
                }
            }
        })
        .collect()
}

/// Whether forwarding to `upstream` would reach this very server listening on `local`,
/// and so loop: the same address, or the same port on a loopback/unspecified address
/// while the server listens on every address.
pub(crate) fn points_at_us(upstream: SocketAddr, local: SocketAddr) -> bool {
    if upstream == local {
        return true;
    }
    upstream.port() == local.port()
        && local.ip().is_unspecified()
        && (upstream.ip().is_loopback() || upstream.ip().is_unspecified())
}

/// Forwards raw queries to upstream resolvers, one after the other.
#[derive(Debug)]
pub(crate) struct Forwarder {
    upstream: Vec<SocketAddr>,
    timeout: Duration,
    /// One permit per query being forwarded: a flood of queries for outside names (or a
    /// dead upstream) cannot pile up sockets and tasks without bound.
    in_flight: Semaphore,
}

/// Why one upstream gave no usable answer.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer is too long for TCP framing")]
    TooLong,
}

impl Forwarder {
    /// A forwarder over `upstream`, each tried for at most `timeout`, with at most
    /// `max_in_flight` queries forwarded at once.
    pub(crate) fn new(upstream: Vec<SocketAddr>, timeout: Duration, max_in_flight: usize) -> Self {
        Forwarder {
            upstream,
            timeout,
            in_flight: Semaphore::new(max_in_flight),
        }
    }

    /// Sends `query` (a client's raw query) to each upstream in turn until one answers
    /// with something other than SERVFAIL or REFUSED; `None` when none does, or at once
    /// when the limit of queries in flight is reached.
    ///
    /// Over UDP unless `tcp` (the client came over TCP) or the UDP answer was truncated.
    /// Each attempt uses a fresh random query ID and socket, and an answer counts only if
    /// it carries that ID and the same question.
    pub(crate) async fn forward(&self, query: &[u8], tcp: bool) -> Option<Message> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            debug!("too many queries forwarded at once: this one fails");
            return None;
        };
        let question = Message::from_vec(query).ok()?;
        for &upstream in &self.upstream {
            let id: u16 = rand::random();
            let mut packet = query.to_vec();
            packet[..2].copy_from_slice(&id.to_be_bytes());
            let attempt = async {
                if !tcp {
                    let answer = udp_exchange(upstream, &packet, id, &question).await?;
                    if !answer.metadata.truncation {
                        return Ok(answer);
                    }
                    debug!(%upstream, "upstream answer truncated, asking again over TCP");
                }
                tcp_exchange(upstream, &packet, id, &question).await
            };
            let result = match tokio::time::timeout(self.timeout, attempt).await {
                Ok(result) => result,
                Err(_) => Err(ExchangeError::Timeout(self.timeout)),
            };
            match result {
                Ok(answer)
                    if !matches!(
                        answer.metadata.response_code,
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    return Some(answer);
                }
                Ok(answer) => {
                    debug!(%upstream, code = %answer.metadata.response_code, "upstream failed the query")
                }
                Err(error) => debug!(%upstream, %error, "upstream did not answer"),
            }
        }
        None
    }
}

/// Whether `answer` answers `question` sent with `id`.
fn matches_question(answer: &Message, id: u16, question: &Message) -> bool {
    answer.metadata.id == id
        && answer.metadata.message_type == MessageType::Response
        && answer.queries.len() == question.queries.len()
        && answer.queries.iter().zip(&question.queries).all(|(a, q)| {
            a.query_type() == q.query_type()
                && a.query_class() == q.query_class()
                && a.name().eq_ignore_root(q.name())
        })
}

async fn udp_exchange(
    upstream: SocketAddr,
    packet: &[u8],
    id: u16,
    question: &Message,
) -> Result<Message, ExchangeError> {
    let any: IpAddr = match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    // Connected: the kernel drops datagrams from any other source.
    socket.connect(upstream).await?;
    socket.send(packet).await?;
    let mut buf = vec![0u8; u16::MAX as usize];
    loop {
        let len = socket.recv(&mut buf).await?;
        match Message::from_vec(&buf[..len]) {
            Ok(answer) if matches_question(&answer, id, question) => return Ok(answer),
            Ok(_) => debug!(%upstream, "stray answer from upstream ignored"),
            Err(error) => debug!(%upstream, %error, "malformed answer from upstream ignored"),
        }
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    packet: &[u8],
    id: u16,
    question: &Message,
) -> Result<Message, ExchangeError> {
    let len = u16::try_from(packet.len()).map_err(|_| ExchangeError::TooLong)?;
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let mut framed = Vec::with_capacity(packet.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(packet);
    stream.write_all(&framed).await?;
    loop {
        let len = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        match Message::from_vec(&buf) {
            Ok(answer) if matches_question(&answer, id, question) => return Ok(answer),
            Ok(_) => debug!(%upstream, "stray answer from upstream ignored"),
            Err(error) => debug!(%upstream, %error, "malformed answer from upstream ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.1\n\
                    nameserver  2001:db8::1 # v6\n;nameserver 192.0.2.9\n\
                    nameserver fe80::1%eth0\nnameserver bogus\noptions ndots:0\n\
                    nameserver 127.0.0.53";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.1:53".parse().unwrap(),
                "[2001:db8::1]:53".parse().unwrap(),
                "127.0.0.53:53".parse().unwrap(),
            ]
        );
        assert!(parse_resolv_conf("").is_empty());
    }

    #[test]
    fn loop_detection() {
        let local: SocketAddr = "127.0.0.11:53".parse().unwrap();
        assert!(points_at_us(local, local));
        assert!(!points_at_us("127.0.0.53:53".parse().unwrap(), local));
        let any: SocketAddr = "0.0.0.0:53".parse().unwrap();
        assert!(points_at_us("127.0.0.1:53".parse().unwrap(), any));
        assert!(!points_at_us("127.0.0.1:5353".parse().unwrap(), any));
        assert!(!points_at_us("192.0.2.1:53".parse().unwrap(), any));
    }
}
