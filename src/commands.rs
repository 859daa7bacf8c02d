//! The maintenance subcommands: info, check, rebuild, pack, alter, index.

use indicatif::ProgressStyle;
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Database, Field, FieldType, Schema, Table};

use crate::error::{CliError, CliResult};

pub type CmdResult = CliResult;

fn open_table(db: &Database, table: &str) -> CliResult<Table> {
    Ok(db.session().open_table(table)?)
}

pub fn info(db: &Database, table: &str) -> CmdResult {
    let t = open_table(db, table)?;
    let i = t.info();
    println!("table        {}", i.name);
    println!("file         {}", i.path);
    println!("file id      {:032x}", i.file_id);
    println!("format       {:?}, page size {}", i.format, i.page_size);
    println!("durability   {}", i.durability);
    println!(
        "records      {} ({} deleted)",
        i.record_count, i.deleted_count
    );
    println!("pages        {} data, {} blob", i.data_pages, i.blob_pages);
    if let Some((field, next)) = &i.serial {
        println!("serial       {field}, next {next}");
    }
    println!(
        "repairs      {} unclean opens, {} moves, {} header copies, {} lost slots, {} index rebuilds",
        i.stats.unclean_opens, i.stats.moves, i.stats.header_repairs, i.stats.lost_slots_restored, i.stats.index_rebuilds
    );
    println!("fields");
    for f in i.schema.fields() {
        println!("  {:<12} {}", f.name, f.ty);
    }
    if !i.indexes.is_empty() {
        println!("indexes");
        for (def, entries) in &i.indexes {
            println!(
                "  {:<16} {}{}{}  ({entries} entries)",
                def.name,
                key_text(def),
                if def.unique { "  unique" } else { "" },
                if def.condition.is_some() {
                    "  conditional"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// An index's key as `raiz info` shows it: `A1_FILIAL + A1_NOME fold`.
pub fn key_text(def: &IndexDef) -> String {
    def.segments
        .iter()
        .map(|s| {
            let mut t = s.field.clone();
            if s.len.is_some() || s.offset > 0 {
                t += &format!("[{}..{}]", s.offset, s.offset + s.len.unwrap_or(0));
            }
            if s.fold {
                t += " fold";
            } else if s.upper {
                t += " upper";
            }
            if s.descending {
                t += " desc";
            }
            t
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

pub fn check(db: &Database, table: &str, limit: usize) -> CmdResult {
    let t = open_table(db, table)?;
    let r = t.check(limit)?;
    println!(
        "{table}: {} records, {} indexes checked",
        r.records, r.indexes
    );
    for p in &r.problems {
        println!("  {p}");
    }
    if r.is_ok() {
        println!("ok");
        Ok(())
    } else {
        Err(CliError::Data(format!(
            "check found {} problem(s) in {table}; `raiz rebuild` repairs them",
            r.problems.len()
        )))
    }
}

fn print_rewrite(what: &str, table: &str, r: raiz_engine::table::RewriteReport) {
    println!(
        "{what} {table}: {} records in, {} out, {} unreadable kept as deleted blanks, {} memos lost",
        r.records_in, r.records_out, r.salvaged, r.memos_lost
    );
}

pub fn rebuild(db: &Database, table: &str) -> CmdResult {
    let mut t = open_table(db, table)?;
    let r = t.rebuild()?;
    print_rewrite("rebuilt", table, r);
    Ok(())
}

pub fn pack(db: &Database, table: &str) -> CmdResult {
    let mut t = open_table(db, table)?;
    let r = t.pack()?;
    print_rewrite("packed", table, r);
    Ok(())
}

fn name_type(spec: &str) -> CliResult<(String, FieldType)> {
    let (name, ty) = spec
        .split_once(':')
        .ok_or_else(|| CliError::Usage(format!("{spec:?}: expected NAME:TYPE")))?;
    Ok((
        name.trim().to_owned(),
        ty.parse()
            .map_err(|e: raiz_engine::Error| CliError::Usage(e.to_string()))?,
    ))
}

pub fn alter(
    db: &Database,
    table: &str,
    add: &[String],
    drop: &[String],
    retype: &[String],
) -> CmdResult {
    let mut t = open_table(db, table)?;
    let mut fields: Vec<Field> = t.schema().fields().to_vec();
    for d in drop {
        let before = fields.len();
        fields.retain(|f| !f.name.eq_ignore_ascii_case(d));
        if fields.len() == before {
            return Err(CliError::Data(format!("table {table} has no field {d}")));
        }
    }
    for r in retype {
        let (name, ty) = name_type(r)?;
        let f = fields
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(&name))
            .ok_or_else(|| CliError::Data(format!("table {table} has no field {name}")))?;
        f.ty = ty;
    }
    for a in add {
        let (name, ty) = name_type(a)?;
        fields.push(Field::new(name, ty));
    }
    let r = t.alter(&Schema::new(fields))?;
    print_rewrite("altered", table, r);
    Ok(())
}

/// `FIELD[,upper][,fold][,desc][,part=OFFSET:LEN]`
pub(crate) fn segment(spec: &str) -> Result<Segment, String> {
    let mut parts = spec.split(',');
    let mut seg = Segment::field(parts.next().unwrap_or_default().trim());
    for m in parts {
        match m.trim() {
            "upper" => seg = seg.upper(),
            "fold" => seg = seg.fold(),
            "desc" => seg = seg.descending(),
            p if p.starts_with("part=") => {
                let (o, l) = p[5..]
                    .split_once(':')
                    .ok_or_else(|| format!("{p:?}: expected part=OFFSET:LEN"))?;
                seg = Segment {
                    offset: o.parse().map_err(|_| format!("{p:?}: bad offset"))?,
                    len: Some(l.parse().map_err(|_| format!("{p:?}: bad length"))?),
                    ..seg
                };
            }
            other => {
                return Err(format!(
                    "unknown segment modifier {other:?} (upper, fold, desc, part=OFFSET:LEN)"
                ))
            }
        }
    }
    Ok(seg)
}

pub fn index_create(
    db: &Database,
    table: &str,
    name: &str,
    segs: &[String],
    unique: bool,
) -> CmdResult {
    let mut t = open_table(db, table)?;
    let segments = segs
        .iter()
        .map(|s| segment(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::Usage)?;
    let mut def = IndexDef::new(name, segments);
    if unique {
        def = def.unique();
    }
    let pb = crate::progress::bar(t.record_count());
    pb.set_style(
        ProgressStyle::with_template("  building {msg} [{bar:30}] {pos}/{len}")
            .expect("a valid template"),
    );
    pb.set_message(name.to_owned());
    let started = std::time::Instant::now();
    let r = t.create_index_with_progress(&def, &mut |done, _| pb.set_position(done));
    pb.finish_and_clear();
    r?;
    println!(
        "index {name} created on {table} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn index_drop(db: &Database, table: &str, name: &str) -> CmdResult {
    let mut t = open_table(db, table)?;
    t.drop_index(name)?;
    println!("index {name} dropped from {table}");
    Ok(())
}
