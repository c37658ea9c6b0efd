//! mail-queue: List and run the mail-send queue: retry with backoff, hold, release, delete, bounce on expiry.
//!
//! (Skeleton: the tool is being built; see its issue.)

use clap::{ArgMatches, Command};

use crate::exit::{Error, Kind, Result};
use crate::tools::Ctx;

/// The clap command of mail-queue.
pub fn command() -> Command {
    Command::new("mail-queue")
        .version(env!("CARGO_PKG_VERSION"))
        .about("List and run the mail-send queue: retry with backoff, hold, release, delete, bounce on expiry")
}

/// Run mail-queue.
pub fn run(_m: &ArgMatches, _ctx: &mut Ctx) -> Result<()> {
    Err(Error::new(
        Kind::Unavailable,
        "mail-queue",
        "not implemented yet",
    ))
}

/// Run mail-queue with `args` (without the program name) on behalf of
/// another tool: mail-send's `-bp` and `-q`, and `mailq`.
pub fn run_args(args: &[String], ctx: &mut Ctx) -> Result<()> {
    let argv = std::iter::once("mail-queue".to_string()).chain(args.iter().cloned());
    let m = command().try_get_matches_from(argv).map_err(|e| {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or("bad usage").to_string();
        Error::new(Kind::Usage, "mail-queue", first)
    })?;
    run(&m, ctx)
}
