//! Progress bars for long work: drawn on standard error when it is a
//! terminal, hidden otherwise (scripts and logs stay quiet).

use std::io::IsTerminal;

use indicatif::ProgressBar;

/// A bar of `len` steps, hidden unless standard error is a terminal.
pub fn bar(len: u64) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    }
}
