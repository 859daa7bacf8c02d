//! Order entry as an ERP runs it, embedded and against a real `raiz serve`:
//! several clients place orders at once — lock the customer, check the credit
//! limit, append the header (its number from a serial) and the items, take
//! stock under record locks, skip a line whose stock is short by rolling back
//! to a savepoint — in transactions retried after deadlocks. At the end the
//! books must balance: each customer's balance is the sum of its orders, each
//! product's stock moved is what the items sold. Remote, an order costs a few
//! round trips (deferred writes, `seek_lock`), and a report of every order
//! with its items walks both tables in key order with read-ahead.

use std::time::Duration;

use raiz_client::{Session, Table};
use raiz_engine::index::{IndexDef, Segment};
use raiz_engine::{Field, FieldType, Schema, TableOptions, Value};

use crate::app_api::{Embedded, Sessions};
use crate::harness::Server;

const CUSTOMERS: i64 = 4;
const PRODUCTS: i64 = 6;
const LIMIT: i64 = 1_000_000;
const STOCK: i64 = 400;

fn setup(s: &Session) {
    let t = |fields: Vec<Field>| Schema::new(fields);
    s.create_table(
        "sa1",
        &t(vec![
            Field::new("CODE", FieldType::Char(6)),
            Field::new("BAL", FieldType::Int64),
        ]),
        TableOptions::default(),
    )
    .unwrap();
    s.create_table(
        "sb1",
        &t(vec![
            Field::new("CODE", FieldType::Char(6)),
            Field::new("STOCK", FieldType::Int64),
            Field::new("PRICE", FieldType::Int64),
        ]),
        TableOptions::default(),
    )
    .unwrap();
    s.create_table(
        "sc5",
        &t(vec![
            Field::new("NUM", FieldType::Int64),
            Field::new("CUST", FieldType::Char(6)),
            Field::new("TOTAL", FieldType::Int64),
        ]),
        TableOptions::default().serial("NUM"),
    )
    .unwrap();
    s.create_table(
        "sc6",
        &t(vec![
            Field::new("NUM", FieldType::Int64),
            Field::new("LINE", FieldType::Int64),
            Field::new("PROD", FieldType::Char(6)),
            Field::new("QTY", FieldType::Int64),
            Field::new("AMOUNT", FieldType::Int64),
        ]),
        TableOptions::default(),
    )
    .unwrap();
    let index = |table: &str, name: &str, fields: &[&str], unique: bool| {
        let mut t = s.open_table(table).unwrap();
        let def = IndexDef::new(name, fields.iter().map(|f| Segment::field(*f)).collect());
        t.create_index(&if unique { def.unique() } else { def })
            .unwrap();
    };
    index("sa1", "sa1_1", &["CODE"], true);
    index("sb1", "sb1_1", &["CODE"], true);
    index("sc5", "sc5_1", &["NUM"], true);
    index("sc6", "sc6_1", &["NUM", "LINE"], true);
    let mut c = s.open_table("sa1").unwrap();
    for i in 0..CUSTOMERS {
        c.append(&[Value::from(format!("C{i}").as_str()), Value::Int64(0)])
            .unwrap();
    }
    let mut p = s.open_table("sb1").unwrap();
    for i in 0..PRODUCTS {
        p.append(&[
            Value::from(format!("P{i}").as_str()),
            Value::Int64(STOCK),
            Value::Int64(10 + i),
        ])
        .unwrap();
    }
}

fn int(rec: &raiz_engine::Record, f: &str) -> i64 {
    rec.get(f).and_then(Value::as_i64).unwrap()
}

/// The tables one client uses, ordered for seeks.
struct Client {
    s: Session,
    cust: Table,
    prod: Table,
    head: Table,
    item: Table,
}

impl Client {
    fn new(s: Session) -> Client {
        s.set_lock_timeout(Duration::from_secs(5)).unwrap();
        s.set_deferred_writes(true).unwrap();
        let open = |t: &str, i: &str| {
            let mut h = s.open_table(t).unwrap();
            h.set_order(Some(i)).unwrap();
            h
        };
        Client {
            cust: open("sa1", "sa1_1"),
            prod: open("sb1", "sb1_1"),
            head: open("sc5", "sc5_1"),
            item: open("sc6", "sc6_1"),
            s,
        }
    }

    /// Places an order of `lines` (product, quantity); returns its number
    /// (None when every line was short of stock) and the retries it took.
    fn order(&mut self, cust: i64, lines: &[(i64, i64)]) -> (Option<i64>, u32) {
        let Client {
            s,
            cust: ct,
            prod,
            head,
            item,
        } = self;
        s.transaction_with(
            raiz_client::Retry {
                max: 20,
                on_timeout: true,
            },
            |s| {
                let start = s.savepoint()?;
                let c = ct
                    .seek_lock(&[Value::from(format!("C{cust}").as_str())])?
                    .expect("customer exists");
                let r = head.append(&[Value::Int64(0), c.values()[0].clone(), Value::Int64(0)])?;
                let num = int(&head.record()?, "NUM");
                let mut total = 0;
                for (n, (p, qty)) in lines.iter().enumerate() {
                    let sp = s.savepoint()?;
                    let rec = prod
                        .seek_lock(&[Value::from(format!("P{p}").as_str())])?
                        .expect("product exists");
                    if int(&rec, "STOCK") < *qty {
                        s.rollback_to(sp)?;
                        continue;
                    }
                    prod.update_fields(
                        rec.recno(),
                        &[("STOCK", Value::Int64(int(&rec, "STOCK") - qty))],
                    )?;
                    let amount = qty * int(&rec, "PRICE");
                    item.insert(&[
                        Value::Int64(num),
                        Value::Int64(n as i64),
                        rec.values()[0].clone(),
                        Value::Int64(*qty),
                        Value::Int64(amount),
                    ])?;
                    total += amount;
                }
                if total == 0 || int(&c, "BAL") + total > LIMIT {
                    // Nothing to sell, or over the credit limit: no order (its
                    // number and header recno are spent, as a rollback spends them).
                    s.rollback_to(start)?;
                    return Ok(None);
                }
                head.update_fields(r, &[("TOTAL", Value::Int64(total))])?;
                ct.update_fields(c.recno(), &[("BAL", Value::Int64(int(&c, "BAL") + total))])?;
                Ok(Some(num))
            },
        )
        .unwrap()
    }
}

