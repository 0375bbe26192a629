//! The verdict: compares the producers' [`Ledger`] with the receiver's
//! [`Receipts`] (lost, unexpected, duplicates), waits for the drain, asks the
//! database about any loss, scans the engine logs and prints the summary
//! block. It reads what the other modules recorded and changes nothing.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::Reader;
use crate::producers::Ledger;
use crate::receiver::Receipts;
use crate::{Args, TOPIC, secs};

#[derive(Debug, Default)]
pub struct Verdict {
    pub lost_events: Vec<String>,
    /// `command_id`s.
    pub lost_commands: Vec<String>,
    /// Event ids delivered though never accepted, with what we know of them.
    pub unexpected: Vec<String>,
    /// Deliveries of items whose outcome stayed unknown (neither expected nor not).
    pub delivered_unresolved: usize,
    /// Receipts answered 200 beyond the first per event.
    pub duplicates: u64,
    pub receipts_ok: u64,
    pub receipts_failed: u64,
    pub commands_delivered: usize,
}

impl Verdict {
    pub fn lost(&self) -> usize {
        self.lost_events.len() + self.lost_commands.len()
    }
}

pub fn judge(ledger: &Ledger, receipts: &Receipts) -> Verdict {
    let mut v = Verdict::default();
    let delivered = |id: &String| receipts.events.get(id).is_some_and(|s| s.ok > 0);
    v.lost_events = ledger
        .accepted
        .iter()
        .filter(|id| !delivered(id))
        .cloned()
        .collect();
    let commands_ok: HashSet<&String> = receipts
        .events
        .values()
        .filter(|s| s.ok > 0)
        .filter_map(|s| s.command_id.as_ref())
        .collect();
    v.lost_commands = ledger
        .commands
        .keys()
        .filter(|c| !commands_ok.contains(c))
        .cloned()
        .collect();
    v.commands_delivered = ledger.commands.len() - v.lost_commands.len();
    for (id, seen) in &receipts.events {
        v.receipts_ok += u64::from(seen.ok);
        v.receipts_failed += u64::from(seen.failed);
        v.duplicates += u64::from(seen.ok.saturating_sub(1));
        let expected = if seen.topic == TOPIC {
            ledger.accepted.contains(id)
        } else if seen.topic.starts_with("command.") {
            seen.command_id
                .as_ref()
                .is_some_and(|c| ledger.commands.contains_key(c))
        } else {
            false
        };
        if expected {
            continue;
        }
        if ledger.unresolved.contains_key(id) {
            v.delivered_unresolved += 1;
        } else {
            let refused = ledger
                .refused
                .get(id)
                .map_or(String::new(), |why| format!(", refused: {why}"));
            v.unexpected.push(format!(
                "{id} (topic {:?}, command {:?}{refused})",
                seen.topic, seen.command_id
            ));
        }
    }
    v.lost_events.sort();
    v.lost_commands.sort();
    v.unexpected.sort();
    v
}

/// Waits until every accepted item has been answered 200 and no delivery is
/// unfinished, or `--drain-secs` pass; returns the unfinished count.
pub async fn drain(
    args: &Args,
    ledger: &Mutex<Ledger>,
    receipts: &Mutex<Receipts>,
    db: &Reader,
    started: Instant,
) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    let mut next_report = Instant::now() + Duration::from_secs(5);
    loop {
        let missing = {
            let ledger = ledger.lock().expect("ledger lock");
            let receipts = receipts.lock().expect("receipts lock");
            judge(&ledger, &receipts).lost()
        };
        let unfinished = db.unfinished().await?;
        if (missing == 0 && unfinished == 0) || Instant::now() >= deadline {
            return Ok(unfinished);
        }
        if Instant::now() >= next_report {
            println!(
                "[{:>6.1}s] waiting: {missing} accepted items not yet received, {unfinished} deliveries not succeeded",
                secs(started)
            );
            next_report += Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Prints what the database knows of (up to 20 of) the lost items.
pub async fn explain_losses(v: &Verdict, db: &Reader) -> anyhow::Result<()> {
    let events: Vec<String> = v.lost_events.iter().take(20).cloned().collect();
    let commands: Vec<String> = v.lost_commands.iter().take(20).cloned().collect();
    eprintln!(
        "LOST events (first 20 of {}): {events:?}",
        v.lost_events.len()
    );
    eprintln!(
        "LOST commands (first 20 of {}): {commands:?}",
        v.lost_commands.len()
    );
    let rows = db.explain(&events, &commands).await?;
    let stored: HashSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let not_stored = events
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .count();
    eprintln!("{not_stored} of them are not in the events table at all");
    for (id, what) in &rows {
        eprintln!("  {id}: {what}");
    }
    Ok(())
}

// --------------------------------------------------------------- summary --

/// Lines of note across the engine logs (all incarnations).
#[derive(Debug, Default)]
pub struct LogScan {
    errors: usize,
    warnings: usize,
    panics: usize,
}

pub fn scan_logs(dir: &Path) -> anyhow::Result<LogScan> {
    let mut scan = LogScan::default();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("engine-"))
        {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            scan.errors += usize::from(line.contains("ERROR"));
            scan.warnings += usize::from(line.contains("WARN"));
            scan.panics += usize::from(line.contains("panicked"));
        }
    }
    Ok(scan)
}

