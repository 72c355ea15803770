//! Progress output of `medmesh simulate`: one line, rewritten each second on a
//! terminal, printed every 5 seconds otherwise (so logs stay readable).

use medmesh_simulator::LoadStats;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn report(stats: Arc<LoadStats>) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let start = Instant::now();
    let mut last = (0u64, Instant::now());
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (published, samples, acked, errors) = stats.get();
        let rate = (samples - last.0) as f64 / last.1.elapsed().as_secs_f64();
        last = (samples, Instant::now());
        let line = format!(
            "[{:>5.0}s] {published} messages, {samples} samples ({rate:.0}/s), {acked} acknowledged, {errors} connection errors",
            start.elapsed().as_secs_f64()
        );
        let mut err = std::io::stderr();
        if tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

pub fn summary(stats: &LoadStats) {
    let (published, samples, acked, errors) = stats.get();
    eprintln!(
        "\ndone: {published} messages, {samples} samples, {acked} acknowledged, {errors} connection errors"
    );
}
