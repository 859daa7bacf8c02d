//! SQL over the PostgreSQL protocol (`[server] sql_listen`): `psql`, BI
//! tools and PostgreSQL drivers query the served rootpath's tables through
//! [`raiz_sql`], read-only.
//!
//! - **Login** with raiz's users: the client is asked for its password in
//!   clear text, which the server checks as any login (argon2, the same
//!   failure throttle). A password crosses the network only under TLS: on a
//!   connection that is neither TLS nor from this machine the server refuses
//!   before asking for it. (SCRAM would need a second, SCRAM-specific
//!   verifier stored per user; raiz stores argon2 hashes only.)
//! - **Permissions**: a user reads only the tables whose read right it has,
//!   checked when a statement starts reading a table — a revoked right holds
//!   from the next statement.
//! - **Sessions**: each connection is a session in `raiz monitor`; ending it
//!   there closes the connection at its next statement.
//! - **Cancel**: PostgreSQL's cancel request (psql's Ctrl-C) interrupts the
//!   connection's running statement.
//! - **Types** sent: BIGINT for integers, DOUBLE PRECISION for reals (a
//!   Numeric with decimals), VARCHAR / TEXT, BOOLEAN, BYTEA; dates as text.
//!   A computed column takes the type of its values in the simple protocol
//!   and in a prepared statement without parameters (run when described);
//!   in one with parameters it is sent as text.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt};
use parking_lot::Mutex;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeResponse, DescribeStatementResponse, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{NoopQueryParser, StoredStatement};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers, Type, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::startup::{Authentication, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use raiz_sql::{Column, QueryResult, SqlSession, SqlValue};

use crate::acl::Right;
use crate::auth::Verdict;
use crate::users::User;
use crate::Shared;

/// Running statements by the key their connection gave its client, for
/// cancel requests.
#[derive(Default)]
pub(crate) struct Cancels {
    map: Mutex<HashMap<i32, (i32, raiz_sql::InterruptHandle)>>,
}

/// Serves SQL connections from `listener` until the server stops.
pub(crate) async fn accept(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let cancels = Arc::new(Cancels::default());
    let mut stop = shared.shutdown.subscribe();
    loop {
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "SQL listener");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // The server's limits hold for SQL connections too: at most
        // `max_connections` in all, and few still logging in per address.
        let Some(slot) = shared.limits.connect() else {
            tracing::warn!(%peer, "at max_connections; SQL connection refused");
            continue;
        };
        let Some(pending) = shared.limits.unauthenticated(&peer.ip().to_string()) else {
            tracing::warn!(%peer, "too many connections logging in; SQL connection refused");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let handlers = Arc::new(Handlers {
            conn: Arc::new(Conn {
                shared: shared.clone(),
                cancels: cancels.clone(),
                peer,
                state: Mutex::new(None),
                described: Mutex::new(HashMap::new()),
                parser: Arc::new(NoopQueryParser::new()),
                statements: Arc::new(AtomicU64::new(0)),
                _slot: slot,
                pending: Mutex::new(Some(pending)),
            }),
        });
        let tls = shared.tls.clone();
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, error = %e, "SQL connection ended");
            }
        });
    }
}

struct Handlers {
    conn: Arc<Conn>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.conn.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.conn.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.conn.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.conn.clone()
    }
}

/// A logged-in connection's session.
struct Open {
    sql: Arc<Mutex<SqlSession>>,
    entry: Arc<crate::registry::Entry>,
    id: u64,
    pid: i32,
}

/// One SQL connection.
struct Conn {
    shared: Arc<Shared>,
    cancels: Arc<Cancels>,
    peer: SocketAddr,
    state: Mutex<Option<Open>>,
    /// Results of parameterless prepared statements, run when described.
    described: Mutex<HashMap<String, QueryResult>>,
    parser: Arc<NoopQueryParser>,
    /// Statements run, for the idle release of tables.
    statements: Arc<AtomicU64>,
    /// Its place among the server's connections.
    _slot: crate::limits::ConnSlot,
    /// Its place among the connections logging in (until it has).
    pending: Mutex<Option<crate::limits::PendingSlot>>,
}

