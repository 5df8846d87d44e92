//! The host's end of hvtest, the test agent built into the tiny guest kernel
//! (`scripts/guest-kernel/hvtest.c`, enabled with `hvtest.port=`): a control
//! connection over the guest's own NIC, and TCP flows whose bytes both ends check
//! against the same pattern.

use crate::linux_guest::{GUEST_IP, HOST_IP, Netns};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The control port the agent listens on (`hvtest.port=`).
pub const AGENT_PORT: u16 = 7000;

pub use crate::linux_guest::pattern::{
    flow_fill as pattern_fill, flow_mismatch as pattern_mismatch,
};

/// The agent's side of a connection: [`GUEST_IP`] and `port`.
fn guest_addr(port: u16) -> std::io::Result<std::net::SocketAddr> {
    format!("{GUEST_IP}:{port}")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// A TCP transfer between the host and the agent.
#[derive(Clone, Debug)]
pub struct Transfer {
    /// Flows run at once.
    pub flows: u32,
    /// Bytes moved in all, every one checked.
    pub bytes: u64,
    /// Seconds from the command to the agent's answer.
    pub secs: f64,
    /// The agent's answer.
    pub answer: String,
}

impl Transfer {
    /// Throughput in Mbit/s.
    pub fn mbit_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs.max(1e-9) / 1e6
    }
}

/// A control connection to the agent.
pub struct Agent {
    ctl: BufReader<TcpStream>,
    /// Called every 30 s while an answer is awaited: what to print (e.g. the guest's
    /// last console line), or why to stop waiting (the VM ended).
    progress: Box<dyn Fn() -> Result<String, String> + Send>,
}

