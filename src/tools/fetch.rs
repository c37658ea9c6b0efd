//! mail-fetch: Fetch mail over POP3 and IMAP into Maildir, mbox, an MDA, SMTP/LMTP or stdout.
//!
//! (Skeleton: the tool is being built; see its issue.)

use clap::{ArgMatches, Command};

use crate::exit::{Error, Kind, Result};
use crate::tools::Ctx;

/// The clap command of mail-fetch.
pub fn command() -> Command {
    Command::new("mail-fetch")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Fetch mail over POP3 and IMAP into Maildir, mbox, an MDA, SMTP/LMTP or stdout")
}

/// Run mail-fetch.
pub fn run(_m: &ArgMatches, _ctx: &mut Ctx) -> Result<()> {
    Err(Error::new(
        Kind::Unavailable,
        "mail-fetch",
        "not implemented yet",
    ))
}
