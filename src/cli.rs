//! Command-line interface (INTERFACE.md, "Commands").
//!
//! Every failure prints one line naming the problem and exits 2; nothing in the data
//! directory is changed by a failed command.

use crate::accounts::{self, AccountDb, AccountError};
use crate::config::{Config, Source};
use clap::{Parser, Subcommand};
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(name = "ringpost", version, about = "SMTP, IMAP and POP3 mail server")]
struct Cli {
    /// Config file (default: ./ringpost.toml if present, else the embedded defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server in the foreground (SIGTERM/SIGINT stop it gracefully).
    Serve,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        op: UserOp,
    },
    /// Manage aliases and catch-alls (@domain).
    Alias {
        #[command(subcommand)]
        op: AliasOp,
    },
    /// Latency histograms and counters of the running server.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Reset the histograms after reading them.
        #[arg(long)]
        reset: bool,
    },
    /// Validate the config, certificates and the data directory.
    Check,
}

#[derive(Subcommand, Debug)]
enum UserOp {
    /// Create an account.
    Add {
        /// The account's address.
        address: String,
        /// Read the password from one line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The input is a hash ({ARGON2ID}, {SHA512-CRYPT}, {BLF-CRYPT}), not a password.
        #[arg(long)]
        hashed: bool,
    },
    /// Delete an account (its stored mail is no longer reachable).
    Del {
        /// The account's address.
        address: String,
    },
    /// List accounts.
    List,
    /// Change an account's password.
    Passwd {
        /// The account's address.
        address: String,
        /// Read the password from one line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The input is a hash, not a password.
        #[arg(long)]
        hashed: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AliasOp {
    /// Add an alias (or a catch-all when ADDRESS is @domain).
    Add {
        /// The alias address or @domain.
        address: String,
        /// Comma-separated target addresses.
        targets: String,
    },
    /// Delete an alias.
    Del {
        /// The alias address or @domain.
        address: String,
    },
    /// List aliases.
    List,
}

/// A CLI failure: printed as one line, exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Config problem.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Account database problem.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// Storage problem.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// TLS problem.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Anything else, already worded.
    #[error("{0}")]
    Other(String),
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                };
            }
            let text = e.to_string();
            let line = text
                .lines()
                .next()
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            eprintln!("ringpost: {line} (see ringpost --help)");
            return 2;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringpost: {e}");
            2
        }
    }
}

fn run(cli: Cli) -> Result<i32, CliError> {
    let (cfg, source) = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            crate::server::serve(cfg, source).map_err(|e| CliError::Other(e.to_string()))
        }
        Command::User { op } => user(&cfg, op),
        Command::Alias { op } => alias(&cfg, op),
        Command::Stats { json, reset } => Ok(crate::metrics::stats_command(
            &cfg.server.data_dir,
            json,
            reset,
        )),
        Command::Check => check(&cfg, &source),
    }
}

/// Creates the data directory and its manifest if missing (first `user add` or `serve`).
pub fn init_data_dir(cfg: &Config) -> Result<storage::Manifest, CliError> {
    let dir = &cfg.server.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Other(format!("cannot create data_dir {}: {e}", dir.display())))?;
    Ok(storage::Manifest::open_or_create(dir, cfg.server.shards)?)
}

fn read_secret(from_stdin: bool, hashed: bool) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    // SAFETY: isatty on fd 0 has no preconditions.
    let tty = unsafe { libc::isatty(0) } == 1;
    if !from_stdin && !tty {
        return Err(CliError::Other(
            "no terminal to prompt on: use --password-stdin".into(),
        ));
    }
    let prompt = !from_stdin;
    if prompt {
        eprint!("{}: ", if hashed { "Hash" } else { "Password" });
        set_echo(false);
    }
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    if prompt {
        set_echo(true);
        eprintln!();
    }
    r.map_err(|e| CliError::Other(format!("cannot read password: {e}")))?;
    let secret = line.trim_end_matches(['\r', '\n']).to_string();
    if secret.is_empty() {
        return Err(CliError::Other("empty password".into()));
    }
    if hashed {
        accounts::check_hash_format(&secret)?;
        Ok(secret)
    } else {
        Ok(accounts::hash_password(&secret)?)
    }
}

fn set_echo(on: bool) {
    // SAFETY: termios calls on fd 0 with a zeroed, then filled, struct.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) == 0 {
            if on {
                t.c_lflag |= libc::ECHO;
            } else {
                t.c_lflag &= !libc::ECHO;
            }
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
    }
}

fn local_address(cfg: &Config, address: &str) -> Result<String, CliError> {
    let a = accounts::normalize(address)?;
    let domain = a
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or_default()
        .to_string();
    if !cfg.is_local_domain(&domain) {
        return Err(AccountError::NotLocalDomain { address: a, domain }.into());
    }
    Ok(a)
}

fn existing_db(dir: &Path) -> Result<AccountDb, CliError> {
    if !AccountDb::path(dir).exists() {
        return Ok(AccountDb::default());
    }
    Ok(AccountDb::load(dir)?)
}

