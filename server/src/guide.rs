//! The developer guide (`docs/xbase.md`) and what its examples need to run
//! both embedded and against a real server.

#[doc = include_str!("../../docs/xbase.md")]
pub mod xbase {}

use raiz_client::Connection;

/// Runs `example` twice: on a `file:` connection to a fresh rootpath, then
/// on a `raiz://` connection to a server started in this process on another
/// fresh rootpath (loopback, an ephemeral port, one user). The guide's
/// examples call it from their hidden lines, so each runs in both modes.
#[doc(hidden)]
pub fn for_each_mode(
    mut example: impl FnMut(&Connection) -> raiz_client::Result<()>,
) -> raiz_client::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded = dir.path().join("embedded");
    example(&Connection::connect(&format!(
        "file:{}",
        embedded.display()
    ))?)?;

    let root = dir.path().join("served");
    std::fs::create_dir_all(&root).expect("a rootpath");
    let mut users = crate::users::Users::default();
    users
        .add("guide", "guide-pw", vec![], true)
        .and_then(|()| users.save(&root))
        .expect("the guide's user");
    let config = crate::Config {
        root: Some(root),
        listen: Some("127.0.0.1:0".into()),
        ..crate::Config::default()
    };
    let server = crate::start(config, false).expect("a server for the guide");
    let addr = server.tcp.expect("a TCP address");
    let result = example(&Connection::connect(&format!(
        "raiz://guide:guide-pw@{addr}"
    ))?);
    server.stop().expect("the guide's server stops cleanly");
    result
}
