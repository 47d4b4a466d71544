//! The REST API under `/v1`, one module per resource family, and the router that joins them
//! with the OpenAPI document generated from the handlers' `#[utoipa::path]` definitions.
//!
//! Every handler is a thin translation: extract (problem+json on any rejection) → one or a few
//! `Broker` calls → JSON. Handlers keep no state of their own beyond [`AppState`].

pub(crate) mod admin;
pub(crate) mod consume;
pub(crate) mod ops;
pub(crate) mod publish;
pub(crate) mod query;
pub(crate) mod users;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::callback;
use crate::state::AppState;

/// Every documented route.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(publish::publish, query::search))
        .routes(routes!(publish::publish_batch))
        .routes(routes!(publish::publish_half))
        .routes(routes!(publish::commit))
        .routes(routes!(publish::rollback))
        .routes(routes!(
            callback::register,
            callback::show,
            callback::unregister
        ))
        .routes(routes!(consume::receive))
        .routes(routes!(consume::ack))
        .routes(routes!(consume::nack))
        .routes(routes!(consume::invisibility))
        .routes(routes!(consume::dead_letter))
        .routes(routes!(consume::pull))
        .routes(routes!(consume::offsets))
        .routes(routes!(consume::commit_offset))
        .routes(routes!(consume::reset_offsets))
        .routes(routes!(admin::create_topic, admin::list_topics))
        .routes(routes!(
            admin::describe_topic,
            admin::update_topic,
            admin::delete_topic
        ))
        .routes(routes!(admin::route))
        .routes(routes!(admin::create_group, admin::list_groups))
        .routes(routes!(admin::describe_group, admin::delete_group))
        .routes(routes!(admin::lag))
        .routes(routes!(admin::clients))
        .routes(routes!(admin::retry_policy, admin::set_retry_policy))
        .routes(routes!(admin::dlq_list, admin::dlq_purge))
        .routes(routes!(admin::dlq_resend))
        .routes(routes!(query::by_id))
        .routes(routes!(query::trace))
        .routes(routes!(query::scheduled))
        .routes(routes!(query::cancel_scheduled))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(
            users::show_user,
            users::update_user,
            users::delete_user
        ))
        .routes(routes!(users::policy, users::set_policy))
        .routes(routes!(users::issue_token, users::user_tokens))
        .routes(routes!(users::tokens))
        .routes(routes!(users::revoke_token))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
}
