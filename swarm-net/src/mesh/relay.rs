//! Moving bytes both ways between a client connection and a backend
//! connection, with half-close: when one side ends its writes, the other side's
//! writes are shut down and the opposite direction goes on.
//!
//! On Linux a direction starts with plain reads and writes through a small
//! buffer (cheapest for requests and answers of a few bytes); once one read
//! fills the buffer (a bulk transfer), it switches to splice(2): socket → pipe
//! → socket, never through user memory. Elsewhere (or when turned off) the
//! bytes go through tokio's copy.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Relays until both directions reached end-of-file or one failed; returns the
/// bytes moved (client → backend, backend → client).
pub async fn relay(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    zero_copy: bool,
) -> io::Result<(u64, u64)> {
    #[cfg(target_os = "linux")]
    if zero_copy {
        return splice::relay(client, backend).await;
    }
    let _ = zero_copy;
    let r = tokio::io::copy_bidirectional(client, backend).await;
    let _ = backend.shutdown().await;
    let _ = client.shutdown().await;
    r
}

#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Bytes asked of one splice(2) call.
    const CHUNK: usize = 1 << 20;
    /// Pipe capacity asked for (the kernel may keep its 64 KiB default).
    const PIPE_SIZE: libc::c_int = 1 << 20;

    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    /// Empty pipes kept for the next connections (saves 4 syscalls per pipe).
    static POOL: parking_lot::Mutex<Vec<Pipe>> = parking_lot::Mutex::new(Vec::new());
    /// Most pipes kept in the pool.
    const POOL_MAX: usize = 32;

    impl Pipe {
        /// An empty pipe from the pool, or a new one.
        fn take() -> io::Result<Pipe> {
            match POOL.lock().pop() {
                Some(p) => Ok(p),
                None => Pipe::new(),
            }
        }

        /// Returns an empty pipe to the pool (a pipe holding bytes is dropped instead).
        fn give_back(self) {
            let mut pool = POOL.lock();
            if pool.len() < POOL_MAX {
                pool.push(self);
            }
        }

        fn new() -> io::Result<Pipe> {
            let mut fds = [0 as RawFd; 2];
            // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
            let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // A larger pipe moves more per call; failure (limits) only costs speed.
            // SAFETY: fcntl on a descriptor we own, with an int argument.
            unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
            Ok(Pipe { read, write })
        }
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: both descriptors are open for the duration of the call; null
        // offsets mean "current position", required for sockets and pipes.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn shutdown_write(s: &TcpStream) {
        // SAFETY: shutdown(2) on an open socket descriptor; errors (already
        // closed by the peer) are of no consequence here.
        unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_WR) };
    }

    /// A read this large means a bulk transfer: the direction switches to splice.
    const SMALL: usize = 16 << 10;

    async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            dst.writable().await?;
            match dst.try_write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn one_way(src: &TcpStream, dst: &TcpStream) -> io::Result<u64> {
        let mut total = 0u64;
        let mut buf = vec![0u8; SMALL];
        loop {
            let n = loop {
                src.readable().await?;
                match src.try_read(&mut buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                shutdown_write(dst);
                return Ok(total);
            }
            write_all(dst, &buf[..n]).await?;
            total += n as u64;
            if n == SMALL {
                break;
            }
        }
        drop(buf);
        let pipe = Pipe::take()?;
        loop {
            // Fill the pipe from the source (the pipe is empty here, so
            // EAGAIN can only mean the socket has nothing to read).
            let n = loop {
                src.readable().await?;
                match src.try_io(Interest::READABLE, || {
                    splice(src.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
                }) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                shutdown_write(dst);
                pipe.give_back();
                return Ok(total);
            }
            // Drain it all into the destination.
            let mut left = n;
            while left > 0 {
                dst.writable().await?;
                match dst.try_io(Interest::WRITABLE, || {
                    splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), left)
                }) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            total += n as u64;
        }
    }

    pub async fn relay(client: &TcpStream, backend: &TcpStream) -> io::Result<(u64, u64)> {
        tokio::try_join!(one_way(client, backend), one_way(backend, client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// Client ⇄ [relay] ⇄ backend, for both copy modes: bytes both ways and
    /// half-close (the client's EOF reaches the backend, which still answers).
    #[tokio::test]
    async fn relays_both_ways_with_half_close() {
        for zero_copy in [true, false] {
            let (mut client, mut relay_client_side) = pair().await;
            let (mut relay_backend_side, mut backend) = pair().await;
            let task = tokio::spawn(async move {
                relay(&mut relay_client_side, &mut relay_backend_side, zero_copy).await
            });
            let big = vec![7u8; 3 << 20];
            let sent = big.clone();
            let writer = tokio::spawn(async move {
                client.write_all(&sent).await.unwrap();
                client.shutdown().await.unwrap();
                let mut back = Vec::new();
                client.read_to_end(&mut back).await.unwrap();
                back
            });
            let mut got = Vec::new();
            backend.read_to_end(&mut got).await.unwrap();
            assert_eq!(got.len(), big.len(), "zero_copy={zero_copy}");
            assert!(got == big);
            backend.write_all(b"answer after EOF").await.unwrap();
            backend.shutdown().await.unwrap();
            assert_eq!(writer.await.unwrap(), b"answer after EOF");
            let (up, down) = task.await.unwrap().unwrap();
            assert_eq!((up, down), (big.len() as u64, 16));
        }
    }
}
