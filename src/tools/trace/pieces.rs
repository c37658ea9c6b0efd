//! mail-trace on several threads: an mbox read with `--json` or
//! `--summary` is cut into pieces of whole messages
//! ([`crate::store::read::Pieces`]), each piece is traced on a worker
//! thread into its own output, and this thread prints the outputs in the
//! input's order.
//!
//! Owns the per-message work that does not print ([`trace_one`], also
//! what the one-thread path runs, so both give the same bytes) and the
//! order of what is printed. Guarantees: the output is byte for byte what
//! one thread prints (same lines, same `FILE[N]` numbers, same warnings,
//! same exit status; the numbers come from the cutter's count, which its
//! tests hold to the splitter's); memory stays bounded by the pieces in
//! flight (at most two per worker, each about [`PIECE`] bytes, and their
//! output), not by the input; a reader that goes away stops the reading.
//! `--verify` (which asks DNS) and the table keep to one thread.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead};
use std::sync::{Mutex, PoisonError, mpsc};

use super::{Mode, State, analyse, json, summary};
use crate::store::read::{self, MboxReader, Piece};
use crate::tools::Ctx;

/// About how many bytes of mbox one piece holds: large enough that
/// handing pieces around costs nothing next to tracing them, small enough
/// that the pieces in flight stay a few megabytes.
const PIECE: usize = 512 << 10;

/// One thread's reused work space.
#[derive(Default)]
pub(super) struct Work {
    /// The trace fields of the message being read (the hops borrow them).
    pub(super) buffers: crate::trace::Buffers,
    /// The `--json` line being built.
    pub(super) json: Vec<u8>,
}

/// What tracing some messages gave, to be printed in order.
#[derive(Default)]
pub(super) struct Out {
    /// `--json`: whole lines.
    text: Vec<u8>,
    /// Warnings for standard error, in order.
    warnings: Vec<String>,
    /// Messages with header fields.
    traced: usize,
    /// `--strict`: an anomaly that is not informational was found.
    check_failed: bool,
    /// `--summary`: the tally.
    relays: summary::Relays,
}

impl Out {
    /// Print it and count it into `st` (the warnings first; they go to
    /// standard error, the lines to standard output); empty afterwards.
    pub(super) fn emit(&mut self, st: &mut State, ctx: &mut Ctx) {
        for w in self.warnings.drain(..) {
            ctx.warn(&w);
        }
        st.traced += self.traced;
        self.traced = 0;
        if std::mem::take(&mut self.check_failed) {
            ctx.check_failed();
        }
        if !self.text.is_empty() && !st.stopped && !ctx.lines_bytes(&self.text) {
            st.stopped = true;
        }
        self.text.clear();
        if !self.relays.is_empty() {
            st.relays.merge(std::mem::take(&mut self.relays));
        }
    }
}

/// Trace one header block for `--json` or `--summary` into `out`,
/// printing nothing.
pub(super) fn trace_one(
    source: &str,
    block: Vec<u8>,
    mode: Mode,
    strict: bool,
    work: &mut Work,
    out: &mut Out,
) {
    let traced = analyse(
        source,
        block,
        strict,
        &mut work.buffers,
        |_, _, c, failed| {
            out.traced += 1;
            out.check_failed |= failed;
            match mode {
                Mode::Json => {
                    json::line(source, c, None, &mut work.json);
                    out.text.extend_from_slice(&work.json);
                    out.text.push(b'\n');
                }
                Mode::Summary => out.relays.add(c),
                Mode::Table => {}
            }
        },
    );
    if let Err(warning) = traced {
        out.warnings.extend(warning);
    }
}

/// Trace the messages of one piece (see [`Piece::Messages`]), numbered
/// from `first + 1`.
#[allow(clippy::too_many_arguments)]
fn trace_piece(
    name: &str,
    first: usize,
    data: &[u8],
    starts: &[usize],
    mode: Mode,
    strict: bool,
    work: &mut Work,
    out: &mut Out,
) {
    let mut source = String::new();
    for (n, entry) in (first + 1..).zip(read::piece_headers(data, starts)) {
        source.clear();
        let _ = write!(source, "{name}[{n}]");
        trace_one(&source, entry.data, mode, strict, work, out);
    }
}

/// A piece for a worker: its place in the output, the number of the
/// messages before it, its bytes, and an empty output to fill (outputs and
/// buffers go round, so a run allocates them once).
type Job = (usize, usize, (Vec<u8>, Vec<usize>), Out);

/// A worker's answer: the place, the piece's buffer back, the output
/// (`None`: the worker failed).
type Done = (usize, Vec<u8>, Option<Out>);

