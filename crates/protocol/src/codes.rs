//! Stable rejection codes. Each code is part of the protocol: clients switch on the string,
//! operators grep logs for it and `docs/operations.md` explains every one of them.

use serde::{Deserialize, Serialize};

/// Why an operation was not accepted. The wire form is the snake_case string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The body breaks the rules for the fields the server knows (BRIEF §3): an `id` that is not
    /// a short non-empty string, a coordinate that is not a finite number, a missing reference.
    MalformedOperation,
    /// The `operationId` is missing, empty or too long.
    InvalidOperationId,
    /// The op's name is not in the vocabulary.
    UnknownOperation,
    /// A real client operation outside spacesync's scope (users, favourites, notifications…).
    /// Never quarantined and never given a sequence number.
    UnsupportedOperation,
    /// The op's `spaceId` names another space than the one it was sent to.
    WrongSpace,
    /// The op references a card, box or list that was permanently deleted, or targets an item
    /// that was taken out of the space.
    ReferenceDeleted,
    /// The op was held for ids that did not arrive within the hold timeout.
    DependencyTimeout,
    /// The op was held for an item whose own create was rejected.
    DependencyRejected,
    /// The space already holds as many waiting ops as it may.
    HoldLimitExceeded,
    /// A batch carried more ops, or an op more bytes, than the server accepts.
    TooLarge,
    /// The database refused the op for a reason that cannot change (a constraint).
    ConstraintViolation,
    /// Applying the op panicked or failed in an unexpected way; the op is quarantined.
    InternalError,
    /// The store could not be reached; the op was not applied. Retry later.
    StoreUnavailable,
    /// The server is overloaded (a full mailbox). Retry later.
    Overloaded,
    /// The server is shutting down. Retry on the next connection.
    ShuttingDown,
}

impl RejectCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: &'static [RejectCode] = &[
        RejectCode::MalformedOperation,
        RejectCode::InvalidOperationId,
        RejectCode::UnknownOperation,
        RejectCode::UnsupportedOperation,
        RejectCode::WrongSpace,
        RejectCode::ReferenceDeleted,
        RejectCode::DependencyTimeout,
        RejectCode::DependencyRejected,
        RejectCode::HoldLimitExceeded,
        RejectCode::TooLarge,
        RejectCode::ConstraintViolation,
        RejectCode::InternalError,
        RejectCode::StoreUnavailable,
        RejectCode::Overloaded,
        RejectCode::ShuttingDown,
    ];

    /// The wire string of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::MalformedOperation => "malformed_operation",
            RejectCode::InvalidOperationId => "invalid_operation_id",
            RejectCode::UnknownOperation => "unknown_operation",
            RejectCode::UnsupportedOperation => "unsupported_operation",
            RejectCode::WrongSpace => "wrong_space",
            RejectCode::ReferenceDeleted => "reference_deleted",
            RejectCode::DependencyTimeout => "dependency_timeout",
            RejectCode::DependencyRejected => "dependency_rejected",
            RejectCode::HoldLimitExceeded => "hold_limit_exceeded",
            RejectCode::TooLarge => "too_large",
            RejectCode::ConstraintViolation => "constraint_violation",
            RejectCode::InternalError => "internal_error",
            RejectCode::StoreUnavailable => "store_unavailable",
            RejectCode::Overloaded => "overloaded",
            RejectCode::ShuttingDown => "shutting_down",
        }
    }

    /// Permanent: the same op will never succeed, the client must drop it and not retry.
    /// Retryable codes mean nothing was applied and the same op may be sent again.
    pub fn is_permanent(self) -> bool {
        !matches!(
            self,
            RejectCode::StoreUnavailable | RejectCode::Overloaded | RejectCode::ShuttingDown
        )
    }

    /// Whether the op is written to the quarantine table. Unsupported ops are answered and
    /// counted but are not poison, and retryable rejections are not failures of the op.
    pub fn is_quarantined(self) -> bool {
        self.is_permanent() && self != RejectCode::UnsupportedOperation
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_match_serde_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in RejectCode::ALL {
            let json = serde_json::to_string(code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert!(seen.insert(code.as_str()), "duplicate {code}");
        }
    }

    #[test]
    fn classification() {
        fn check(code: RejectCode, permanent: bool, quarantined: bool) {
            assert_eq!(code.is_permanent(), permanent, "{code} permanent");
            assert_eq!(code.is_quarantined(), quarantined, "{code} quarantined");
        }
        check(RejectCode::MalformedOperation, true, true);
        check(RejectCode::UnknownOperation, true, true);
        check(RejectCode::UnsupportedOperation, true, false);
        check(RejectCode::DependencyTimeout, true, true);
        check(RejectCode::InternalError, true, true);
        check(RejectCode::StoreUnavailable, false, false);
        check(RejectCode::Overloaded, false, false);
        check(RejectCode::ShuttingDown, false, false);
    }
}
