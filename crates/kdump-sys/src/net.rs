//! Bringing up an IPv4 network without a shell: the interfaces and their
//! permanent MACs, link up, carrier, address and route over `NETLINK_ROUTE`,
//! a DHCP exchange over a UDP socket bound to the interface, and a TCP probe.
//! What the messages say is decided in `kdump-net`; this module only moves
//! bytes and waits, every wait bounded.

use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use kdump_net::dhcp::{self, DhcpClient, Lease, Step};
use kdump_net::rtnetlink::{self, Ack, Route};
use kdump_net::{Ipv4Net, MacAddr};

use crate::SysRoot;

/// `ARPHRD_ETHER` in `/sys/class/net/X/type`.
const ARPHRD_ETHER: u32 = 1;

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`eth0`, `ens3`): names may differ between the first and the capture kernel.
    pub name: String,
    /// Its index.
    pub index: u32,
    /// The permanent (burnt-in) MAC, which bonding or a user cannot have changed; the
    /// current one when the driver reports none.
    pub permanent_mac: MacAddr,
    /// The MAC in use now.
    pub mac: MacAddr,
}

/// The Ethernet interfaces (loopback, tunnels and the like are left out), by name.
pub fn interfaces(root: &SysRoot) -> io::Result<Vec<Interface>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root.path("/sys/class/net"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let read = |file: &str| root.read(&format!("/sys/class/net/{name}/{file}")).map(|s| s.trim().to_string());
        if read("type").ok().and_then(|t| t.parse::<u32>().ok()) != Some(ARPHRD_ETHER) {
            continue;
        }
        let (Some(index), Some(mac)) =
            (read("ifindex").ok().and_then(|i| i.parse().ok()), read("address").ok().and_then(|a| a.parse().ok()))
        else {
            continue;
        };
        let permanent_mac = (*root == SysRoot::host()).then(|| permanent_mac(&name).ok()).flatten().unwrap_or(mac);
        out.push(Interface { name, index, permanent_mac, mac });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// How this machine reaches a server now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathToServer {
    /// The interface the route goes out of.
    pub interface: Interface,
    /// The address the kernel sends from, with its subnet's prefix.
    pub local: Ipv4Net,
    /// The next hop, when the server is not on the local subnet.
    pub gateway: Option<Ipv4Addr>,
}

/// The route the kernel takes to `server` (`/proc/net/route`) and the source address it picks
/// (a connected UDP socket: nothing is sent).
pub fn path_to(root: &SysRoot, server: SocketAddrV4) -> io::Result<PathToServer> {
    let not_found = |what: String| io::Error::new(io::ErrorKind::NotFound, what);
    let routes = kdump_machine::route::parse_routes(&std::fs::read_to_string(root.path("/proc/net/route"))?);
    let route = kdump_machine::route::route_to(&routes, *server.ip())
        .ok_or_else(|| not_found(format!("no route to {} in /proc/net/route", server.ip())))?;
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(server)?;
    let SocketAddr::V4(local) = socket.local_addr()? else {
        return Err(not_found("no IPv4 source address".into()));
    };
    let prefix_len = kdump_machine::route::on_link_prefix(&routes, &route.interface, *local.ip())
        .ok_or_else(|| not_found(format!("no on-link route of {} holds {}", route.interface, local.ip())))?;
    let interface = interfaces(root)?.into_iter().find(|i| i.name == route.interface).ok_or_else(|| {
        not_found(format!("{} (the route to {}) is not an Ethernet interface", route.interface, server.ip()))
    })?;
    Ok(PathToServer { interface, local: Ipv4Net { address: *local.ip(), prefix_len }, gateway: route.gateway })
}

/// The interface whose permanent (or, failing that, current) MAC is `mac`.
pub fn interface_by_mac(root: &SysRoot, mac: MacAddr) -> io::Result<Option<Interface>> {
    let all = interfaces(root)?;
    Ok(all.iter().find(|i| i.permanent_mac == mac).or_else(|| all.iter().find(|i| i.mac == mac)).cloned())
}

