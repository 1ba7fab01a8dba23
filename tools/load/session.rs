//! What every connection task shares: its context, the connect step and the outer loop that
//! reconnects after errors until the run is over.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::cli::{Mode, Security, Settings};
use crate::error::LoadError;
use crate::pace::{Control, Pacer};
use crate::stats::Recorder;
use crate::transport::{Conn, TlsSetup};
use crate::users::User;

/// Pause before reconnecting after a failed session, so a dead server is not hammered.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(50);

/// Everything one connection task needs.
pub struct ConnCtx {
    /// Connection number, 0-based over the whole run.
    pub index: usize,
    /// Run settings.
    pub settings: Arc<Settings>,
    /// Deadline, budget and stop flag.
    pub control: Arc<Control>,
    /// This executor's recorder.
    pub rec: Rc<Recorder>,
    /// TLS client setup, when the run uses TLS.
    pub tls: Option<TlsSetup>,
    /// Prefix of generated message ids, unique per run.
    pub run_id: Arc<str>,
}

impl ConnCtx {
    /// The account of this connection (users are dealt round-robin).
    pub fn user(&self) -> Option<&User> {
        let users = &self.settings.users;
        users.get(self.index % users.len().max(1))
    }

    /// The envelope sender: --from, else this connection's user, else `load@localhost`.
    pub fn sender(&self) -> &str {
        match (&self.settings.from, self.user()) {
            (Some(from), _) => from,
            (None, Some(user)) => &user.address,
            (None, None) => "load@localhost",
        }
    }

    /// Opens the TCP connection, with the TLS handshake for implicit TLS.
    pub async fn connect(&self) -> Result<Conn, LoadError> {
        let s = &self.settings;
        let mut conn = Conn::connect(s.addr, s.connect_timeout, s.io_timeout).await?;
        if s.security == Security::Implicit {
            conn.start_tls(self.tls_setup()?).await?;
        }
        Ok(conn)
    }

    /// The TLS setup, which exists whenever the run uses TLS.
    pub fn tls_setup(&self) -> Result<&TlsSetup, LoadError> {
        self.tls.as_ref().ok_or(LoadError::Unsupported("TLS setup"))
    }
}

/// Per-connection state that survives reconnects.
pub struct ConnState {
    /// The open-loop schedule.
    pub pacer: Pacer,
    /// Random choices of this connection.
    pub rng: StdRng,
    /// Messages generated so far (for unique ids).
    pub seq: u64,
}

/// Runs sessions of the configured protocol until the run is over; errors are counted and
/// followed by a reconnect.
pub async fn run_connection(ctx: ConnCtx) {
    let s = &ctx.settings;
    let mut state = ConnState {
        pacer: Pacer::new(s.rate, s.connections, ctx.index, ctx.control.start),
        rng: StdRng::from_entropy(),
        seq: 0,
    };
    let mut smtp = None;
    while !ctx.control.should_stop() {
        let result = match s.mode {
            Mode::Smtp => {
                let template = smtp.get_or_insert_with(|| {
                    crate::message::Template::new(ctx.sender(), s.size, &mut state.rng)
                });
                crate::smtp_client::session(&ctx, &mut state, template).await
            }
            Mode::Imap => crate::imap_client::session(&ctx, &mut state).await,
            Mode::Pop3 => crate::pop3_client::session(&ctx, &mut state).await,
        };
        if let Err(e) = result {
            ctx.rec.error(&e.key());
            if !ctx.control.should_stop() {
                glommio::timer::sleep(RECONNECT_BACKOFF).await;
            }
        }
    }
}
