//! Replies written by the session thread itself, on a plain (TCP or Unix)
//! connection: a request's answer then reaches the socket without waking
//! the connection's writer task first — one thread hand-off less on every
//! request, which on a loaded server is most of a request's cost.
//!
//! The session thread holds a duplicate of the socket's descriptor. It
//! writes only while the writer task has nothing queued and is not writing
//! (the connection's outbox is empty), so frames never interleave: replies
//! that must go through the queue (a change stream's) wait for their turn.
//! The descriptor is non-blocking (it is the reactor's): when the peer does
//! not read and the socket's buffer is full, the thread waits and retries,
//! and gives up — ending the session — if no byte gets out for the
//! patience it was given (the server's frame timeout).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// The session thread's own way to the socket.
#[derive(Debug)]
pub struct DirectOut {
    socket: std::fs::File,
    patience: Duration,
    frame: Vec<u8>,
}

impl DirectOut {
    /// Writes to `socket` (a duplicate of the connection's descriptor),
    /// giving up after `patience` without progress.
    pub fn new(socket: OwnedFd, patience: Duration) -> DirectOut {
        DirectOut {
            socket: std::fs::File::from(socket),
            patience,
            frame: Vec::new(),
        }
    }

    /// Sends one frame: the payload's length, then the payload.
    pub fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(payload.len())
            .map_err(|_| std::io::Error::other("reply too large for one frame"))?;
        self.frame.clear();
        self.frame.extend_from_slice(&len.to_le_bytes());
        self.frame.extend_from_slice(payload);
        let mut at = 0;
        let mut stalled_since: Option<Instant> = None;
        let mut pause = Duration::from_micros(50);
        while at < self.frame.len() {
            match self.socket.write(&self.frame[at..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    at += n;
                    stalled_since = None;
                    pause = Duration::from_micros(50);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.patience {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the client does not read its replies",
                        ));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
        // A large reply's buffer is not kept for the session's life.
        if self.frame.capacity() > 64 << 10 {
            self.frame = Vec::new();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    #[test]
    fn frames_arrive_whole_and_a_peer_that_does_not_read_is_given_up_on() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let fd = a.as_fd().try_clone_to_owned().unwrap();
        let mut out = DirectOut::new(fd, Duration::from_millis(300));
        out.send(b"hello").unwrap();
        let mut got = [0u8; 9];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got[..4], &5u32.to_le_bytes());
        assert_eq!(&got[4..], b"hello");
        // Nobody reads: the socket fills, then the send gives up in time.
        let big = vec![7u8; 1 << 20];
        let started = Instant::now();
        let mut result = Ok(());
        for _ in 0..64 {
            result = out.send(&big);
            if result.is_err() {
                break;
            }
        }
        let e = result.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
