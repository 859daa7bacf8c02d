//! A plain (TCP or Unix) connection served by its session thread alone:
//! after the login, the thread reads each request from the socket, runs it
//! and writes the reply, so a request costs no hand-off between threads —
//! which on a loaded server was most of a request's cost (a third of the
//! server's time went to context switches when a reader task, the session
//! thread and a writer task each took part in every request). TLS
//! connections keep the async reader and writer.
//!
//! The thread owns a duplicate of the socket, switched to blocking mode once
//! the async side has let go of it, and enforces what the async reader does:
//! the first byte of a request may take the idle timeout, the rest of the
//! frame must arrive within the frame timeout (socket receive timeouts, set
//! only when they change), a frame over the limit ends the connection. A
//! reply that makes no progress for the idle timeout (the client does not
//! read) ends the session, as the async reader ends one whose replies wait
//! unread that long. An admin's or the server's end of the session
//! shuts the socket's reading side, which wakes the thread (which also
//! checks the session's state before each request: a request already on its
//! way can still be read after the shutdown).

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadEnd {
    /// The peer closed (or the session was ended: the socket's reading side
    /// was shut).
    Closed,
    /// No request started within the idle timeout.
    Idle,
    /// A frame was not completed within the frame timeout.
    Slow,
    /// A frame announced more bytes than the limit.
    TooLarge(u32),
    /// The socket failed.
    Io(std::io::Error),
}

impl ReadEnd {
    /// What the session-ending log line says.
    pub fn reason(&self) -> &'static str {
        match self {
            ReadEnd::Closed => "closed by the client",
            ReadEnd::Idle => "idle timeout",
            ReadEnd::Slow => "frame not completed in time",
            ReadEnd::TooLarge(_) => "frame over the limit",
            ReadEnd::Io(_) => "connection lost",
        }
    }
}

/// The socket, by kind.
#[derive(Debug)]
enum Sock {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Sock {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.set_read_timeout(t),
            Sock::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.write_all(buf),
            Sock::Unix(s) => s.write_all(buf),
        }
    }

    fn try_clone(&self) -> std::io::Result<Sock> {
        Ok(match self {
            Sock::Tcp(s) => Sock::Tcp(s.try_clone()?),
            Sock::Unix(s) => Sock::Unix(s.try_clone()?),
        })
    }

    fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.shutdown(how),
            Sock::Unix(s) => s.shutdown(how),
        }
    }
}

/// Wakes a session thread blocked reading its socket (see the module docs).
#[derive(Debug)]
pub struct Waker(Sock);

impl Waker {
    /// Shuts the socket's reading side: the thread's read returns at once.
    pub fn wake(&self) {
        let _ = self.0.shutdown(Shutdown::Read);
    }

