//! Print N realistic JSON Lines events (deterministic), for ingest tests and
//! benchmarks: `cargo run --release --example generate -- 1000000 > events.jsonl`.
//! Optional second argument: number of organizations (default 50).

use std::io::Write;

use auditstore::sample::{SampleConfig, SampleGenerator};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let orgs: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let mut gen = SampleGenerator::new(SampleConfig {
        orgs,
        step_nanos: 50_000_000,
        ..SampleConfig::default()
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for _ in 0..n {
        let (_, line) = gen.next_line();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
