//! `serve PORT IP/PREFIX`: the control protocol of the guest kernel's test agent
//! (scripts/guest-kernel/hvtest.c; its header lists the commands), from user space,
//! so a guest that can run user space (hardware KVM, MSHV) is driven by the host
//! exactly as the tiny kernel is. Where hvtest calls into the kernel, this uses what a
//! user would: `ip` for the MTU and the link, the ethtool ioctl for offloads and
//! channels, sysfs for unbinding and binding hv_netvsc, `poweroff -f`. Answers go back
//! on the control connection and to the console (stdout) as `HVTEST ...` lines.
//! `stats` gives the interface's counters only (not the driver's ethtool statistics).

use crate::pattern::{flow_byte, flow_fill, flow_mismatch};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const IFNAME: &str = "eth0";
const MAX_FLOWS: u32 = 8;
const SIOCETHTOOL: u64 = 0x8946;
// Linux include/uapi/linux/ethtool.h.
const ETHTOOL_GRXCSUM: u32 = 0x14;
const ETHTOOL_SRXCSUM: u32 = 0x15;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GSG: u32 = 0x18;
const ETHTOOL_SSG: u32 = 0x19;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;

unsafe extern "C" {
    fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
    fn ioctl(fd: i32, request: u64, ...) -> i32;
    fn close(fd: i32) -> i32;
}

/// `struct ifreq` with `ifr_data` (40 bytes on x86-64).
#[repr(C)]
struct IfreqData {
    name: [u8; 16],
    data: *mut u8,
    _pad: [u8; 16],
}