    /// Shuts both sides: a reply the thread is stuck writing (its client
    /// does not read) fails at once.
    pub fn close(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// Buffered reads of whole frames.
const READ_BUFFER: usize = 16 << 10;

/// One plain connection, read and written by its session thread.
#[derive(Debug)]
pub struct PlainConn {
    sock: Sock,
    buf: Vec<u8>,
    /// Unread bytes are `buf[at..end]`.
    at: usize,
    end: usize,
    /// The socket's receive timeout as last set.
    timeout: Option<Duration>,
    frame: Vec<u8>,
}

impl PlainConn {
    /// Takes over `socket` (a duplicate of the connection's descriptor,
    /// which nothing else reads or writes any more), with the bytes the
    /// login's reader had already buffered. A reply that makes no progress
    /// for `patience` fails.
    pub fn new(
        socket: OwnedFd,
        tcp: bool,
        buffered: &[u8],
        patience: Duration,
    ) -> std::io::Result<PlainConn> {
        let sock = if tcp {
            let s = std::net::TcpStream::from(socket);
            s.set_nonblocking(false)?;
            s.set_write_timeout(Some(patience))?;
            Sock::Tcp(s)
        } else {
            let s = std::os::unix::net::UnixStream::from(socket);
            s.set_nonblocking(false)?;
            s.set_write_timeout(Some(patience))?;
            Sock::Unix(s)
        };
        let mut buf = vec![0u8; READ_BUFFER.max(buffered.len())];
        buf[..buffered.len()].copy_from_slice(buffered);
        Ok(PlainConn {
            sock,
            buf,
            at: 0,
            end: buffered.len(),
            timeout: None,
            frame: Vec::new(),
        })
    }

    /// What wakes this connection's thread from a read.
    pub fn waker(&self) -> std::io::Result<Waker> {
        Ok(Waker(self.sock.try_clone()?))
    }

    /// A second handle on the socket, for a change stream's writer.
    pub fn writer(&self) -> std::io::Result<PlainWriter> {
        Ok(PlainWriter(self.sock.try_clone()?))
    }

    /// A handle that waits for the peer to close (what a change stream's
    /// watcher thread blocks on).
    pub fn watcher(&self) -> std::io::Result<PlainWatch> {
        let sock = self.sock.try_clone()?;
        // The stream's watcher waits as long as the stream lasts.
        sock.set_read_timeout(None)?;
        Ok(PlainWatch(sock))
    }

    fn set_timeout(&mut self, t: Duration) -> Result<(), ReadEnd> {
        let t = Some(t.max(Duration::from_millis(1)));
        if self.timeout != t {
            self.sock.set_read_timeout(t).map_err(ReadEnd::Io)?;
            self.timeout = t;
        }
        Ok(())
    }

    /// Reads more bytes into the buffer, waiting at most `wait`.
    fn fill(&mut self, wait: Duration, timed_out: ReadEnd) -> Result<(), ReadEnd> {
        if self.at == self.end {
            self.at = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.at..self.end, 0);
            self.end -= self.at;
            self.at = 0;
        }
        self.set_timeout(wait)?;
        loop {
            match self.sock.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(ReadEnd::Closed),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out)
                }
                Err(e) => return Err(ReadEnd::Io(e)),
            }
        }
    }

    /// Reads a frame's length: its first byte may take up to `idle`, the
    /// rest must come within `frame`; then the whole body within the same
    /// `frame` from the first byte. `budget` is called with the length
    /// before the body is read (the server's frame budget); over `limit`
    /// the frame is refused unread.
    pub fn read_frame<P>(
        &mut self,
        idle: Duration,
        frame: Duration,
        limit: u32,
        budget: impl FnOnce(u32) -> P,
    ) -> Result<(Vec<u8>, P), ReadEnd> {
        while self.end == self.at {
            self.fill(idle, ReadEnd::Idle)?;
        }
        let deadline = Instant::now() + frame;
        let left = |d: Instant| d.saturating_duration_since(Instant::now());
        while self.end - self.at < 4 {
            let wait = left(deadline);
            if wait.is_zero() {
                return Err(ReadEnd::Slow);
            }
            self.fill(wait, ReadEnd::Slow)?;
        }
        let len_bytes: [u8; 4] = self.buf[self.at..self.at + 4]
            .try_into()
            .expect("four bytes");
        let len = u32::from_le_bytes(len_bytes);
        if len > limit {
            return Err(ReadEnd::TooLarge(len));
        }
        self.at += 4;
        let permit = budget(len);
        let len = len as usize;
        // The body grows as bytes arrive: announcing a large frame and
        // sending little costs little.
        let mut body = Vec::with_capacity(len.min(1 << 20));
        loop {
            let take = (len - body.len()).min(self.end - self.at);
            body.extend_from_slice(&self.buf[self.at..self.at + take]);
            self.at += take;
            if body.len() == len {
                return Ok((body, permit));
            }
            let wait = left(deadline);
            if wait.is_zero() {
                return Err(ReadEnd::Slow);
            }
            self.fill(wait, ReadEnd::Slow)?;
        }
    }

    /// Sends one frame: the payload's length, then the payload.
    pub fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        send_frame(&mut self.sock, &mut self.frame, payload)
    }

    /// Closes both directions (the end of the session).
    pub fn close(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// A change stream's writer: a second handle on a plain connection's socket.
#[derive(Debug)]
pub struct PlainWriter(Sock);

impl PlainWriter {
    /// Sends one frame.
    pub fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        send_frame(&mut self.0, &mut Vec::new(), payload)
    }
}

