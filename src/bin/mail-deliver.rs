//! mail-deliver: store one message (or an mbox stream) in Maildirs and mboxes.
fn main() -> std::process::ExitCode {
    use postline::tools::{deliver, main};
    main("mail-deliver", deliver::command, deliver::run)
}
