//! The results of a run: one row per workload, one column per engine; written
//! as markdown (absolute figure and ratio to the best) and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Which direction is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Better {
    /// Rates.
    Higher,
    /// Times and sizes.
    Lower,
}

/// One figure, or why there is none.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Cell {
    /// A measured value.
    Value(f64),
    /// Not applicable, with the reason.
    Na(String),
}

/// One workload.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    /// Name.
    pub name: String,
    /// Unit of the figures.
    pub unit: String,
    /// Direction.
    pub better: Better,
    /// Figure per engine.
    pub cells: BTreeMap<String, Cell>,
}

/// A whole run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Workloads in the order measured.
    pub workloads: Vec<Workload>,
    /// Engines in column order.
    pub engines: Vec<String>,
    /// Free-form notes (settings, skipped parts).
    pub notes: Vec<String>,
}

fn fmt_value(v: f64) -> String {
    if v >= 100_000.0 {
        format!("{:.0}K", v / 1000.0)
    } else if v >= 10_000.0 {
        format!("{:.1}K", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

impl Report {
    fn workload(&mut self, name: &str, unit: &str, better: Better) -> &mut Workload {
        if let Some(i) = self.workloads.iter().position(|w| w.name == name) {
            return &mut self.workloads[i];
        }
        self.workloads.push(Workload {
            name: name.to_owned(),
            unit: unit.to_owned(),
            better,
            cells: BTreeMap::new(),
        });
        self.workloads.last_mut().expect("just pushed")
    }

    fn engine(&mut self, engine: &str) {
        if !self.engines.iter().any(|e| e == engine) {
            self.engines.push(engine.to_owned());
        }
    }

    /// Records a figure.
    pub fn add(&mut self, workload: &str, unit: &str, better: Better, engine: &str, v: f64) {
        self.engine(engine);
        self.workload(workload, unit, better)
            .cells
            .insert(engine.to_owned(), Cell::Value(v));
        tracing::info!(engine, workload, value = v, unit, "measured");
    }

    /// Records that a workload does not apply to an engine.
    pub fn na(&mut self, workload: &str, engine: &str, why: &str) {
        self.engine(engine);
        // The unit and direction come from the engines that have a figure.
        let w = self.workload(workload, "", Better::Higher);
        w.cells.insert(engine.to_owned(), Cell::Na(why.to_owned()));
    }

    /// Fixes unit and direction of a workload first seen as not applicable.
    pub fn describe(&mut self, workload: &str, unit: &str, better: Better) {
        let w = self.workload(workload, unit, better);
        w.unit = unit.to_owned();
        w.better = better;
    }

    /// The markdown table: each cell "figure (ratio to the best)", the best bold.
    pub fn markdown(&self, engines: &[String]) -> String {
        let mut out = String::new();
        let _ = write!(out, "| workload | unit |");
        for e in engines {
            let _ = write!(out, " {e} |");
        }
        out.push('\n');
        out.push_str("|---|---|");
        for _ in engines {
            out.push_str("---|");
        }
        out.push('\n');
        for w in &self.workloads {
            if !engines.iter().any(|e| w.cells.contains_key(e)) {
                continue;
            }
            let values = engines.iter().filter_map(|e| match w.cells.get(e) {
                Some(Cell::Value(v)) => Some(*v),
                _ => None,
            });
            let best = match w.better {
                Better::Higher => values.fold(f64::MIN, f64::max),
                Better::Lower => values.fold(f64::MAX, f64::min),
            };
            let _ = write!(out, "| {} | {} |", w.name, w.unit);
            for e in engines {
                match w.cells.get(e) {
                    Some(Cell::Value(v)) => {
                        let ratio = match w.better {
                            Better::Higher => v / best,
                            Better::Lower => best / v,
                        };
                        if (ratio - 1.0).abs() < 1e-9 {
                            let _ = write!(out, " **{}** (1.00) |", fmt_value(*v));
                        } else {
                            let _ = write!(out, " {} ({ratio:.2}) |", fmt_value(*v));
                        }
                    }
                    Some(Cell::Na(why)) => {
                        let _ = write!(out, " n/a: {why} |");
                    }
                    None => out.push_str(" — |"),
                }
            }
            out.push('\n');
        }
        out
    }

    /// The JSON of the run.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
