//! mail-queue: List and run the mail-send queue: retry with backoff, hold, release, delete, bounce on expiry.
fn main() -> std::process::ExitCode {
    use postline::tools::{main, queue};
    main("mail-queue", queue::command, queue::run)
}
