//! The transport yardstick of `bench grpc --yardstick`: a MessagingService whose SendMessage
//! answers OK at once without touching a broker, served by tonic with the gateway's transport
//! settings. What the benchmark measures against it is the ceiling of gRPC unary calls on this
//! machine with these clients — the part of a SendMessage's cost that is HTTP/2, protobuf and
//! task wake-ups, not rocketgate.
//!
//! Every other RPC answers `UNIMPLEMENTED`. Only the benchmark uses it; it is never a server
//! anyone connects to.
//!
//! Owns the yardstick server; must not use the broker or the store.

use std::pin::Pin;

use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::messaging_service_server::{
    MessagingService, MessagingServiceServer,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The yardstick service.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Yardstick;

fn unimplemented() -> Status {
    Status::unimplemented("the yardstick serves SendMessage only")
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl MessagingService for Yardstick {
    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let ok = || pb::Status {
            code: pb::Code::Ok as i32,
            message: "OK".into(),
        };
        let entries = request
            .into_inner()
            .messages
            .into_iter()
            .map(|m| pb::SendResultEntry {
                status: Some(ok()),
                message_id: m
                    .system_properties
                    .map(|s| s.message_id)
                    .unwrap_or_default(),
                transaction_id: String::new(),
                offset: 0,
                recall_handle: String::new(),
            })
            .collect();
        Ok(Response::new(pb::SendMessageResponse {
            status: Some(ok()),
            entries,
        }))
    }

    async fn query_route(
        &self,
        _: Request<pb::QueryRouteRequest>,
    ) -> Result<Response<pb::QueryRouteResponse>, Status> {
        Err(unimplemented())
    }
    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Err(unimplemented())
    }
    async fn query_assignment(
        &self,
        _: Request<pb::QueryAssignmentRequest>,
    ) -> Result<Response<pb::QueryAssignmentResponse>, Status> {
        Err(unimplemented())
    }
    async fn ack_message(
        &self,
        _: Request<pb::AckMessageRequest>,
    ) -> Result<Response<pb::AckMessageResponse>, Status> {
        Err(unimplemented())
    }
    async fn forward_message_to_dead_letter_queue(
        &self,
        _: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<pb::ForwardMessageToDeadLetterQueueResponse>, Status> {
        Err(unimplemented())
    }
    async fn update_offset(
        &self,
        _: Request<pb::UpdateOffsetRequest>,
    ) -> Result<Response<pb::UpdateOffsetResponse>, Status> {
        Err(unimplemented())
    }
    async fn get_offset(
        &self,
        _: Request<pb::GetOffsetRequest>,
    ) -> Result<Response<pb::GetOffsetResponse>, Status> {
        Err(unimplemented())
    }
    async fn query_offset(
        &self,
        _: Request<pb::QueryOffsetRequest>,
    ) -> Result<Response<pb::QueryOffsetResponse>, Status> {
        Err(unimplemented())
    }
    async fn end_transaction(
        &self,
        _: Request<pb::EndTransactionRequest>,
    ) -> Result<Response<pb::EndTransactionResponse>, Status> {
        Err(unimplemented())
    }
    async fn notify_client_termination(
        &self,
        _: Request<pb::NotifyClientTerminationRequest>,
    ) -> Result<Response<pb::NotifyClientTerminationResponse>, Status> {
        Err(unimplemented())
    }
    async fn change_invisible_duration(
        &self,
        _: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<pb::ChangeInvisibleDurationResponse>, Status> {
        Err(unimplemented())
    }

    type ReceiveMessageStream = BoxStream<pb::ReceiveMessageResponse>;
    async fn receive_message(
        &self,
        _: Request<pb::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        Err(unimplemented())
    }
    type PullMessageStream = BoxStream<pb::PullMessageResponse>;
    async fn pull_message(
        &self,
        _: Request<pb::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        Err(unimplemented())
    }
    type TelemetryStream = BoxStream<pb::TelemetryCommand>;
    async fn telemetry(
        &self,
        _: Request<tonic::Streaming<pb::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        Err(unimplemented())
    }
}

/// Serves the yardstick on `listener` until `stop` fires.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(MessagingServiceServer::new(Yardstick))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                let _ = stop.await;
            },
        )
        .await
}