impl Agent {
    /// Connects from `netns` to the agent on [`GUEST_IP`], retrying for up to
    /// `timeout` (the agent starts listening once eth0 has its address).
    pub fn connect(
        netns: &Netns,
        timeout: Duration,
        progress: Box<dyn Fn() -> Result<String, String> + Send>,
    ) -> Result<Self, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = netns
                .run(|| {
                    TcpStream::connect_timeout(&guest_addr(AGENT_PORT)?, Duration::from_secs(20))
                })?
                .join()
                .map_err(|_| "connect thread panicked")?;
            match r {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let mut agent = Self {
                        ctl: BufReader::new(s),
                        progress,
                    };
                    agent.command("ping", Duration::from_secs(120))?;
                    return Ok(agent);
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("no agent at {GUEST_IP}:{AGENT_PORT}: {e}"));
                }
                Err(_) => {
                    progress()?;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Sends one command line.
    pub fn send(&mut self, cmd: &str) -> Result<(), String> {
        self.ctl
            .get_mut()
            .write_all(format!("{cmd}\n").as_bytes())
            .map_err(|e| format!("control connection, sending {cmd:?}: {e}"))
    }

    /// Reads the agent's next answer line, for up to `timeout`.
    pub fn answer(&mut self, what: &str, timeout: Duration) -> Result<String, String> {
        let started = Instant::now();
        let mut line = String::new();
        self.ctl
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        loop {
            match self.ctl.read_line(&mut line) {
                Ok(0) => return Err(format!("the agent closed the connection ({what})")),
                Ok(_) if line.ends_with('\n') => {
                    let line = line.trim_end().to_string();
                    return if line.starts_with("ok") {
                        Ok(line)
                    } else {
                        Err(format!("{what}: {line}"))
                    };
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if started.elapsed() > timeout {
                        return Err(format!("no answer to {what} within {timeout:?}"));
                    }
                    let p = (self.progress)()?;
                    eprintln!(
                        "  waiting for the agent ({what}): {} s; {p}",
                        started.elapsed().as_secs()
                    );
                }
                Err(e) => return Err(format!("control connection ({what}): {e}")),
            }
        }
    }

    /// Sends `cmd` and returns the agent's `ok` answer (an `err` answer is an error).
    pub fn command(&mut self, cmd: &str, timeout: Duration) -> Result<String, String> {
        self.send(cmd)?;
        self.answer(cmd, timeout)
    }

    /// The guest's counters: the interface's line, then the driver's non-zero ethtool
    /// statistics (empty from the user-space agent).
    pub fn stats(&mut self, timeout: Duration) -> Result<(String, String), String> {
        let netdev = self.command("stats", timeout)?;
        let driver = self.answer("stats", timeout)?;
        Ok((netdev, driver))
    }

    /// Host to guest: `flows` flows of `bytes` each to ports `port..`, checked by the
    /// agent.
    pub fn to_guest(
        &mut self,
        netns: &Netns,
        flows: u32,
        port: u16,
        bytes: u64,
        timeout: Duration,
    ) -> Result<Transfer, String> {
        let cmd = format!("rx {flows} {port} {bytes}");
        let t = Instant::now();
        self.send(&cmd)?;
        self.answer(&cmd, Duration::from_secs(120))?; // ok listening
        let senders = (0..flows)
            .map(|f| {
                netns.run(move || -> Result<(), String> {
                    let addr = guest_addr(port + f as u16).map_err(|e| e.to_string())?;
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(60))
                        .map_err(|e| format!("flow {f}: connect: {e}"))?;
                    let mut buf = vec![0u8; 64 << 10];
                    let mut sent = 0u64;
                    while sent < bytes {
                        let n = ((bytes - sent) as usize).min(buf.len());
                        let chunk = buf.get_mut(..n).ok_or("chunk")?;
                        pattern_fill(chunk, sent, f);
                        s.write_all(chunk)
                            .map_err(|e| format!("flow {f}: write after {sent} bytes: {e}"))?;
                        sent += n as u64;
                    }
                    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let answer = self.answer(&cmd, timeout);
        for s in senders {
            s.join().map_err(|_| "sender panicked")??;
        }
        let answer = answer?;
        Ok(Transfer {
            flows,
            bytes: bytes * u64::from(flows),
            secs: t.elapsed().as_secs_f64(),
            answer,
        })
    }

    /// Guest to host: the agent connects `flows` flows to [`HOST_IP`] ports `port..`
    /// and sends `bytes` on each; the host checks every byte.
    pub fn from_guest(
        &mut self,
        netns: &Netns,
        flows: u32,
        port: u16,
        bytes: u64,
        timeout: Duration,
    ) -> Result<Transfer, String> {
        let listeners = (0..flows)
            .map(|f| {
                netns
                    .run(move || TcpListener::bind((HOST_IP, port + f as u16)))?
                    .join()
                    .map_err(|_| "bind thread panicked".to_string())?
                    .map_err(|e| format!("listen on {}: {e}", port + f as u16))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let receivers: Vec<_> = listeners
            .into_iter()
            .zip(0u32..)
            .map(|(l, f)| {
                std::thread::spawn(move || -> Result<u64, String> {
                    let (mut s, _) = l.accept().map_err(|e| format!("flow {f}: {e}"))?;
                    s.set_read_timeout(Some(Duration::from_secs(600)))
                        .map_err(|e| e.to_string())?;
                    let mut buf = vec![0u8; 64 << 10];
                    let mut got = 0u64;
                    loop {
                        let n = s
                            .read(&mut buf)
                            .map_err(|e| format!("flow {f}: read after {got} bytes: {e}"))?;
                        if n == 0 {
                            break;
                        }
                        let chunk = buf.get(..n).ok_or("chunk")?;
                        if let Some(at) = pattern_mismatch(chunk, got, f) {
                            return Err(format!("flow {f}: wrong byte at offset {at}"));
                        }
                        got += n as u64;
                    }
                    Ok(got)
                })
            })
            .collect();
        let cmd = format!("tx {flows} {HOST_IP} {port} {bytes}");
        let t = Instant::now();
        let answer = self.command(&cmd, timeout);
        let secs = t.elapsed().as_secs_f64();
        let answer = answer?;
        let mut total = 0;
        for (f, r) in receivers.into_iter().enumerate() {
            let got = r.join().map_err(|_| "receiver panicked")??;
            if got != bytes {
                return Err(format!("flow {f}: {got} of {bytes} bytes arrived"));
            }
            total += got;
        }
        Ok(Transfer {
            flows,
            bytes: total,
            secs,
            answer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_the_agents_words() {
        // Word 0 of flow 0: 1 * 0x9E3779B97F4A7C15 ^ (1 << 56), little-endian.
        let mut b = [0u8; 12];
        pattern_fill(&mut b, 0, 0);
        assert_eq!(b[..8], (0x9E37_79B9_7F4A_7C15u64 ^ (1 << 56)).to_le_bytes());
        // Any offset gives the same bytes as the whole stream does.
        let mut tail = [0u8; 5];
        pattern_fill(&mut tail, 7, 0);
        assert_eq!(tail, b[7..12]);
        assert_eq!(pattern_mismatch(&b, 0, 0), None);
        assert_eq!(pattern_mismatch(&b, 0, 1), Some(7));
        b[9] ^= 1;
        assert_eq!(pattern_mismatch(&b, 0, 0), Some(9));
    }
}
