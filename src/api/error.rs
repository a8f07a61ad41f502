//! [`ApiError`]: an error as the Engine API answers it (`{"message": ...}`
//! with Docker's status), and the status each library error maps to.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::API_VERSION;
use crate::error::Error;

/// An error as the Engine API answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message (`{"message": ...}`).
    pub message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 503: this node is not in a swarm.
    pub fn not_in_swarm() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
        }
    }

    /// 503: this node is a worker.
    pub fn not_a_manager() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.".into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::NameConflict(_) => StatusCode::CONFLICT,
            Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::FailedPrecondition(_) => StatusCode::BAD_REQUEST,
            Error::NotLeader { .. } | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match e {
            Error::NameConflict(m)
            | Error::InvalidArgument(m)
            | Error::Conflict(m)
            | Error::FailedPrecondition(m)
            | Error::Unavailable(m)
            | Error::Internal(m) => m,
            other => other.to_string(),
        };
        ApiError { status, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [("API-Version", API_VERSION)],
            axum::Json(serde_json::json!({ "message": self.message })),
        )
            .into_response()
    }
}