/// How long a connection is idle before its session lets its tables go.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(open) = self.state.lock().take() {
            self.cancels.map.lock().remove(&open.pid);
            self.shared.registry.remove(open.id);
            tracing::info!(session = open.id, peer = %self.peer, "SQL session ended");
        }
    }
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

/// The SQLSTATE of a SQL error.
fn sql_error(e: raiz_sql::Error) -> PgWireError {
    let code = match &e {
        raiz_sql::Error::ReadOnly(_) => "25006",
        raiz_sql::Error::NoTable(_) => "42P01",
        raiz_sql::Error::Cancelled => "57014",
        raiz_sql::Error::TooLarge { .. } => "54000",
        raiz_sql::Error::Engine(_) => "XX000",
        raiz_sql::Error::Sql(m) if m.contains("syntax error") => "42601",
        raiz_sql::Error::Sql(m) if m.contains("no such column") => "42703",
        raiz_sql::Error::Sql(_) => "42000",
    };
    user_error(code, e.to_string())
}

impl Conn {
    fn server_parameters() -> DefaultServerParameterProvider {
        let mut p = DefaultServerParameterProvider::default();
        p.server_version = format!("15.0 (raiz {})", env!("CARGO_PKG_VERSION"));
        p
    }

    fn open(&self) -> PgWireResult<Arc<Mutex<SqlSession>>> {
        let state = self.state.lock();
        let open = state
            .as_ref()
            .ok_or_else(|| fatal("28000", "not logged in"))?;
        if open.entry.is_ended() {
            let why = open
                .entry
                .reason()
                .unwrap_or_else(|| "ended by an administrator".into());
            return Err(fatal("57P01", format!("session ended: {why}")));
        }
        open.entry.touch();
        Ok(open.sql.clone())
    }

    /// Logs `user` in with `password`, or says why not.
    async fn login(&self, name: &str, password: String) -> PgWireResult<(User, Open)> {
        let address = self.peer.ip().to_string();
        let wait = self.shared.auth.delay(&address, name);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let user = match self.shared.auth.verify(name.to_owned(), password).await {
            Verdict::Ok(u) => u,
            Verdict::Denied => {
                self.shared.auth.failed(&address, name);
                tracing::info!(user = name, peer = %self.peer, "SQL login refused");
                return Err(fatal(
                    "28P01",
                    format!("password authentication failed for user \"{name}\""),
                ));
            }
            Verdict::Unavailable => return Err(fatal("57P03", "the server is stopping")),
        };
        let (shared, who) = (self.shared.clone(), user.clone());
        let access: raiz_sql::Access = Arc::new(move |table: &str| {
            // The current list: a user removed since logging in reads nothing.
            let users = shared.users.current();
            match users.get(&who.name) {
                Some(u) => shared.acl.allows(u, table, Right::Read),
                None => false,
            }
        });
        let sql = SqlSession::open(&self.shared.db, access, raiz_sql::Options::default())
            .map_err(sql_error)?;
        let id = sql.session().id();
        sql.session()
            .set_name(&format!("{}@{} (sql)", user.name, self.peer));
        let entry = self
            .shared
            .registry
            .add(id, &user.name, &self.peer.to_string(), "sql");
        let pid = loop {
            let pid = rand_i32().abs().max(1);
            let mut map = self.cancels.map.lock();
            if let std::collections::hash_map::Entry::Vacant(v) = map.entry(pid) {
                v.insert((rand_i32(), sql.interrupt_handle()));
                break pid;
            }
        };
        tracing::info!(session = id, user = %user.name, peer = %self.peer, "SQL session started");
        Ok((
            user,
            Open {
                sql: Arc::new(Mutex::new(sql)),
                entry,
                id,
                pid,
            },
        ))
    }

    /// Prepares `sql` on a blocking thread: its columns and parameters.
    async fn describe(&self, sql: &str) -> PgWireResult<(Vec<Column>, usize)> {
        let session = self.open()?;
        let text = sql.to_owned();
        tokio::task::spawn_blocking(move || session.lock().describe(&text))
            .await
            .map_err(|e| user_error("XX000", e.to_string()))?
            .map_err(sql_error)
    }

