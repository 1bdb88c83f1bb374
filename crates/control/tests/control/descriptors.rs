//! What this process's file descriptors are open on (Linux `/proc`): counted by the scale test
//! and by the clusters bench, which includes this file.

use std::collections::HashMap;
use std::path::Path;

/// This process's descriptors, by what they are open on.
#[derive(Debug, Default, Clone, Copy)]
pub struct Descriptors {
    pub total: usize,
    /// Regular files under the data directory's `volumes/`.
    pub volume_files: usize,
    /// TCP connections (an in-process server's end and its client's each count).
    pub tcp_established: usize,
    pub tcp_listening: usize,
    /// Everything else: other files, other sockets, pipes, the runtime's eventfds and epoll.
    pub other: usize,
}

impl Descriptors {
    pub fn now(data_dir: &Path) -> Descriptors {
        // inode -> TCP state (hex: 01 established, 0A listen), IPv4 and IPv6.
        let mut tcp: HashMap<String, String> = HashMap::new();
        for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() > 9 {
                    tcp.insert(fields[9].to_owned(), fields[3].to_owned());
                }
            }
        }
        let volumes = data_dir.join("volumes");
        let mut counts = Descriptors::default();
        for fd in std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue; // the directory's own descriptor, closed by now
            };
            counts.total += 1;
            let name = target.to_string_lossy();
            let socket = name
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'));
            match socket.and_then(|inode| tcp.get(inode)).map(String::as_str) {
                Some("01") => counts.tcp_established += 1,
                Some("0A") => counts.tcp_listening += 1,
                _ if target.starts_with(&volumes) => counts.volume_files += 1,
                _ => counts.other += 1,
            }
        }
        counts
    }
}
