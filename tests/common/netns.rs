//! Hosts of their own for fault tests: each [`Net`] is a private bridge in a network namespace
//! of its own plus one namespace per host, joined to the bridge by a veth pair and given the
//! address `10.231.0.<10 + index>` (every net is a separate L2 segment, so nets made at the same
//! time do not clash). A process started with [`Net::command`] runs inside its host's namespace
//! (`ip netns exec` replaces itself with the program, so the child's pid is the program's and
//! signals reach it).
//!
//! Faults: [`Net::cut`] takes the bridge side of a host's link down (both directions: the host's
//! TCP connections stay half-open, as when a switch port or cable fails);
//! [`Net::cut_outbound`] makes everything the host sends to the other hosts vanish while what
//! they send still arrives (a one-way cut; done by pointing the host's neighbour entries at a
//! MAC address nobody has, because this kernel has neither netem nor tc drop actions);
//! [`Net::cut_between`] cuts two hosts off from each other only; [`Net::restore`] undoes them. Stopping a process (SIGSTOP) is the caller's, on its pid.
//!
//! Dropping a `Net` deletes its namespaces; namespaces left by a test process that was itself
//! killed are deleted by the next [`Net::new`] (their names carry the owner's pid).
//! [`Net::new`] says why when namespaces cannot be made (not root, no `ip`): callers skip with
//! that message unless `RINGTRAIN_REQUIRE_NETNS` is set, which `.ci/run` sets.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Nets made by this process, for unique names.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The MAC address a one-way cut sends to: locally administered, never given to an interface.
const NOWHERE: &str = "02:00:00:00:de:ad";

/// A private network of hosts, each in its own namespace (see the module docs).
pub struct Net {
    prefix: String,
    hosts: usize,
}

/// Runs `ip ARGS`, returning its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The pid in a name made by [`Net::new`] (`rtf<pid>-...`).
fn owner(name: &str) -> Option<u32> {
    name.strip_prefix("rtf")?.split('-').next()?.parse().ok()
}

/// Deletes the namespaces of test processes that no longer run (killed before their drop ran).
fn remove_orphans() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if let Some(pid) = owner(name)
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            delete_namespace(name);
        }
    }
}

/// Kills whatever still runs in namespace `name`, then deletes it.
fn delete_namespace(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = ip(&["netns", "del", name]);
}

impl Net {
    /// Makes a bridge and `hosts` hosts. Errors say why namespaces are unavailable here.
    pub fn new(hosts: usize) -> Result<Net, String> {
        remove_orphans();
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let net = Net {
            prefix: format!("rtf{}-{k}", std::process::id()),
            hosts: 0,
        };
        let br = net.bridge_ns();
        ip(&["netns", "add", &br])?;
        let mut net = net;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..hosts {
            let ns = net.ns(i);
            ip(&["netns", "add", &ns])?;
            net.hosts = i + 1;
            let veth = format!("v{i}");
            ip(&[
                "-n", &br, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &veth, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &veth, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// A net of `hosts` hosts, or `None` after printing why the calling test is skipped; panics
    /// instead when `RINGTRAIN_REQUIRE_NETNS` is set (CI must not pass a fault test by skipping).
    #[allow(clippy::print_stderr)] // the skip is said where a test's output goes
    pub fn or_skip(hosts: usize, test: &str) -> Option<Net> {
        match Net::new(hosts) {
            Ok(net) => Some(net),
            Err(why) if std::env::var_os("RINGTRAIN_REQUIRE_NETNS").is_some() => {
                panic!("{test}: network namespaces are required here: {why}")
            }
            Err(why) => {
                eprintln!("SKIPPED {test}: network namespaces unavailable ({why}); run as root");
                None
            }
        }
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// The namespace of host `i`.
    pub fn ns(&self, i: usize) -> String {
        format!("{}-h{i}", self.prefix)
    }

    /// The address of host `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("10.231.0.{}", 10 + i)
    }

    /// `program` to be run on host `i`.
    pub fn command(&self, i: usize, program: &std::ffi::OsStr) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(i)]).arg(program);
        cmd
    }

    /// Cuts host `i`'s link in both directions (its connections stay half-open).
    pub fn cut(&self, i: usize) {
        ip(&[
            "-n",
            &self.bridge_ns(),
            "link",
            "set",
            &format!("v{i}"),
            "down",
        ])
        .unwrap();
    }

    /// Drops everything host `i` sends to the other hosts; what they send still arrives.
    pub fn cut_outbound(&self, i: usize) {
        for j in (0..self.hosts).filter(|&j| j != i) {
            self.drop_from(i, j);
        }
    }

    /// Cuts hosts `a` and `b` off from each other (both directions); both still reach the rest.
    pub fn cut_between(&self, a: usize, b: usize) {
        self.drop_from(a, b);
        self.drop_from(b, a);
    }

    /// Makes what host `i` sends to host `j` vanish.
    fn drop_from(&self, i: usize, j: usize) {
        ip(&[
            "-n",
            &self.ns(i),
            "neigh",
            "replace",
            &self.addr(j),
            "lladdr",
            NOWHERE,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
        .unwrap();
    }

    /// Undoes [`Net::cut`] and [`Net::cut_outbound`] on host `i`, and the cuts made by
    /// [`Net::cut_between`] on `i`'s side (restore both hosts of such a cut).
    pub fn restore(&self, i: usize) {
        ip(&[
            "-n",
            &self.bridge_ns(),
            "link",
            "set",
            &format!("v{i}"),
            "up",
        ])
        .unwrap();
        // Forget the bogus entries (a flush leaves permanent ones); ARP learns the real ones.
        for j in (0..self.hosts).filter(|&j| j != i) {
            let _ = ip(&[
                "-n",
                &self.ns(i),
                "neigh",
                "del",
                &self.addr(j),
                "dev",
                "eth0",
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            delete_namespace(&self.ns(i));
        }
        delete_namespace(&self.bridge_ns());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_carry_their_owner() {
        assert_eq!(super::owner("rtf1234-0-h2"), Some(1234));
        assert_eq!(super::owner("rtf1234-5-br"), Some(1234));
        assert_eq!(super::owner("other"), None);
    }
}
