//! mail-send: Submit mail: sendmail-compatible, to a smarthost, straight to MX or LMTP; queue on temporary failure.
fn main() -> std::process::ExitCode {
    use postline::tools::{main, send};
    main("mail-send", send::command, send::run)
}
