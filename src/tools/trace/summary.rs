//! mail-trace `--summary`: over all messages, each relay's hop count and
//! its median and maximum delay.
//!
//! Owns the per-relay tally and its table. Guarantee: memory grows with
//! the number of relays and delays, never with message bodies; relays are
//! listed busiest first, then by name, so the output is stable.

use std::collections::BTreeMap;

use crate::tools::Ctx;
use crate::trace::chain::{Chain, human_seconds};

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// Per relay (a hop's `by`, or "(unnamed)"): hops counted and the delays
/// known.
#[derive(Default)]
pub(super) struct Relays(BTreeMap<String, (usize, Vec<f64>)>);

impl Relays {
    /// Count the hops of one message.
    pub(super) fn add(&mut self, c: &Chain) {
        for (h, d) in c.hops.iter().zip(&c.delays) {
            let by = h.by.as_deref().unwrap_or("(unnamed)");
            // Looked up before it is copied: a relay is seen many times.
            let e = match self.0.get_mut(by) {
                Some(e) => e,
                None => self.0.entry(by.to_string()).or_default(),
            };
            e.0 += 1;
            if let Some(d) = d {
                e.1.push(*d);
            }
        }
    }

    /// Add another tally (a piece of the same input read on another
    /// thread): counts add up, delays join (the median sorts them).
    pub(super) fn merge(&mut self, other: Relays) {
        for (by, (count, delays)) in other.0 {
            let e = self.0.entry(by).or_default();
            e.0 += count;
            e.1.extend(delays);
        }
    }

    /// Whether nothing was counted.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Print the table, busiest relay first.
    pub(super) fn print(&self, ctx: &mut Ctx) {
        let mut rows: Vec<(&String, &(usize, Vec<f64>))> = self.0.iter().collect();
        rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        let w = rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let fmt = |d: Option<f64>| d.map_or_else(|| "-".to_string(), human_seconds);
        if !ctx.line(&format!(
            "{:<w$}  {:>6}  {:>8}  {:>8}",
            "relay", "hops", "median", "max"
        )) {
            return;
        }
        for (by, (count, delays)) in rows {
            let max = delays.iter().copied().reduce(f64::max);
            let line = format!(
                "{by:<w$}  {count:>6}  {:>8}  {:>8}",
                fmt(median(delays)),
                fmt(max)
            );
            if !ctx.line(&line) {
                return;
            }
        }
    }
}