fn user(cfg: &Config, op: UserOp) -> Result<i32, CliError> {
    let dir = &cfg.server.data_dir;
    match op {
        UserOp::Add {
            address,
            password_stdin,
            hashed,
        } => {
            let a = local_address(cfg, &address)?;
            let db = existing_db(dir)?;
            if db.accounts.contains_key(&a) {
                return Err(AccountError::Exists(a).into());
            }
            if db.aliases.contains_key(&a) {
                return Err(AccountError::IsAlias(a).into());
            }
            let hash = read_secret(password_stdin, hashed)?;
            let manifest = init_data_dir(cfg)?;
            let shard = shards::shard_of_account(&a, manifest.shards);
            AccountDb::modify(dir, |db| db.add(&a, hash, shard))?;
            println!("added {a} (shard {shard})");
        }
        UserOp::Del { address } => {
            let a = accounts::normalize(&address)?;
            if !existing_db(dir)?.accounts.contains_key(&a) {
                return Err(AccountError::Unknown(a).into());
            }
            AccountDb::modify(dir, |db| {
                db.accounts
                    .remove(&a)
                    .map(|_| ())
                    .ok_or(AccountError::Unknown(a.clone()))
            })?;
            println!("deleted {a}");
        }
        UserOp::List => {
            for (a, acct) in existing_db(dir)?.accounts {
                println!("{a}\tshard={}", acct.shard);
            }
        }
        UserOp::Passwd {
            address,
            password_stdin,
            hashed,
        } => {
            let a = accounts::normalize(&address)?;
            if !existing_db(dir)?.accounts.contains_key(&a) {
                return Err(AccountError::Unknown(a).into());
            }
            let hash = read_secret(password_stdin, hashed)?;
            AccountDb::modify(dir, |db| match db.accounts.get_mut(&a) {
                Some(acct) => {
                    acct.hash = hash;
                    Ok(())
                }
                None => Err(AccountError::Unknown(a.clone())),
            })?;
            println!("password changed for {a}");
        }
    }
    Ok(0)
}

fn alias(cfg: &Config, op: AliasOp) -> Result<i32, CliError> {
    let dir = &cfg.server.data_dir;
    match op {
        AliasOp::Add { address, targets } => {
            let a = alias_address(cfg, &address)?;
            let mut ts = Vec::new();
            for t in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                ts.push(local_address(cfg, t)?);
            }
            if ts.is_empty() {
                return Err(CliError::Other("no alias targets given".into()));
            }
            let db = existing_db(dir)?;
            if db.accounts.contains_key(&a) {
                return Err(CliError::Other(format!(
                    "{a} is an account; an alias cannot shadow it"
                )));
            }
            init_data_dir(cfg)?;
            AccountDb::modify(dir, |db| {
                db.aliases.insert(a.clone(), ts.clone());
                Ok(())
            })?;
            println!("alias {a} -> {}", ts.join(","));
        }
        AliasOp::Del { address } => {
            let a = address.trim().to_lowercase();
            if !existing_db(dir)?.aliases.contains_key(&a) {
                return Err(AccountError::Unknown(a).into());
            }
            AccountDb::modify(dir, |db| {
                db.aliases
                    .remove(&a)
                    .map(|_| ())
                    .ok_or(AccountError::Unknown(a.clone()))
            })?;
            println!("deleted alias {a}");
        }
        AliasOp::List => {
            for (a, ts) in existing_db(dir)?.aliases {
                println!("{a}\t{}", ts.join(","));
            }
        }
    }
    Ok(0)
}

fn alias_address(cfg: &Config, address: &str) -> Result<String, CliError> {
    match address.trim().strip_prefix('@') {
        Some(domain) => {
            let d = domain.to_lowercase();
            if !cfg.is_local_domain(&d) {
                return Err(AccountError::NotLocalDomain {
                    address: address.into(),
                    domain: d,
                }
                .into());
            }
            Ok(format!("@{d}"))
        }
        None => local_address(cfg, address),
    }
}

fn check(cfg: &Config, source: &Source) -> Result<i32, CliError> {
    match source {
        Source::File(p) => println!("config: {} ok", p.display()),
        Source::Embedded => println!("config: embedded defaults"),
    }
    let dir = &cfg.server.data_dir;
    if dir.exists() {
        let m = storage::Manifest::open(dir)?;
        if m.shards != cfg.server.shards {
            println!(
                "note: data_dir has {} shards (fixed at creation); server.shards = {} is ignored",
                m.shards, cfg.server.shards
            );
        }
        let db = AccountDb::load(dir)?;
        println!(
            "data_dir: {} ok ({} shards, {} accounts, {} aliases)",
            dir.display(),
            m.shards,
            db.accounts.len(),
            db.aliases.len()
        );
        let postmaster = cfg.postmaster_address();
        let targets = db.postmaster_accounts(cfg);
        if targets.is_empty() {
            println!(
                "warning: no account or alias for {postmaster} (RFC 5321 requires a postmaster; \
                 mail to it is refused): ringpost alias add {postmaster} ACCOUNT"
            );
        } else {
            println!("postmaster: {postmaster} -> {}", targets.join(", "));
        }
    } else {
        println!(
            "data_dir: {} does not exist yet (made on first start)",
            dir.display()
        );
    }
    let (cert, key) = crate::tls::ensure_cert(
        cfg.tls.cert.as_deref(),
        cfg.tls.key.as_deref(),
        dir,
        &cfg.server.hostname,
        false,
    )?;
    if cert.exists() {
        crate::tls::server_config(&cert, &key)?;
        println!("tls: {} ok", cert.display());
    } else {
        println!(
            "tls: a self-signed certificate will be made at {}",
            cert.display()
        );
    }
    for (l, a) in cfg.listen.all() {
        println!("listen: {:<12} {a}", l.name());
    }
    Ok(0)
}