/// Checks the books balance; returns the number of orders.
fn books_balance(s: &Session) -> usize {
    let all = |t: &str| s.open_table(t).unwrap().snapshot().unwrap();
    let orders: Vec<_> = all("sc5").into_iter().filter(|r| !r.is_deleted()).collect();
    let items: Vec<_> = all("sc6").into_iter().filter(|r| !r.is_deleted()).collect();
    for c in all("sa1") {
        let code = c.values()[0].clone();
        let billed: i64 = orders
            .iter()
            .filter(|o| o.values()[1] == code)
            .map(|o| int(o, "TOTAL"))
            .sum();
        assert_eq!(int(&c, "BAL"), billed, "customer {code}");
    }
    for p in all("sb1") {
        let code = p.values()[0].clone();
        let sold: i64 = items
            .iter()
            .filter(|i| i.values()[2] == code)
            .map(|i| int(i, "QTY"))
            .sum();
        assert_eq!(STOCK - int(&p, "STOCK"), sold, "product {code}");
    }
    for o in &orders {
        let lines: i64 = items
            .iter()
            .filter(|i| int(i, "NUM") == int(o, "NUM"))
            .map(|i| int(i, "AMOUNT"))
            .sum();
        assert_eq!(int(o, "TOTAL"), lines, "order {}", int(o, "NUM"));
    }
    for t in ["sa1", "sb1", "sc5", "sc6"] {
        assert!(s.open_table(t).unwrap().check(5).unwrap().is_ok(), "{t}");
    }
    orders.len()
}

fn concurrent_orders(db: &dyn Sessions, clients: u64, per_client: u64) -> u32 {
    setup(&db.session());
    let retries: u32 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let mut client = Client::new(db.session());
                    let mut x = 0x9e37_79b9u64 + c;
                    let mut rnd = move |n: i64| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % n as u64) as i64
                    };
                    let mut retries = 0;
                    for _ in 0..per_client {
                        let lines: Vec<(i64, i64)> =
                            (0..3).map(|_| (rnd(PRODUCTS), 1 + rnd(9))).collect();
                        retries += client.order(rnd(CUSTOMERS), &lines).1;
                    }
                    retries
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let orders = books_balance(&db.session());
    assert!(orders > 0);
    retries
}

#[test]
fn concurrent_order_entry_balances_the_books_embedded() {
    let retries = concurrent_orders(&Embedded::new(), 3, 60);
    println!("embedded: {retries} retries");
}

#[test]
fn concurrent_order_entry_balances_the_books_against_a_server() {
    let server = Server::start(&[]);
    let retries = concurrent_orders(&server, 3, 40);
    println!("remote: {retries} retries");
}

#[test]
fn an_order_costs_a_few_round_trips_and_a_report_a_few_per_thousand_orders() {
    let server = Server::start(&[]);
    setup(&server.session("ana"));
    let mut client = Client::new(server.session("ana"));
    // Warm up the handles, then count one order of three lines.
    client.order(0, &[(0, 1)]);
    let before = client.s.round_trips();
    let (num, _) = client.order(1, &[(1, 2), (2, 1), (3, 4)]);
    let cost = client.s.round_trips() - before;
    assert!(num.is_some());
    assert!(cost <= 8, "an order of three lines took {cost} round trips");
    println!("one order of three lines: {cost} round trips");
    for i in 0..600 {
        client.order(i % CUSTOMERS, &[(i % PRODUCTS, 1), ((i + 1) % PRODUCTS, 1)]);
    }
    books_balance(&client.s);
    // The report: every order with its items, both tables walked in order.
    let s = server.session("ana");
    let mut head = s.open_table("sc5").unwrap();
    let mut item = s.open_table("sc6").unwrap();
    head.set_order(Some("sc5_1")).unwrap();
    item.set_order(Some("sc6_1")).unwrap();
    let before = s.round_trips();
    let (mut orders, mut lines) = (0, 0);
    let mut more_items = item.first().unwrap();
    let mut more = head.first().unwrap();
    while more {
        let num = int(&head.record().unwrap(), "NUM");
        orders += 1;
        while more_items && int(&item.record().unwrap(), "NUM") == num {
            lines += 1;
            more_items = item.next().unwrap();
        }
        more = head.next().unwrap();
    }
    let cost = s.round_trips() - before;
    assert!(orders > 600 && lines > orders);
    assert!(
        cost * 20 < orders,
        "{orders} orders and {lines} items took {cost} round trips"
    );
    println!("report of {orders} orders, {lines} items: {cost} round trips");
}
