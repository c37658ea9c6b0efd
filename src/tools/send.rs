//! mail-send: Submit mail: sendmail-compatible, to a smarthost, straight to MX or LMTP; queue on temporary failure.
//!
//! (Skeleton: the tool is being built; see its issue.)

use clap::{ArgMatches, Command};

use crate::exit::{Error, Kind, Result};
use crate::tools::Ctx;

/// The clap command of mail-send.
pub fn command() -> Command {
    Command::new("mail-send")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Submit mail: sendmail-compatible, to a smarthost, straight to MX or LMTP; queue on temporary failure")
}

/// Run mail-send.
pub fn run(_m: &ArgMatches, _ctx: &mut Ctx) -> Result<()> {
    Err(Error::new(
        Kind::Unavailable,
        "mail-send",
        "not implemented yet",
    ))
}
