//! Answering one query: from the index when the name is ours, from upstream otherwise.

use std::iter;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, PTR};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, warn};

use super::forward::Forwarder;
use super::records::Index;

/// The largest UDP answer this server sends, whatever the client advertises (the
/// DNS-flag-day value that avoids IP fragmentation).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// The request handler the hickory server runs for every query.
pub(crate) struct Handler {
    pub(crate) index: Arc<ArcSwap<Index>>,
    pub(crate) ttl: u32,
    pub(crate) forwarder: Forwarder,
    /// Advances on every rotated answer: the offset of the first address.
    pub(crate) rotation: AtomicUsize,
}

/// What the index says about one question.
enum Local {
    /// The name is ours: these records answer it (possibly none: NOERROR, no data).
    Answer(Vec<Record>),
    /// Not ours: ask upstream.
    NotOurs,
}

impl Handler {
    fn lookup(&self, name: &Name, qtype: RecordType, qclass: DNSClass) -> Local {
        if qclass != DNSClass::IN && qclass != DNSClass::ANY {
            return Local::NotOurs;
        }
        let index = self.index.load();
        if qtype == RecordType::PTR
            && let Some(names) = arpa_address(name).and_then(|addr| index.reverse(addr))
        {
            return Local::Answer(
                names
                    .iter()
                    .map(|target| {
                        Record::from_rdata(name.clone(), self.ttl, RData::PTR(PTR(target.clone())))
                    })
                    .collect(),
            );
        }
        let Some(entry) = index.lookup(name) else {
            return Local::NotOurs;
        };
        let mut addrs = entry.addrs.clone();
        if entry.rotate && addrs.len() > 1 {
            let offset = self.rotation.fetch_add(1, Ordering::Relaxed) % addrs.len();
            addrs.rotate_left(offset);
        }
        let wanted = |addr: &IpAddr| match qtype {
            RecordType::A => addr.is_ipv4(),
            RecordType::AAAA => addr.is_ipv6(),
            RecordType::ANY => true,
            _ => false,
        };
        Local::Answer(
            addrs
                .into_iter()
                .filter(wanted)
                .map(|addr| {
                    let data = match addr {
                        IpAddr::V4(v4) => RData::A(A(v4)),
                        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                    };
                    Record::from_rdata(name.clone(), self.ttl, data)
                })
                .collect(),
        )
    }

    /// The EDNS record of an answer to `request`, if it carried one: the payload size is
    /// what the client accepts, capped at [`MAX_UDP_PAYLOAD`] (never below 512).
    fn answer_edns(request: &Request) -> Option<Edns> {
        request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(theirs.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours
        })
    }
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa.`, `….ip6.arpa.`) stands for, when it
/// names one whole address.
fn arpa_address(name: &Name) -> Option<IpAddr> {
    let mut name = name.clone();
    name.set_fqdn(true);
    let net = name.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    mut response: R,
    code: ResponseCode,
) -> ResponseInfo {
    let builder = MessageResponseBuilder::from_message_request(request);
    let message = builder.error_msg(&request.metadata, code);
    finish(request, response.send_response(message).await)
}

fn finish(
    request: &Request,
    sent: Result<ResponseInfo, hickory_server::net::NetError>,
) -> ResponseInfo {
    sent.unwrap_or_else(|error| {
        warn!(src = %request.src(), %error, "could not send a DNS answer");
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = ResponseCode::ServFail;
        ResponseInfo::from(Header {
            metadata,
            counts: HeaderCounts::default(),
        })
    })
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        if request.metadata.op_code != OpCode::Query {
            return send_error(request, response, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            // Zero or several questions: nothing sensible to answer.
            return send_error(request, response, ResponseCode::FormErr).await;
        };
        let question = info.query.original();
        let edns = Self::answer_edns(request);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        match self.lookup(
            question.name(),
            question.query_type(),
            question.query_class(),
        ) {
            Local::Answer(records) => {
                debug!(name = %question.name(), qtype = %question.query_type(), answers = records.len(), "answered locally");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.authoritative = true;
                metadata.recursion_available = true;
                let message = builder.build(
                    metadata,
                    records.iter(),
                    iter::empty(),
                    iter::empty(),
                    iter::empty(),
                );
                finish(request, response.send_response(message).await)
            }
            Local::NotOurs => {
                let tcp = request.protocol() == Protocol::Tcp;
                let Some(answer) = self.forwarder.forward(request.as_slice(), tcp).await else {
                    debug!(name = %question.name(), "no upstream answered: SERVFAIL");
                    return send_error(request, response, ResponseCode::ServFail).await;
                };
                let mut metadata = answer.metadata;
                metadata.id = request.metadata.id;
                metadata.recursion_available = true;
                metadata.truncation = false;
                let message = builder.build(
                    metadata,
                    answer.answers.iter(),
                    answer.authorities.iter(),
                    iter::empty(),
                    answer.additionals.iter(),
                );
                finish(request, response.send_response(message).await)
            }
        }
    }
}
