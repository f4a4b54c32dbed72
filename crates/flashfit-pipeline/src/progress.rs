//! Progress of the data engineers' commands: a bar with rate and ETA on a terminal
//! (`indicatif`), plain lines on stderr every few seconds otherwise (logs, CI, pipes). The
//! final summary is the command's own output, not this.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is written.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
    quiet: bool,
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise. `total` when known (ETA).
    pub fn new(label: &str, total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => ProgressBar::new(n).with_style(
                    ProgressStyle::with_template(
                        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{prefix} [{elapsed_precise}] {pos} ({per_sec})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.set_prefix(label.to_owned());
            bar
        });
        let now = Instant::now();
        Progress {
            label: label.to_owned(),
            bar,
            total,
            done: 0,
            started: now,
            last_line: now,
            quiet: false,
        }
    }

    /// No output at all (library callers, tests).
    pub fn quiet() -> Self {
        let now = Instant::now();
        Progress {
            label: String::new(),
            bar: None,
            total: None,
            done: 0,
            started: now,
            last_line: now,
            quiet: true,
        }
    }

    /// The total became known (or changed).
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.inc(n);
        } else if !self.quiet && self.last_line.elapsed() >= PLAIN_EVERY {
            self.last_line = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    /// The plain progress line: done/total, rate, ETA.
    pub fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        match self.total {
            Some(t) if rate > 0.0 => format!(
                "{}: {}/{} ({:.0}/s, ETA {:.0} s)",
                self.label,
                self.done,
                t,
                rate,
                t.saturating_sub(self.done) as f64 / rate
            ),
            Some(t) => format!("{}: {}/{}", self.label, self.done, t),
            None => format!("{}: {} ({:.0}/s)", self.label, self.done, rate),
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    /// Clears the bar (the summary follows).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_done_total_rate_and_eta() {
        let mut p = Progress::quiet();
        p.label = "replay".into();
        p.set_total(10);
        p.inc(4);
        let line = p.line();
        assert!(line.starts_with("replay: 4/10 ("), "{line}");
        assert!(line.contains("/s, ETA"), "{line}");
        assert_eq!(p.done(), 4);
    }
}
