//! Outbound mail: authenticated users' messages to non-local recipients. Accepted messages are
//! queue records in a local shard (durable before the 250); a task per executor delivers them
//! to the relay host or the recipients' MX, retries with backoff and bounces when it gives up.

pub mod client;
pub mod dns;
pub mod dsn;

use crate::server::Exec;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

/// Retry schedule after each failed attempt; past the end, the message bounces.
const BACKOFF: &[u64] = &[
    60, 300, 900, 1800, 3600, 3600, 7200, 7200, 14400, 14400, 28800, 28800, 28800, 28800, 28800,
    28800, 28800, 28800, 28800,
];

/// Queues a message for outbound delivery; resolves after it is durable.
pub async fn enqueue(
    exec: &Exec,
    from: &str,
    rcpts: &[String],
    prefix: Bytes,
    body: Bytes,
) -> Result<u64, String> {
    let shard = exec
        .any_local_shard()
        .ok_or("this executor owns no shard")?;
    let id = shard
        .queue_add(from, rcpts, &[prefix, body])
        .await
        .map_err(|e| e.to_string())?;
    WAKE.with(|w| {
        if let Some(w) = w.borrow_mut().take() {
            w.wake();
        }
    });
    Ok(id)
}

thread_local! {
    static WAKE: RefCell<Option<std::task::Waker>> = const { RefCell::new(None) };
}

/// The delivery loop of one executor: runs until the executor stops. Attempt counts and
/// next-attempt times live in the queue records, so backoff survives restarts.
pub async fn run(exec: Rc<Exec>) {
    let running: Rc<RefCell<HashSet<(u32, u64)>>> = Default::default();
    let tls = client::opportunistic_tls();
    loop {
        let now = crate::delivery::unix_now();
        for shard in exec.shards.values() {
            for item in shard.queue_pending() {
                let key = (shard.id(), item.id);
                if item.next_attempt > now || !running.borrow_mut().insert(key) {
                    continue;
                }
                let (exec, running, tls, shard) =
                    (exec.clone(), running.clone(), tls.clone(), shard.clone());
                glommio::spawn_local(async move {
                    if !attempt(&exec, &shard, &item, tls).await {
                        let wait = BACKOFF[(item.attempts as usize).min(BACKOFF.len() - 1)];
                        let next = crate::delivery::unix_now() + wait as i64;
                        if let Err(e) = shard.queue_retry(item.id, item.attempts + 1, next).await {
                            tracing::error!(id = item.id, error = %e, "cannot record retry");
                        }
                    }
                    running.borrow_mut().remove(&key);
                })
                .detach();
            }
        }
        // Sleep until a new message is queued or a second passes.
        let sleep = glommio::timer::sleep(Duration::from_secs(1));
        let wake = futures::future::poll_fn(|cx| {
            WAKE.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
            std::task::Poll::<()>::Pending
        });
        futures_lite::future::or(sleep, async {
            wake.await;
        })
        .await;
    }
}

