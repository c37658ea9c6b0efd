//! mail-fetch: Fetch mail over POP3 and IMAP into Maildir, mbox, an MDA, SMTP/LMTP or stdout.
fn main() -> std::process::ExitCode {
    use postline::tools::{fetch, main};
    main("mail-fetch", fetch::command, fetch::run)
}