#[derive(Debug)]
pub struct Summary<'a> {
    pub ledger: &'a Ledger,
    pub verdict: &'a Verdict,
    pub store: String,
    /// The chaos's lines ([`crate::chaos::ChaosLog::report`]).
    pub chaos: Vec<(&'static str, String)>,
    pub unexpected_exits: &'a [String],
    pub rescued: i64,
    /// Accepted events and commands the store no longer holds.
    pub not_stored: (i64, i64),
    pub not_succeeded: i64,
    pub engine_exit: String,
    pub logs: LogScan,
    pub drain_time: Duration,
    pub wall: Duration,
    pub pass: bool,
}

pub fn print_summary(s: &Summary<'_>) {
    let (l, v) = (s.ledger, s.verdict);
    println!();
    println!("==================== aion-webhooks crash soak ====================");
    println!("store                      {}", s.store);
    println!(
        "events accepted            {} ({} single, {} in batches; {} by a 200 duplicate answer)",
        l.accepted.len(),
        l.accepted.len() - l.batched,
        l.batched,
        l.duplicate_answers
    );
    println!(
        "commands accepted          {} ({} delivered)",
        l.commands.len(),
        v.commands_delivered
    );
    println!(
        "refused / unresolved       {} / {}",
        l.refused.len(),
        l.unresolved.len()
    );
    println!(
        "lost                       {} ({} events, {} commands)",
        v.lost(),
        v.lost_events.len(),
        v.lost_commands.len()
    );
    println!(
        "not in the store at end    {} ({} events, {} commands; delivered or not)",
        s.not_stored.0 + s.not_stored.1,
        s.not_stored.0,
        s.not_stored.1
    );
    println!(
        "unexpected                 {}{}",
        v.unexpected.len(),
        if v.delivered_unresolved > 0 {
            format!(
                " (+{} deliveries of unresolved items)",
                v.delivered_unresolved
            )
        } else {
            String::new()
        }
    );
    println!(
        "duplicate receipts         {} (of {} answered 200; {} answered 503 on purpose)",
        v.duplicates, v.receipts_ok, v.receipts_failed
    );
    for (label, text) in &s.chaos {
        println!("{label:<27}{text}");
    }
    println!(
        "requests re-sent           {} (unknown outcome: connection error, timeout, 5xx)",
        l.resent
    );
    println!(
        "lease_expired attempts     {} (sends cut off by a kill, rescued)",
        s.rescued
    );
    println!(
        "deliveries not succeeded   {} (at the end, from the database)",
        s.not_succeeded
    );
    println!("unexpected engine exits    {}", s.unexpected_exits.len());
    println!(
        "engine logs                {} ERROR, {} WARN, {} panics; final SIGTERM: {}",
        s.logs.errors, s.logs.warnings, s.logs.panics, s.engine_exit
    );
    println!(
        "drain                      {:.1} s after producers stopped",
        s.drain_time.as_secs_f64()
    );
    println!("total wall time            {:.1} s", s.wall.as_secs_f64());
    println!(
        "verdict                    {}",
        if s.pass { "PASS" } else { "FAIL" }
    );
    println!("===================================================================");
    for u in v.unexpected.iter().take(20) {
        eprintln!("UNEXPECTED {u}");
    }
    for (id, why) in l.unresolved.iter().take(20) {
        eprintln!("UNRESOLVED {id}: {why}");
    }
    for e in s.unexpected_exits {
        eprintln!("ENGINE EXIT {e}");
    }
}