/// One attempt at one queue item. Returns true when the item is finished (delivered, bounced).
async fn attempt(
    exec: &Rc<Exec>,
    shard: &storage::Shard,
    item: &storage::QueueItem,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> bool {
    let body = match shard.read_body(item.body).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(id = item.id, error = %e, "queued message unreadable");
            return false;
        }
    };
    let cfg = &exec.shared.cfg;
    let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &item.rcpts {
        let d = r
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        by_domain.entry(d).or_default().push(r.clone());
    }
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut retry: Vec<(String, String)> = Vec::new();
    for (domain, rcpts) in by_domain {
        let hosts: Result<Vec<String>, dns::DnsError> = match &cfg.relay.host {
            Some(h) => Ok(vec![h.clone()]),
            None => {
                let d = domain.clone();
                glommio::executor()
                    .spawn_blocking(move || dns::mail_exchangers(&d))
                    .await
            }
        };
        let hosts = match hosts {
            Ok(h) => h,
            Err(dns::DnsError::NoMail(m)) => {
                failed.extend(rcpts.iter().map(|r| (r.clone(), format!("550 {m}"))));
                continue;
            }
            Err(e) => {
                retry.extend(rcpts.iter().map(|r| (r.clone(), format!("451 {e}"))));
                continue;
            }
        };
        let mut outcome: Option<Vec<client::Outcome>> = None;
        let mut last_err = String::from("no mail exchanger reachable");
        for host in hosts {
            let (name, target) = match host.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), host.clone()),
                _ => (host.clone(), format!("{host}:25")),
            };
            let addrs: Vec<SocketAddr> = match glommio::executor()
                .spawn_blocking(move || target.to_socket_addrs().map(|a| a.collect::<Vec<_>>()))
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    last_err = format!("{name}: {e}");
                    continue;
                }
            };
            for addr in addrs {
                let a = client::Attempt {
                    addr,
                    host: &name,
                    helo: &cfg.server.hostname,
                    from: &item.sender,
                    rcpts: &rcpts,
                    body: &body,
                    tls: tls.clone(),
                };
                match client::send(a).await {
                    Ok(o) => {
                        outcome = Some(o);
                        break;
                    }
                    Err(client::AttemptError::Refused(r)) if r.code >= 500 => {
                        outcome = Some(
                            rcpts
                                .iter()
                                .map(|_| {
                                    client::Outcome::Permanent(format!("{} {}", r.code, r.text))
                                })
                                .collect(),
                        );
                        break;
                    }
                    Err(e) => last_err = format!("{name}: {e}"),
                }
            }
            if outcome.is_some() {
                break;
            }
        }
        match outcome {
            Some(o) => {
                for (r, o) in rcpts.iter().zip(o) {
                    match o {
                        client::Outcome::Delivered => {
                            tracing::info!(id = item.id, rcpt = %r, "delivered")
                        }
                        client::Outcome::Permanent(why) => failed.push((r.clone(), why)),
                        client::Outcome::Temporary(why) => retry.push((r.clone(), why)),
                    }
                }
            }
            None => retry.extend(rcpts.iter().map(|r| (r.clone(), format!("451 {last_err}")))),
        }
    }
    let give_up = item.attempts as usize + 1 >= BACKOFF.len();
    if give_up {
        failed.append(&mut retry);
    }
    if !retry.is_empty() {
        if retry.len() == item.rcpts.len() && failed.is_empty() {
            tracing::info!(id = item.id, attempts = item.attempts + 1, "deferred");
            return false;
        }
        // Some recipients are done: requeue only the rest so nobody gets the message twice.
        let rest: Vec<String> = retry.iter().map(|(r, _)| r.clone()).collect();
        if let Err(e) = shard
            .queue_add(&item.sender, &rest, std::slice::from_ref(&body))
            .await
        {
            tracing::error!(id = item.id, error = %e, "cannot requeue");
            return false;
        }
    }
    if !failed.is_empty() && !item.sender.is_empty() {
        let now = crate::delivery::rfc5322_date(crate::delivery::unix_now());
        let dsn = Bytes::from(dsn::bounce(
            &cfg.server.hostname,
            &item.sender,
            &failed,
            &body,
            &now,
        ));
        let r = match exec
            .accounts()
            .resolve(&item.sender, |d| cfg.is_local_domain(d))
        {
            crate::accounts::Resolution::Local(accts) => {
                crate::delivery::deliver(exec, Bytes::new(), dsn, &accts)
                    .await
                    .map_err(|e| e.to_string())
            }
            _ => shard
                .queue_add("", std::slice::from_ref(&item.sender), &[dsn])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = r {
            tracing::error!(id = item.id, error = %e, "cannot store bounce");
            return false;
        }
    }
    if let Err(e) = shard.queue_done(item.id).await {
        tracing::error!(id = item.id, error = %e, "cannot mark queue entry done");
        return false;
    }
    true
}