    /// Runs `sql` on a blocking thread. Two seconds after the connection's
    /// last statement its session lets its tables go, so that an idle
    /// report tool never keeps a drop or `pack` from running.
    async fn run(&self, sql: &str, params: Vec<SqlValue>) -> PgWireResult<QueryResult> {
        let session = self.open()?;
        let text = sql.to_owned();
        let ran = {
            let session = session.clone();
            tokio::task::spawn_blocking(move || session.lock().query(&text, &params))
                .await
                .map_err(|e| user_error("XX000", format!("the statement failed: {e}")))?
                .map_err(sql_error)
        };
        let generation = self.statements.fetch_add(1, Ordering::Relaxed) + 1;
        let statements = self.statements.clone();
        tokio::spawn(async move {
            tokio::time::sleep(IDLE_RELEASE).await;
            if statements.load(Ordering::Relaxed) == generation {
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(mut s) = session.try_lock() {
                        s.release_tables();
                    }
                })
                .await;
            }
        });
        ran
    }
}

fn rand_i32() -> i32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::UNIX_EPOCH
            .elapsed()
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish() as i32
}

#[async_trait]
impl StartupHandler for Conn {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let remote = !client.socket_addr().ip().is_loopback();
                let plaintext_ok =
                    self.shared.tls.is_none() || self.shared.config.allow_plaintext == Some(true);
                if !client.is_secure() && remote && !plaintext_ok {
                    return Err(fatal(
                        "28000",
                        "a password is sent only over TLS: connect with sslmode=require",
                    ));
                }
                if !client.is_secure() && remote {
                    tracing::warn!(peer = %self.peer, "SQL password over a connection without TLS");
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let name = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .ok_or_else(|| fatal("28000", "no user name given"))?;
                let (_, open) = self.login(&name, pwd.password).await?;
                let secret = self
                    .cancels
                    .map
                    .lock()
                    .get(&open.pid)
                    .map_or(0, |(s, _)| *s);
                client.set_pid_and_secret_key(open.pid, SecretKey::I32(secret));
                *self.state.lock() = Some(open);
                self.pending.lock().take();
                finish_authentication(client, &Self::server_parameters()).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[async_trait]
impl CancelHandler for Conn {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let map = self.cancels.map.lock();
        if let Some((secret, handle)) = map.get(&request.pid) {
            if request.secret_key.to_bytes() == SecretKey::I32(*secret).to_bytes() {
                handle.interrupt();
                tracing::info!(pid = request.pid, "SQL statement cancelled");
            }
        }
    }
}

/// A text with no statement in it (`;` alone, blanks).
fn empty(sql: &str) -> bool {
    sql.trim().trim_end_matches(';').trim().is_empty()
}

/// What a statement that is not a query means here, if it is one of the
/// session statements drivers send (answered without running anything).
fn session_statement(sql: &str) -> Option<Response> {
    let first = sql
        .split(|c: char| c.is_whitespace() || c == ';')
        .find(|w| !w.is_empty())?
        .to_ascii_uppercase();
    let tag = match first.as_str() {
        "SET" | "RESET" => "SET",
        "BEGIN" | "START" => "BEGIN",
        "COMMIT" | "END" => "COMMIT",
        "ROLLBACK" | "ABORT" => "ROLLBACK",
        "DISCARD" => "DISCARD ALL",
        "DEALLOCATE" => "DEALLOCATE",
        _ => return None,
    };
    Some(Response::Execution(Tag::new(tag)))
}

/// The PostgreSQL type of a result column: from its declared type, else
/// from its values (`None` values: text).
fn column_type(col: &Column, values: Option<&[Vec<SqlValue>]>, at: usize) -> Type {
    if let Some(d) = col.declared.as_deref() {
        let d = d.to_ascii_uppercase();
        if d.starts_with("VARCHAR") {
            return Type::VARCHAR;
        }
        if let Some(rest) = d.strip_prefix("NUMERIC(") {
            return if rest.ends_with(",0)") {
                Type::INT8
            } else {
                Type::FLOAT8
            };
        }
        match d.as_str() {
            "BIGINT" | "INTEGER" | "INT" => return Type::INT8,
            "DOUBLE" | "REAL" | "FLOAT" => return Type::FLOAT8,
            "BOOLEAN" => return Type::BOOL,
            "BLOB" => return Type::BYTEA,
            "TEXT" | "DATE" => return Type::TEXT,
            _ => {}
        }
    }
    let Some(rows) = values else {
        return Type::TEXT;
    };
    let (mut int, mut real, mut text, mut blob) = (false, false, false, false);
    for r in rows {
        match &r[at] {
            SqlValue::Null => {}
            SqlValue::Integer(_) => int = true,
            SqlValue::Real(_) => real = true,
            SqlValue::Text(_) => text = true,
            SqlValue::Blob(_) => blob = true,
        }
    }
    match (int, real, text, blob) {
        (_, _, true, _) | (true, _, _, true) | (_, true, _, true) => Type::TEXT,
        (false, false, false, true) => Type::BYTEA,
        (_, true, _, _) => Type::FLOAT8,
        (true, false, _, _) => Type::INT8,
        _ => Type::TEXT,
    }
}

fn fields(columns: &[Column], rows: Option<&[Vec<SqlValue>]>, format: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            FieldInfo::new(
                c.name.clone(),
                None,
                None,
                column_type(c, rows, i),
                format.format_for(i),
            )
        })
        .collect()
}

