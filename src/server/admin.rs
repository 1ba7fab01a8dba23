//! The admin socket (`ringpost stats`) and the Prometheus endpoint, served by executor 0.

use super::executor::{Exec, Req, Resp};
use crate::metrics::{self, Merged, Snapshot};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// Gathers every executor's snapshot over the mesh and merges them.
fn collector(exec: &Rc<Exec>) -> metrics::Collect {
    let exec = exec.clone();
    Rc::new(move |reset: bool| {
        let exec = exec.clone();
        Box::pin(async move {
            let answers = exec.ctx.broadcast(|| Req::Stats { reset }).await;
            let snaps: Vec<Snapshot> = answers
                .into_iter()
                .filter_map(|r| match r {
                    Ok(Resp::Stats(s)) => Some(*s),
                    _ => None,
                })
                .collect();
            Snapshot::merge(&snaps)
        }) as Pin<Box<dyn Future<Output = Merged>>>
    })
}

/// Binds the admin socket and, if configured, the metrics listener.
pub fn bind(exec: &Rc<Exec>) -> Result<Vec<glommio::Task<()>>, String> {
    let mut tasks = Vec::new();
    let path = metrics::admin_socket_path(&exec.shared.cfg.server.data_dir);
    let unix = metrics::bind_admin_socket(&path).map_err(|e| e.to_string())?;
    tasks.push(glommio::spawn_local(metrics::serve_admin(
        unix,
        collector(exec),
    )));
    if let Some(addr) = exec.shared.cfg.listen.metrics {
        let tcp = super::listeners::bind(addr)
            .map_err(|e| format!("cannot listen on {addr} (metrics): {e}"))?;
        tasks.push(glommio::spawn_local(metrics::serve_http(
            tcp,
            collector(exec),
        )));
    }
    Ok(tasks)
}