/// Trace the mbox `mbox` (not yet read) on `st.threads` threads, or on
/// this one when it is a single piece.
pub(super) fn trace<R: BufRead>(
    name: &str,
    mbox: MboxReader<R>,
    st: &mut State,
    ctx: &mut Ctx,
) -> io::Result<()> {
    let mut pieces = mbox.into_pieces(PIECE);
    let first = pieces.next_piece()?;
    let second = match first {
        Some(Piece::Messages { .. }) => pieces.next_piece()?,
        _ => None,
    };
    let (mode, strict, threads) = (st.mode, st.strict, st.threads);
    let mut n = 0;
    let rest = match (first, second) {
        (None, _) => false,
        (Some(Piece::Rest), _) => true,
        // One piece: no threads for a small mbox.
        (Some(Piece::Messages { data, starts }), None) => {
            let mut out = std::mem::take(&mut st.out);
            trace_piece(
                name,
                0,
                &data,
                &starts,
                mode,
                strict,
                &mut st.work,
                &mut out,
            );
            out.emit(st, ctx);
            st.out = out;
            false
        }
        (Some(Piece::Messages { data, starts }), Some(second)) => {
            let (job_tx, job_rx) = mpsc::sync_channel::<Job>(2 * threads);
            let (done_tx, done_rx) = mpsc::channel::<Done>();
            let job_rx = Mutex::new(job_rx);
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    let (job_rx, done_tx) = (&job_rx, done_tx.clone());
                    scope.spawn(move || worker(name, mode, strict, job_rx, done_tx));
                }
                drop(done_tx);
                let mut order = Order::default();
                let mut next = Some(second);
                n = starts.len();
                let mut job = Some(((data, starts), 0));
                let mut result = Ok(false);
                while let Some((data, first)) = job.take() {
                    // At most 2 × threads pieces in flight, so the send
                    // below never waits on a full queue.
                    while order.sent - order.printed >= 2 * threads {
                        if !order.wait(&done_rx, st, ctx) {
                            break;
                        }
                    }
                    if st.stopped || order.lost {
                        break;
                    }
                    let out = order.outs.pop().unwrap_or_default();
                    if job_tx.send((order.sent, first, data, out)).is_err() {
                        order.lost = true;
                        break;
                    }
                    order.sent += 1;
                    order.poll(&done_rx, st, ctx);
                    for b in order.buffers.drain(..) {
                        pieces.recycle(b);
                    }
                    let piece = match next.take() {
                        Some(p) => Ok(Some(p)),
                        None => pieces.next_piece(),
                    };
                    match piece {
                        Ok(Some(Piece::Messages { data, starts })) => {
                            let before = n;
                            n += starts.len();
                            job = Some(((data, starts), before));
                        }
                        Ok(Some(Piece::Rest)) => result = Ok(true),
                        Ok(None) => {}
                        Err(e) => result = Err(e),
                    }
                }
                drop(job_tx);
                while order.printed < order.sent && order.wait(&done_rx, st, ctx) {}
                if order.lost {
                    result = Err(io::Error::other("a tracing thread failed"));
                }
                result
            })?
        }
    };
    if rest && !st.stopped {
        let mut mbox = read::mbox_rest(pieces);
        super::trace_entries(name, &mut mbox, n, st, ctx)?;
    }
    Ok(())
}

/// A worker: trace pieces until there are none, sending each output back
/// with its place. A panic (a bug) sends `None`, so the printing thread
/// stops instead of waiting for that output forever.
fn worker(
    name: &str,
    mode: Mode,
    strict: bool,
    jobs: &Mutex<mpsc::Receiver<Job>>,
    done: mpsc::Sender<Done>,
) {
    let mut work = Work::default();
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((seq, first, (data, starts), mut out)) = job else {
            return;
        };
        let traced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            trace_piece(
                name, first, &data, &starts, mode, strict, &mut work, &mut out,
            );
        }));
        let failed = traced.is_err();
        let answer = (seq, data, (!failed).then_some(out));
        if done.send(answer).is_err() || failed {
            return;
        }
    }
}

/// The outputs that came back, printed in the input's order.
#[derive(Default)]
struct Order {
    /// Pieces sent to the workers, and printed.
    sent: usize,
    printed: usize,
    /// Outputs that came back before the ones in front of them.
    early: BTreeMap<usize, Out>,
    /// Printed outputs and pieces' buffers, to use again.
    outs: Vec<Out>,
    buffers: Vec<Vec<u8>>,
    /// A worker failed: stop.
    lost: bool,
}

impl Order {
    /// Take one output (waiting for it) and print what is in order; false
    /// when no more can come.
    fn wait(&mut self, rx: &mpsc::Receiver<Done>, st: &mut State, ctx: &mut Ctx) -> bool {
        match rx.recv() {
            Ok(done) => self.take(done, st, ctx),
            Err(_) => {
                self.lost = true;
                false
            }
        }
    }

    /// Take the outputs already back, without waiting.
    fn poll(&mut self, rx: &mpsc::Receiver<Done>, st: &mut State, ctx: &mut Ctx) {
        while let Ok(done) = rx.try_recv() {
            if !self.take(done, st, ctx) {
                return;
            }
        }
    }

    fn take(&mut self, (seq, buffer, out): Done, st: &mut State, ctx: &mut Ctx) -> bool {
        self.buffers.push(buffer);
        let Some(out) = out else {
            self.lost = true;
            return false;
        };
        self.early.insert(seq, out);
        while let Some(mut out) = self.early.remove(&self.printed) {
            out.emit(st, ctx);
            self.outs.push(out);
            self.printed += 1;
        }
        true
    }
}
