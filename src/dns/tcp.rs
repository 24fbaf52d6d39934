//! TCP (and anything else hickory-server serves) through a custom
//! `RequestHandler` running the same pipeline as the UDP fast path.

use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, Metadata, ResponseCode};
use hickory_proto::serialize::binary::BinDecodable;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::handler::{Shared, Transport};

/// Adapts [`Shared`] to hickory-server.
pub struct Handler(pub Arc<Shared>);

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut rh: R,
    ) -> ResponseInfo {
        let mut out = Vec::with_capacity(512);
        let answered = {
            let st = self.0.state.load();
            let health = self.0.health.load();
            self.0.handle(
                &st,
                &health,
                request.as_slice(),
                request.src().ip(),
                Transport::Tcp,
                None,
                &mut out,
            )
        };
        let fail = || {
            let mut m = Metadata::response_from_request(&request.metadata);
            m.response_code = ResponseCode::ServFail;
            m
        };
        if !answered {
            return ResponseInfo::from(hickory_proto::op::Header {
                metadata: fail(),
                counts: Default::default(),
            });
        }
        // Re-emit our exact records through hickory's encoder.
        let msg = match Message::from_bytes(&out) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "internal: could not re-read our own response");
                let resp = MessageResponseBuilder::from_message_request(request)
                    .error_msg(&request.metadata, ResponseCode::ServFail);
                return rh.send_response(resp).await.unwrap_or_else(|_| {
                    ResponseInfo::from(hickory_proto::op::Header {
                        metadata: fail(),
                        counts: Default::default(),
                    })
                });
            }
        };
        let mut metadata = msg.metadata;
        metadata.message_type = MessageType::Response;
        let edns = msg.edns.clone();
        let mut b = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            b.edns(e);
        }
        let resp = b.build(
            metadata,
            msg.answers.iter(),
            msg.authorities.iter(),
            std::iter::empty(),
            msg.additionals.iter(),
        );
        match rh.send_response(resp).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "TCP send failed");
                ResponseInfo::from(hickory_proto::op::Header {
                    metadata: fail(),
                    counts: Default::default(),
                })
            }
        }
    }
}
