//! mail-trace: the path a message took, from its headers.
fn main() -> std::process::ExitCode {
    use postline::tools::{main, trace};
    main("mail-trace", trace::command, trace::run)
}