/// Waits for a plain connection's peer to close.
#[derive(Debug)]
pub struct PlainWatch(Sock);

impl PlainWatch {
    /// Reads and drops what the peer sends until it closes or the socket
    /// fails (or is shut).
    pub fn wait_closed(mut self) {
        let mut sink = [0u8; 4096];
        loop {
            match self.0.read(&mut sink) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
    }
}

fn send_frame(sock: &mut Sock, frame: &mut Vec<u8>, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::other("reply too large for one frame"))?;
    if payload.len() > 64 << 10 {
        // Not copied into one buffer.
        sock.write_all(&len.to_le_bytes())?;
        return sock.write_all(payload);
    }
    frame.clear();
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(payload);
    sock.write_all(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn pair(patience: Duration) -> (PlainConn, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let fd = a.as_fd().try_clone_to_owned().unwrap();
        drop(a);
        (PlainConn::new(fd, false, b"", patience).unwrap(), b)
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_read_whole_in_pieces_and_written_whole() {
        let (mut c, mut peer) = pair(Duration::from_secs(5));
        // Two frames in one write, then one in pieces.
        let mut two = frame(b"one");
        two.extend(frame(b"two"));
        peer.write_all(&two).unwrap();
        let s = Duration::from_secs(5);
        assert_eq!(c.read_frame(s, s, 100, |_| ()).unwrap().0, b"one");
        assert_eq!(c.read_frame(s, s, 100, |_| ()).unwrap().0, b"two");
        let third = frame(b"three");
        let t = std::thread::spawn(move || {
            for b in third {
                peer.write_all(&[b]).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            peer
        });
        let mut seen = 0;
        let (body, ()) = c
            .read_frame(s, s, 100, |len| {
                seen = len;
            })
            .unwrap();
        assert_eq!((body.as_slice(), seen), (&b"three"[..], 5));
        let mut peer = t.join().unwrap();
        c.send(b"reply").unwrap();
        let mut got = [0u8; 9];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, frame(b"reply").as_slice());
    }

    #[test]
    fn idle_slow_oversized_and_closed_are_told_apart() {
        let short = Duration::from_millis(100);
        let (mut c, mut peer) = pair(short);
        assert!(matches!(
            c.read_frame(short, short, 100, |_| ()),
            Err(ReadEnd::Idle)
        ));
        // A frame started and never finished.
        peer.write_all(&[9, 0]).unwrap();
        assert!(matches!(
            c.read_frame(short, short, 100, |_| ()),
            Err(ReadEnd::Slow)
        ));
        let (mut c, mut peer) = pair(short);
        peer.write_all(&1000u32.to_le_bytes()).unwrap();
        assert!(matches!(
            c.read_frame(short, short, 100, |_| ()),
            Err(ReadEnd::TooLarge(1000))
        ));
        let (mut c, peer) = pair(short);
        drop(peer);
        assert!(matches!(
            c.read_frame(short, short, 100, |_| ()),
            Err(ReadEnd::Closed)
        ));
        // A waker ends a blocked read.
        let (mut c, _peer) = pair(short);
        let w = c.waker().unwrap();
        let t = std::thread::spawn(move || {
            let long = Duration::from_secs(30);
            c.read_frame(long, long, 100, |_| ()).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(50));
        w.wake();
        assert!(matches!(t.join().unwrap(), Err(ReadEnd::Closed)));
    }

    #[test]
    fn a_peer_that_does_not_read_is_given_up_on() {
        let (mut c, _peer) = pair(Duration::from_millis(300));
        let big = vec![7u8; 1 << 20];
        let started = Instant::now();
        let mut result = Ok(());
        for _ in 0..64 {
            result = c.send(&big);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
