//! mail-send: Submit mail: sendmail-compatible, to a smarthost, straight to MX or LMTP; queue on temporary failure.
fn main() -> std::process::ExitCode {
    postline::tools::send::main()
}
