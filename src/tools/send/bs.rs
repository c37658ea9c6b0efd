//! mail-send `-bs`: an SMTP server dialogue on stdin and stdout, for
//! frameworks that speak SMTP to a sendmail binary.
//!
//! Owns the server side of that dialogue (EHLO/HELO, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, VRFY, QUIT). Guarantees: each message is
//! prepared, sent or queued exactly as a one-shot mail-send would do it,
//! and only then is DATA answered: 250 when every recipient was delivered
//! or queued, 451 when it was neither and may be retried, 554 only when no
//! recipient got it (so a client never sends a partly delivered message
//! again); input that ends inside DATA sends nothing.

use std::io::BufRead;

use super::{Result1, Settings, plan, send_one};
use crate::exit::{Context, Error, Kind, Result};
use crate::tools::Ctx;

/// `-bs`: an SMTP server dialogue on stdin/stdout; each message is sent (or
/// queued) as usual when its DATA ends, and the reply says how it went.
pub(super) fn run(s: &Settings, ctx: &mut Ctx) -> Result<()> {
    let host = crate::sysnames::hostname();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let say = |ctx: &mut Ctx, s: &str| {
        ctx.line(&format!("{s}\r"));
        ctx.flush();
    };
    say(ctx, &format!("220 {host} ESMTP postline mail-send"));
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .context("reading the SMTP dialogue")?;
        if n == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        let upper = text.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("");
        match verb {
            "EHLO" => say(
                ctx,
                &format!(
                    "250-{host}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES"
                ),
            ),
            "HELO" => say(ctx, &format!("250 {host}")),
            "NOOP" => say(ctx, "250 2.0.0 Ok"),
            "RSET" => {
                from = None;
                rcpts.clear();
                say(ctx, "250 2.0.0 Ok");
            }
            "QUIT" => {
                say(ctx, "221 2.0.0 Bye");
                return Ok(());
            }
            "VRFY" => say(ctx, "252 2.0.0 Cannot verify; send some mail"),
            "MAIL" if upper.starts_with("MAIL FROM:") => {
                if from.is_some() {
                    say(ctx, "503 5.5.1 Nested MAIL command");
                    continue;
                }
                from = Some(path_arg(&text[10..]));
                say(ctx, "250 2.1.0 Ok");
            }
            "RCPT" if upper.starts_with("RCPT TO:") => {
                if from.is_none() {
                    say(ctx, "503 5.5.1 Need MAIL first");
                    continue;
                }
                let r = path_arg(&text[8..]);
                if r.is_empty() {
                    say(ctx, "501 5.1.3 Bad recipient address syntax");
                    continue;
                }
                rcpts.push(r);
                say(ctx, "250 2.1.5 Ok");
            }
            "DATA" => {
                let Some(f) = from.clone() else {
                    say(ctx, "503 5.5.1 Need MAIL first");
                    continue;
                };
                if rcpts.is_empty() {
                    say(ctx, "554 5.5.1 No valid recipients");
                    continue;
                }
                say(ctx, "354 End data with <CR><LF>.<CR><LF>");
                let mut body = Vec::new();
                loop {
                    line.clear();
                    let n = input
                        .read_until(b'\n', &mut line)
                        .context("reading the SMTP dialogue")?;
                    if n == 0 {
                        // The client went away mid-message: nothing accepted.
                        return Err(Error::new(
                            Kind::Data,
                            "-bs dialogue",
                            "input ended inside DATA; nothing was sent",
                        ));
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let l: &[u8] = if line.starts_with(b"..") {
                        &line[1..]
                    } else {
                        &line
                    };
                    body.extend_from_slice(l);
                }
                // The config is read for each message, as a new process would.
                let (config, submission) = s.load();
                let outcome = submission
                    .prepare(body, std::mem::take(&mut rcpts), Some(f))
                    .and_then(|(msg, env)| {
                        let p = plan(s, config?, &env)?;
                        send_one(&p, &env, &msg, ctx)
                    });
                from = None;
                match outcome {
                    Ok(Result1::Done(None)) => say(ctx, "250 2.0.0 Ok: delivered"),
                    Ok(Result1::Done(Some(id))) => {
                        say(ctx, &format!("250 2.0.0 Ok: queued as {id}"))
                    }
                    Ok(Result1::Temporary(r)) => say(ctx, &format!("451 4.3.0 {}", one_line(&r))),
                    Ok(Result1::Refused(r)) => say(ctx, &format!("554 5.0.0 {}", one_line(&r))),
                    Err(e) if e.kind().is_temporary() => {
                        say(ctx, &format!("451 4.3.0 {}", one_line(&e.to_string())))
                    }
                    Err(e) => say(ctx, &format!("554 5.0.0 {}", one_line(&e.to_string()))),
                }
            }
            _ => say(ctx, "502 5.5.2 Command not recognized"),
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// The address in `<addr> PARAMS` (or a bare `addr`).
fn path_arg(s: &str) -> String {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('<') {
        return rest.split('>').next().unwrap_or("").trim().to_string();
    }
    s.split(' ').next().unwrap_or("").to_string()
}
