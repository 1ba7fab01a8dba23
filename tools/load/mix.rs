//! The IMAP command mix: `fetch=40,store=20,search=20,append=10,noop=10[,idle=N]`.

use rand::Rng;

/// A command the IMAP workload issues after SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapCommand {
    /// `UID FETCH a:b (FLAGS RFC822.SIZE BODY.PEEK[])`.
    Fetch,
    /// `UID STORE a:b +FLAGS (\Seen)` or `-FLAGS`.
    Store,
    /// `SEARCH UNSEEN` or `SEARCH ALL`.
    Search,
    /// `APPEND INBOX` of a generated message.
    Append,
    /// `NOOP`.
    Noop,
    /// `IDLE`, a short wait, then `DONE`.
    Idle,
}

impl ImapCommand {
    const ALL: [ImapCommand; 6] = [
        ImapCommand::Fetch,
        ImapCommand::Store,
        ImapCommand::Search,
        ImapCommand::Append,
        ImapCommand::Noop,
        ImapCommand::Idle,
    ];

    /// The name used in `--mix`.
    pub fn name(self) -> &'static str {
        match self {
            ImapCommand::Fetch => "fetch",
            ImapCommand::Store => "store",
            ImapCommand::Search => "search",
            ImapCommand::Append => "append",
            ImapCommand::Noop => "noop",
            ImapCommand::Idle => "idle",
        }
    }
}

/// Weighted choice among IMAP commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<(ImapCommand, u32)>,
    total: u32,
}

/// Why a `--mix` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// An entry without `=`.
    #[error("mix entry `{0}` is not name=weight")]
    NotPair(String),
    /// A command name the tool does not know.
    #[error("unknown mix command `{0}` (known: fetch, store, search, append, noop, idle)")]
    Unknown(String),
    /// A weight that is not a whole number.
    #[error("mix weight `{0}` is not a whole number")]
    BadWeight(String),
    /// A command named twice.
    #[error("mix command `{0}` given twice")]
    Duplicate(String),
    /// Every weight is zero.
    #[error("mix has no command with a weight above 0")]
    Empty,
}

/// The default mix when `--mix` is not given.
pub const DEFAULT_MIX: &str = "fetch=40,store=20,search=20,append=10,noop=10";

impl Mix {
    /// Parses `name=weight,...`; names are case-insensitive, weights are relative.
    pub fn parse(s: &str) -> Result<Mix, MixError> {
        let mut entries: Vec<(ImapCommand, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| MixError::NotPair(part.to_string()))?;
            let name = name.trim().to_ascii_lowercase();
            let cmd = ImapCommand::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| MixError::Unknown(name.clone()))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .ok()
                .filter(|w| *w <= 1_000_000)
                .ok_or_else(|| MixError::BadWeight(weight.trim().to_string()))?;
            if entries.iter().any(|(c, _)| *c == cmd) {
                return Err(MixError::Duplicate(name));
            }
            entries.push((cmd, weight));
        }
        entries.retain(|(_, w)| *w > 0);
        let total = entries.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err(MixError::Empty);
        }
        Ok(Mix { entries, total })
    }

    /// The command for a number in `0..total`.
    fn pick_at(&self, mut x: u32) -> ImapCommand {
        for &(cmd, w) in &self.entries {
            if x < w {
                return cmd;
            }
            x -= w;
        }
        // Unreachable while `x < total`; NOOP is a harmless answer regardless.
        ImapCommand::Noop
    }

    /// Draws a command with probability proportional to its weight.
    pub fn pick(&self, rng: &mut impl Rng) -> ImapCommand {
        self.pick_at(rng.gen_range(0..self.total))
    }

    /// The commands with their weights, in the order given.
    pub fn entries(&self) -> &[(ImapCommand, u32)] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_mix() {
        let m = Mix::parse(DEFAULT_MIX).unwrap();
        assert_eq!(m.total, 100);
        assert_eq!(m.entries().len(), 5);
        assert_eq!(m.pick_at(0), ImapCommand::Fetch);
        assert_eq!(m.pick_at(39), ImapCommand::Fetch);
        assert_eq!(m.pick_at(40), ImapCommand::Store);
        assert_eq!(m.pick_at(99), ImapCommand::Noop);
    }

    #[test]
    fn zero_weights_are_dropped_and_case_ignored() {
        let m = Mix::parse(" FETCH=1 , idle=0,noop=3").unwrap();
        assert_eq!(
            m.entries(),
            &[(ImapCommand::Fetch, 1), (ImapCommand::Noop, 3)]
        );
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            assert_ne!(m.pick(&mut rng), ImapCommand::Idle);
        }
    }

    #[test]
    fn rejects_bad_mixes() {
        assert_eq!(Mix::parse("fetch"), Err(MixError::NotPair("fetch".into())));
        assert_eq!(Mix::parse("copy=1"), Err(MixError::Unknown("copy".into())));
        assert_eq!(Mix::parse("fetch=x"), Err(MixError::BadWeight("x".into())));
        assert_eq!(
            Mix::parse("fetch=-1"),
            Err(MixError::BadWeight("-1".into()))
        );
        assert_eq!(
            Mix::parse("noop=1,NOOP=2"),
            Err(MixError::Duplicate("noop".into()))
        );
        assert_eq!(Mix::parse("fetch=0"), Err(MixError::Empty));
        assert_eq!(Mix::parse(""), Err(MixError::Empty));
    }
}
