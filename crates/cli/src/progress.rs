//! Progress output of `medmesh simulate` and the benchmarks: one line, rewritten each second on a
//! terminal, printed every 5 seconds otherwise (so logs stay readable).

use medmesh_simulator::LoadStats;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn report(stats: Arc<LoadStats>) {
    let start = Instant::now();
    let mut last = (0u64, Instant::now());
    lines(move || {
        let (published, samples, acked, errors) = stats.get();
        let rate = (samples - last.0) as f64 / last.1.elapsed().as_secs_f64();
        last = (samples, Instant::now());
        format!(
            "[{:>5.0}s] {published} messages, {samples} samples ({rate:.0}/s), {acked} acknowledged, {errors} connection errors",
            start.elapsed().as_secs_f64()
        )
    })
    .await
}

/// Prints the progress line `line` makes, until the task is dropped: on a
/// terminal rewritten in place each second, otherwise a new line every 5 s.
pub async fn lines(mut line: impl FnMut() -> String) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let line = line();
        let mut err = std::io::stderr();
        if tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// Ends a progress line rewritten in place, so what follows starts on a new line.
pub fn end_line() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

pub fn summary(stats: &LoadStats) {
    let (published, samples, acked, errors) = stats.get();
    eprintln!(
        "\ndone: {published} messages, {samples} samples, {acked} acknowledged, {errors} connection errors"
    );
}
