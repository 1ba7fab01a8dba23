//! `ringpost-load`: a load generator for SMTP, IMAP and POP3 servers built on glommio, with
//! HDR latency histograms per operation. See `ringpost-load --help`.

mod cli;
#[cfg(test)]
mod driver_tests;
mod error;
mod framing;
mod hlog;
mod imap_client;
mod imap_response;
mod message;
mod mix;
mod pace;
mod pop3_client;
mod pop3_response;
mod report;
mod runner;
mod sasl;
mod session;
mod smtp_client;
mod smtp_reply;
mod stats;
mod tls;
mod transport;
mod users;

use clap::Parser;

fn main() {
    let (mode, args) = match cli::Cli::parse().command {
        cli::Command::Smtp(a) => (cli::Mode::Smtp, a),
        cli::Command::Imap(a) => (cli::Mode::Imap, a),
        cli::Command::Pop3(a) => (cli::Mode::Pop3, a),
        cli::Command::Report(r) => std::process::exit(report_logs(&r)),
    };
    let settings = match args.into_settings(mode) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringpost-load: {e}");
            std::process::exit(2);
        }
    };
    let outcome = match runner::run(settings.clone()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ringpost-load: {e}");
            std::process::exit(1);
        }
    };
    if settings.json {
        println!("{}", report::json(&settings, &outcome));
    } else {
        print!("{}", report::text(&settings, &outcome));
    }
    // Nothing succeeded at all: the target is down or refuses everything.
    // Exiting (rather than returning) also ends executor threads the hard cap left stuck.
    std::process::exit(i32::from(outcome.total.ops == 0));
}

/// `ringpost-load report FILE...`: percentiles per tag of interval logs.
fn report_logs(args: &cli::ReportArgs) -> i32 {
    match hlog::read_logs(&args.files) {
        Ok(hists) if args.json => {
            println!("{}", report::tags_json(&hists));
            0
        }
        Ok(hists) => {
            print!("{}", report::tags_text(&hists));
            0
        }
        Err(e) => {
            eprintln!("ringpost-load: {e}");
            2
        }
    }
}
