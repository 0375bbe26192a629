//! The load tool's report: the run's header, each figure's median per
//! side, and (`--markdown`) the same side by side as a Markdown table with
//! every run's value, ready for the performance docs.

use super::{Args, Figures, Scenario, Side, headline};

/// One figure's values over a side's runs, in run order.
fn values(side: &Side, name: &str) -> Vec<f64> {
    side.runs
        .iter()
        .flat_map(Figures::named)
        .filter(|(n, ..)| *n == name)
        .map(|(_, x, _)| x)
        .collect()
}

/// The median of one figure over a side's runs (NaN without any).
fn median(side: &Side, name: &str) -> f64 {
    let mut v = values(side, name);
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// this/other of the medians, or "-" where it means nothing (0/0, x/0).
fn ratio(this: &Side, other: &Side, name: &str) -> String {
    let r = median(this, name) / median(other, name);
    if r.is_finite() {
        format!("{r:.3}")
    } else {
        "-".into()
    }
}

/// A figure shown with its decimals, thousands grouped when whole.
fn show(x: f64, decimals: usize) -> String {
    match decimals {
        0 => thousands(x),
        d => format!("{x:.d$}"),
    }
}

pub(super) fn print_header(args: &Args, sides: &[Side]) {
    let (sc, tuning) = (&args.sc, &args.tuning);
    println!("scenario        {}", sc.name);
    if let Some(keys) = tuning.ordered_keys {
        println!("ordering        key, {keys} keys");
    }
    if sc.batch == 0 {
        let via = if tuning.backlog_via_api {
            ", posted through the API"
        } else {
            ""
        };
        println!("backlog         {} pending deliveries{via}", sc.events);
    } else {
        let events = sc.events / sc.clients * sc.clients;
        println!(
            "events          {events} ({} clients, batch {}{}), {} deliveries",
            sc.clients,
            sc.batch,
            if sc.rate > 0 {
                format!(", {} events/s", sc.rate)
            } else {
                String::new()
            },
            events * sc.webhooks
        );
    }
    if tuning.history > 0 {
        println!(
            "history         {} finished deliveries before each run",
            tuning.history
        );
    }
    for (var, value) in &tuning.knobs {
        println!("engine env      {var}={value}");
    }
    for side in sides {
        println!("engine {:<8} {}", side.label, side.bin.display());
    }
    println!(
        "cpu/delivery    the engine process and every `postgres` process, {}",
        if sc.batch == 0 {
            "engine start to drained"
        } else {
            "first post to last receipt"
        }
    );
}

/// Each figure's median per side and, with two sides, this/other.
pub(super) fn print_medians(sc: &Scenario, sides: &[Side]) {
    let Some(first) = sides[0].runs.first() else {
        return;
    };
    let mut head = format!("{:<28}", format!("median of {} runs", sides[0].runs.len()));
    for side in sides {
        head += &format!("{:>12}", side.label);
    }
    if let [_, other] = sides {
        head += &format!("{:>16}", format!("this/{}", other.label));
    }
    println!("{head}");
    for (name, _, decimals) in first.named() {
        let mut row = format!("{name:<28}");
        for side in sides {
            row += &format!("{:>12}", show(median(side, name), decimals));
        }
        if let [this, other] = sides {
            row += &format!("{:>16}", ratio(this, other, name));
        }
        if name == headline(sc) {
            row += "   ← headline";
        }
        println!("{row}");
    }
    if let [this, other] = sides {
        let name = headline(sc);
        println!(
            "headline        {name}: this/{} = {} ({} is better)",
            other.label,
            ratio(this, other, name),
            if sc.rate > 0 { "lower" } else { "higher" }
        );
    }
}

/// The medians again as a Markdown table, the earlier side (`--against`)
/// first: each cell is the median, then every run's value in run order;
/// above it, the command line that made it.
pub(super) fn print_markdown(args: &Args, sides: &[Side]) {
    let Some(first) = sides[0].runs.first() else {
        return;
    };
    let command: Vec<String> = std::env::args().skip(1).collect();
    println!("\n```\nloadtest {}\n```\n", command.join(" "));
    let ordered: Vec<&Side> = sides.iter().rev().collect();
    let mut head = format!("| {} |", args.sc.name);
    let mut rule = "|---|".to_string();
    for side in &ordered {
        head += &format!(" `{}` |", side.label);
        rule += "---|";
    }
    if let [_, other] = sides {
        head += &format!(" this/`{}` |", other.label);
        rule += "---|";
    }
    println!("{head}\n{rule}");
    for (name, _, decimals) in first.named() {
        let mut row = format!("| {name} |");
        for side in &ordered {
            let runs: Vec<String> = values(side, name)
                .into_iter()
                .map(|x| show(x, decimals))
                .collect();
            let mid = show(median(side, name), decimals);
            row += &match runs.len() {
                0 | 1 => format!(" {mid} |"),
                _ => format!(" {mid} ({}) |", runs.join(" / ")),
            };
        }
        if let [this, other] = sides {
            row += &match ratio(this, other, name).as_str() {
                "-" => " - |".to_string(),
                r => format!(" {r}× |"),
            };
        }
        println!("{row}");
    }
}

/// `1234567.8` → `1,234,568`.
pub(super) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