/// The kernel modules that drive the interface's device and the devices above it
/// (`.../driver/module` links; `virtio_net` for a virtio NIC), nearest first. Built-in
/// drivers can have such a link too: `modules.builtin` tells them apart.
pub fn driver_modules(root: &SysRoot, name: &str) -> Vec<String> {
    crate::block::driver_modules_above(root, &format!("/sys/class/net/{name}"))
}

/// `SIOCETHTOOL`, from `linux/sockios.h`.
const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// `ETHTOOL_GPERMADDR`, from `linux/ethtool.h`.
const ETHTOOL_GPERMADDR: u32 = 0x20;

/// `struct ethtool_perm_addr` with room for a MAC (`cmd`, `size`, `data[]`).
#[repr(C)]
struct PermAddr {
    cmd: u32,
    size: u32,
    data: [u8; 32],
}

/// The permanent MAC from the driver (`ethtool -P`).
pub fn permanent_mac(name: &str) -> io::Result<MacAddr> {
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut perm = PermAddr { cmd: ETHTOOL_GPERMADDR, size: 32, data: [0; 32] };
    let mut ifr = ifreq(name)?;
    ifr.ifr_ifru.ifru_data = (&raw mut perm).cast();
    // SAFETY: ifr names the interface and points at `perm`, which is live and as large as
    // its `size` says; the kernel writes at most `size` bytes of address into it.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut ifr) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if perm.size != 6 {
        return Err(io::Error::other(format!("{name}: a permanent address of {} bytes", perm.size)));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&perm.data[..6]);
    let mac = MacAddr(mac);
    if mac.is_zero() {
        Err(io::Error::other(format!("{name}: the driver reports no permanent address")))
    } else {
        Ok(mac)
    }
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not an interface name")));
    }
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

fn socket(domain: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value points at a live T and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    crate::util::check(rc)
}

/// True when the link has a carrier (`/sys/class/net/X/carrier` is 1; reading it fails
/// while the link is down).
pub fn has_carrier(root: &SysRoot, name: &str) -> bool {
    root.read(&format!("/sys/class/net/{name}/carrier")).is_ok_and(|s| s.trim() == "1")
}

/// Waits up to `wait` for a carrier; true when it came.
pub fn wait_for_carrier(root: &SysRoot, name: &str, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if has_carrier(root, name) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `NETLINK_ROUTE` socket for configuration requests, each acked.
#[derive(Debug)]
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    /// Opens the socket; requests wait at most 5 s for the kernel's ack.
    pub fn open() -> io::Result<Self> {
        let fd = socket(libc::AF_NETLINK, libc::SOCK_RAW, rtnetlink::NETLINK_ROUTE)?;
        // SAFETY: sockaddr_nl is plain old data; all zeroes (pid 0: the kernel picks) is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: addr is a live sockaddr_nl and the length passed is its size.
        let rc = unsafe {
            libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), size_of::<libc::sockaddr_nl>() as libc::socklen_t)
        };
        crate::util::check(rc)?;
        let timeout = libc::timeval { tv_sec: 5, tv_usec: 0 };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
        Ok(Self { fd, seq: 0 })
    }

    /// Sets the link up (`ip link set dev X up`).
    pub fn set_link_up(&mut self, index: u32) -> io::Result<()> {
        self.seq += 1;
        self.request(&rtnetlink::set_link_up(self.seq, index))
    }

    /// Gives the link an address (`ip addr replace A/N dev X`).
    pub fn add_address(&mut self, index: u32, net: Ipv4Net) -> io::Result<()> {
        self.seq += 1;
        self.request(&rtnetlink::add_address(self.seq, index, net.address, net.prefix_len))
    }

    /// Adds a route (`ip route replace ...`).
    pub fn add_route(&mut self, route: &Route) -> io::Result<()> {
        self.seq += 1;
        self.request(&rtnetlink::add_route(self.seq, route))
    }

    fn request(&mut self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: msg is a live buffer of msg.len() bytes; unconnected netlink sends go to the kernel.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: buf is a live, writable buffer of buf.len() bytes.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the kernel did not answer a netlink request in 5 s",
                    ));
                }
                return Err(e);
            }
            match rtnetlink::find_ack(&buf[..n as usize], self.seq).map_err(io::Error::other)? {
                Some(Ack::Ok) => return Ok(()),
                Some(Ack::Errno(e)) => return Err(io::Error::from_raw_os_error(e)),
                None => continue,
            }
        }
    }
}

