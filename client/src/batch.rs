//! Key-range batches run against an engine table: the embedded client and the
//! server share this code, so a batch means the same thing in both modes.

use std::time::Duration;

use raiz_engine::{Record, Session, Table};

use crate::proto::{BatchAction, BatchRequest};

/// Runs `req` on `table` (in its current order). Outside a transaction the
/// batch runs in one of its own, so it is all or nothing; inside one it joins it.
pub fn run(
    session: &Session,
    table: &mut Table,
    req: &BatchRequest,
) -> raiz_engine::Result<(u64, Vec<Record>)> {
    let own = !session.in_transaction() && !matches!(req.action, BatchAction::Read { .. });
    if own {
        session.begin()?;
    }
    let result = run_in(table, req);
    if own {
        match &result {
            Ok(_) => session.commit()?,
            Err(_) => {
                if let Err(e) = session.rollback() {
                    tracing::warn!(error = %e, "rolling back a failed batch");
                }
            }
        }
    }
    result
}

fn run_in(table: &mut Table, req: &BatchRequest) -> raiz_engine::Result<(u64, Vec<Record>)> {
    let limit = req.limit.unwrap_or(u64::MAX);
    let mut selected = Vec::new();
    for r in table.range(req.lower.as_deref(), req.upper.as_deref())? {
        if selected.len() as u64 >= limit {
            break;
        }
        selected.push(r?);
    }
    let count = selected.len() as u64;
    match &req.action {
        BatchAction::Read { lock_ms: None } => Ok((count, selected)),
        BatchAction::Read { lock_ms: Some(ms) } => {
            let mut out = Vec::with_capacity(selected.len());
            for r in selected {
                // The lock re-reads the record: it may have changed between
                // the range read and the lock.
                out.push(table.lock(r.recno(), Duration::from_millis(*ms))?);
            }
            Ok((count, out))
        }
        BatchAction::Delete => {
            for r in &selected {
                if !r.is_deleted() {
                    table.delete(r.recno())?;
                }
            }
            Ok((count, Vec::new()))
        }
        BatchAction::Update(assign) => {
            let schema = table.schema();
            let mut at = Vec::with_capacity(assign.len());
            for (field, v) in assign {
                let i = schema
                    .position(field)
                    .ok_or_else(|| raiz_engine::Error::NoSuchField {
                        table: table.name(),
                        field: field.clone(),
                    })?;
                at.push((i, v));
            }
            for r in selected {
                let recno = r.recno();
                let mut values = r.into_values();
                for (i, v) in &at {
                    values[*i] = (*v).clone();
                }
                table.update(recno, &values)?;
            }
            Ok((count, Vec::new()))
        }
    }
}
