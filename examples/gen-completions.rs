//! Regenerate the shell completions in `completions/` from the tools' clap
//! commands: `cargo run --example gen-completions [OUT_DIR]`.
//!
//! For every tool in `postline::tools::all()` it writes `<tool>.bash`,
//! `_<tool>` (zsh) and `<tool>.fish`. The files are committed; the
//! `docs::completions_are_fresh` test regenerates them the same way and fails
//! when they differ, so run this after changing a tool's options.

use std::path::PathBuf;
use std::process::ExitCode;

use clap_complete::Shell;

/// The file name for `tool`'s completion script in `shell`.
fn file_name(shell: Shell, tool: &str) -> String {
    match shell {
        Shell::Bash => format!("{tool}.bash"),
        Shell::Zsh => format!("_{tool}"),
        Shell::Fish => format!("{tool}.fish"),
        other => format!("{tool}.{other}"),
    }
}

/// The completion script for `tool` in `shell`.
fn render(shell: Shell, tool: &str, command: fn() -> clap::Command) -> Vec<u8> {
    let mut cmd = command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, tool, &mut out);
    out
}

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("completions"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("gen-completions: creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (tool, command) in postline::tools::all() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path = dir.join(file_name(shell, tool));
            if let Err(e) = std::fs::write(&path, render(shell, tool, command)) {
                eprintln!("gen-completions: writing {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("{}", path.display());
        }
    }
    ExitCode::SUCCESS
}