/// A transaction id that differs between boots and machines: the clock and the MAC
/// (the capture kernel may have no entropy yet, and the xid needs none).
fn transaction_id(mac: MacAddr) -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let [_, _, a, b, c, d] = mac.0;
    nanos ^ u32::from_be_bytes([a, b, c, d]).rotate_left(7) ^ std::process::id()
}

/// REQUESTs sent for one offer before the client gives it up and discovers again.
const REQUESTS_PER_OFFER: u32 = 4;

/// Runs DHCP on the interface until a lease is bound or `wait` has passed. Each message
/// is resent after 1, 2, 4, 4... s without an answer; an offer whose server does not
/// acknowledge four REQUESTs is given up. `note` hears what happened (offers, ignored
/// datagrams, NAKs) for the console.
pub fn dhcp_lease(iface: &Interface, wait: Duration, note: &mut dyn FnMut(String)) -> io::Result<Lease> {
    let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let one: libc::c_int = 1;
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_BROADCAST, &one)?;
    let mut dev = [0u8; libc::IFNAMSIZ];
    ifreq(&iface.name)?;
    dev[..iface.name.len()].copy_from_slice(iface.name.as_bytes());
    // Only this interface's broadcasts: the reply must come from its link.
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &dev)?;
    let socket = UdpSocket::from(fd);
    // std binds only sockets it creates itself; this one needed its options first.
    bind_any(&socket, dhcp::CLIENT_PORT)?;
    let server = SocketAddrV4::new(Ipv4Addr::BROADCAST, dhcp::SERVER_PORT);
    let mut client = DhcpClient::new(iface.mac, transaction_id(iface.mac));
    let deadline = Instant::now() + wait;
    let mut backoff = Duration::from_secs(1);
    let mut buf = [0u8; 1500];
    let mut sent = 0u32;
    let mut requests = 0u32;
    loop {
        if client.is_requesting() {
            requests += 1;
            if requests > REQUESTS_PER_OFFER {
                note(format!("no answer to {REQUESTS_PER_OFFER} requests; discovering again"));
                client.restart();
                requests = 0;
            }
        } else {
            requests = 0;
        }
        let Some(message) = client.message() else { break };
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no DHCP lease within {} s ({sent} messages sent, no usable answer)", wait.as_secs()),
            ));
        }
        socket.send_to(&message, server)?;
        sent += 1;
        let resend = (now + backoff).min(deadline);
        backoff = (backoff * 2).min(Duration::from_secs(4));
        loop {
            let left = resend.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match client.handle(&buf[..n]) {
                Step::Ignored(why) => note(format!("ignored a datagram from {from}: {why}")),
                Step::Offered(o) => {
                    note(format!("offer of {}/{} from {}", o.address, o.prefix_len, o.server));
                    backoff = Duration::from_secs(1);
                    break;
                }
                Step::Bound(lease) => return Ok(lease),
                Step::Refused(server) => {
                    note(format!("{server} refused the request (NAK); discovering again"));
                    break;
                }
            }
        }
    }
    client.lease().ok_or_else(|| io::Error::other("the DHCP exchange ended without a lease"))
}

fn bind_any(socket: &UdpSocket, port: u16) -> io::Result<()> {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: addr is a live sockaddr_in and the length passed is its size.
    let rc = unsafe {
        libc::bind(socket.as_raw_fd(), (&raw const addr).cast(), size_of::<libc::sockaddr_in>() as libc::socklen_t)
    };
    crate::util::check(rc)
}

