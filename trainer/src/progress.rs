//! One progress-bar style for every long job of the trainer (simulate, cutout, predict,
//! training epochs), so they read alike and the template is written once.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `n` steps labelled `what` counting `unit` (e.g. "clusters"), with rate and ETA;
/// hidden when `show` is false (`--quiet`, tests).
pub fn bar(n: usize, show: bool, what: &str, unit: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} {unit} {{msg}} {{per_sec}} eta {{eta}}"
        ))
        .expect("static template")
        .progress_chars("=> "),
    );
    pb
}
