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
