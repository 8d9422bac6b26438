//! The shared replay store: one DynamoDB table, one conditional `PutItem`
//! per one-time use.
//!
//! Table: partition key `pk` (String), TTL on `expires_at` (Number, Unix
//! seconds), on-demand billing. Item: `{pk: "jti#<sha256>" | "sigv4#<sha256>"
//! | "upstream#<sha256>" | "dpop#<sha256>", expires_at: N}`. The write succeeds only if
//! `attribute_not_exists(pk) OR expires_at < :now`: DynamoDB's TTL deletes
//! expired items only eventually (within days), so an expired item must
//! count as absent. `ConditionalCheckFailedException` is a replay.
//!
//! Fail closed: a throttled, unreachable or slow DynamoDB answers
//! [`StoreError::Unavailable`] (the caller answers 503 with `Retry-After`);
//! throttling is retried within the call policy, timeouts are not (a write
//! whose answer was lost must not be retried into a false replay).

use std::fmt;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ScalarAttributeType, TableStatus};
use aws_sdk_dynamodb::Client;
use oidc_core::aws::{self, CallOutcome, CallPolicy, SdkConfig};

use super::{FirstUse, ReplayKey, ReplayStore, StoreError};

/// The partition key attribute.
pub const PARTITION_KEY: &str = "pk";
/// The TTL attribute (Unix seconds).
pub const EXPIRES_AT: &str = "expires_at";
const CONDITION: &str = "attribute_not_exists(pk) OR expires_at < :now";

/// The table cannot be used: the server must not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No such table (or no access to it).
    #[error(
        "replay table {table:?}: {reason}; create it with partition key `pk` (String), TTL on `expires_at`, \
         on-demand billing (docs/deploy.md, \"The replay table\")"
    )]
    Unusable {
        /// The table.
        table: String,
        /// What is wrong.
        reason: String,
    },
}

/// A [`ReplayStore`] on a DynamoDB table shared by every replica.
#[derive(Clone)]
pub struct DynamoDbReplayStore {
    client: Client,
    table: String,
    calls: CallPolicy,
}

impl fmt::Debug for DynamoDbReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbReplayStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoDbReplayStore {
    /// The store on `table`, checked with `DescribeTable`: a missing table or
    /// another key schema is a [`TableError`]; DynamoDB unreachable at start
    /// is not (logins fail closed until it answers, `/readyz` says so).
    pub async fn connect(sdk: &SdkConfig, table: &str, calls: CallPolicy) -> Result<Self, TableError> {
        // Retries happen in `aws::call`, within the request's budget.
        let config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .build();
        let store = Self {
            client: Client::from_conf(config),
            table: table.to_owned(),
            calls,
        };
        match store.check_table().await {
            Ok(()) => {
                tracing::info!(table, "replay store: DynamoDB table checked");
                Ok(store)
            }
            Err(Check::Unusable(reason)) => Err(TableError::Unusable {
                table: table.to_owned(),
                reason,
            }),
            Err(Check::Unavailable(reason)) => {
                tracing::warn!(table, %reason, "replay store unreachable at start; assertion logins answer 503 until it is");
                Ok(store)
            }
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn check_table(&self) -> Result<(), Check> {
        let output = aws::call(&self.calls, "dynamodb:DescribeTable", || {
            self.client.describe_table().table_name(&self.table).send()
        })
        .await
        .map_err(|failure| match failure.outcome {
            CallOutcome::Refused => Check::Unusable(match failure.code.as_deref() {
                Some("ResourceNotFoundException") => "the table does not exist".to_owned(),
                _ => failure.reason,
            }),
            _ => Check::Unavailable(failure.reason),
        })?;
        let table = output
            .table()
            .ok_or_else(|| Check::Unusable("DescribeTable answered without a table".into()))?;
        let keys: Vec<(&str, &KeyType)> = table
            .key_schema()
            .iter()
            .map(|k| (k.attribute_name(), k.key_type()))
            .collect();
        if keys != [(PARTITION_KEY, &KeyType::Hash)] {
            let found: Vec<String> = keys
                .iter()
                .map(|(name, kind)| format!("{name} ({kind})"))
                .collect();
            return Err(Check::Unusable(format!(
                "its key schema is [{}], not one partition key `pk`",
                found.join(", ")
            )));
        }
        let pk_type = table
            .attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == PARTITION_KEY)
            .map(|a| a.attribute_type());
        if pk_type != Some(&ScalarAttributeType::S) {
            return Err(Check::Unusable(format!(
                "its partition key `pk` is of type {}, not String",
                pk_type.map_or_else(|| "unknown".to_owned(), |t| t.to_string())
            )));
        }
        match table.table_status() {
            Some(TableStatus::Active | TableStatus::Updating) | None => Ok(()),
            Some(status) => Err(Check::Unavailable(format!("the table is {status}"))),
        }
    }
}

enum Check {
    Unusable(String),
    Unavailable(String),
}

#[async_trait]
impl ReplayStore for DynamoDbReplayStore {
    async fn first_use(
        &self,
        key: &ReplayKey,
        remember_until: u64,
        now: u64,
    ) -> Result<FirstUse, StoreError> {
        let pk = AttributeValue::S(key.partition_key());
        let until = AttributeValue::N(remember_until.to_string());
        let now = AttributeValue::N(now.to_string());
        let result = aws::call(&self.calls, "dynamodb:PutItem", || {
            self.client
                .put_item()
                .table_name(&self.table)
                .item(PARTITION_KEY, pk.clone())
                .item(EXPIRES_AT, until.clone())
                .condition_expression(CONDITION)
                .expression_attribute_values(":now", now.clone())
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(FirstUse::Fresh),
            Err(failure) if failure.code.as_deref() == Some("ConditionalCheckFailedException") => {
                Ok(FirstUse::Replayed)
            }
            Err(failure) => {
                tracing::warn!(table = %self.table, reason = %failure.reason, "replay store call failed; refusing the login");
                Err(StoreError::Unavailable(failure.reason))
            }
        }
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.check_table().await.map_err(|e| match e {
            Check::Unusable(reason) | Check::Unavailable(reason) => StoreError::Unavailable(reason),
        })
    }

    fn kind(&self) -> &'static str {
        "dynamodb"
    }
}
