//! Request counters and a request log that tests read, for example to assert that a no-op sync
//! made zero writes.

use std::collections::BTreeMap;

use serde::Serialize;

/// Requests kept in [`Stats::log`].
const LOG_CAPACITY: usize = 10_000;

/// One request as the server saw it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RequestRecord {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or
    /// `discovery` / `openapi` / `version` for the rest.
    pub verb: String,
    /// `<plural>[.<group>][/<subresource>]`, empty for non-resource paths.
    pub resource: String,
    /// Namespace, if any.
    pub namespace: String,
    /// Object name, if any.
    pub name: String,
    /// HTTP status code of the answer.
    pub code: u16,
    /// `fieldManager`, or the client's user agent.
    pub manager: String,
}

impl RequestRecord {
    /// Whether the request was a write verb (create, update, patch, delete, deletecollection).
    #[must_use]
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// Counters per verb and resource, and the most recent requests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// `(verb, resource)` -> count.
    pub counts: BTreeMap<String, u64>,
    /// The most recent requests, oldest first.
    pub log: Vec<RequestRecord>,
    /// Write requests that changed something (a new resourceVersion).
    pub mutations: u64,
}

impl Stats {
    /// Records one request.
    pub fn record(&mut self, record: RequestRecord) {
        *self
            .counts
            .entry(format!("{} {}", record.verb, record.resource))
            .or_default() += 1;
        if self.log.len() >= LOG_CAPACITY {
            self.log.drain(..LOG_CAPACITY / 2);
        }
        self.log.push(record);
    }

    /// Write requests (any verb that may change state) among the logged requests.
    #[must_use]
    pub fn writes(&self) -> usize {
        self.log.iter().filter(|r| r.is_write()).count()
    }
}
