//! Kafka sink errors, each naming what to fix, and their classes.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::resume;

/// Kafka sink errors; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    #[error("kafka: {what}")]
    Kafka {
        what: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "kafka: topic {topic} does not exist and topic_creation.mode is \"require_existing\": create it, or set topic_creation.mode = \"auto\""
    )]
    MissingTopic { topic: String },
    #[error(
        "kafka: a {size}-byte message for topic {topic} ({position}) is over the limit of {limit} bytes{detail}: raise max_message_bytes (and the broker's message.max.bytes / the topic's max.message.bytes), or set on_oversized = \"dead_letter\""
    )]
    Oversized {
        topic: String,
        size: usize,
        limit: u64,
        position: String,
        detail: String,
    },
    #[error("kafka: delivery to topic {topic} failed ({position})")]
    Delivery {
        topic: String,
        position: String,
        #[source]
        source: Box<KafkaError>,
    },
    #[error(transparent)]
    Resume(#[from] resume::ResumeError),
    #[error("kafka: topic {topic}: {message}")]
    Foreign { topic: String, message: String },
    #[error("kafka: {0}")]
    Config(String),
}

impl crate::error::Classify for KafkaSinkError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass::{Definite, Transient};
        match self {
            KafkaSinkError::Kafka { source, .. } => kafka_class(source),
            KafkaSinkError::Delivery { source, .. } => kafka_class(source),
            KafkaSinkError::Resume(resume::ResumeError::Kafka { source, .. }) => {
                kafka_class(source)
            }
            KafkaSinkError::Resume(resume::ResumeError::Timeout { .. }) => Transient,
            KafkaSinkError::Resume(_) => Definite,
            KafkaSinkError::MissingTopic { .. }
            | KafkaSinkError::Oversized { .. }
            | KafkaSinkError::Foreign { .. }
            | KafkaSinkError::Config(_) => Definite,
        }
    }
}

/// Kafka errors that retrying can't fix: configuration, authorization, a
/// topic setting the broker refuses, a producer fenced by another instance
/// of the task. Everything else (brokers away, timeouts, leader changes)
/// is transient.
pub(super) fn kafka_class(e: &KafkaError) -> crate::error::ErrorClass {
    use crate::error::ErrorClass::{Definite, Transient};
    use RDKafkaErrorCode as C;
    match e {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => Definite,
        _ => match e.rdkafka_error_code() {
            Some(
                C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::TransactionalIdAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::Authentication
                | C::InvalidConfig
                | C::InvalidReplicationFactor
                | C::InvalidPartitions
                | C::PolicyViolation
                | C::Fenced
                | C::ProducerFenced
                | C::InvalidTransactionalState,
            ) => Definite,
            _ => Transient,
        },
    }
}

pub(super) fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> KafkaSinkError {
    let what = what.into();
    move |source| KafkaSinkError::Kafka { what, source }
}

/// Errors that go away when the broker comes back.
pub(super) fn retriable(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::CoordinatorLoadInProgress
        )
    )
}
