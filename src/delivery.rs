//! Local delivery: a message's recipients grouped by owning shard, each owner storing the body
//! once for its shard, and success only when every owner has acknowledged a durable commit.

use crate::server::{Exec, Req, Resp};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Why a delivery failed (the client gets 451 4.3.0, never 250).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The shard could not store the message.
    #[error("shard {shard}: {message}")]
    Storage {
        /// The shard.
        shard: u32,
        /// Storage's explanation.
        message: String,
    },
    /// The owning executor did not answer.
    #[error("executor {executor} unreachable: {message}")]
    Mesh {
        /// The executor.
        executor: usize,
        /// What failed.
        message: String,
    },
    /// This executor was asked to store into a shard it does not own.
    #[error("shard {0} is not owned by this executor")]
    NotOwner(u32),
    /// The shard's disk is full (SMTP answers 452 4.3.1).
    #[error("shard {shard}: {message}")]
    NoSpace {
        /// The shard.
        shard: u32,
        /// Storage's explanation.
        message: String,
    },
}

/// Delivers one message (trace prefix + body) to local accounts, durably.
pub async fn deliver(
    exec: &Rc<Exec>,
    prefix: Bytes,
    body: Bytes,
    accounts: &[String],
) -> Result<(), DeliveryError> {
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for a in accounts {
        by_shard
            .entry(exec.shard_of(a))
            .or_default()
            .push(a.clone());
    }
    let now = unix_now();
    let jobs = by_shard.into_iter().map(|(shard, accts)| {
        let parts = vec![prefix.clone(), body.clone()]; // refcount bumps, not copies
        let exec = exec.clone();
        async move {
            let owner = exec.owner_of(shard);
            if owner == exec.id() {
                return deliver_local(&exec, shard, &parts, &accts, now).await;
            }
            let started = std::time::Instant::now();
            let req = Req::Deliver {
                shard,
                parts,
                accounts: accts,
                internal_date: now,
            };
            let r = match exec.ctx.call(owner, req).await {
                Ok(Resp::Delivered(Ok(()))) => Ok(()),
                Ok(Resp::Delivered(Err(e))) => Err(e),
                Ok(_) => Err(DeliveryError::Mesh {
                    executor: owner,
                    message: "unexpected answer".into(),
                }),
                Err(e) => Err(DeliveryError::Mesh {
                    executor: owner,
                    message: e.to_string(),
                }),
            };
            crate::metrics::record(
                crate::metrics::Metric::DeliveryCrossShard,
                started.elapsed(),
            );
            r
        }
    });
    let results = futures::future::join_all(jobs).await;
    results
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(|_| ())
}

/// Stores a message into a shard this executor owns.
pub async fn deliver_local(
    exec: &Exec,
    shard: u32,
    parts: &[Bytes],
    accounts: &[String],
    internal_date: i64,
) -> Result<(), DeliveryError> {
    let s = exec
        .shards
        .get(&shard)
        .ok_or(DeliveryError::NotOwner(shard))?;
    let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
    s.deliver(parts, &names, internal_date)
        .await
        .map_err(|e| match e {
            storage::StorageError::NoSpace { .. } => DeliveryError::NoSpace {
                shard,
                message: e.to_string(),
            },
            e => DeliveryError::Storage {
                shard,
                message: e.to_string(),
            },
        })?;
    crate::metrics::incr(
        crate::metrics::Counter::Deliveries(shard),
        accounts.len() as u64,
    );
    Ok(())
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Formats unix seconds as an RFC 5322 date in UTC (`Tue, 25 Nov 2026 12:00:00 +0000`).
pub fn rfc5322_date(secs: i64) -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day padding:none] [month repr:short] [year] [hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "Thu, 1 Jan 1970 00:00:00 +0000".into())
}