/// One SIOCETHTOOL on eth0 with `cmd` (a struct starting with its u32 command).
fn ethtool(cmd: &mut [u32]) -> Result<(), String> {
    let mut ifr = IfreqData {
        name: [0; 16],
        data: cmd.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    ifr.name[..IFNAME.len()].copy_from_slice(IFNAME.as_bytes());
    // SAFETY: a datagram socket only for the ioctl, closed below; the ioctl reads and
    // writes `cmd`, which outlives the call and is as large as the command's struct.
    let rc = unsafe {
        let fd = socket(2 /* AF_INET */, 2 /* SOCK_DGRAM */, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let rc = ioctl(fd, SIOCETHTOOL, &mut ifr as *mut IfreqData);
        close(fd);
        rc
    };
    if rc < 0 {
        return Err(format!("ethtool {:#x}: {}", cmd[0], std::io::Error::last_os_error()));
    }
    Ok(())
}

/// How many bytes of `buf` (at stream offset `off`) are not flow `flow`'s.
fn differing(buf: &[u8], off: u64, flow: u32) -> u64 {
    let mut n = 0;
    for (i, &b) in buf.iter().enumerate() {
        let o = off + i as u64;
        n += u64::from(b != flow_byte(o, flow));
    }
    n
}

fn ethtool_get(cmd: u32) -> Result<u32, String> {
    let mut v = [cmd, 0];
    ethtool(&mut v)?;
    Ok(v[1])
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn sysfs(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().trim().to_string()
}

/// Writes `line` to the console and, when there is one, the control connection.
fn answer(ctl: Option<&mut TcpStream>, line: &str) {
    println!("HVTEST {line}");
    if let Some(c) = ctl {
        let _ = c.write_all(format!("{line}\n").as_bytes());
    }
}

fn verdict<T>(r: &Result<T, String>) -> &'static str {
    if r.is_ok() { "ok" } else { "err" }
}

/// Runs `flows` flows at once: `rx` accepts on `port..` and checks, otherwise connects
/// to `addr:port..` and sends.
fn flows(ctl: &mut TcpStream, rx: bool, flows: u32, addr: &str, port: u16, bytes: u64) {
    let what = if rx { "rx" } else { "tx" };
    if flows == 0 || flows > MAX_FLOWS || bytes == 0 {
        answer(Some(ctl), &format!("err {what} flows={flows} bytes={bytes}"));
        return;
    }
    let mut listeners = Vec::new();
    if rx {
        for f in 0..flows {
            match TcpListener::bind(("0.0.0.0", port + f as u16)) {
                Ok(l) => listeners.push(Some(l)),
                Err(e) => {
                    answer(Some(ctl), &format!("err rx listen {e}"));
                    return;
                }
            }
        }
        answer(Some(ctl), "ok listening");
    }
    let t = Instant::now();
    let threads: Vec<_> = (0..flows)
        .map(|f| {
            let listener = listeners.get_mut(f as usize).and_then(Option::take);
            let addr = addr.to_string();
            std::thread::spawn(move || -> (u64, u64, Option<String>) {
                let mut buf = vec![0u8; 64 << 10];
                let mut done = 0u64;
                let mut bad = 0u64;
                let r = (|| -> Result<(), String> {
                    if let Some(l) = listener {
                        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
                        s.set_read_timeout(Some(Duration::from_secs(300)))
                            .map_err(|e| e.to_string())?;
                        loop {
                            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
                            if n == 0 {
                                return Ok(());
                            }
                            if flow_mismatch(&buf[..n], done, f).is_some() {
                                bad += differing(&buf[..n], done, f);
                            }
                            done += n as u64;
                        }
                    }
                    let mut s = TcpStream::connect((addr.as_str(), port + f as u16))
                        .map_err(|e| e.to_string())?;
                    while done < bytes {
                        let n = ((bytes - done) as usize).min(buf.len());
                        flow_fill(&mut buf[..n], done, f);
                        s.write_all(&buf[..n]).map_err(|e| e.to_string())?;
                        done += n as u64;
                    }
                    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
                    // The host closes once it has read everything.
                    let _ = s.read(&mut buf);
                    Ok(())
                })();
                (done, bad, r.err())
            })
        })
        .collect();
    let (mut total, mut bad, mut err) = (0, 0, None);
    for th in threads {
        let (done, b, e) = th.join().unwrap_or((0, 0, Some("thread panicked".into())));
        if done != bytes && e.is_none() && err.is_none() {
            err = Some(format!("{done} of {bytes} bytes"));
        }
        total += done;
        bad += b;
        err = err.or(e);
    }
    answer(
        Some(ctl),
        &format!(
            "{} {what} flows={flows} bytes={total} bad={bad} err={} ms={}",
            if err.is_none() && bad == 0 { "ok" } else { "err" },
            err.unwrap_or_else(|| "0".into()),
            t.elapsed().as_millis()
        ),
    );
}

fn features(args: &str) -> Result<String, String> {
    for word in args.split_whitespace() {
        let (name, val) = word.split_once('=').ok_or(format!("bad feature {word}"))?;
        let on = match val {
            "on" => 1,
            "off" => 0,
            _ => return Err(format!("bad value {word}")),
        };
        let cmd = match name {
            "tx-csum" => ETHTOOL_STXCSUM,
            "tso" => ETHTOOL_STSO,
            "rx-csum" => ETHTOOL_SRXCSUM,
            "sg" => ETHTOOL_SSG,
            _ => return Err(format!("unknown feature {name}")),
        };
        ethtool(&mut [cmd, on])?;
    }
    Ok(format!(
        "features tx-csum={} tso={} rx-csum={} sg={}",
        ethtool_get(ETHTOOL_GTXCSUM)?,
        ethtool_get(ETHTOOL_GTSO)?,
        ethtool_get(ETHTOOL_GRXCSUM)?,
        ethtool_get(ETHTOOL_GSG)?
    ))
}

fn channels(n: u32) -> Result<String, String> {
    // struct ethtool_channels: cmd, then max rx/tx/other/combined, then the counts.
    let mut ch = [0u32; 9];
    ch[0] = ETHTOOL_GCHANNELS;
    ethtool(&mut ch)?;
    let max = ch[4];
    ch[0] = ETHTOOL_SCHANNELS;
    ch[8] = n;
    ethtool(&mut ch)?;
    ch[0] = ETHTOOL_GCHANNELS;
    ethtool(&mut ch)?;
    Ok(format!("channels {} max={max} err=0", ch[8]))
}

/// Unbinds hv_netvsc from eth0's VMBus device, binds it again, and gives the new eth0
/// `ip` and the link up.
fn rebind(ip: &str) -> Result<String, String> {
    let device = std::fs::read_link(format!("/sys/class/net/{IFNAME}/device"))
        .map_err(|e| format!("eth0's device: {e}"))?;
    let id = device
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("eth0's device has no name")?
        .to_string();
    let drv = "/sys/bus/vmbus/drivers/hv_netvsc";
    std::fs::write(format!("{drv}/unbind"), &id).map_err(|e| format!("unbind {id}: {e}"))?;
    println!("HVTEST unbound {id}");
    std::fs::write(format!("{drv}/bind"), &id).map_err(|e| format!("bind {id}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::path::Path::new(&format!("/sys/class/net/{IFNAME}")).exists() {
        if Instant::now() > deadline {
            return Err(format!("no {IFNAME} 60 s after the bind"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    run(&["ip", "addr", "add", ip, "dev", IFNAME])?;
    run(&["ip", "link", "set", IFNAME, "up"])?;
    Ok(format!("rebind {ip} err=0"))
}

fn stats() -> String {
    let s = |n: &str| sysfs(&format!("/sys/class/net/{IFNAME}/statistics/{n}"));
    format!(
        "stats rx_packets={} tx_packets={} rx_bytes={} tx_bytes={} rx_dropped={} tx_dropped={} rx_errors={} tx_errors={}",
        s("rx_packets"),
        s("tx_packets"),
        s("rx_bytes"),
        s("tx_bytes"),
        s("rx_dropped"),
        s("tx_dropped"),
        s("rx_errors"),
        s("tx_errors")
    )
}

/// Runs one command; false when the control connection must close.
fn command(ctl: &mut TcpStream, line: &str, ip: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
    let simple = |ctl: &mut TcpStream, r: Result<String, String>| {
        let v = verdict(&r);
        answer(Some(ctl), &format!("{v} {}", r.unwrap_or_else(|e| e)));
    };
    match (words.first().copied(), words.len()) {
        (Some("ping"), 1) => answer(Some(ctl), "ok pong"),
        (Some("rx"), 4) => match (num(1), num(2), num(3)) {
            (Some(f), Some(p), Some(b)) => flows(ctl, true, f as u32, "", p as u16, b),
            _ => answer(Some(ctl), "err rx arguments"),
        },
        (Some("tx"), 5) => match (num(1), num(3), num(4)) {
            (Some(f), Some(p), Some(b)) => flows(ctl, false, f as u32, words[2], p as u16, b),
            _ => answer(Some(ctl), "err tx arguments"),
        },
        (Some("mtu"), 2) => {
            let r = run(&["ip", "link", "set", IFNAME, "mtu", words[1]]);
            let mtu = sysfs(&format!("/sys/class/net/{IFNAME}/mtu"));
            simple(ctl, r.map(|_| format!("mtu {mtu} err=0")));
        }
        (Some("features"), _) => simple(ctl, features(&line["features".len()..])),
        (Some("channels"), 2) => match num(1) {
            Some(n) => simple(ctl, channels(n as u32)),
            None => answer(Some(ctl), "err channels argument"),
        },
        (Some(updown @ ("down" | "up")), 1) => {
            let r = run(&["ip", "link", "set", IFNAME, updown]);
            simple(ctl, r.map(|_| format!("{updown} err=0")));
        }
        (Some("bounce"), 2) => {
            let r = run(&["ip", "link", "set", IFNAME, "down"]).and_then(|_| {
                println!("HVTEST down err=0");
                std::thread::sleep(Duration::from_millis(num(1).unwrap_or(0)));
                run(&["ip", "link", "set", IFNAME, "up"])
            });
            simple(ctl, r.map(|_| format!("bounce {} err=0", words[1])));
        }
        (Some("stats"), 1) => {
            answer(Some(ctl), &format!("ok {}", stats()));
            answer(Some(ctl), "ok ethtool");
        }
        (Some("rebind"), 1) => {
            // The device goes away with its address: the console gets the answer.
            let _ = ctl.shutdown(Shutdown::Both);
            let r = rebind(ip);
            answer(None, &format!("{} {}", verdict(&r), r.unwrap_or_else(|e| e)));
            return false;
        }
        (Some("poweroff"), 1) => {
            answer(Some(ctl), "ok poweroff");
            let _ = run(&["poweroff", "-f"]);
            return false;
        }
        _ => answer(Some(ctl), &format!("err unknown command {line}")),
    }
    true
}

/// Serves control connections on `port` forever (`ip` is eth0's address, given back
/// after a rebind).
pub fn serve(port: u16, ip: &str) -> Result<(), String> {
    let l = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("bind {port}: {e}"))?;
    println!("HVTEST ready {ip} port={port}");
    loop {
        let Ok((ctl, _)) = l.accept() else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = ctl.set_nodelay(true);
        let mut reader = BufReader::new(ctl.try_clone().map_err(|e| e.to_string())?);
        let mut ctl = ctl;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.len() > 510 {
                answer(Some(&mut ctl), "err line too long");
                break;
            }
            if !command(&mut ctl, line.trim_end(), ip) {
                break;
            }
        }
    }
}
