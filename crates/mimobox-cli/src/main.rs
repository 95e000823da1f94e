//! The `mimobox` command: run untrusted WebAssembly under hard limits.
//!
//! Exit status: the guest's own code when it exits, 124 when it times out
//! or runs out of fuel, 134 when it traps (the memory limit included), and
//! 2 when mimobox cannot run it at all, with one line on stderr.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod exit;
mod flags;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors are
            // status 2, like every other error of mimobox itself.
            if !e.use_stderr() {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's message, without its usage and help lines, on one line
            // and escaped: it quotes the value at fault as it was given.
            let rendered = e.render().to_string();
            let message = rendered.split("\n\n").next().unwrap_or_default();
            let message = mimobox_core::text::one_line_bounded(message.trim_end());
            eprintln!("mimobox: {message} (see `mimobox --help`)");
            return ExitCode::from(exit::USAGE);
        }
    };
    init_logging();
    match commands::execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mimobox: error: {}", exit::one_line(&e));
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Sends mimobox's own warnings to stderr, one line each. `MIMOBOX_LOG`
/// takes a tracing filter (`debug`, `mimobox_wasm=trace`, ...). By default
/// the runtime's own log lines stay off: a guest can trigger them at will,
/// and must not be able to flood the host's stderr through them.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIMOBOX_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("off,mimobox_cli=warn,mimobox_wasm=warn,mimobox_cache=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .compact()
        .init();
}
