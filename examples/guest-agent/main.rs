//! The test guest's agent: a static binary in the initramfs (scripts/guest-image.sh)
//! that runs TCP transfers against the host and reports on the console with lines
//! `HVTEST <event> ...`. Built with plain `rustc` (std only) so the test needs no
//! cross toolchain and no second cargo invocation.
//!
//! Steps, run in order:
//!   recv PORT BYTES SEED   accept one connection, check BYTES of Pattern(SEED)
//!   send ADDR:PORT BYTES SEED   connect (retrying for 30 s), send BYTES of Pattern(SEED)
//!   serve PORT IP/PREFIX   answer the control protocol of the guest kernel's test
//!                          agent (scripts/guest-kernel/hvtest.c) on PORT, forever, so
//!                          the host drives this guest the same way (see serve.rs)
#[path = "pattern.rs"]
mod pattern;
#[path = "serve.rs"]
mod serve;

use pattern::Pattern;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn rate(bytes: u64, t: Duration) -> f64 {
    bytes as f64 * 8.0 / t.as_secs_f64().max(1e-9) / 1e6
}

fn recv(port: u16, bytes: u64, seed: u64) -> Result<(), String> {
    let l = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("bind: {e}"))?;
    println!("HVTEST listening {port}");
    let (mut s, peer) = l.accept().map_err(|e| format!("accept: {e}"))?;
    let start = Instant::now();
    let mut p = Pattern::new(seed);
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < bytes {
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("eof after {got} bytes"));
        }
        let n = n.min((bytes - got) as usize);
        p.check(&buf[..n]).map_err(|off| format!("corrupt byte at offset {off}"))?;
        got += n as u64;
    }
    let t = start.elapsed();
    println!(
        "HVTEST recv-ok {got} bytes from {peer} in {:.3} s = {:.1} Mbit/s",
        t.as_secs_f64(),
        rate(got, t)
    );
    Ok(())
}

fn send(addr: &str, bytes: u64, seed: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(format!("connect {addr}: {e}")),
        }
    };
    let start = Instant::now();
    let mut p = Pattern::new(seed);
    let mut buf = vec![0u8; 256 << 10];
    let mut sent = 0u64;
    while sent < bytes {
        let n = ((bytes - sent) as usize).min(buf.len());
        p.fill(&mut buf[..n]);
        s.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
        sent += n as u64;
    }
    s.shutdown(std::net::Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
    // Wait for the peer to close: it has read everything.
    let _ = s.read(&mut buf);
    let t = start.elapsed();
    println!(
        "HVTEST send-ok {sent} bytes to {addr} in {:.3} s = {:.1} Mbit/s",
        t.as_secs_f64(),
        rate(sent, t)
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let step = args.get(i..i + 4).map(|a| a.to_vec());
        let result = match step.as_deref() {
            Some([op, a, b, c]) if op == "recv" => match (a.parse(), b.parse(), c.parse()) {
                (Ok(port), Ok(bytes), Ok(seed)) => recv(port, bytes, seed),
                _ => Err(format!("bad recv arguments {a} {b} {c}")),
            },
            Some([op, a, b, c]) if op == "send" => match (b.parse(), c.parse()) {
                (Ok(bytes), Ok(seed)) => send(a, bytes, seed),
                _ => Err(format!("bad send arguments {a} {b} {c}")),
            },
            _ if args.get(i).map(String::as_str) == Some("serve") && args.len() == i + 3 => {
                match args[i + 1].parse() {
                    Ok(port) => serve::serve(port, &args[i + 2]),
                    Err(_) => Err(format!("bad serve port {}", args[i + 1])),
                }
            }
            _ => Err(format!("bad step at argument {i}: {:?}", &args[i..])),
        };
        if let Err(e) = result {
            println!("HVTEST agent-error {e}");
            std::process::exit(1);
        }
        i += 4;
    }
}