fn text_of(v: &SqlValue) -> Option<String> {
    match v {
        SqlValue::Null => None,
        SqlValue::Integer(i) => Some(i.to_string()),
        SqlValue::Real(f) => Some(f.to_string()),
        SqlValue::Text(s) => Some(s.clone()),
        SqlValue::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

fn encode_value(e: &mut DataRowEncoder, ty: &Type, v: &SqlValue) -> PgWireResult<()> {
    match (ty, v) {
        (_, SqlValue::Null) => e.encode_field(&None::<i64>),
        (&Type::INT8, SqlValue::Integer(i)) => e.encode_field(i),
        (&Type::INT8, SqlValue::Real(f)) => e.encode_field(&(*f as i64)),
        (&Type::FLOAT8, SqlValue::Integer(i)) => e.encode_field(&(*i as f64)),
        (&Type::FLOAT8, SqlValue::Real(f)) => e.encode_field(f),
        (&Type::BOOL, SqlValue::Integer(i)) => e.encode_field(&(*i != 0)),
        (&Type::BYTEA, SqlValue::Blob(b)) => e.encode_field(&b.as_slice()),
        (&Type::BYTEA, SqlValue::Text(s)) => e.encode_field(&s.as_bytes()),
        (_, v) => e.encode_field(&text_of(v)),
    }
}

/// A query's response, and a notice when it did not read one state.
fn respond(
    result: QueryResult,
    fields: Vec<FieldInfo>,
) -> PgWireResult<(Response, Option<String>)> {
    let schema = Arc::new(fields);
    let mut rows = Vec::with_capacity(result.rows.len());
    let mut enc = DataRowEncoder::new(schema.clone());
    for r in &result.rows {
        for (i, v) in r.iter().enumerate() {
            encode_value(&mut enc, schema[i].datatype(), v)?;
        }
        rows.push(Ok(enc.take_row()));
    }
    let notice = (!result.consistent).then(|| {
        format!(
            "tables changed while the statement read them ({} runs): each record is committed, \
             but records may come from different commits",
            result.attempts
        )
    });
    Ok((
        Response::Query(QueryResponse::new(schema, stream::iter(rows))),
        notice,
    ))
}

async fn send_notice<C>(client: &mut C, notice: Option<String>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if let Some(n) = notice {
        client
            .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                ErrorInfo::new("WARNING".to_owned(), "01000".to_owned(), n),
            )))
            .await?;
    }
    Ok(())
}

#[async_trait]
impl SimpleQueryHandler for Conn {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if empty(query) {
            return Ok(vec![Response::EmptyQuery]);
        }
        if let Some(r) = session_statement(query) {
            return Ok(vec![r]);
        }
        let result = self.run(query, Vec::new()).await?;
        let f = fields(&result.columns, Some(&result.rows), &Format::UnifiedText);
        let (response, notice) = respond(result, f)?;
        send_notice(client, notice).await?;
        Ok(vec![response])
    }
}

