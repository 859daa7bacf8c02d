//! `raiz shell`: an interactive and scriptable command language over the
//! `raiz_client` Session / Table API, so it works the same on a rootpath and
//! on a server (the language is documented in `docs/shell.md`).
//!
//! - [`parse`] splits lines into commands and commands into [`parse::Cmd`];
//! - [`exec`] runs them on a session, one table handle per table in use;
//! - [`output`] prints aligned tables or JSON lines.
//!
//! Commands come from `-c`, from standard input when it is not a terminal,
//! or from a line editor with history. A failing command prints `error: …`
//! on standard error and the shell goes on (with `--stop-on-error`, it
//! stops); a script's exit code is then the first failure's.

pub mod exec;
pub mod output;
pub mod parse;

use std::io::{BufRead, IsTerminal};

use raiz_client::Connection;

use crate::error::{CliError, CliResult};
use exec::{Flow, Shell};
use output::Out;

/// How the shell runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// One JSON object per line instead of tables.
    pub json: bool,
    /// Print each input line after a `raiz> ` prompt (a transcript).
    pub echo: bool,
    /// Stop at the first failing command.
    pub stop_on_error: bool,
    /// Commands given with `-c` (`;` separates them).
    pub commands: Option<String>,
}

/// Runs the commands of one input line; false when the shell should stop.
fn run_line(shell: &mut Shell, line: &str, opts: &Options, failure: &mut Option<u8>) -> bool {
    for cmd in parse::split_commands(line) {
        let r = parse::parse(&cmd)
            .map_err(|e| CliError::Usage(e.to_string()))
            .and_then(|c| shell.run(c));
        match r {
            Ok(Flow::Continue) => {}
            Ok(Flow::Quit) => return false,
            Err(e) => {
                shell.out.error(&e.to_string());
                failure.get_or_insert(e.code());
                if opts.stop_on_error {
                    return false;
                }
            }
        }
    }
    true
}

fn finish(shell: &mut Shell, failure: Option<u8>) -> CliResult {
    shell.out.flush();
    if shell.in_transaction() {
        shell.out.error("the open transaction was rolled back");
    }
    match failure {
        Some(code) => Err(CliError::Reported(code)),
        None => Ok(()),
    }
}

fn script(shell: &mut Shell, lines: impl Iterator<Item = String>, opts: &Options) -> CliResult {
    let mut failure = None;
    for line in lines {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            continue;
        }
        if opts.echo {
            shell.out.line(&format!("raiz> {}", line.trim_end()));
        }
        if !run_line(shell, line, opts, &mut failure) {
            break;
        }
    }
    finish(shell, failure)
}

fn history_file() -> Option<std::path::PathBuf> {
    std::env::var_os("RAIZ_HISTORY")
        .map(Into::into)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".raiz_history"))
        })
}

fn interactive(shell: &mut Shell, opts: &Options) -> CliResult {
    use rustyline::error::ReadlineError;
    let mut editor =
        rustyline::DefaultEditor::new().map_err(|e| CliError::Io(format!("line editor: {e}")))?;
    let history = history_file();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    eprintln!("raiz shell: `help` lists the commands, `quit` (or Ctrl-D) ends");
    let mut failure = None;
    loop {
        match editor.readline("raiz> ") {
            Ok(line) => {
                if line.trim().is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(line.as_str());
                if !run_line(shell, &line, opts, &mut failure) {
                    break;
                }
                shell.out.flush();
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(CliError::Io(format!("reading a line: {e}"))),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    // Interactive mistakes were seen as they happened.
    finish(shell, None)
}

/// Runs the shell on `conn`.
pub fn run(conn: &Connection, opts: &Options) -> CliResult {
    let session = conn.session()?;
    let out = Out::new(opts.json, Box::new(std::io::stdout()));
    let mut shell = Shell::new(session, out);
    if let Some(c) = &opts.commands {
        let lines: Vec<String> = c.lines().map(str::to_owned).collect();
        return script(&mut shell, lines.into_iter(), opts);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() && !opts.echo {
        return interactive(&mut shell, opts);
    }
    let mut err = None;
    let iter = stdin.lock().lines().map_while(|l| match l {
        Ok(l) => Some(l),
        Err(e) => {
            err = Some(e);
            None
        }
    });
    // Commands run as they arrive (a pipe may be an interactive program).
    let r = script(&mut shell, iter, opts);
    if let Some(e) = err {
        return Err(CliError::io("standard input", e));
    }
    r
}