/// Connects to `addr` again and again (a second apart) until it accepts or `wait` has passed:
/// a server that is still coming up, or a route that is not there yet, gets that long.
/// Returns the last error when it never accepted.
pub fn wait_for_tcp(addr: SocketAddr, wait: Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match TcpStream::connect_timeout(&addr, left.clamp(Duration::from_millis(100), Duration::from_secs(3))) {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() + Duration::from_secs(1) >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// Connects to `addr` (within `wait`), sends `hello` and returns the first line the
/// other end sends back (within `wait` again): proof that the address is reachable and
/// something answers there.
pub fn probe_tcp(addr: SocketAddr, hello: &str, wait: Duration) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, wait)?;
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(wait))?;
    stream.write_all(hello.as_bytes())?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 200 {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if line.is_empty() => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("connected, but no answer within {} s: {e}", wait.as_secs()),
                ));
            }
            Err(_) => break,
        }
    }
    if line.is_empty() {
        return Err(io::Error::other("connected, but the other end closed without answering"));
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_net(dir: &std::path::Path, name: &str, kind: &str, index: &str, mac: &str) {
        let d = dir.join("sys/class/net").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("type"), kind).unwrap();
        std::fs::write(d.join("ifindex"), index).unwrap();
        std::fs::write(d.join("address"), mac).unwrap();
    }

    #[test]
    fn ethernet_interfaces_are_listed_and_found_by_mac() {
        let dir = tempfile::tempdir().unwrap();
        fake_net(dir.path(), "lo", "772\n", "1\n", "00:00:00:00:00:00\n");
        fake_net(dir.path(), "ens3", "1\n", "2\n", "52:54:00:12:34:56\n");
        fake_net(dir.path(), "broken", "1\n", "x\n", "52:54:00:12:34:57\n");
        std::fs::write(dir.path().join("sys/class/net/ens3/carrier"), "1\n").unwrap();
        let root = SysRoot::at(dir.path());
        let all = interfaces(&root).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].name.as_str(), all[0].index), ("ens3", 2));
        let mac = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(interface_by_mac(&root, mac).unwrap().unwrap().name, "ens3");
        assert_eq!(interface_by_mac(&root, MacAddr([2, 0, 0, 0, 0, 1])).unwrap(), None);
        assert!(has_carrier(&root, "ens3"));
        assert!(!wait_for_carrier(&root, "lo", Duration::from_millis(250)));
        assert!(driver_modules(&root, "ens3").is_empty());
    }

    #[test]
    fn driver_modules_are_found_up_the_device_tree() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let dev = d.join("sys/devices/pci0000:00/0000:00:03.0/virtio0");
        std::fs::create_dir_all(dev.join("net/ens3")).unwrap();
        std::fs::create_dir_all(d.join("sys/class/net")).unwrap();
        std::os::unix::fs::symlink(dev.join("net/ens3"), d.join("sys/class/net/ens3")).unwrap();
        std::fs::create_dir_all(d.join("sys/module/virtio_net")).unwrap();
        std::fs::create_dir_all(d.join("sys/bus/virtio/drivers/virtio_net")).unwrap();
        std::os::unix::fs::symlink(d.join("sys/module/virtio_net"), d.join("sys/bus/virtio/drivers/virtio_net/module"))
            .unwrap();
        std::os::unix::fs::symlink(d.join("sys/bus/virtio/drivers/virtio_net"), dev.join("driver")).unwrap();
        assert_eq!(driver_modules(&SysRoot::at(d), "ens3"), ["virtio_net"]);
    }

    #[test]
    fn probe_reads_the_first_answer_line() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = [0u8; 6];
            s.read_exact(&mut got).unwrap();
            s.write_all(b"hello back\r\nmore").unwrap();
            got
        });
        assert_eq!(probe_tcp(addr, "hello\n", Duration::from_secs(5)).unwrap(), "hello back");
        assert_eq!(&server.join().unwrap(), b"hello\n");
    }
}