/// A parameter as the client bound it.
fn parameter(portal: &Portal<String>, i: usize) -> PgWireResult<SqlValue> {
    let ty = portal
        .statement
        .parameter_types
        .get(i)
        .cloned()
        .flatten()
        .unwrap_or(Type::UNKNOWN);
    let v = match ty {
        Type::INT2 => portal
            .parameter::<i16>(i, &ty)?
            .map(|v| SqlValue::Integer(v.into())),
        Type::INT4 => portal
            .parameter::<i32>(i, &ty)?
            .map(|v| SqlValue::Integer(v.into())),
        Type::INT8 => portal.parameter::<i64>(i, &ty)?.map(SqlValue::Integer),
        Type::FLOAT4 => portal
            .parameter::<f32>(i, &ty)?
            .map(|v| SqlValue::Real(v.into())),
        Type::FLOAT8 => portal.parameter::<f64>(i, &ty)?.map(SqlValue::Real),
        Type::BOOL => portal
            .parameter::<bool>(i, &ty)?
            .map(|v| SqlValue::Integer(v.into())),
        Type::BYTEA => portal.parameter::<Vec<u8>>(i, &ty)?.map(SqlValue::Blob),
        _ => portal
            .parameter::<String>(i, &Type::TEXT)?
            .map(SqlValue::Text),
    };
    Ok(v.unwrap_or(SqlValue::Null))
}

#[async_trait]
impl ExtendedQueryHandler for Conn {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<String>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sql = &portal.statement.statement;
        if empty(sql) {
            return Ok(Response::EmptyQuery);
        }
        if let Some(r) = session_statement(sql) {
            return Ok(r);
        }
        let params = (0..portal.parameter_len())
            .map(|i| parameter(portal, i))
            .collect::<PgWireResult<Vec<_>>>()?;
        // A parameterless statement ran when it was described: its types
        // were taken from that result, which is the one sent.
        let cached = if params.is_empty() {
            self.described.lock().remove(sql)
        } else {
            None
        };
        let (result, typed) = match cached {
            Some(r) => (r, true),
            None => (self.run(sql, params.clone()).await?, params.is_empty()),
        };
        let f = fields(
            &result.columns,
            typed.then_some(result.rows.as_slice()),
            &portal.result_column_format,
        );
        let (response, notice) = respond(result, f)?;
        send_notice(client, notice).await?;
        Ok(response)
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        stmt: &StoredStatement<String>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if session_statement(&stmt.statement).is_some() || empty(&stmt.statement) {
            return Ok(DescribeStatementResponse::no_data());
        }
        let (columns, nparams) = self.describe(&stmt.statement).await?;
        let param_types: Vec<Type> = (0..nparams)
            .map(|i| {
                stmt.parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        let typed_later = columns.iter().any(|c| c.declared.is_none());
        let fields = if nparams == 0 && typed_later {
            let result = self.run(&stmt.statement, Vec::new()).await?;
            let f = fields(&result.columns, Some(&result.rows), &Format::UnifiedBinary);
            self.described.lock().insert(stmt.statement.clone(), result);
            f
        } else {
            fields(&columns, None, &Format::UnifiedBinary)
        };
        Ok(DescribeStatementResponse::new(param_types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<String>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = &portal.statement.statement;
        if session_statement(sql).is_some() || empty(sql) {
            return Ok(DescribePortalResponse::no_data());
        }
        let params = (0..portal.parameter_len())
            .map(|i| parameter(portal, i))
            .collect::<PgWireResult<Vec<_>>>()?;
        if params.is_empty() {
            let result = self.run(sql, Vec::new()).await?;
            let f = fields(
                &result.columns,
                Some(&result.rows),
                &portal.result_column_format,
            );
            self.described.lock().insert(sql.clone(), result);
            return Ok(DescribePortalResponse::new(f));
        }
        let (columns, _) = self.describe(sql).await?;
        Ok(DescribePortalResponse::new(fields(
            &columns,
            None,
            &portal.result_column_format,
        )))
    }
}
