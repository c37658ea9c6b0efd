//! mail-recv: receive mail over SMTP/LMTP and answer 250 only once it is stored.
fn main() -> std::process::ExitCode {
    use postline::tools::{main, recv};
    main("mail-recv", recv::command, recv::run)
}
